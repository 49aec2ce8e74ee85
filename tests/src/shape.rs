//! Checking an answer against a real Container Station's recorded one
//! (`qnap-dev/container-station-api`, gh-pages): the keys, and each key's
//! JSON type.

use std::collections::BTreeSet;

use serde_json::Value;

/// A JSON type as the recordings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// A whole number (signed or not).
    Int,
    /// Any number (`cpu` is recorded as `0.0` and `8.45e-05`).
    Float,
    /// `true` or `false`.
    Bool,
    /// A list of strings.
    StrArray,
    /// A list of whole numbers.
    IntArray,
    /// An object.
    Object,
    /// An object, or `null` (a volume's empty `Labels`).
    ObjectOrNull,
    /// A list.
    Array,
}

impl Kind {
    /// Whether `v` is of this type.
    pub fn holds(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Int => v.is_i64() || v.is_u64(),
            Kind::Float => v.is_number(),
            Kind::Bool => v.is_boolean(),
            Kind::StrArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::IntArray => v
                .as_array()
                .is_some_and(|a| a.iter().all(|n| n.is_i64() || n.is_u64())),
            Kind::Object => v.is_object(),
            Kind::ObjectOrNull => v.is_object() || v.is_null(),
            Kind::Array => v.is_array(),
        }
    }
}

fn keys<'a>(what: &str, v: &'a Value) -> BTreeSet<&'a str> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn types(what: &str, v: &Value, recorded: &[(&str, Kind)]) {
    for (key, kind) in recorded {
        assert!(kind.holds(&v[key]), "{what}: `{key}` is not {kind:?}: {v}");
    }
}

/// `v` has exactly the keys of `recorded`, each of its type.
pub fn assert_shape(what: &str, v: &Value, recorded: &[(&str, Kind)]) {
    let want: BTreeSet<&str> = recorded.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys(what, v),
        want,
        "{what}: keys differ from the recording: {v}"
    );
    types(what, v, recorded);
}

/// `v` has every key of `recorded` with its type, and maybe others.
pub fn assert_has(what: &str, v: &Value, recorded: &[(&str, Kind)]) {
    let have = keys(what, v);
    let missing: Vec<&str> = recorded
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !have.contains(k))
        .collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}: {v}");
    types(what, v, recorded);
}
