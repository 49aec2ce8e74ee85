//! Progress of pulls and pushes from the engine's JSON message stream: the
//! sum of `current` over the sum of `total` of the layers seen, never going
//! backwards; stream errors (`errorDetail`) become task errors.

use std::collections::HashMap;

use futures::StreamExt;
use serde::Deserialize;

use super::raw::Streaming;
use crate::runtime::{Error, RtResult};

/// Follow the progress stream of `response` (about `what`) to its end,
/// giving `report` each new `(percent, detail)`; the first error message in
/// the stream fails the call.
pub async fn follow(
    what: &str,
    response: Streaming,
    mut report: impl FnMut(i32, &str),
) -> RtResult<()> {
    let mut progress = Progress::default();
    let messages = response.json_lines::<Message>();
    futures::pin_mut!(messages);
    while let Some(message) = messages.next().await {
        let message = message?;
        if let Some(error) = message.error() {
            return Err(Error::Runtime(error));
        }
        if let Some((percent, detail)) = progress.update(what, &message) {
            report(percent, &detail);
        }
    }
    Ok(())
}

/// One message of the engine's progress stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    /// e.g. `Downloading`, `Pull complete`.
    pub status: Option<String>,
    /// Layer id the message is about.
    pub id: Option<String>,
    /// Byte counts.
    #[serde(rename = "progressDetail")]
    pub progress_detail: Option<Detail>,
    /// Set when the operation failed.
    #[serde(rename = "errorDetail")]
    pub error_detail: Option<ErrorDetail>,
    /// Older form of the error.
    pub error: Option<String>,
}

/// Byte counts of one layer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Detail {
    /// Bytes done.
    pub current: Option<u64>,
    /// Bytes in all.
    pub total: Option<u64>,
}

/// The engine's error inside the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    /// The daemon's message.
    pub message: Option<String>,
}

impl Message {
    /// The daemon's error message, if this message reports a failure.
    pub fn error(&self) -> Option<String> {
        self.error_detail
            .as_ref()
            .and_then(|d| d.message.clone())
            .or_else(|| self.error.clone())
    }
}

/// Aggregates layer progress into one monotonic percentage.
#[derive(Debug, Default)]
pub struct Progress {
    layers: HashMap<String, (u64, u64)>,
    percent: i32,
}

impl Progress {
    /// Take one message; returns the new `(percent, detail)` when it changed.
    pub fn update(&mut self, what: &str, m: &Message) -> Option<(i32, String)> {
        let (Some(id), Some(detail)) = (&m.id, &m.progress_detail) else {
            return None;
        };
        let (Some(current), Some(total)) = (detail.current, detail.total) else {
            return None;
        };
        if total == 0 {
            return None;
        }
        let entry = self.layers.entry(id.clone()).or_default();
        // A layer's download is followed by its extraction, whose counter
        // restarts at 0: keep the larger figure so the sum never shrinks.
        entry.0 = entry.0.max(current.min(total));
        entry.1 = entry.1.max(total);
        let (done, all) = self
            .layers
            .values()
            .fold((0u64, 0u64), |(d, a), (c, t)| (d + c, a + t));
        let percent = ((done as f64 / all as f64) * 100.0).floor() as i32;
        if percent > self.percent {
            self.percent = percent.min(99);
            let status = m.status.as_deref().unwrap_or("working");
            Some((
                self.percent,
                format!("{status} {what}: {} of {}", mib(done), mib(all)),
            ))
        } else {
            None
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, current: u64, total: u64) -> Message {
        serde_json::from_value(serde_json::json!({
            "status": "Downloading", "id": id,
            "progressDetail": {"current": current, "total": total}
        }))
        .unwrap()
    }

    #[test]
    fn sums_layers_and_never_goes_backwards() {
        let mut p = Progress::default();
        assert_eq!(p.update("b:1", &msg("a", 50, 100)).unwrap().0, 50);
        // A second layer appears: the sum grows, the percentage would drop.
        assert_eq!(p.update("b:1", &msg("b", 0, 100)), None);
        assert_eq!(p.update("b:1", &msg("b", 80, 100)).unwrap().0, 65);
        // Extraction restarts a layer's counter: no step back.
        assert_eq!(p.update("b:1", &msg("a", 10, 100)), None);
        assert_eq!(p.update("b:1", &msg("a", 100, 100)).unwrap().0, 90);
    }

    #[test]
    fn stream_errors_carry_the_daemon_message() {
        let m: Message = serde_json::from_str(
            r#"{"errorDetail":{"message":"manifest for x:y not found"},"error":"manifest for x:y not found"}"#,
        )
        .unwrap();
        assert_eq!(m.error().unwrap(), "manifest for x:y not found");
        assert_eq!(Message::default().error(), None);
    }
}
