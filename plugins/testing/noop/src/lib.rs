//! `noop`: completes at once. Params: optional `count` (integer), `fail`
//! (bool: end as error), `password` (secret, for masking tests).

use serde::Deserialize;
use stevedore_sdk::{task, Category, Error};

/// Params.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct Params {
    /// Any integer; exists so tests can send a wrong type.
    #[serde(default)]
    pub count: Option<u32>,
    /// End the task as `error`.
    #[serde(default)]
    pub fail: bool,
    /// A secret that must never be shown.
    #[serde(default)]
    pub password: Option<String>,
    /// Another secret field declared by the category.
    #[serde(default)]
    pub token: Option<String>,
}

/// The category.
pub struct Noop;

impl Category for Noop {
    const NAME: &'static str = "noop";
    const SUMMARY: &'static str = "Do nothing, at once";
    const SECRET_FIELDS: &'static [&'static str] = &["token"];
    type Params = Params;

    fn validate(_: &Params) -> Result<(), Error> {
        Ok(())
    }

    fn run(p: Params) -> Result<Option<String>, Error> {
        if p.fail {
            return Err(Error::Other("failed as asked".into()));
        }
        task::progress(100, "done");
        Ok(None)
    }
}

stevedore_sdk::category!(Noop);
