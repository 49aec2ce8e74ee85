//! `chatty`: logs `lines` numbered lines through the SDK, one every
//! `pause_ms`, then one on WASI stdout and one on stderr, each carrying its
//! params' `password`, so a test can see a task's log and its masking.

use serde::Deserialize;
use stevedore_sdk::{task, Category, Error, Level};

/// Params.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// How many lines to log through the SDK (at most 10,000).
    pub lines: u32,
    /// Milliseconds between two lines (at most 10,000).
    #[serde(default)]
    pub pause_ms: u32,
    /// A secret the lines carry (shown masked).
    pub password: String,
}

/// The category.
pub struct Chatty;

impl Category for Chatty {
    const NAME: &'static str = "chatty";
    const SUMMARY: &'static str = "Log lines carrying a secret";
    const DELETABLE: bool = true;
    type Params = Params;
    fn validate(p: &Params) -> Result<(), Error> {
        if p.lines > 10_000 {
            return Err(Error::invalid("lines", "must be at most 10000"));
        }
        if p.pause_ms > 10_000 {
            return Err(Error::invalid("pause_ms", "must be at most 10000"));
        }
        Ok(())
    }
    fn run(p: Params) -> Result<Option<String>, Error> {
        for i in 0..p.lines {
            let level = if i % 2 == 0 { Level::Info } else { Level::Warn };
            task::log(level, &format!("line {i} password={}", p.password));
            if p.pause_ms > 0 && task::sleep(p.pause_ms) {
                return Err(Error::Cancelled);
            }
        }
        println!("stdout password={}", p.password);
        eprintln!("stderr line");
        Ok(Some(format!("logged {} lines", p.lines)))
    }
}

stevedore_sdk::category!(Chatty);
