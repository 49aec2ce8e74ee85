//! Params a category's `validate` already accepted, so that a submit of the
//! same params (a script submitting one body over and over) costs no
//! sandbox instance.
//!
//! Only for plugins whose `validate` can read nothing but its params: see
//! [`validate_is_pure`]. Entries are SHA-256 digests of the category and the
//! params, never the params themselves, so no secret is kept here. Only
//! acceptances are remembered: a refused body is validated again, and so
//! gets its message from the plugin every time.

use std::collections::{HashSet, VecDeque};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use stevedore_contract::capabilities;

/// How many accepted bodies are remembered across all categories.
pub const CAPACITY: usize = 4096;

/// Capability interfaces whose calls `validate` cannot make or that read
/// only the server's fixed configuration (`images.resolve`). `repository`
/// and `app-store` may be read from `validate` and change while the server
/// runs; WASI (clocks, random) is not listed either. Deliberately a list
/// of its own rather than `grants::CAPABILITIES` minus the lookups: a
/// capability added later must be judged before acceptances of the plugins
/// importing it are remembered.
const PURE_IMPORTS: &[&str] = &[
    "types",
    "task",
    "images",
    "containers",
    "credentials",
    "networks",
    "volumes",
];

/// Whether a plugin with these imports (full names, e.g.
/// `stevedore:plugin/images@0.2.0`) gives the same `validate` answer for the
/// same params every time.
pub fn validate_is_pure(imports: &[String]) -> bool {
    imports.iter().all(|import| {
        capabilities::interface_of(import).is_some_and(|name| PURE_IMPORTS.contains(&name))
    })
}

/// A digest naming one (category, params) pair.
pub type Key = [u8; 32];

/// The key of `params` submitted to `category`.
pub fn key(category: &str, params: &str) -> Key {
    let mut h = Sha256::new();
    h.update(category.as_bytes());
    h.update([0]);
    h.update(params.as_bytes());
    h.finalize().into()
}

/// The remembered acceptances, oldest evicted first.
#[derive(Debug, Default)]
pub struct Accepted {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    keys: HashSet<Key>,
    order: VecDeque<Key>,
}

impl Accepted {
    /// Whether `key` was accepted before.
    pub fn contains(&self, key: &Key) -> bool {
        self.inner.lock().keys.contains(key)
    }

    /// Remember that `key` was accepted.
    pub fn insert(&self, key: Key) {
        let mut inner = self.inner.lock();
        if !inner.keys.insert(key) {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.keys.remove(&old);
            }
        }
    }

    /// How many acceptances are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().keys.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_categories_and_params() {
        assert_eq!(key("a", "{}"), key("a", "{}"));
        assert_ne!(key("a", "{}"), key("b", "{}"));
        assert_ne!(key("a", "{}"), key("a", "{ }"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(key("ab", "c"), key("a", "bc"));
    }

    #[test]
    fn the_oldest_acceptance_goes_first_when_full() {
        let accepted = Accepted::default();
        for i in 0..CAPACITY + 10 {
            accepted.insert(key("noop", &i.to_string()));
        }
        assert_eq!(accepted.len(), CAPACITY);
        for i in 0..10 {
            assert!(!accepted.contains(&key("noop", &i.to_string())), "{i}");
        }
        assert!(accepted.contains(&key("noop", "10")));
        assert!(accepted.contains(&key("noop", &(CAPACITY + 9).to_string())));
        // Inserting a known key again does not evict anything.
        accepted.insert(key("noop", "10"));
        assert_eq!(accepted.len(), CAPACITY);
        assert!(accepted.contains(&key("noop", "11")));
    }

    #[test]
    fn only_plugins_that_read_nothing_but_params_are_pure() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_is_pure(&[]));
        assert!(validate_is_pure(&names(&[
            "stevedore:plugin/types@0.2.0",
            "stevedore:plugin/task@0.2.0",
            "stevedore:plugin/images@0.2.0",
        ])));
        assert!(!validate_is_pure(&names(&[
            "stevedore:plugin/task@0.2.0",
            "stevedore:plugin/app-store@0.2.0",
        ])));
        assert!(!validate_is_pure(&names(&[
            "stevedore:plugin/repository@0.2.0"
        ])));
        assert!(!validate_is_pure(&names(&["wasi:clocks/wall-clock@0.2.0"])));
    }
}
