//! The `LISTEN` connection: every node's `NOTIFY` on [`CHANNEL`] becomes a
//! [`Notice`] on a broadcast channel. The connection is re-made when it
//! drops; a [`Notice::Resync`] then tells listeners they may have missed
//! some, so they look at the store again.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel of every node.
pub const CHANNEL: &str = "stevedore";

/// Most task ids in one notice: 256 ids of up to 20 characters each, with
/// node names of up to 255 bytes, fit a payload well under 8,000 bytes.
pub const MAX_NOTICE_IDS: usize = 256;

/// What one node tells the others, as the JSON payload of a `NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Waiting tasks for `node` were stored: its node claims.
    Submitted {
        /// The tasks' node.
        node: String,
        /// Task ids, increasing.
        ids: Vec<i64>,
        /// The node that stored it.
        origin: String,
    },
    /// Tasks changed (claimed, progressed, ended, deleted).
    Changed {
        /// Task ids.
        ids: Vec<i64>,
        /// The node that changed them.
        origin: String,
    },
    /// Cancel a running task of `node` (a `DELETE` sent to another node).
    Cancel {
        /// The node running it.
        node: String,
        /// Task id.
        id: i64,
    },
    /// The listener reconnected: notifications may have been missed.
    Resync,
}

impl Notice {
    /// The payload of the `NOTIFY`.
    pub fn payload(&self) -> String {
        serde_json::to_string(self).expect("a notice serialises")
    }

    /// This notice as notices of at most [`MAX_NOTICE_IDS`] ids each, so
    /// that every payload stays under PostgreSQL's 8,000-byte limit however
    /// many tasks one transaction touched.
    pub fn split(self) -> Vec<Notice> {
        match self {
            Notice::Submitted { node, ids, origin } if ids.len() > MAX_NOTICE_IDS => ids
                .chunks(MAX_NOTICE_IDS)
                .map(|c| Notice::Submitted {
                    node: node.clone(),
                    ids: c.to_vec(),
                    origin: origin.clone(),
                })
                .collect(),
            Notice::Changed { ids, origin } if ids.len() > MAX_NOTICE_IDS => ids
                .chunks(MAX_NOTICE_IDS)
                .map(|c| Notice::Changed {
                    ids: c.to_vec(),
                    origin: origin.clone(),
                })
                .collect(),
            other => vec![other],
        }
    }
}

/// Listen until aborted; `ready` gets the outcome of the first `LISTEN`.
pub(super) async fn run(
    config: tokio_postgres::Config,
    notices: broadcast::Sender<Notice>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let mut ready = Some(ready);
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match listen_once(&config, &notices, &mut ready).await {
            Ok(()) => {}
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %format!("{e:#}"), "database listener lost; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    notices: &broadcast::Sender<Notice>,
    ready: &mut Option<oneshot::Sender<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "database listener connection failed");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    } else {
        let _ = notices.send(Notice::Resync);
    }
    while let Some(payload) = rx.recv().await {
        match serde_json::from_str::<Notice>(&payload) {
            Ok(n) => {
                let _ = notices.send(n);
            }
            Err(e) => tracing::warn!(error = %e, payload, "unreadable database notification"),
        }
    }
    driver.abort();
    drop(client);
    Ok(())
}
