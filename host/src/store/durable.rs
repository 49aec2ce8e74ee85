//! When a claim is on disk: the handle a run holds to learn whether (and
//! when) the transaction that moved its task to `running` committed.
//!
//! The SQLite store answers a claim as soon as its statements have run, and
//! commits (with its fsync) while the claimed tasks already start: a run
//! costs one commit instead of two. A run's effects wait for the commit
//! (the plugin host awaits [`Durable::wait`] before every runtime call, the
//! queue before an executor that does not), so a run whose claim is lost in
//! a crash did nothing, and its task, `waiting` again, runs once after the
//! restart. A task that did something had a durable claim and is
//! `interrupted` after a crash, never run twice.

use std::sync::Arc;

use tokio::sync::watch;

/// How a claim's commit ended: `None` while it is being written.
type State = Option<Result<(), Arc<str>>>;

/// Resolves once the claim of a run is durable, or failed to commit (the
/// claim was rolled back and the task is `waiting` again).
#[derive(Clone)]
pub struct Durable(Option<watch::Receiver<State>>);

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            None => "durable".to_string(),
            Some(rx) => match &*rx.borrow() {
                None => "pending".to_string(),
                Some(Ok(())) => "durable".to_string(),
                Some(Err(e)) => format!("failed: {e}"),
            },
        };
        f.debug_tuple("Durable").field(&state).finish()
    }
}

impl Durable {
    /// Already on disk (a store that commits before it answers).
    pub fn ready() -> Durable {
        Durable(None)
    }

    /// A claim being committed, and the sender that tells its end.
    pub fn pending() -> (Committer, Durable) {
        let (tx, rx) = watch::channel(None);
        (Committer(tx), Durable(Some(rx)))
    }

    /// Wait until the claim is durable; an error when its commit failed.
    pub async fn wait(&self) -> Result<(), String> {
        let Some(rx) = &self.0 else {
            return Ok(());
        };
        let mut rx = rx.clone();
        let state = match rx.wait_for(Option::is_some).await {
            Ok(state) => state.clone(),
            // The writer went away without a word: the commit never happened.
            Err(_) => Some(Err(Arc::from(
                "the task store stopped before the claim was stored",
            ))),
        };
        match state {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => unreachable!("wait_for returned an unfinished state"),
        }
    }

    /// Whether the claim is known to be durable now, without waiting.
    #[cfg(test)]
    pub fn is_durable(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|rx| matches!(&*rx.borrow(), Some(Ok(()))))
    }
}

/// The writer's side of a [`Durable`]: says how the commit ended.
pub struct Committer(watch::Sender<State>);

impl Committer {
    /// The commit ended: `Ok` durable, `Err` rolled back.
    pub fn settle(self, commit: &Result<(), String>) {
        self.0
            .send_replace(Some(commit.clone().map_err(|e| Arc::from(e.as_str()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_commit_and_tells_its_end() {
        assert!(Durable::ready().wait().await.is_ok());

        let (committer, durable) = Durable::pending();
        let waiting = tokio::spawn({
            let d = durable.clone();
            async move { d.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!durable.is_durable());
        assert!(!waiting.is_finished());
        committer.settle(&Ok(()));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert!(durable.is_durable());

        let (committer, durable) = Durable::pending();
        committer.settle(&Err("disk full".into()));
        assert_eq!(durable.wait().await, Err("disk full".to_string()));
        assert!(!durable.is_durable());

        let (committer, durable) = Durable::pending();
        drop(committer);
        let err = durable.wait().await.unwrap_err();
        assert!(err.contains("stopped"), "{err}");
    }
}
