//! `sleepy_locked`: waits `seconds`; may not be deleted while running.

#[path = "../../sleepy/src/common.rs"]
mod common;
use stevedore_sdk::{Category, Error};

/// The category.
pub struct SleepyLocked;

impl Category for SleepyLocked {
    const NAME: &'static str = "sleepy_locked";
    const SUMMARY: &'static str = "Wait, not cancellable";
    type Params = common::Params;
    fn validate(p: &common::Params) -> Result<(), Error> {
        common::validate(p)
    }
    fn run(p: common::Params) -> Result<Option<String>, Error> {
        common::run(p)
    }
}

stevedore_sdk::category!(SleepyLocked);
