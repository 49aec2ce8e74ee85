//! `spin`: loops forever in `run`, and in `validate` when params say
//! `{"in_validate": true}`. The host must stop it at its CPU budget.

use serde::Deserialize;
use stevedore_sdk::{Category, Error};

/// Params.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct Params {
    /// Loop in validate too.
    #[serde(default)]
    pub in_validate: bool,
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// The category.
pub struct Spin;

impl Category for Spin {
    const NAME: &'static str = "spin";
    const SUMMARY: &'static str = "Loop forever";
    type Params = Params;
    fn validate(p: &Params) -> Result<(), Error> {
        if p.in_validate {
            spin()
        }
        Ok(())
    }
    fn run(_: Params) -> Result<Option<String>, Error> {
        spin()
    }
}

stevedore_sdk::category!(Spin);
