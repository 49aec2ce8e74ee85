//! `v0_1_0`: a category built against the `category` world of WIT 0.1.0
//! (the frozen copy in `wit/v0.1.0/`), as a third-party plugin of that time
//! was. Params: `{"steps": n}` (1..=10, default 2): it reports progress
//! `n` times through the 0.1.0 `task` import, then completes with
//! `ran n steps on 0.1.0`. `{"fail": true}` ends it with an error.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "category",
        path: "../../../wit/v0.1.0",
        generate_all,
    });
}

use bindings::exports::stevedore::plugin::executor::{Description, Guest};
use bindings::stevedore::plugin::task;
use bindings::stevedore::plugin::types::Error;

/// Read `steps` from the params, naming the field on bad input.
fn steps(params: &str) -> Result<u32, Error> {
    let value: serde_json::Value =
        serde_json::from_str(params).map_err(|e| Error::InvalidParams(format!("params: {e}")))?;
    if value.get("fail") == Some(&serde_json::Value::Bool(true)) {
        return Err(Error::Other("failed as asked".into()));
    }
    match value.get("steps") {
        None => Ok(2),
        Some(n) => match n.as_u64() {
            Some(n @ 1..=10) => Ok(n as u32),
            _ => Err(Error::InvalidParams(
                "steps: must be an integer 1..=10".into(),
            )),
        },
    }
}

/// The category.
pub struct V010;

impl Guest for V010 {
    fn describe() -> Description {
        Description {
            name: "v0_1_0".into(),
            deletable: true,
            capabilities: vec!["task".into()],
            summary: "A plugin built against WIT 0.1.0".into(),
            secret_fields: vec![],
        }
    }

    fn validate(params: String) -> Result<(), Error> {
        match steps(&params) {
            Err(Error::Other(_)) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn run() -> Result<Option<String>, Error> {
        let n = steps(&task::params())?;
        for i in 1..=n {
            task::progress((i * 100 / n) as i8, &format!("step {i} of {n}"));
        }
        Ok(Some(format!("ran {n} steps on 0.1.0")))
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(V010 with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_checked() {
        assert_eq!(steps("{}").unwrap(), 2);
        assert_eq!(steps(r#"{"steps": 5}"#).unwrap(), 5);
        assert!(matches!(
            steps(r#"{"steps": 0}"#),
            Err(Error::InvalidParams(m)) if m.starts_with("steps:")
        ));
    }
}
