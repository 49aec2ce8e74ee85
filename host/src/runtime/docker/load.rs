//! A `docker save` archive streamed to `docker load` without the names it
//! carries: `RepoTags` in `manifest.json`, the legacy `repositories` file
//! and the reference annotations of an OCI `index.json` are dropped, so
//! loading names no image and the only name given is the one the host
//! checked (`repository:tag` of the import). Without this, an archive
//! naming `ubuntu:latest` would take that name from whoever has it.
//!
//! The archive is read once, through the host's archive rules
//! ([`archives::Checker`]: no `..`, no absolute names, no entry through a
//! link), and written anew as it is read. The files the engine takes names
//! from must be plain files: a link named `manifest.json` is refused.

use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use super::raw;
use crate::runtime::archives;
use crate::runtime::RtResult;

/// Most bytes of a `manifest.json` or `index.json` read into memory.
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// Writes into the request body's channel in large frames.
struct Frames(tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>);

impl Write for Frames {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Frame::data(Bytes::copy_from_slice(buf))))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine hung up")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request body for `POST /images/load`: `file` (a saved archive,
/// compressed or not) decompressed, checked and without its names.
pub fn unnamed_body(file: std::fs::File, max_expanded: u64) -> RtResult<raw::Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufWriter::with_capacity(256 << 10, Frames(tx));
        if let Err(e) = rewrite(file, max_expanded, out) {
            let _ = errors.blocking_send(Err(e));
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Copy the archive in `file` to `out`, entry by entry, without names.
fn rewrite(file: std::fs::File, cap: u64, out: impl Write) -> std::io::Result<()> {
    let (_, stream) = archives::open(file, cap)?;
    let mut input = tar::Archive::new(stream);
    let mut output = tar::Builder::new(out);
    let mut checker = archives::Checker::new(cap);
    for entry in input.entries()? {
        let mut entry = entry?;
        let name = checker
            .check(&entry)
            .map_err(|e| invalid(format!("path: {e}")))?;
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        let named = [
            Path::new("manifest.json"),
            Path::new("index.json"),
            Path::new("repositories"),
        ]
        .contains(&name.as_path());
        if named && !kind.is_file() {
            return Err(invalid(format!(
                "path: `{}` in the archive must be a plain file",
                name.display()
            )));
        }
        if name == Path::new("repositories") {
            continue;
        }
        if named {
            if entry.size() > MAX_INDEX_BYTES {
                return Err(invalid(format!("path: `{}` is too large", name.display())));
            }
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            let cleaned = without_names(&text)
                .map_err(|e| invalid(format!("path: `{}`: {e}", name.display())))?;
            header.set_size(cleaned.len() as u64);
            output.append_data(&mut header, &name, cleaned.as_slice())?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()?
                .ok_or_else(|| invalid(format!("path: `{}` links nowhere", name.display())))?
                .into_owned();
            output.append_link(&mut header, &name, target)?;
        } else {
            output.append_data(&mut header, &name, &mut entry)?;
        }
    }
    output.into_inner()?.flush()
}

/// `manifest.json` without `RepoTags`, or `index.json` without the
/// annotations that name images.
fn without_names(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut doc: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    match &mut doc {
        Value::Array(images) => {
            for image in images.iter_mut().filter_map(Value::as_object_mut) {
                image.remove("RepoTags");
            }
        }
        Value::Object(index) => {
            if let Some(Value::Array(ms)) = index.get_mut("manifests") {
                for m in ms.iter_mut().filter_map(Value::as_object_mut) {
                    m.remove("annotations");
                }
            }
        }
        _ => {}
    }
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> std::fs::File {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        f
    }

    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), data)
            })
            .collect()
    }

    #[test]
    fn the_names_an_archive_carries_are_dropped() {
        let manifest =
            br#"[{"Config":"c.json","RepoTags":["ubuntu:latest"],"Layers":["l/layer.tar"]}]"#;
        let file = archive(&[
            ("./manifest.json", manifest),
            ("repositories", br#"{"ubuntu":{"latest":"abc"}}"#),
            ("l/layer.tar", b"layer"),
        ]);
        let mut out = Vec::new();
        rewrite(file, 1 << 30, &mut out).unwrap();
        let got = entries(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "manifest.json");
        let m: Value = serde_json::from_slice(&got[0].1).unwrap();
        assert_eq!(
            m,
            serde_json::json!([{"Config":"c.json","Layers":["l/layer.tar"]}])
        );
        assert_eq!(got[1], ("l/layer.tar".to_string(), b"layer".to_vec()));
    }

    #[test]
    fn a_manifest_that_is_a_link_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "manifest.json", "other.json")
            .unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&b.into_inner().unwrap()).unwrap();
        let e = rewrite(f, 1 << 30, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("plain file"), "{e}");
    }
}
