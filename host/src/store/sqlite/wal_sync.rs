//! Group commit with the fsync off the writer's path.
//!
//! The SQLite writer commits with `synchronous = NORMAL`: a commit writes
//! its frames to the write-ahead log and returns without an fsync. It then
//! hands the batch's replies to the syncer thread here, and goes on with
//! the next batch. The syncer takes every batch handed to it so far, makes
//! the log durable with one `fdatasync`, and only then sends their replies.
//! So no write is answered before it is on disk, as with `FULL`, but the
//! writer never waits for the disk: while one fsync runs, the next batches
//! are applied, and one fsync covers them all.
//!
//! Why this is as safe as `FULL`: a WAL is written in order, a commit's
//! frames are in the file when `COMMIT` returns, and `fdatasync` of the
//! file after that covers them. What SQLite does besides (syncing the log
//! before a checkpoint copies it, and the database before the log is
//! reused) it does in `NORMAL` too, which is why `NORMAL` never corrupts a
//! WAL database; it only may lose the last commits at a power cut, and
//! those were not answered yet.
//!
//! Readers: another connection sees a commit as soon as it is written,
//! before its fsync. A read therefore waits, after it ran, until every
//! commit it could have seen is durable ([`Marks::wait_durable`]): a
//! task shown `completed` stays completed after a power cut.
//!
//! Commits wait for the syncer: while an fsync runs, the writer applies
//! what arrives in one open transaction and commits it when the syncer is
//! free again ([`Marks::syncer_idle`]), so one commit (and its log frames:
//! every page it changed, written once) carries what arrived during one
//! fsync. Committing each batch at once wrote the same pages to the log
//! about twice per fsync under load. Nothing waits longer for it: what
//! arrives during an fsync cannot be durable before the next fsync anyway,
//! and claims are answered before their commit ([`crate::store::TaskStore::claim_early`]).
//!
//! A failed fsync leaves the log's state unknown (the kernel may have
//! dropped the pages); the store then refuses every later write, as
//! PostgreSQL does, and says to restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::{JoinHandle, Thread};

use parking_lot::Mutex;
use tokio::sync::watch;

/// Something sent once the batch it belongs to is durable (or failed).
pub(super) trait Settle: Send + 'static {
    /// `Ok` when durable; the error of the commit or of the fsync otherwise.
    fn settle(self, result: &Result<(), String>);
}

/// One committed batch, handed from the writer to the syncer.
pub(super) struct Batch<P> {
    /// From [`Marks::next`], taken before the commit.
    pub seq: u64,
    /// Whether its replies wait for an fsync (batches of progress only
    /// are advisory and do not).
    pub needs_sync: bool,
    /// How its `COMMIT` ended.
    pub commit: Result<(), String>,
    /// What to send when it is settled.
    pub replies: Vec<P>,
}

/// How far the log is written and how far it is durable, shared by the
/// writer, the syncer and the readers.
pub(super) struct Marks {
    /// Sequence number of the last batch whose commit was started.
    started: AtomicU64,
    /// Every batch up to this one is durable (or advisory, or failed).
    durable: watch::Sender<u64>,
    /// Set for good by a failed fsync.
    failed: Mutex<Option<String>>,
    /// Batches handed to the syncer and not yet settled.
    in_flight: AtomicUsize,
    /// The writer, woken when the syncer has settled what it was handed.
    writer: OnceLock<Thread>,
}

impl Marks {
    pub fn new() -> Arc<Marks> {
        Arc::new(Marks {
            started: AtomicU64::new(0),
            durable: watch::channel(0).0,
            failed: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            writer: OnceLock::new(),
        })
    }

    /// The writer thread, to be unparked whenever the syncer goes idle
    /// and whenever a write is sent to it.
    pub fn set_writer(&self, writer: Thread) {
        let _ = self.writer.set(writer);
    }

    /// Wake the writer, which may be parked holding a transaction open.
    pub fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// The writer, before it hands a committed batch to the syncer.
    pub fn handed(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the syncer has settled every batch handed to it: the writer
    /// commits then (or when its transaction is full), not before.
    pub fn syncer_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// The syncer, after settling `n` batches: wake the writer, which may
    /// be holding a transaction for this moment.
    fn settled(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        self.wake_writer();
    }

    /// The writer, before a `COMMIT`: its batch's number. Taken before, so
    /// a reader that sees the commit also sees the number (or a later one).
    pub fn next(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// After a read: the last batch it could have seen.
    pub fn seen_by_read(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Wait until batch `seq` and every one before it is settled. Returns
    /// at once when the syncer has stopped (the store is closed).
    pub async fn wait_durable(&self, seq: u64) {
        if *self.durable.borrow() >= seq {
            return;
        }
        let mut rx = self.durable.subscribe();
        let _ = rx.wait_for(|d| *d >= seq).await;
    }

    /// Why writes are refused, after a failed fsync.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }
}

/// Start the syncer of the log at `wal`; batches sent to the returned
/// sender are settled in order. It ends when the sender is dropped, after
/// settling what it was given.
pub(super) fn start<P: Settle>(
    wal: PathBuf,
    marks: Arc<Marks>,
) -> std::io::Result<(mpsc::Sender<Batch<P>>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Batch<P>>();
    let handle = std::thread::Builder::new()
        .name("stevedore-db-sync".into())
        .spawn(move || run(&wal, &marks, &rx))?;
    Ok((tx, handle))
}

fn run<P: Settle>(wal: &std::path::Path, marks: &Marks, rx: &mpsc::Receiver<Batch<P>>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let needed = batches.iter().any(|b| b.needs_sync && b.commit.is_ok());
        let synced = if needed {
            sync(wal, &mut file).map_err(|e| {
                let message = format!(
                    "the task store could not make its log durable ({}: {e}); \
                     it takes no more writes: restart the server",
                    wal.display()
                );
                tracing::error!("{message}");
                *marks.failed.lock() = Some(message.clone());
                message
            })
        } else {
            Ok(())
        };
        let count = batches.len();
        let last = batches.last().map_or(0, |b| b.seq);
        marks.durable.send_replace(last);
        for b in batches {
            let result = match (&b.commit, &synced) {
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Err(e)) if b.needs_sync => Err(e.clone()),
                _ => Ok(()),
            };
            for reply in b.replies {
                reply.settle(&result);
            }
        }
        marks.settled(count);
    }
}

/// `fdatasync` the log, opening it on first use (it exists once a
/// commit wrote to it; SQLite keeps the same file while it is open).
fn sync(wal: &std::path::Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
    let f = match file {
        Some(f) => f,
        None => file.insert(std::fs::File::open(wal)?),
    };
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Told(mpsc::Sender<Result<(), String>>);

    impl Settle for Told {
        fn settle(self, result: &Result<(), String>) {
            let _ = self.0.send(result.clone());
        }
    }

    #[tokio::test]
    async fn replies_after_the_sync_in_order_and_a_failed_sync_is_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let marks = Marks::new();
        let (tx, handle) = start::<Told>(wal.clone(), marks.clone()).unwrap();
        let (told_tx, told) = mpsc::channel();

        let seq = marks.next();
        assert_eq!(marks.seen_by_read(), seq);
        tx.send(Batch {
            seq,
            needs_sync: true,
            commit: Ok(()),
            replies: vec![Told(told_tx.clone()), Told(told_tx.clone())],
        })
        .unwrap();
        marks.wait_durable(seq).await;
        assert_eq!(told.recv().unwrap(), Ok(()));
        assert_eq!(told.recv().unwrap(), Ok(()));

        // A failed commit is told as such, synced or not.
        let seq = marks.next();
        tx.send(Batch {
            seq,
            needs_sync: true,
            commit: Err("disk full".into()),
            replies: vec![Told(told_tx.clone())],
        })
        .unwrap();
        assert_eq!(told.recv().unwrap(), Err("disk full".into()));

        // The log cannot be synced (here: it is gone): that batch fails, an
        // advisory one does not, and the store is marked failed.
        std::fs::remove_file(&wal).unwrap();
        let fresh = start::<Told>(wal, marks.clone()).unwrap();
        let seq = marks.next();
        fresh
            .0
            .send(Batch {
                seq,
                needs_sync: true,
                commit: Ok(()),
                replies: vec![Told(told_tx.clone())],
            })
            .unwrap();
        let err = told.recv().unwrap().unwrap_err();
        assert!(err.contains("restart the server"), "{err}");
        assert!(marks.failure().is_some());
        marks.wait_durable(seq).await;

        drop((tx, fresh.0));
        handle.join().unwrap();
        fresh.1.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_until_what_it_saw_is_durable() {
        let marks = Marks::new();
        let seq = marks.next();
        let waiting = tokio::spawn({
            let marks = marks.clone();
            async move { marks.wait_durable(marks.seen_by_read()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a read returned before the sync");
        marks.durable.send_replace(seq);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the read never returned")
            .unwrap();
    }
}
