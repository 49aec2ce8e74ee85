// Shared by `sleepy` and `sleepy_locked`.
use serde::Deserialize;
use stevedore_sdk::{task, Error};

/// Params.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// How long to wait, in seconds (at most 3600).
    pub seconds: u32,
}

pub fn validate(p: &Params) -> Result<(), Error> {
    if p.seconds > 3600 {
        return Err(Error::invalid("seconds", "must be at most 3600"));
    }
    Ok(())
}

pub fn run(p: Params) -> Result<Option<String>, Error> {
    let steps = p.seconds * 10;
    for i in 0..steps {
        task::progress(
            (i * 100 / steps.max(1)) as i8,
            &format!("waiting, {i}/{steps}"),
        );
        if task::sleep(100) {
            return Err(Error::Cancelled);
        }
    }
    task::progress(100, "waited");
    Ok(None)
}
