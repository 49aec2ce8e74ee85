//! The event streams (`GET background/events`) and followed container
//! logs (`GET container/{type}/{id}/logs?follow=1`) that are open: at most
//! a cap of each per user, each ended when its session logs out.
//!
//! A stream holds a [`StreamSlot`] for as long as it is open; dropping the
//! stream (the client went away, the server stops, its session ended) gives
//! the place back.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::AppError;

/// Event streams a user may hold open at once by default.
pub const DEFAULT_STREAMS_PER_USER: usize = 16;

/// Containers' logs a user may follow at once.
pub const FOLLOWERS_PER_USER: usize = 8;

/// What an open stream is; each kind has its own cap per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Events,
    Logs,
}

/// The open event streams, by user and by session.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    per_user: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Streams open per kind and user.
    by_user: HashMap<(Kind, String), usize>,
    /// Per session id: cancelled when the session logs out, and how many
    /// streams it has open.
    by_session: HashMap<String, (CancellationToken, usize)>,
}

/// One open stream's place; dropping it gives the place back.
pub struct StreamSlot {
    inner: Arc<Inner>,
    kind: Kind,
    user: String,
    session: String,
    ended: CancellationToken,
}

impl StreamSlot {
    /// Cancelled when the stream's session logs out.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }
}

impl Streams {
    /// At most `per_user` streams open per user.
    pub fn new(per_user: usize) -> Streams {
        Streams {
            inner: Arc::new(Inner {
                per_user,
                open: Mutex::new(Open::default()),
            }),
        }
    }

    /// A place for one more stream of `user`'s session `session`, or 429
    /// (`too_many_streams`) when the user has the most open already.
    pub fn open(&self, user: &str, session: &str) -> Result<StreamSlot, AppError> {
        self.take(Kind::Events, user, session)
    }

    /// A place for one more followed container log of `user`'s session
    /// `session`, or 429 (`too_many_followers`) when the user follows
    /// [`FOLLOWERS_PER_USER`] already.
    pub fn follow(&self, user: &str, session: &str) -> Result<StreamSlot, AppError> {
        self.take(Kind::Logs, user, session)
    }

    fn take(&self, kind: Kind, user: &str, session: &str) -> Result<StreamSlot, AppError> {
        let mut open = self.inner.open.lock();
        let count = open.by_user.entry((kind, user.to_string())).or_default();
        let refused = match kind {
            Kind::Events if *count >= self.inner.per_user => Some(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "user {user} has {} event streams open already, the most allowed \
                     (http.streams_per_user); close one first",
                    self.inner.per_user
                ),
            )),
            Kind::Logs if *count >= FOLLOWERS_PER_USER => Some(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_followers",
                format!(
                    "user {user} follows {FOLLOWERS_PER_USER} containers' logs already, \
                     the most allowed; close one first"
                ),
            )),
            _ => None,
        };
        if let Some(refused) = refused {
            // A refused first stream leaves no empty count behind.
            if *count == 0 {
                open.by_user.remove(&(kind, user.to_string()));
            }
            return Err(refused);
        }
        *count += 1;
        let (token, streams) = open
            .by_session
            .entry(session.to_string())
            .or_insert_with(|| (CancellationToken::new(), 0));
        *streams += 1;
        Ok(StreamSlot {
            inner: self.inner.clone(),
            kind,
            user: user.to_string(),
            session: session.to_string(),
            ended: token.clone(),
        })
    }

    /// End every stream of session `session` (it logged out).
    pub fn end_session(&self, session: &str) {
        if let Some((token, _)) = self.inner.open.lock().by_session.remove(session) {
            token.cancel();
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock();
        let key = (self.kind, std::mem::take(&mut self.user));
        if let Some(n) = open.by_user.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.by_user.remove(&key);
            }
        }
        // A cancelled stream's session entry is gone already.
        if self.ended.is_cancelled() {
            return;
        }
        if let Some((_, n)) = open.by_session.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                open.by_session.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_user_and_ends_per_session() {
        let streams = Streams::new(2);
        let a = streams.open("bob", "s1").unwrap();
        let b = streams.open("bob", "s2").unwrap();
        assert_eq!(
            streams.open("bob", "s1").err().unwrap().reason,
            "too_many_streams"
        );
        let carol = streams.open("carol", "s3").unwrap();
        streams.end_session("s1");
        assert!(a.ended().is_cancelled());
        assert!(!b.ended().is_cancelled());
        drop(a);
        let again = streams.open("bob", "s1").unwrap();
        assert!(!again.ended().is_cancelled(), "a new stream of the session");
        drop((b, carol, again));
        let open = streams.inner.open.lock();
        assert!(open.by_user.is_empty() && open.by_session.is_empty());
    }

    #[test]
    fn followers_have_their_own_cap_and_end_with_the_session() {
        let streams = Streams::new(1);
        let events = streams.open("bob", "s1").unwrap();
        let logs: Vec<_> = (0..FOLLOWERS_PER_USER)
            .map(|_| streams.follow("bob", "s1").unwrap())
            .collect();
        let refused = streams.follow("bob", "s1").err().unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.reason, "too_many_followers");
        assert!(refused.message.contains(&FOLLOWERS_PER_USER.to_string()));
        assert!(streams.follow("carol", "s2").is_ok(), "another user's cap");
        streams.end_session("s1");
        assert!(logs.iter().all(|l| l.ended().is_cancelled()));
        drop((events, logs));
        assert!(streams.follow("bob", "s3").is_ok(), "places given back");
    }
}
