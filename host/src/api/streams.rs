//! The event streams (`GET background/events`) that are open: at most a
//! cap per user, each ended when its session logs out.
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
    /// Streams open per user.
    by_user: HashMap<String, usize>,
    /// Per session id: cancelled when the session logs out, and how many
    /// streams it has open.
    by_session: HashMap<String, (CancellationToken, usize)>,
}

/// One open stream's place; dropping it gives the place back.
pub struct StreamSlot {
    inner: Arc<Inner>,
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
        let mut open = self.inner.open.lock();
        let count = open.by_user.entry(user.to_string()).or_default();
        if *count >= self.inner.per_user {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "user {user} has {} event streams open already, the most allowed \
                     (http.streams_per_user); close one first",
                    self.inner.per_user
                ),
            ));
        }
        *count += 1;
        let (token, streams) = open
            .by_session
            .entry(session.to_string())
            .or_insert_with(|| (CancellationToken::new(), 0));
        *streams += 1;
        Ok(StreamSlot {
            inner: self.inner.clone(),
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
        if let Some(n) = open.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.by_user.remove(&self.user);
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
}
