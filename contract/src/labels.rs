//! Labels on engine objects (containers, networks, volumes).

/// The user a container, network or volume was created for. The host sets
/// it on every object a task creates, replacing any value a plugin gave.
pub const OWNER: &str = "io.stevedore.owner";

/// Compose: the project (an application's name) an object belongs to.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose: the service a container runs.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Compose: the hash of the service's configuration, to tell whether an
/// upgrade changes it.
pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// Compose: the project's folder on the host.
pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// Compose: the project's compose files, comma-separated.
pub const COMPOSE_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
/// Compose: the container's number within its service.
pub const COMPOSE_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// Compose: `True` for a one-off `run` container, `False` otherwise.
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
/// Compose: the version of the Compose semantics followed.
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
/// Compose: a network's name in the compose file.
pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";
/// Compose: a volume's name in the compose file.
pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";
