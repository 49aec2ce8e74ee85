//! Files in an application's folder that the host and the application
//! categories both read or write.

/// Who installed the application: a user name, written by the host.
pub const APP_OWNER: &str = ".stevedore-owner";
/// The application's record (JSON: template, version, services,
/// containers), written by the application categories.
pub const APP_RECORD: &str = ".stevedore-app.json";
/// The rendered compose file of an application.
pub const APP_COMPOSE: &str = "docker-compose.yml";
