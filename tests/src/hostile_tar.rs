//! Tar entries the `tar` crate will not write, for the tests that feed
//! hostile archives to an import: raw names (`..`, absolute) and links.

/// A tar entry whose name is written as is (the tar crate refuses to set
/// `..` or absolute names).
pub fn raw_entry(name: &[u8], kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A symbolic or hard link entry `name` → `target`.
pub fn link_entry(name: &str, kind: tar::EntryType, target: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_link_name(target).unwrap();
    h.set_mode(0o777);
    h.set_size(0);
    h.set_cksum();
    h.as_bytes().to_vec()
}
