//! Users, password checks, sessions and the failed-login limiter.
//!
//! Users come from the configuration (`[users.NAME]`, argon2 PHC hashes).
//! When no admin is configured, `admin` is created on the first start with the
//! password from `STEVEDORE_ADMIN_PASSWORD`, or a generated one printed once;
//! only its hash is kept, in `<data>/admin.hash`.
//!
//! Password checks (argon2, 19 MiB and tens of milliseconds each) run on
//! blocking threads, at most one per core at once: a login that
//! finds them all busy is refused ([`LoginError::Busy`], 429) rather than
//! queued. A session lasts [`Auth::ttl_secs`] past its last use, at most
//! its absolute lifetime after the login, and only while the user's
//! password hash is the one it was made under.

pub mod config;
pub mod limiter;
pub mod password;
pub mod sessions;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use self::config::AuthConfig;
use crate::store::Database;

pub use crate::store::private::write_private;
pub use limiter::LoginLimiter;
pub use sessions::{Session, SessionStore};

/// Name of the session cookie: Container Station's own, which clients
/// look for after a login.
pub const COOKIE_NAME: &str = "CS_SESS_ID";
/// User name of the generated administrator.
pub const ADMIN_USER: &str = "admin";
/// File (in the data folder) holding the generated administrator's hash.
pub const ADMIN_HASH_FILE: &str = "admin.hash";

/// A user that may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Argon2 PHC hash.
    pub password_hash: String,
    /// Admins see all tasks.
    pub admin: bool,
}

/// Who a request is from, once its session checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub username: String,
    /// Whether the user is an admin (from the current configuration).
    pub is_admin: bool,
    /// Login time, epoch seconds.
    pub login_time: i64,
    /// The session id from the cookie.
    pub session_id: String,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (the two are not told apart).
    #[error("invalid user name or password")]
    BadCredentials,
    /// Too many failures from this address; retry after the duration.
    #[error("too many failed logins; retry in {} s", .0.as_secs().max(1))]
    LockedOut(Duration),
    /// Every password check is in use; retry in a second.
    #[error("the server is busy checking other logins; retry in 1 s")]
    Busy,
    /// Storing the session failed.
    #[error("session store: {0}")]
    Store(#[from] anyhow::Error),
}

/// Users, sessions and the limiter.
pub struct Auth {
    users: BTreeMap<String, User>,
    sessions: SessionStore,
    limiter: LoginLimiter,
    ttl_secs: i64,
    max_secs: i64,
    checks: Arc<Semaphore>,
    dummy_hash: String,
}

/// The fingerprint of a password hash that a session records
/// ([`Session::stamp`]): 64 bits of its SHA-256, in hex. It tells hashes
/// apart and reveals nothing a stolen session file could use.
pub fn hash_stamp(phc: &str) -> String {
    hex::encode(&Sha256::digest(phc.as_bytes())[..8])
}

/// Password checks at once: one per core.
fn default_check_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Now, epoch seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Auth {
    /// Users from `config` (plus the generated admin when none is configured),
    /// sessions from `<data>/sessions.db`; or, with a shared database `db`,
    /// the generated admin's hash and the sessions from it, so that every
    /// node has the same admin and accepts every node's sessions.
    pub async fn open(config: &AuthConfig, db: Option<Arc<Database>>) -> anyhow::Result<Auth> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
        let mut users: BTreeMap<String, User> = config
            .users
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    User {
                        password_hash: u.password_hash.clone(),
                        admin: u.admin,
                    },
                )
            })
            .collect();
        if !config.has_admin() {
            if users.contains_key(ADMIN_USER) {
                tracing::warn!(
                    "no admin configured and user `admin` is not one: nobody sees all tasks"
                );
            } else {
                let env_password = config.admin_password.as_ref().map(|s| s.expose());
                let hash = match &db {
                    Some(db) => shared_admin_hash(db, env_password).await?,
                    None => generated_admin_hash(&config.data_dir, env_password)?,
                };
                users.insert(
                    ADMIN_USER.to_string(),
                    User {
                        password_hash: hash,
                        admin: true,
                    },
                );
            }
        }
        let sessions = match db {
            Some(db) => SessionStore::new(db.sessions()),
            None => SessionStore::open(&config.sessions_path(), now_secs())?,
        };
        Ok(Self::new(users, sessions, config.session_ttl_secs)?
            .with_max_lifetime(config.session_max_secs))
    }

    /// Build from explicit parts (tests): sessions idle out after
    /// `ttl_secs`, and end [`config::DEFAULT_SESSION_MAX_SECS`]
    /// after their login.
    pub fn new(
        users: BTreeMap<String, User>,
        sessions: SessionStore,
        ttl_secs: u64,
    ) -> anyhow::Result<Auth> {
        Ok(Auth {
            users,
            sessions,
            limiter: LoginLimiter::new(),
            ttl_secs: clamp_secs(ttl_secs),
            max_secs: clamp_secs(config::DEFAULT_SESSION_MAX_SECS),
            checks: Arc::new(Semaphore::new(default_check_slots())),
            dummy_hash: password::hash("not a real password")?,
        })
    }

    /// The same, with sessions ending `secs` after their login whatever their use.
    pub fn with_max_lifetime(mut self, secs: u64) -> Auth {
        self.max_secs = clamp_secs(secs);
        self
    }

    /// The same, with at most `slots` password checks at once.
    pub fn with_password_checks(mut self, slots: usize) -> Auth {
        self.checks = Arc::new(Semaphore::new(slots.max(1)));
        self
    }

    /// Every user who may log in, with whether they are an admin.
    pub fn users(&self) -> Vec<(String, bool)> {
        self.users
            .iter()
            .map(|(name, u)| (name.clone(), u.admin))
            .collect()
    }

    /// Session lifetime in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// What a session cookie's `Max-Age` should be for `identity` now: the
    /// idle lifetime, or less when the absolute lifetime ends sooner.
    pub fn cookie_max_age(&self, identity: &Identity) -> i64 {
        let left = identity.login_time + self.max_secs - now_secs();
        self.ttl_secs.min(left.max(0))
    }

    /// Check a user name and password from `ip`; on success open a session
    /// and return its identity. Runs argon2 on a blocking thread, when one
    /// of the password checks is free ([`LoginError::Busy`] otherwise) and
    /// the limiter lets `ip` try ([`LoginError::LockedOut`] otherwise).
    pub async fn login(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<Identity, LoginError> {
        let permit = self
            .checks
            .clone()
            .try_acquire_owned()
            .map_err(|_| LoginError::Busy)?;
        // Counted as a failure now, before the check: parallel attempts
        // cannot all pass the limiter before one of them is recorded.
        let lockout = match ip {
            Some(ip) => self.limiter.reserve(ip).map_err(LoginError::LockedOut)?,
            None => None,
        };
        let user = self.users.get(username).cloned();
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let pw = password.to_string();
        // Verify even for an unknown user, so timing does not tell users apart.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::metrics::password_checked();
            password::verify(&pw, &hash)
        })
        .await
        .unwrap_or(false);
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                crate::metrics::login_failed();
                if let (Some(ip), Some(lock)) = (ip, lockout) {
                    tracing::warn!(%ip, lockout_secs = lock.as_secs(), "repeated failed logins; client locked out");
                }
                return Err(LoginError::BadCredentials);
            }
        };
        if let Some(ip) = ip {
            self.limiter.succeeded(ip);
        }
        let now = now_secs();
        let id = sessions::new_id();
        let session = Session {
            username: username.to_string(),
            login_time: now,
            expires: now + self.ttl_secs,
            stamp: hash_stamp(&user.password_hash),
        };
        self.sessions.insert(&id, &session).await?;
        Ok(Identity {
            username: username.to_string(),
            is_admin: user.admin,
            login_time: now,
            session_id: id,
        })
    }

    /// The session `session_id` and its user, if the session is live: not
    /// idle past its expiry, within its absolute lifetime, and made under
    /// the user's current password hash. A session that is none of these
    /// any more is removed.
    async fn live(&self, session_id: &str, now: i64) -> Option<(Session, &User)> {
        let session = self.sessions.get(session_id, now).await?;
        let user = self.users.get(&session.username);
        let valid = user.is_some_and(|u| {
            now - session.login_time < self.max_secs
                && session.stamp == hash_stamp(&u.password_hash)
        });
        if !valid {
            if let Err(e) = self.sessions.remove(session_id).await {
                tracing::warn!("removing an ended session: {e:#}");
            }
            return None;
        }
        Some((session, user?))
    }

    /// Whether `session_id` names a live session (its expiry does not move).
    pub async fn is_live(&self, session_id: &str) -> bool {
        self.live(session_id, now_secs()).await.is_some()
    }

    /// The identity behind a session id, if the session is live and its user still exists.
    /// Pushes the expiry forward when a tenth of the lifetime has passed.
    pub async fn identify(&self, session_id: &str) -> Option<Identity> {
        let now = now_secs();
        let (session, user) = self.live(session_id, now).await?;
        if session.expires - now < self.ttl_secs - self.ttl_secs / 10 {
            if let Err(e) = self.sessions.extend(session_id, now + self.ttl_secs).await {
                tracing::warn!("extending a session: {e:#}");
            }
        }
        Some(Identity {
            username: session.username,
            is_admin: user.admin,
            login_time: session.login_time,
            session_id: session_id.to_string(),
        })
    }

    /// Extend a session to a full lifetime from now (`login_refresh`).
    pub async fn refresh(&self, session_id: &str) -> anyhow::Result<()> {
        self.sessions
            .extend(session_id, now_secs() + self.ttl_secs)
            .await
    }

    /// End a session.
    pub async fn logout(&self, session_id: &str) -> anyhow::Result<()> {
        self.sessions.remove(session_id).await
    }

    /// Drop expired sessions.
    pub async fn purge_expired(&self) {
        if let Err(e) = self.sessions.purge(now_secs()).await {
            tracing::warn!("purging sessions: {e:#}");
        }
    }
}

/// The generated admin's hash: kept from `<data>/admin.hash`, replaced when
/// `STEVEDORE_ADMIN_PASSWORD` is set and differs, created on the first start.
fn generated_admin_hash(data_dir: &Path, env_password: Option<&str>) -> anyhow::Result<String> {
    let path = data_dir.join(ADMIN_HASH_FILE);
    let stored = std::fs::read_to_string(&path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let (hash, generated) = match AdminHash::decide(stored, env_password)? {
        AdminHash::Kept(hash) => return Ok(hash),
        AdminHash::New { hash, generated } => (hash, generated),
    };
    write_private(&path, format!("{hash}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    announce_admin(generated, &format!(" in {}", path.display()));
    Ok(hash)
}

/// The generated admin's hash shared by every node of a database (setting
/// `admin_hash`), by the rules of [`generated_admin_hash`].
async fn shared_admin_hash(db: &Database, env_password: Option<&str>) -> anyhow::Result<String> {
    const KEY: &str = "admin_hash";
    let stored = db.setting(KEY).await?;
    let (hash, generated) = match AdminHash::decide(stored, env_password)? {
        AdminHash::Kept(hash) => return Ok(hash),
        AdminHash::New { hash, generated } => (hash, generated),
    };
    db.set_setting(KEY, &hash).await?;
    announce_admin(generated, ", in the shared database");
    Ok(hash)
}

/// What becomes of the generated admin's hash at a start.
enum AdminHash {
    /// The stored hash stands.
    Kept(String),
    /// A new hash to store, and the password generated for it (`None`:
    /// the hash is `STEVEDORE_ADMIN_PASSWORD`'s).
    New {
        hash: String,
        generated: Option<String>,
    },
}

impl AdminHash {
    /// The stored hash stands unless `STEVEDORE_ADMIN_PASSWORD` is set and
    /// differs; with neither, a password is generated.
    fn decide(stored: Option<String>, env_password: Option<&str>) -> anyhow::Result<AdminHash> {
        Ok(match (stored, env_password) {
            (Some(h), Some(pw)) if password::verify(pw, &h) => AdminHash::Kept(h),
            (Some(h), None) => AdminHash::Kept(h),
            (_, Some(pw)) => AdminHash::New {
                hash: password::hash(pw)?,
                generated: None,
            },
            (None, None) => {
                let pw = password::generate();
                AdminHash::New {
                    hash: password::hash(&pw)?,
                    generated: Some(pw),
                }
            }
        })
    }
}

/// Say where a new admin hash came from. A generated password is printed
/// once, on the console only (not through the log), saying where its hash
/// is kept (`kept`: " in <file>", ", in the shared database").
fn announce_admin(generated: Option<String>, kept: &str) {
    if let Some(pw) = generated {
        eprintln!(
            "stevedore: created user `admin` with password: {pw}\n\
             stevedore: (shown once; only its hash is kept{kept})"
        );
    } else {
        tracing::info!("user `admin` set from STEVEDORE_ADMIN_PASSWORD");
    }
}

/// Seconds as an `i64` that can be added to a time without overflow.
fn clamp_secs(secs: u64) -> i64 {
    secs.min(i64::MAX as u64 / 4) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_hash_is_generated_once_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = generated_admin_hash(dir.path(), None).unwrap();
        let h2 = generated_admin_hash(dir.path(), None).unwrap();
        assert_eq!(h1, h2, "kept across starts");
        let h3 = generated_admin_hash(dir.path(), Some("pw1")).unwrap();
        assert!(password::verify("pw1", &h3));
        let h4 = generated_admin_hash(dir.path(), Some("pw1")).unwrap();
        assert_eq!(h3, h4);
        let stored = std::fs::read_to_string(dir.path().join(ADMIN_HASH_FILE)).unwrap();
        assert!(!stored.contains("pw1"));
    }

    #[tokio::test]
    async fn login_identify_logout() {
        let mut users = BTreeMap::new();
        users.insert(
            "bob".to_string(),
            User {
                password_hash: password::hash("pw").unwrap(),
                admin: false,
            },
        );
        let auth = Arc::new(Auth::new(users, SessionStore::in_memory().unwrap(), 3600).unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(matches!(
            auth.login("bob", "bad", Some(ip)).await,
            Err(LoginError::BadCredentials)
        ));
        assert!(matches!(
            auth.login("nobody", "pw", Some(ip)).await,
            Err(LoginError::BadCredentials)
        ));
        let id = auth.login("bob", "pw", Some(ip)).await.unwrap();
        assert!(!id.is_admin);
        let again = auth.identify(&id.session_id).await.unwrap();
        assert_eq!(again.username, "bob");
        assert!(auth.identify("forged").await.is_none());
        auth.logout(&id.session_id).await.unwrap();
        assert!(auth.identify(&id.session_id).await.is_none());
        // Three failures lock the address out, even for the right password.
        for _ in 0..3 {
            let _ = auth.login("bob", "bad", Some(ip)).await;
        }
        assert!(matches!(
            auth.login("bob", "pw", Some(ip)).await,
            Err(LoginError::LockedOut(_))
        ));
    }

    fn bob_with(hash: &str) -> BTreeMap<String, User> {
        BTreeMap::from([(
            "bob".to_string(),
            User {
                password_hash: hash.to_string(),
                admin: false,
            },
        )])
    }

    #[tokio::test]
    async fn a_full_set_of_password_checks_turns_logins_away() {
        let users = bob_with(&password::hash("pw").unwrap());
        let auth = Arc::new(
            Auth::new(users, SessionStore::in_memory().unwrap(), 3600)
                .unwrap()
                .with_password_checks(1),
        );
        let (first, second) =
            tokio::join!(auth.login("bob", "pw", None), auth.login("bob", "pw", None));
        assert!(first.is_ok());
        assert!(matches!(second, Err(LoginError::Busy)));
        assert!(auth.login("bob", "pw", None).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn sessions_end_with_a_new_password_or_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let old = password::hash("old").unwrap();
        let open = |hash: &str| {
            Arc::new(
                Auth::new(
                    bob_with(hash),
                    SessionStore::open(&path, now_secs()).unwrap(),
                    3600,
                )
                .unwrap(),
            )
        };
        let id = open(&old).login("bob", "old", None).await.unwrap();
        assert!(open(&old).identify(&id.session_id).await.is_some());
        let new = password::hash("new").unwrap();
        assert!(open(&new).identify(&id.session_id).await.is_none());
        assert!(
            open(&old).identify(&id.session_id).await.is_none(),
            "removed for good"
        );
        let auth = Arc::new(
            Auth::new(bob_with(&old), SessionStore::in_memory().unwrap(), 3600)
                .unwrap()
                .with_max_lifetime(0),
        );
        let id = auth.login("bob", "old", None).await.unwrap();
        assert!(auth.identify(&id.session_id).await.is_none());
    }
}
