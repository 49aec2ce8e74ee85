//! `ungranted`: imports `containers`, which no configuration grants to an
//! unknown category; loading it must fail, naming the interface.

use stevedore_sdk::{containers, Category, Error, RuntimeKind};

/// The category.
pub struct Ungranted;

impl Category for Ungranted {
    const NAME: &'static str = "ungranted";
    const SUMMARY: &'static str = "Use a capability it was not granted";
    const CAPABILITIES: &'static [&'static str] = &["containers"];
    type Params = stevedore_sdk::AnyParams;
    fn validate(_: &stevedore_sdk::AnyParams) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: stevedore_sdk::AnyParams) -> Result<Option<String>, Error> {
        containers::start(RuntimeKind::Docker, "anything")?;
        Ok(None)
    }
}

stevedore_sdk::category!(Ungranted);
