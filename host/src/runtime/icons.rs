//! The repository's icons, fetched by the server and kept in memory: the
//! dashboard's CSP (`img-src 'self'`) lets the page load no remote image,
//! and a repository may name icons anywhere.
//!
//! - An icon is known by a key derived from its resolved location
//!   ([`key`]): the client names a key, never a URL, so the server fetches
//!   only what `list.json` lists (no open proxy).
//! - A fetch takes at most [`FETCH_TIMEOUT`] and [`ICON_MAX`] bytes, and
//!   only PNG, JPEG, GIF, WebP and ICO are kept, told by their magic bytes
//!   ([`sniff`]): SVG or HTML served from our origin could run script.
//! - An icon is kept for [`ICON_TTL`], a failure for [`FAILURE_TTL`] (a
//!   dead host is not asked on every page view); concurrent misses of one
//!   key wait for one fetch; the cache is bounded in entries and bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::catalog::Location;

/// How long one icon fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest icon kept, in bytes.
pub const ICON_MAX: usize = 256 << 10;
/// How long a fetched icon is reused.
pub const ICON_TTL: Duration = Duration::from_secs(3600);
/// How long a failed fetch is remembered before the icon is asked for again.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);
/// The most icons (and failures) kept.
const ENTRIES: usize = 512;
/// The most bytes kept, all icons together.
const BYTES: usize = 16 << 20;

/// The key of the icon at `location`: the first 16 hex digits of the
/// SHA-256 of its resolved URL or path.
pub fn key(location: &Location) -> String {
    let digest = Sha256::digest(location.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// Whether `text` has the shape of a [`key`] (16 lowercase hex digits).
pub fn valid_key(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The content type of an image in one of the accepted formats, told by
/// its first bytes; `None` for anything else (SVG, HTML, text, ...).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 6 && bytes.starts_with(&[0, 0, 1, 0]) && bytes[4..6] != [0, 0] {
        // ICONDIR: reserved 0, type 1 (icon), then a non-zero image count.
        Some("image/x-icon")
    } else {
        None
    }
}

/// An icon ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icon {
    /// From its magic bytes ([`sniff`]).
    pub content_type: &'static str,
    /// The image.
    pub bytes: Bytes,
}

impl Icon {
    /// `bytes` as an icon, or why they are not one.
    pub fn from_bytes(bytes: Bytes) -> Result<Icon, String> {
        match sniff(&bytes) {
            Some(content_type) => Ok(Icon {
                content_type,
                bytes,
            }),
            None => Err("not a PNG, JPEG, GIF, WebP or ICO image".into()),
        }
    }
}

/// One key's fetch: done once, by whoever asks first.
#[derive(Default)]
struct Slot {
    fetched: tokio::sync::OnceCell<Fetched>,
}

/// A fetch's outcome and when it ended.
struct Fetched {
    at: Instant,
    icon: Result<Icon, String>,
}

impl Slot {
    /// Fetched and still fresh, or being fetched.
    fn usable(&self) -> bool {
        self.fetched.get().is_none_or(|f| {
            let ttl = if f.icon.is_ok() {
                ICON_TTL
            } else {
                FAILURE_TTL
            };
            f.at.elapsed() < ttl
        })
    }

    fn bytes(&self) -> usize {
        self.fetched
            .get()
            .and_then(|f| f.icon.as_ref().ok())
            .map_or(0, |i| i.bytes.len())
    }
}

/// The icons fetched, by key. Clones share them.
#[derive(Clone, Default)]
pub struct Icons {
    slots: Arc<parking_lot::Mutex<HashMap<String, Arc<Slot>>>>,
}

impl std::fmt::Debug for Icons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Icons")
            .field("kept", &self.slots.lock().len())
            .finish()
    }
}

impl Icons {
    /// The slot of `key`: the fresh one, or a new one (dropping stale ones
    /// first, and everything when the cache is over its bounds).
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(key).filter(|s| s.usable()) {
            return slot.clone();
        }
        let over = |slots: &HashMap<String, Arc<Slot>>| {
            slots.len() >= ENTRIES || slots.values().map(|s| s.bytes()).sum::<usize>() >= BYTES
        };
        if over(&slots) {
            slots.retain(|_, s| s.usable());
            if over(&slots) {
                slots.clear();
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key.to_string(), slot.clone());
        slot
    }

    /// The icon of `key`: the one kept, else what `fetch` brings (one fetch
    /// for every concurrent caller), kept for [`ICON_TTL`], or its failure
    /// for [`FAILURE_TTL`].
    pub async fn get<F>(&self, key: &str, fetch: F) -> Result<Icon, String>
    where
        F: std::future::Future<Output = Result<Bytes, String>>,
    {
        let slot = self.slot(key);
        let fetched = slot
            .fetched
            .get_or_init(|| async {
                let icon = fetch.await.and_then(Icon::from_bytes);
                Fetched {
                    at: Instant::now(),
                    icon,
                }
            })
            .await;
        fetched.icon.clone()
    }

    /// How many keys are kept (fetched, failed or being fetched).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn magic_bytes_pick_the_type_and_refuse_the_rest() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(
            sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
            Some("image/jpeg")
        );
        assert_eq!(sniff(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"GIF87a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(&[0, 0, 1, 0, 1, 0, 16, 16]), Some("image/x-icon"));
        for bad in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
            b"<!DOCTYPE html><script>",
            b"not an icon\n",
            b"",
            b"\x89PN",
            b"RIFF\x10\0\0\0WAVE",
            &[0, 0, 1, 0, 0, 0],
        ] {
            assert_eq!(sniff(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_16_hex_of_the_resolved_location() {
        let url = Location::Url(reqwest::Url::parse("https://example.invalid/a.png").unwrap());
        let k = key(&url);
        assert!(valid_key(&k), "{k}");
        let digest = hex::encode(Sha256::digest(b"https://example.invalid/a.png"));
        assert_eq!(k, digest[..16]);
        let file = Location::File(PathBuf::from("/srv/repo/icons/a.png"));
        assert_ne!(key(&file), k);
        assert_eq!(key(&file), key(&file.clone()));
        for bad in [
            "",
            "0123456789abcdeF",
            "0123456789abcde",
            "../../etc/passwd",
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn one_fetch_for_concurrent_misses_and_failures_are_kept() {
        let icons = Icons::default();
        let count = Arc::new(AtomicUsize::new(0));
        let fetch = |body: &'static [u8]| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(Bytes::from_static(body))
            }
        };
        let all = (0..20).map(|_| icons.get("a", fetch(PNG)));
        for icon in futures::future::join_all(all).await {
            assert_eq!(icon.unwrap().content_type, "image/png");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Text posing as an icon is a failure, kept too.
        assert!(icons.get("b", fetch(b"hello")).await.is_err());
        assert!(icons.get("b", fetch(PNG)).await.is_err());
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(icons
            .get("c", async { Err("unreachable".to_string()) })
            .await
            .is_err());
        assert_eq!(icons.len(), 3);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let icons = Icons::default();
        for i in 0..(ENTRIES + 10) {
            let _ = icons
                .get(&format!("k{i}"), async { Ok(Bytes::from_static(PNG)) })
                .await;
        }
        assert!(icons.len() <= ENTRIES);
    }
}
