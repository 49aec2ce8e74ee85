//! `application_upgrade`: bring an installed application to its template's
//! current version in the repository. The stored wizard answers are applied
//! again; only services whose configuration changed are recreated (named
//! volumes kept, anonymous ones carried over), the others keep running
//! untouched. On failure the previous containers are put back and the task
//! ends in error saying what failed. Not deletable while running: a half
//! upgrade must be finished or rolled back by the plugin itself.

use stevedore_compose::ops::{self, UpgradeParams};
use stevedore_sdk::{Category, Error};

/// The category.
pub struct ApplicationUpgrade;

impl Category for ApplicationUpgrade {
    const NAME: &'static str = "application_upgrade";
    const SUMMARY: &'static str =
        "Upgrade an installed application to its template's current version";
    const CAPABILITIES: &'static [&'static str] = &[
        "images",
        "containers",
        "networks",
        "volumes",
        "repository",
        "app-store",
    ];
    type Params = UpgradeParams;

    fn validate(p: &UpgradeParams) -> Result<(), Error> {
        ops::validate_upgrade(p).map(|_| ())
    }

    fn run(p: UpgradeParams) -> Result<Option<String>, Error> {
        ops::upgrade(&p).map(Some)
    }
}

stevedore_sdk::category!(ApplicationUpgrade);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<ApplicationUpgrade>();
        assert_eq!(d.name, "application_upgrade");
        assert!(!d.deletable);
    }
}
