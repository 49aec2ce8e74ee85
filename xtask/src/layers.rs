//! The layering check of `cargo xtask lint`: in `host/src`, a top-level
//! module may use only modules of lower layers, so the modules form no cycle.
//!
//! Every `crate::…` path in code counts (a `use` line, a `use crate::{…}`
//! group, a path written inline, one inside a macro call); comments, doc
//! links and string literals do not.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The layers of `host/src`, lowest first: a module may use the modules of
/// the layers before its own, never those of its own layer or above.
///
/// Why this order:
/// - leaves first: the generated WIT bindings (`wit`), the counters
///   (`metrics`), the last log lines (`log_tail`), the `Secret` string, the user-name rule and the parts of
///   every config section (`setting`), which every module may use and which
///   use nothing;
/// - storage (`store` and its `pg` driver) below every user of storage;
/// - `policy` is pure rules over a request; the runtime's guard and the API
///   apply it;
/// - `queue` (tasks, scheduler) below `runtime`: the runtime reports to a
///   task's `Reporter`, the queue never calls a runtime;
/// - `webhooks` follow the queue's events and its store's outbox, and the
///   API checks webhook URLs with them, so they sit between the two;
/// - `apps` (the application service) is built on the runtime's traits and
///   serves the routes and the plugin host's undo, so it sits between them;
/// - `plugins` lend the runtime to guests as capabilities and run as the
///   queue's executor, so they sit above both;
/// - `auth` (sessions, passwords) above storage and plugins, below the HTTP
///   layers that check sessions;
/// - `dashboard` (static assets) below `api`, which serves it; `proxy` above
///   `api`, whose error type it answers with;
/// - `config` reads the file and the environment and assembles each
///   module's own section, so it imports every module's `config` and no
///   module below it imports `config`;
/// - `server` and `cli` are the two programs, built from an assembled
///   `Config`; `main.rs` and `lib.rs` are the crate roots and not checked.
///
/// A module missing from this table is an error, so a new one gets its
/// place written here.
pub const LAYERS: &[&[&str]] = &[
    &[
        "wit",
        "clock",
        "timing",
        "log_tail",
        "metrics",
        "secret",
        "setting",
        "user_name",
    ],
    &["store", "pg"],
    &["policy"],
    &["queue"],
    &["webhooks"],
    &["runtime"],
    &["apps"],
    &["plugins"],
    &["auth"],
    &["dashboard"],
    &["api"],
    &["proxy", "schedule"],
    &["config"],
    &["server", "cli"],
];

/// The crate roots, which declare the modules and are above every layer.
const ROOTS: &[&str] = &["main.rs", "lib.rs"];

/// Imports against [`LAYERS`] that exist for now, as (file under
/// `host/src`, module it uses), each removed by the change that fixes it;
/// none today. The check fails on a violation missing here and on an entry
/// that no longer occurs, so this list only shrinks.
pub const ALLOWED: &[(&str, &str)] = &[];

/// One use of a module from a module that may not use it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The file, relative to `host/src`.
    pub file: String,
    /// The line of the use.
    pub line: usize,
    /// The module of the file.
    pub from: String,
    /// The module it uses.
    pub to: String,
}

/// The layer of a top-level module, if the table lists it.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file belongs to (`queue/sqlite.rs` → `queue`,
/// `config.rs` → `config`).
fn module_of(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// `text` with comments, string and char literals blanked out (newlines
/// kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"…", r#"…"#, br#"…"#: ends at `"` followed by as many `#`.
            let open = b[i..].iter().position(|&c| c == b'"').unwrap_or(0) + 1;
            let mut close = b"\"".to_vec();
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = b[i + open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| i + open + p + close.len());
            for &c in &b[i..end] {
                blank(&mut out, c);
            }
            i = end;
        } else if b[i] == b'"' {
            blank(&mut out, b[i]);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for &c in &b[i..(i + step).min(b.len())] {
                    blank(&mut out, c);
                }
                i += step;
            }
            if i < b.len() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if b[i] == b'\'' && char_literal_len(&b[i..]).is_some() {
            let len = char_literal_len(&b[i..]).unwrap_or(1);
            out.extend(std::iter::repeat_n(b' ', len));
            i += len;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// If a raw string literal starts at `i` (not inside an identifier), the
/// number of `#` around it.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `b` (`'a'`, `'\n'`,
/// `'\u{1F600}'`, `'é'`), or `None` for a lifetime or label (`'a`).
fn char_literal_len(b: &[u8]) -> Option<usize> {
    if b.get(1) == Some(&b'\\') {
        // The escaped char is b[2], so the closing quote comes after it.
        let close = b.get(3..)?.iter().position(|&c| c == b'\'')?;
        return Some(close + 4);
    }
    let n = (1..=4).find(|&n| b.len() > n && std::str::from_utf8(&b[1..1 + n]).is_ok())?;
    (b.get(1 + n) == Some(&b'\'')).then_some(n + 2)
}

/// Every top-level module a file's code names after `crate::`, with the
/// line: `crate::queue::X`, `crate::{queue::X, runtime}`.
fn used_modules(text: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    let mut found = Vec::new();
    let line_at = |pos: usize| code[..pos].bytes().filter(|&c| c == b'\n').count() + 1;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        // `$crate::` in macros and `stevedore_crate::` are not this crate.
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of each item of the group, at depth one.
            let mut depth = 1;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        item_start = false;
                        let name = ident(&group[k..]);
                        let pos = code.len() - group.len() + k;
                        if !name.is_empty() && name != "self" {
                            found.push((line_at(pos), name));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push((line_at(start), name));
            }
        }
    }
    found
}

/// The violations of [`LAYERS`] in `files` (path under `host/src`, text),
/// or an error naming a module the table does not list.
pub fn violations<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Violation>> {
    let mut out = Vec::new();
    for (file, text) in files {
        if ROOTS.contains(&file) {
            continue;
        }
        let from = module_of(file);
        let Some(own) = layer_of(from) else {
            bail!("host/src/{file}: module `{from}` has no place in LAYERS (xtask/src/layers.rs)");
        };
        for (line, to) in used_modules(text) {
            if to == from {
                continue;
            }
            let Some(theirs) = layer_of(&to) else {
                bail!(
                    "host/src/{file}:{line}: module `{to}` has no place in LAYERS \
                     (xtask/src/layers.rs)"
                );
            };
            if theirs >= own {
                out.push(Violation {
                    file: file.to_string(),
                    line,
                    from: from.to_string(),
                    to,
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What the check reports: violations not allowed, and allow-list entries
/// that no longer occur.
pub fn judge(found: &[Violation], allowed: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    for v in found {
        if !allowed.contains(&(v.file.as_str(), v.to.as_str())) {
            problems.push(format!(
                "host/src/{}:{}: `{}` uses `{}`, a module of its own or a higher layer",
                v.file, v.line, v.from, v.to
            ));
        }
    }
    let occurring: BTreeSet<(&str, &str)> = found
        .iter()
        .map(|v| (v.file.as_str(), v.to.as_str()))
        .collect();
    for (file, to) in allowed {
        if !occurring.contains(&(*file, *to)) {
            problems.push(format!(
                "xtask/src/layers.rs: ALLOWED lists host/src/{file} using `{to}`, which no \
                 longer occurs: remove the entry"
            ));
        }
    }
    problems
}

/// Every `.rs` file under `dir`, as paths relative to it.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Check `host/src` under the repository `root`; the problems found.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let src = root.join("host/src");
    let mut texts = Vec::new();
    for rel in rust_files(&src)? {
        let text = fs::read_to_string(src.join(&rel))
            .with_context(|| format!("reading host/src/{}", rel.display()))?;
        texts.push((rel.to_string_lossy().into_owned(), text));
    }
    let found = violations(texts.iter().map(|(f, t)| (f.as_str(), t.as_str())))?;
    Ok(judge(&found, ALLOWED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(usize, String)> {
        used_modules(text)
    }

    #[test]
    fn paths_in_code_count_and_comments_and_strings_do_not() {
        let text = r##"
use crate::queue::Task;
use crate::{pg::Db, runtime::{self, Runtime}, self};
// crate::api in a comment
/// [`crate::auth::X`] in a doc link
/* crate::server /* nested */ crate::cli */
fn f() {
    let s = "crate::proxy";
    let r = r#"crate::dashboard "quoted" "#;
    let c = '"';
    let q = '\'';
    let l: &'static str = "x";
    crate::metrics::count();
    tracing::warn!("{}", crate::policy::X);
    $crate::ignored();
}
"##;
        let got = names(text);
        let want: Vec<(usize, String)> = [
            (2, "queue"),
            (3, "pg"),
            (3, "runtime"),
            (13, "metrics"),
            (14, "policy"),
        ]
        .iter()
        .map(|(l, m)| (*l, m.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_upward_or_sideways_use_is_a_violation_and_a_downward_one_is_not() {
        let files = [
            ("api/tasks.rs", "use crate::queue::Task;\n"),
            ("queue/mod.rs", "\nuse crate::api::AppError;\n"),
            ("server.rs", "use crate::cli::run;\n"),
            ("lib.rs", "pub use crate::server::x;\n"),
        ];
        let found = violations(files).unwrap();
        let short: Vec<_> = found
            .iter()
            .map(|v| (v.file.as_str(), v.line, v.to.as_str()))
            .collect();
        assert_eq!(short, [("queue/mod.rs", 2, "api"), ("server.rs", 1, "cli")]);
    }

    #[test]
    fn a_module_missing_from_the_table_is_an_error() {
        let e = violations([("newthing/mod.rs", "")]).unwrap_err();
        assert!(e.to_string().contains("newthing"), "{e}");
        let e = violations([("api/x.rs", "use crate::newthing::X;")]).unwrap_err();
        assert!(e.to_string().contains("api/x.rs:1"), "{e}");
    }

    #[test]
    fn the_allow_list_excuses_its_entries_and_only_shrinks() {
        let found = violations([("queue/mod.rs", "use crate::api::AppError;\n")]).unwrap();
        assert!(judge(&found, &[("queue/mod.rs", "api")]).is_empty());
        let p = judge(&found, &[]);
        assert!(
            p.len() == 1 && p[0].contains("host/src/queue/mod.rs:1"),
            "{p:?}"
        );
        let p = judge(&[], &[("queue/mod.rs", "api")]);
        assert!(p.len() == 1 && p[0].contains("no longer occurs"), "{p:?}");
    }

    #[test]
    fn every_module_has_one_layer() {
        let mut seen = BTreeSet::new();
        for m in LAYERS.iter().flat_map(|l| l.iter()) {
            assert!(seen.insert(*m), "`{m}` is in two layers");
        }
    }

    #[test]
    fn host_src_keeps_its_layers() {
        let problems = check(&crate::util::repo_root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
