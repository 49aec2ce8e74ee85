//! A failpoint in the writer's commit, for tests only: a test holds the
//! commit of every batch with an early claim, to see what runs before it
//! and to make it fail. Outside tests [`HoldSlot`] is empty and
//! [`HoldSlot::commit_fails`] is a constant `false`, so the production commit
//! path has no failpoint in it.

#[cfg(test)]
pub(super) use self::testing::HoldSlot;

/// Where a test holds the commit of early claims: nothing outside tests.
#[cfg(not(test))]
#[derive(Clone, Default)]
pub(super) struct HoldSlot(());

#[cfg(not(test))]
impl HoldSlot {
    /// Never: only a test fails a commit on purpose.
    #[inline(always)]
    pub(super) fn commit_fails(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod testing {
    use std::sync::mpsc;
    use std::sync::Arc;

    use parking_lot::Mutex;

    /// Tests hold here the commit of every batch with an early claim
    /// (`SqliteStore::hold_early_claims`).
    #[derive(Clone, Default)]
    pub(in super::super) struct HoldSlot(Arc<Mutex<Option<Hold>>>);

    struct Hold {
        /// Told when a batch is held (its claims answered, its commit not yet run).
        held: mpsc::Sender<()>,
        /// Then waits here: `true` commits, `false` fails the commit (rolled back).
        release: mpsc::Receiver<bool>,
    }

    impl HoldSlot {
        /// Hold every batch with an early claim from now on: each held
        /// batch sends on the first channel, then waits on the second
        /// (`true` commits, `false` fails the commit). Dropping the sender
        /// releases them all.
        pub(in super::super) fn hold(&self) -> (mpsc::Receiver<()>, mpsc::Sender<bool>) {
            let (held_tx, held_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel();
            *self.0.lock() = Some(Hold {
                held: held_tx,
                release: release_rx,
            });
            (held_rx, release_tx)
        }

        /// Whether the test fails the held batch's commit (`false` without a hold).
        pub(in super::super) fn commit_fails(&self) -> bool {
            let slot = self.0.lock();
            let Some(hold) = slot.as_ref() else {
                return false;
            };
            // A test that went away releases everything.
            if hold.held.send(()).is_err() {
                return false;
            }
            !hold.release.recv().unwrap_or(true)
        }
    }
}
