//! `trap`: panics in `run` (a panic aborts, which traps).

use stevedore_sdk::{Category, Error};

/// The category.
pub struct Trap;

impl Category for Trap {
    const NAME: &'static str = "trap";
    const SUMMARY: &'static str = "Panic";
    type Params = stevedore_sdk::AnyParams;
    fn validate(_: &stevedore_sdk::AnyParams) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: stevedore_sdk::AnyParams) -> Result<Option<String>, Error> {
        let v: Vec<u32> = std::hint::black_box(Vec::new());
        Ok(Some(format!("{}", v[3])))
    }
}

stevedore_sdk::category!(Trap);
