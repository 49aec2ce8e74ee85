//! Counts the hardening tests report (routes checked, cases fuzzed, kills
//! survived): printed, and appended to the file named by [`ENV`], which
//! `cargo xtask test` prints after the run, since the test harness hides
//! what a passing test printed.

use std::io::Write as _;

/// The variable naming the report file.
pub const ENV: &str = "STEVEDORE_TEST_REPORT";

/// Print `line` and append it to the report file, if one is named. One
/// `write` of an `O_APPEND` file per line, so tests running at once do not
/// interleave their lines.
pub fn count(line: &str) {
    println!("{line}");
    let Some(path) = std::env::var_os(ENV) else {
        return;
    };
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot append to {}: {e}", path.to_string_lossy());
    }
}

/// `format!` the arguments and [`count`] the line.
#[macro_export]
macro_rules! test_count {
    ($($arg:tt)*) => {
        $crate::test_report::count(&format!($($arg)*))
    };
}
