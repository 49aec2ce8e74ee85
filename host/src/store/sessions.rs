//! Login sessions at rest: one record per session, stored under the SHA-256
//! of its id (never the id), so a copy of the store gives no usable cookie.

use async_trait::async_trait;

/// The SHA-256 of a session id: the key a session is stored under.
pub type SessionKey = [u8; 32];

/// One logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// User name.
    pub username: String,
    /// Login time, epoch seconds.
    pub login_time: i64,
    /// Expiry, epoch seconds.
    pub expires: i64,
    /// A fingerprint of the user's password hash when the session was made:
    /// a session made under another hash (the password changed since) is
    /// refused.
    pub stamp: String,
}

/// Durable storage of sessions, one driver per database. Expiry is the
/// caller's to check: a driver returns what it holds.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Store `session` under `key`, replacing any session stored there.
    async fn insert(&self, key: &SessionKey, session: &Session) -> anyhow::Result<()>;
    /// The session stored under `key`, if any.
    async fn get(&self, key: &SessionKey) -> anyhow::Result<Option<Session>>;
    /// Move the expiry of the session under `key` to `expires`.
    async fn extend(&self, key: &SessionKey, expires: i64) -> anyhow::Result<()>;
    /// Forget the session under `key`.
    async fn remove(&self, key: &SessionKey) -> anyhow::Result<()>;
    /// Forget every session that expired by `now`.
    async fn purge(&self, now: i64) -> anyhow::Result<()>;
}
