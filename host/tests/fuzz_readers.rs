//! Property tests over the readers of untrusted input (issue 10): the
//! archive reader (`runtime::archives::scan`, the whole-archive check of
//! every import), LXC's extraction (`runtime::lxc::unpack`), and the
//! settings reader (`config::parse_file` + `Config::resolve`).
//!
//! Inputs are random bytes, and valid archives or settings files with bytes
//! flipped, cut short or spliced. Properties: nothing panics; a scan either
//! refuses with an error or reports at least one entry; extraction writes
//! nothing outside its folder; every entry name the checker accepts is
//! relative and free of `..`.

use std::io::Write;

use proptest::prelude::*;
use stevedore::config::{parse_file, Config};
use stevedore::runtime::archives::{self, Checker};
use stevedore::runtime::lxc::unpack;

/// Cases per property.
const CASES: u32 = 600;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A small valid archive: a folder, files, a symlink and a hard link.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, name, data).unwrap();
    };
    add(
        ".stevedore/container.json",
        tar::EntryType::Regular,
        br#"{"version":1}"#,
        None,
    );
    add("etc/", tar::EntryType::Directory, b"", None);
    add("etc/hostname", tar::EntryType::Regular, b"box\n", None);
    add("bin/busybox", tar::EntryType::Regular, &[0x7f; 3000], None);
    add("bin/sh", tar::EntryType::Symlink, b"", Some("busybox"));
    add("bin/ash", tar::EntryType::Link, b"", Some("bin/busybox"));
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A valid archive (plain or gzip), then damaged.
fn damaged_archive() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(compress, flips, cut, tail)| {
            let tar = sample_tar();
            let mut bytes = if compress { gz(&tar) } else { tar };
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

fn any_archive() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => damaged_archive(),
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
    ]
}

fn scan(bytes: &[u8], cap: u64) -> Result<archives::Summary, archives::ArchiveError> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    archives::scan(file, cap, ".stevedore/container.json")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_archive_scan_never_panics(bytes in any_archive(), small_cap in any::<bool>()) {
        let cap = if small_cap { 2048 } else { archives::DEFAULT_MAX_EXPANDED_BYTES };
        if let Ok(summary) = scan(&bytes, cap) {
            prop_assert!(summary.entries >= 1);
            prop_assert!(summary.expanded <= cap);
        }
    }

    #[test]
    fn extraction_never_panics_nor_writes_outside(bytes in any_archive()) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.tar");
        std::fs::write(&file, &bytes).unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        if let Ok(layout) = unpack::layout(&file) {
            // Owners shifted as for an unprivileged container.
            let idmap = stevedore::runtime::lxc::idmap::IdMap { uid: 131_072, gid: 131_072 };
            let _ = unpack::extract(&file, &dir, layout, 1 << 20, Some(idmap));
        }
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        prop_assert_eq!(names, vec![std::ffi::OsString::from("a.tar"), "c".into()]);
        let top: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(top, vec![std::ffi::OsString::from("rootfs")]);
    }

    #[test]
    fn accepted_entry_names_are_relative_without_dotdot(
        name in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(0u8), any::<u8>()], 1..90),
        symlink in any::<bool>(),
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if symlink { tar::EntryType::Symlink } else { tar::EntryType::Regular });
        h.set_size(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(&name);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend([0u8; 1024]);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut checker = Checker::new(1 << 20);
        if let Some(Ok(entry)) = ar.entries().unwrap().next() {
            if let Ok(clean) = checker.check(&entry) {
                prop_assert!(clean.is_relative(), "{clean:?}");
                prop_assert!(
                    clean.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{clean:?}"
                );
            }
        }
    }
}

const SAMPLE_CONFIG: &str = r#"
listen = "127.0.0.1:8080"
data_dir = "/var/lib/stevedore"
share_root = "/share"

[http]
max_body_bytes = 1048576
session_ttl_secs = 86400

[users.alice]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
admin = false
[users.alice.policy]
privileged = true
devices = ["c 81"]
share = "{user}"

[policy.default]
categories = ["create", "image_download"]
[policy.default.limits]
memory = "1g"
running_tasks = 2

[registries.corp]
url = "https://registry.corp.example:5000"
username = "bot"
password = "secret"

[catalog]
url = "/srv/catalog"

[lxc]
subnet = "10.213.0.0/24"

[archives]
max_expanded_bytes = 1048576

[queue]
workers = 8
[queue.limits]
image_download = 2

[plugins]
cpu_budget_ms = 10000
memory_mb = 64
[plugins.grants]
create = ["task", "images", "containers"]
"#;

/// The sample settings with lines dropped, values swapped and bytes changed.
fn damaged_config() -> impl Strategy<Value = String> {
    let values = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("1e400".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("\"../../etc\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"999.999.999.999:99999\"".to_string()),
        Just("\"10.0.0.0/33\"".to_string()),
        any::<String>().prop_map(|s| format!("{s:?}")),
    ];
    (
        proptest::collection::vec((any::<prop::sample::Index>(), values), 0..6),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4),
    )
        .prop_map(|(swaps, drops, chars)| {
            let mut lines: Vec<String> = SAMPLE_CONFIG.lines().map(str::to_string).collect();
            for (at, value) in swaps {
                let i = at.index(lines.len());
                if let Some((key, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{key} = {value}");
                }
            }
            for at in drops {
                let i = at.index(lines.len());
                lines.remove(i);
            }
            let mut text = lines.join("\n");
            for (at, c) in chars {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.insert(i, c);
            }
            text
        })
}

/// Every variable the settings reader takes, from its own table.
fn env_keys() -> Vec<&'static str> {
    stevedore::config::variables()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_settings_reader_never_panics(
        text in prop_oneof![3 => damaged_config(), 1 => any::<String>()],
        env in proptest::collection::vec(
            (proptest::sample::select(env_keys()), any::<String>()), 0..3),
    ) {
        let file = parse_file(&text).unwrap_or_else(|_| Config::default());
        let lookup = |k: &str| env.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
        if let Ok(c) = Config::resolve(file, lookup) {
            prop_assert!(c.queue.workers >= 1);
            prop_assert!(c.archives.max_expanded_bytes >= 1);
        }
    }
}

#[test]
fn the_sample_settings_parse() {
    let file = parse_file(SAMPLE_CONFIG).unwrap();
    let c = Config::resolve(file, |_| None).unwrap();
    assert_eq!(c.archives.max_expanded_bytes, 1 << 20);
    stevedore_e2e::report!(
        "reader fuzz: {CASES} cases each for the archive scan, LXC extraction, entry names and the settings reader"
    );
}
