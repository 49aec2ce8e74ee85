//! `application`: install an application from a `type: "app"` template of
//! the `qnap` repository. The compose work is in [`stevedore_compose`]:
//! `validate` checks the name, the template and every wizard answer (a 400
//! naming the field); `run` copies the template into the application's
//! folder, renders `docker-compose.yml` with the answers, pulls the images
//! (`Download image: N%`), creates the project's networks and volumes and
//! starts the containers in dependency order. A failure removes what the run
//! created; deleting the running task cancels it and the host removes it.

use stevedore_compose::ops::{self, InstallParams};
use stevedore_sdk::{Category, Error};

/// The category.
pub struct Application;

impl Category for Application {
    const NAME: &'static str = "application";
    const SUMMARY: &'static str =
        "Install an application (docker-compose template with a wizard) from the repository";
    const DELETABLE: bool = true;
    const CAPABILITIES: &'static [&'static str] = &[
        "images",
        "containers",
        "networks",
        "volumes",
        "repository",
        "app-store",
    ];
    type Params = InstallParams;

    fn validate(p: &InstallParams) -> Result<(), Error> {
        ops::validate_install(p).map(|_| ())
    }

    fn run(p: InstallParams) -> Result<Option<String>, Error> {
        ops::install(&p).map(Some)
    }
}

stevedore_sdk::category!(Application);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<Application>();
        assert_eq!(d.name, "application");
        assert!(d.deletable);
        assert!(d.capabilities.iter().any(|c| c == "app-store"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let m = stevedore_sdk::expect_invalid(
            "port",
            stevedore_sdk::decode::<InstallParams>(
                r#"{"template": "t", "name": "ab", "port": "x"}"#,
            ),
        );
        assert!(m.starts_with("port: invalid type"), "{m}");
        let m = stevedore_sdk::expect_invalid(
            "no name",
            stevedore_sdk::decode::<InstallParams>(r#"{"template": "t"}"#),
        );
        assert_eq!(m, "params: missing field `name`");
    }
}
