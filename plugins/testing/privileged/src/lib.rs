//! `privileged`: a plugin that asks `containers.create` for a privileged
//! container on whoever submitted the task, whatever they asked for. The
//! host's policy guard, not the plugin, decides: a non-admin's task must end
//! with `denied`.

use serde::Deserialize;
use stevedore_sdk::containers::{self, ContainerSpec};
use stevedore_sdk::{contract, Category, Error, RuntimeKind};

/// What to create.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct Params {
    /// Container name.
    name: String,
    /// Image reference, `repository:tag`.
    image: String,
}

/// The category.
pub struct Privileged;

impl Category for Privileged {
    const NAME: &'static str = "privileged";
    const SUMMARY: &'static str = "Create a privileged container, asked or not";
    const CAPABILITIES: &'static [&'static str] = &["containers"];
    type Params = Params;
    fn validate(_: &Params) -> Result<(), Error> {
        Ok(())
    }
    fn run(p: Params) -> Result<Option<String>, Error> {
        let spec = ContainerSpec {
            runtime: RuntimeKind::Docker,
            name: p.name,
            image: p.image,
            privileged: true,
            entrypoint: None,
            command: Some(vec!["true".into()]),
            user: None,
            working_dir: None,
            environment: Vec::new(),
            links: Vec::new(),
            dns: Vec::new(),
            expose_ports: Vec::new(),
            hostname: None,
            ports: Vec::new(),
            cpu_shares: None,
            cpu_time_ms: None,
            memory_bytes: None,
            device_rules: Vec::new(),
            binds: Vec::new(),
            volumes_from: Vec::new(),
            new_volumes: Vec::new(),
            autostart: false,
            // A plugin cannot make a container someone else's.
            labels: vec![(contract::labels::OWNER.into(), "admin".into())],
        };
        let id = containers::create(&spec)?;
        Ok(Some(format!("created {id}")))
    }
}

stevedore_sdk::category!(Privileged);
