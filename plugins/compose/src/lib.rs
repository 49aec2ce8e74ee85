//! Compose work of the application categories, shared by the `application`
//! and `application_upgrade` plugins: [`wizard`] (install.json and answer
//! checks), [`render`] (bindings, v1 normalisation), [`plan`] (networks,
//! volumes, containers, labels, config hashes, start order) and [`ops`]
//! (driving the host's capabilities).

pub mod ops;
pub mod plan;
pub mod render;
pub mod wizard;
