//! The rules for every archive a user or a repository hands the host
//! (`container_import` for Docker and LXC, LXC images), read with the `tar`
//! crate (PAX headers, GNU long names, base-256 sizes):
//!
//! - no entry name or hard-link target with `..`, and no absolute one;
//! - no entry through a symbolic link planted earlier in the same archive;
//! - the expanded size, counted at the decompressor's output and from the
//!   sizes the headers claim, stays under a cap (`[archives]
//!   max_expanded_bytes`), so a decompression bomb stops early;
//! - a truncated or corrupt stream (tar or gzip/xz) is an error, not a
//!   shorter archive.
//!
//! Each refusal is an [`ArchiveError`] whose text names the entry.

use std::collections::BTreeSet;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

/// Default cap on an archive's expanded size: 64 GiB.
pub const DEFAULT_MAX_EXPANDED_BYTES: u64 = 64 << 30;
/// Largest configuration entry read into memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
}

impl Compression {
    /// From the first bytes of a file.
    pub fn sniff(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }

    /// The file name extension for it.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Xz => "tar.xz",
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file could not be read.
    #[error("cannot read archive: {source}")]
    Read {
        /// The cause.
        source: io::Error,
    },
    /// The stream ended early or is not what it claims to be.
    #[error("the archive is truncated or corrupt: {reason}")]
    Corrupt {
        /// What the reader said.
        reason: String,
    },
    /// The first header is not a tar header.
    #[error("not a tar archive (plain, gzip or xz), or one cut short: {reason}")]
    NotTar {
        /// What the reader said.
        reason: String,
    },
    /// No entry at all.
    #[error("not a tar archive (it holds no entries)")]
    Empty,
    /// An entry name or link target with `..`.
    #[error("archive entry `{name}` leaves the root with `..`")]
    DotDot {
        /// The entry, as written in the archive.
        name: String,
    },
    /// An absolute entry name or link target.
    #[error("archive entry `{name}` has an absolute name")]
    Absolute {
        /// The entry.
        name: String,
    },
    /// An entry below a symbolic link the archive made.
    #[error("archive entry `{name}` goes through the symbolic link `{link}` made earlier in the archive")]
    ThroughLink {
        /// The entry.
        name: String,
        /// The link it goes through.
        link: String,
    },
    /// Expanded past the cap.
    #[error("the archive expands to more than {cap} bytes (the cap set by `[archives] max_expanded_bytes` / STEVEDORE_MAX_EXPANDED_BYTES)")]
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
    /// The recorded configuration entry is unreadable.
    #[error("bad {entry}: {reason}")]
    BadConfig {
        /// The entry's name.
        entry: &'static str,
        /// Why.
        reason: String,
    },
}

/// The marker error a [`Capped`] reader returns past its cap.
#[derive(Debug)]
struct CapExceeded(u64);

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expanded size over the cap of {} bytes", self.0)
    }
}

impl std::error::Error for CapExceeded {}

impl ArchiveError {
    /// Classify an error from the tar reader (or the decompressor below it).
    pub fn from_io(e: &io::Error) -> ArchiveError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut text = Vec::new();
        while let Some(c) = cause {
            if let Some(CapExceeded(cap)) = c.downcast_ref::<CapExceeded>() {
                return ArchiveError::TooLarge { cap: *cap };
            }
            if let Some(io) = c.downcast_ref::<io::Error>() {
                if let Some(CapExceeded(cap)) =
                    io.get_ref().and_then(|i| i.downcast_ref::<CapExceeded>())
                {
                    return ArchiveError::TooLarge { cap: *cap };
                }
            }
            text.push(c.to_string());
            cause = c.source();
        }
        text.dedup();
        ArchiveError::Corrupt {
            reason: text.join(": "),
        }
    }
}

/// A reader that fails once more than `cap` bytes came through.
pub struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Capped<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, cap: u64) -> Capped<R> {
        Capped {
            inner,
            read: 0,
            cap,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.cap {
            return Err(io::Error::other(CapExceeded(self.cap)));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(io::Error::other(CapExceeded(self.cap)));
        }
        Ok(n)
    }
}

/// A decompressed archive stream.
pub type Stream = Capped<Box<dyn Read + Send>>;

/// Open `file` (from its start) decompressed, capped at `cap` expanded bytes.
pub fn open(mut file: std::fs::File, cap: u64) -> io::Result<(Compression, Stream)> {
    let mut magic = [0u8; 6];
    let mut n = 0;
    while n < magic.len() {
        match file.read_at(&mut magic[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    file.rewind()?;
    let compression = Compression::sniff(&magic[..n]);
    let reader = io::BufReader::with_capacity(1 << 20, file);
    let inner: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
        Compression::None => Box::new(reader),
    };
    Ok((compression, Capped::new(inner, cap)))
}

/// Checks entries one by one, in archive order.
#[derive(Debug)]
pub struct Checker {
    links: BTreeSet<PathBuf>,
    claimed: u64,
    cap: u64,
    /// Entries checked.
    pub entries: u64,
}

fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// `raw` as a clean relative path (no `./`), refusing `..` and absolute names.
fn clean(raw: &[u8]) -> Result<PathBuf, ArchiveError> {
    let name = || shown(raw);
    if raw.first() == Some(&b'/') {
        return Err(ArchiveError::Absolute { name: name() });
    }
    let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(ArchiveError::DotDot { name: name() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Absolute { name: name() })
            }
        }
    }
    Ok(out)
}

impl Checker {
    /// A checker for one archive, with the expanded-size cap `cap`.
    pub fn new(cap: u64) -> Checker {
        Checker {
            links: BTreeSet::new(),
            claimed: 0,
            cap,
            entries: 0,
        }
    }

    fn through_link(&self, name: &Path, raw: &[u8]) -> Result<(), ArchiveError> {
        let mut prefix = PathBuf::new();
        let mut parts = name.components().peekable();
        while let Some(c) = parts.next() {
            if parts.peek().is_none() {
                break;
            }
            prefix.push(c);
            if self.links.contains(&prefix) {
                return Err(ArchiveError::ThroughLink {
                    name: shown(raw),
                    link: prefix.display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Check the next entry; returns its clean name (empty for `./`).
    pub fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<PathBuf, ArchiveError> {
        self.entries += 1;
        let raw = entry.path_bytes();
        let name = clean(&raw)?;
        self.through_link(&name, &raw)?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default();
            let target_name = clean(&target).map_err(|e| match e {
                ArchiveError::DotDot { .. } | ArchiveError::Absolute { .. } => {
                    ArchiveError::DotDot {
                        name: format!("{} (a hard link to `{}`)", shown(&raw), shown(&target)),
                    }
                }
                other => other,
            })?;
            self.through_link(&target_name, &target)?;
        }
        if kind.is_symlink() {
            self.links.insert(name.clone());
        }
        self.claimed = self.claimed.saturating_add(entry.size());
        if self.claimed > self.cap {
            return Err(ArchiveError::TooLarge { cap: self.cap });
        }
        Ok(name)
    }
}

/// Read `file` whole through the archive rules, refusing device nodes too;
/// every refusal is `invalid-params` on `path`. What a volume or folder
/// backup's import checks before it writes anything.
pub fn check_backup(file: std::fs::File, cap: u64) -> Result<(), crate::runtime::Error> {
    let refuse = |e: ArchiveError| crate::runtime::Error::InvalidParams(format!("path: {e}"));
    let (_, stream) = open(file, cap).map_err(|source| refuse(ArchiveError::Read { source }))?;
    let mut tar = tar::Archive::new(stream);
    let mut checker = Checker::new(cap);
    let entries = tar
        .entries()
        .map_err(|e| refuse(ArchiveError::from_io(&e)))?;
    for entry in entries {
        let entry = entry.map_err(|e| match ArchiveError::from_io(&e) {
            ArchiveError::Corrupt { reason } if checker.entries == 0 => {
                refuse(ArchiveError::NotTar { reason })
            }
            other => refuse(other),
        })?;
        let name = checker.check(&entry).map_err(refuse)?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() {
            return Err(crate::runtime::Error::InvalidParams(format!(
                "path: archive entry `{}` is a device node, which a volume backup may not hold",
                name.display()
            )));
        }
    }
    if checker.entries == 0 {
        return Err(refuse(ArchiveError::Empty));
    }
    Ok(())
}

/// What a whole read of an archive found.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// How it is compressed.
    pub compression: Compression,
    /// Entries in it.
    pub entries: u64,
    /// Expanded size (the whole decompressed stream).
    pub expanded: u64,
    /// A `docker save` archive (`manifest.json` or `index.json` at the root).
    pub saved: bool,
    /// The first entry, when it is `config_entry`: its JSON.
    pub config: Option<serde_json::Value>,
    /// Bytes of the decompressed stream before the second entry, when the
    /// first is the configuration entry (to skip it when streaming on).
    pub config_skip: u64,
}

/// Read all of `file` through the rules; `config_entry` names an optional
/// JSON first entry to return.
pub fn scan(
    file: std::fs::File,
    cap: u64,
    config_entry: &'static str,
) -> Result<Summary, ArchiveError> {
    let (compression, stream) = open(file, cap).map_err(|source| ArchiveError::Read { source })?;
    let mut tar = tar::Archive::new(stream);
    let mut checker = Checker::new(cap);
    let mut summary = Summary {
        compression,
        entries: 0,
        expanded: 0,
        saved: false,
        config: None,
        config_skip: 0,
    };
    {
        let entries = tar.entries().map_err(|e| ArchiveError::from_io(&e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| match ArchiveError::from_io(&e) {
                ArchiveError::Corrupt { reason } if checker.entries == 0 => {
                    ArchiveError::NotTar { reason }
                }
                other => other,
            })?;
            let name = checker.check(&entry)?;
            if name == Path::new("manifest.json") || name == Path::new("index.json") {
                summary.saved = true;
            }
            if checker.entries == 1 && name == Path::new(config_entry) {
                if entry.size() > MAX_CONFIG_BYTES {
                    return Err(ArchiveError::BadConfig {
                        entry: config_entry,
                        reason: "too large".into(),
                    });
                }
                let mut text = Vec::new();
                entry
                    .read_to_end(&mut text)
                    .map_err(|e| ArchiveError::from_io(&e))?;
                if text.len() as u64 != entry.size() {
                    return Err(ArchiveError::Corrupt {
                        reason: format!("{config_entry} is cut short"),
                    });
                }
                summary.config =
                    Some(
                        serde_json::from_slice(&text).map_err(|e| ArchiveError::BadConfig {
                            entry: config_entry,
                            reason: e.to_string(),
                        })?,
                    );
                summary.config_skip = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            } else {
                let copied =
                    io::copy(&mut entry, &mut io::sink()).map_err(|e| ArchiveError::from_io(&e))?;
                if copied != entry.size() {
                    return Err(ArchiveError::Corrupt {
                        reason: format!(
                            "entry `{}` claims {} bytes, the archive ends after {copied}",
                            name.display(),
                            entry.size()
                        ),
                    });
                }
            }
        }
    }
    // The decompressor must reach its own end too (tar stops at its end marker).
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| ArchiveError::from_io(&e))?;
    summary.entries = checker.entries;
    summary.expanded = rest.count();
    if summary.entries == 0 {
        return Err(ArchiveError::Empty);
    }
    Ok(summary)
}

// The container export format, written by both runtimes: the container's
// files after one configuration entry.

/// Name of the configuration entry, first in the archive.
pub const CONFIG_ENTRY: &str = ".stevedore/container.json";
/// Value of the entry's `format` field.
pub const FORMAT: &str = "stevedore-container/1";

/// A tar header + padded data for one regular file (ustar, mode 0644).
pub fn tar_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(now);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header
        .set_path(name)
        .expect("the configuration entry's name fits a ustar header");
    header.set_cksum();
    // No end marker: more entries (the engine's export) follow.
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// `repo:tag` → (`repo`, `tag`), with `latest` when no tag is given.
pub fn split_reference(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An archive of one one-byte file `name`, behind a PAX header setting
    /// `key` to `value`.
    fn pax(key: &str, value: &[u8], name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([(key, value)]).unwrap();
        b.append(&header(name, F, 1), &b"z"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// A header for `name` written as raw bytes (`set_path` refuses `..`).
    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }

    fn entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8]) {
        out.extend_from_slice(header(name, kind, data.len() as u64).as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn link(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, target: &str) {
        let mut h = header(name, kind, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
    }

    /// A finished archive of `entries`: regular files (`F`) with their
    /// data, links with their targets.
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(name, kind, data_or_target) in entries {
            if kind == tar::EntryType::Regular {
                entry(&mut t, name, kind, data_or_target.as_bytes());
            } else {
                link(&mut t, name, kind, data_or_target);
            }
        }
        end(t)
    }

    fn end(mut out: Vec<u8>) -> Vec<u8> {
        out.extend([0u8; 1024]);
        out
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn scan_bytes(bytes: &[u8], cap: u64) -> Result<Summary, ArchiveError> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        scan(file, cap, ".stevedore/container.json")
    }

    const CAP: u64 = DEFAULT_MAX_EXPANDED_BYTES;
    use tar::EntryType::{Link as H, Regular as F, Symlink as S};

    #[test]
    fn plain_gzip_and_pax_archives_pass() {
        let mut t = Vec::new();
        entry(&mut t, ".stevedore/container.json", F, br#"{"a":1}"#);
        entry(&mut t, "./etc/hostname", F, b"x\n");
        link(&mut t, "bin/sh", S, "/bin/busybox");
        link(&mut t, "bin/ash", H, "./etc/hostname");
        let plain = end(t);
        let s = scan_bytes(&plain, CAP).unwrap();
        assert_eq!((s.entries, s.config_skip), (4, 1024));
        assert_eq!(s.config, Some(serde_json::json!({"a": 1})));
        assert_eq!(
            scan_bytes(&gz(&plain), CAP).unwrap().compression,
            Compression::Gzip
        );
        // A PAX long name (over 100 bytes) is read as one name.
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/f", "d".repeat(150));
        b.append_pax_extensions([("path", long.as_bytes())])
            .unwrap();
        b.append(&header("short", F, 1), &b"z"[..]).unwrap();
        let s = scan_bytes(&b.into_inner().unwrap(), CAP).unwrap();
        assert_eq!(s.entries, 1);
    }

    fn refused(bytes: &[u8], cap: u64) -> ArchiveError {
        match scan_bytes(bytes, cap) {
            Err(e) => {
                eprintln!("refused: {e}");
                e
            }
            Ok(s) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn hostile_entries_are_refused() {
        let dot_dot = [
            tar_of(&[("a/../../evil", F, "x")]),
            tar_of(&[("passwd", H, "../../etc/passwd")]),
            tar_of(&[("passwd", H, "/etc/passwd")]),
            // A PAX header that renames a harmless entry to `..`.
            pax("path", b"../pax-evil", "harmless"),
        ];
        for t in dot_dot {
            assert!(matches!(refused(&t, CAP), ArchiveError::DotDot { .. }));
        }
        let t = tar_of(&[("/etc/evil", F, "x")]);
        assert!(matches!(refused(&t, CAP), ArchiveError::Absolute { .. }));
        let through_link = [
            tar_of(&[("l", S, "/etc"), ("l/evil", F, "x")]),
            tar_of(&[("l", S, "../.."), ("passwd", H, "l/etc/passwd")]),
        ];
        for t in through_link {
            assert!(matches!(refused(&t, CAP), ArchiveError::ThroughLink { .. }));
        }
    }

    #[test]
    fn huge_claimed_sizes_are_refused_without_reading_them() {
        // 8 GiB in base-256 (GNU), the stream cut after 1 KiB.
        let mut t = header("big", F, 8 << 30).as_bytes().to_vec();
        assert_eq!(t[124] & 0x80, 0x80, "base-256 size field");
        t.extend([7u8; 1024]);
        match refused(&t, CAP) {
            ArchiveError::Corrupt { reason } => assert!(reason.contains("big"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Over the cap: refused from the header alone.
        let t = end(header("big", F, 8 << 30).as_bytes().to_vec());
        assert!(matches!(
            refused(&t, 1 << 30),
            ArchiveError::TooLarge { .. }
        ));
        // The largest size base-256 can say.
        let t = end(header("huge", F, u64::MAX >> 1).as_bytes().to_vec());
        assert!(matches!(refused(&t, CAP), ArchiveError::TooLarge { .. }));
        // A PAX `size` of 9 GiB over a small entry.
        let t = pax("size", b"9663676416", "pax-big");
        assert!(matches!(refused(&t, CAP), ArchiveError::Corrupt { .. }));
    }

    #[test]
    fn truncated_gzip_and_bombs_are_refused() {
        // Data that does not compress, so that a cut lands inside it.
        let mut x = 1u32;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let mut t = Vec::new();
        entry(&mut t, "f", F, &noise);
        let whole = gz(&end(t));
        // Cut in the first header, the data or the gzip trailer.
        for cut in [whole.len() - 4, whole.len() / 2, 20] {
            assert!(matches!(
                refused(&whole[..cut], CAP),
                ArchiveError::Corrupt { .. } | ArchiveError::NotTar { .. }
            ));
        }
        // 64 MiB of zeros in about 64 KiB: over a 1 MiB cap, stopped early.
        let mut t = Vec::new();
        t.extend(header("zeros", F, 64 << 20).as_bytes());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&t).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        enc.write_all(&[0u8; 1024]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200 << 10, "{}", bomb.len());
        assert!(matches!(
            refused(&bomb, 1 << 20),
            ArchiveError::TooLarge { .. }
        ));
        // Many small entries add up past the cap, counted at the decompressor.
        let mut t = Vec::new();
        for i in 0..64 {
            entry(&mut t, &format!("f{i}"), F, &zeros[..32 << 10]);
        }
        assert!(matches!(
            refused(&gz(&end(t)), 1 << 20),
            ArchiveError::TooLarge { .. }
        ));
    }

    #[test]
    fn garbage_is_refused() {
        for junk in [&b""[..], b"not a tar", &[0u8; 1024], &[0xffu8; 600]] {
            refused(junk, CAP);
        }
    }
}
