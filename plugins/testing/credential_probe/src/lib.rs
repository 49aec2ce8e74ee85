//! `credential_probe`: asks `credentials::lookup(registry)` and ends with
//! what it was lent (the user name, never the password), so a test can see
//! which registry credentials reach a plugin for which user.

use serde::Deserialize;
use stevedore_sdk::{credentials, task, Category, Error};

/// Params.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct Params {
    /// The registry asked about (`host:port`; empty for Docker Hub).
    pub registry: String,
}

/// The category.
pub struct CredentialProbe;

impl Category for CredentialProbe {
    const NAME: &'static str = "credential_probe";
    const SUMMARY: &'static str = "Say which credentials the host lends for a registry";
    const CAPABILITIES: &'static [&'static str] = &["credentials"];
    type Params = Params;

    fn validate(_: &Params) -> Result<(), Error> {
        Ok(())
    }

    fn run(p: Params) -> Result<Option<String>, Error> {
        let lent = credentials::lookup(&p.registry);
        task::progress(100, "asked");
        Ok(Some(match lent {
            Some(c) => format!("lent: {}", c.username),
            None => "lent: nothing".to_string(),
        }))
    }
}

stevedore_sdk::category!(CredentialProbe);
