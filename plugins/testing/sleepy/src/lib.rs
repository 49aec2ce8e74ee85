//! `sleepy`: waits `seconds` without using CPU; may be deleted while running.

mod common;
use stevedore_sdk::{Category, Error};

/// The category.
pub struct Sleepy;

impl Category for Sleepy {
    const NAME: &'static str = "sleepy";
    const SUMMARY: &'static str = "Wait, cancellable";
    const DELETABLE: bool = true;
    type Params = common::Params;
    fn validate(p: &common::Params) -> Result<(), Error> {
        common::validate(p)
    }
    fn run(p: common::Params) -> Result<Option<String>, Error> {
        common::run(p)
    }
}

stevedore_sdk::category!(Sleepy);
