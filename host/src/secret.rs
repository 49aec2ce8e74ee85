//! [`Secret`]: a configured string that no `Debug` output shows.

use std::fmt;

use serde::Deserialize;

/// A secret string: shown as `******` by `Debug`, so a config dump never leaks it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself; use only where it is needed (hashing, a registry login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"******\"")
    }
}
