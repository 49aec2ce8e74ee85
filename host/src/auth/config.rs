//! The users of `[users.NAME]`, the generated admin's password and the
//! session lifetimes: what [`super::Auth::open`] needs of the configuration.
//!
//! ```toml
//! [users.alice]
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! admin = false
//! [users.alice.policy]        # see `crate::policy` for every key
//! privileged = true
//! ```
//!
//! The session lifetimes are keys of `[http]` (`crate::api::config`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;

use crate::policy::PolicyConfig;
use crate::secret::Secret;
use crate::user_name::check_user_name;

/// Default session lifetime (24 h).
pub const DEFAULT_SESSION_TTL_SECS: u64 = 24 * 3600;
/// Default absolute session lifetime (7 days), however often it is used.
pub const DEFAULT_SESSION_MAX_SECS: u64 = 7 * 24 * 3600;
/// The session store's file in the data folder (without a shared database).
pub const SESSIONS_FILE: &str = "sessions.db";

/// A user allowed to log in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// PHC string of an argon2 hash (`$argon2id$...`).
    pub password_hash: String,
    /// Admins see and delete every user's tasks.
    #[serde(default)]
    pub admin: bool,
    /// What this user may do, over `[policy.default]` (non-admins) or no
    /// restriction (admins); see [`crate::policy`].
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
}

/// Names that can be folder names, and password hashes that are PHC strings.
pub fn check_users(users: &BTreeMap<String, UserConfig>) -> anyhow::Result<()> {
    for (name, user) in users {
        if let Err(why) = check_user_name(name) {
            bail!("users.{name:?}: {why}");
        }
        if argon2::password_hash::PasswordHash::new(&user.password_hash).is_err() {
            bail!("users.{name}.password_hash: not a PHC hash string like `$argon2id$v=19$...`");
        }
    }
    Ok(())
}

/// What logins and sessions are built from.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The data folder: the generated admin's hash and, without a shared
    /// database, the session store.
    pub data_dir: PathBuf,
    /// The configured users.
    pub users: BTreeMap<String, UserConfig>,
    /// Password of a generated `admin` (from `STEVEDORE_ADMIN_PASSWORD`).
    pub admin_password: Option<Secret>,
    /// How long a session lasts unused, in seconds.
    pub session_ttl_secs: u64,
    /// How long a session lasts after its login, in seconds.
    pub session_max_secs: u64,
}

impl AuthConfig {
    /// Whether any configured user is an admin.
    pub fn has_admin(&self) -> bool {
        self.users.values().any(|u| u.admin)
    }

    /// The session store's file, without a shared database.
    pub fn sessions_path(&self) -> PathBuf {
        self.data_dir.join(SESSIONS_FILE)
    }
}
