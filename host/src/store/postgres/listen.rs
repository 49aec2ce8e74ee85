//! The `LISTEN` connection: every node's `NOTIFY` on [`CHANNEL`] becomes a
//! [`Notice`] on a broadcast channel. The connection is re-made when it
//! drops; a [`Notice::Resync`] then tells listeners they may have missed
//! some, so they look at the store again.

use futures::StreamExt;
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::store::Notice;

/// The notification channel of every node.
pub const CHANNEL: &str = "stevedore";

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
