//! `undeclared`: imports `images` but declares no capability besides
//! `task`; loading it must fail, naming the interface, whatever the
//! operator allows.

use stevedore_sdk::{images, Category, Error, RuntimeKind};

/// The category.
pub struct Undeclared;

impl Category for Undeclared {
    const NAME: &'static str = "undeclared";
    const SUMMARY: &'static str = "Use a capability it did not declare";
    type Params = stevedore_sdk::AnyParams;
    fn validate(_: &stevedore_sdk::AnyParams) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: stevedore_sdk::AnyParams) -> Result<Option<String>, Error> {
        images::remove(RuntimeKind::Docker, "anything", false)?;
        Ok(None)
    }
}

stevedore_sdk::category!(Undeclared);
