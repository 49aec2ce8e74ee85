//! Validation rules shared by categories. Each returns
//! `Error::InvalidParams("field: reason")`, so the user sees which field is wrong.

use crate::Error;

/// Container Station's name rule: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$`.
pub fn name(field: &str, value: &str) -> Result<(), Error> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && (2..=64).contains(&value.len()) {
        Ok(())
    } else {
        Err(Error::invalid(field, "must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"))
    }
}

/// A non-empty value.
pub fn non_empty(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// A path relative to the share root: not absolute (a leading `/` is read
/// as the share root itself, as Container Station does), no `..`, no NUL.
/// The host checks again, following links.
pub fn share_path(field: &str, value: &str) -> Result<(), Error> {
    let rel = value.trim_start_matches('/');
    if rel.is_empty() {
        return Err(Error::invalid(field, "must name a file under the share root"));
    }
    if value.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL"));
    }
    if rel.split('/').any(|part| part == "..") {
        return Err(Error::invalid(field, "must not contain `..`"));
    }
    Ok(())
}

/// An image reference part (repository or tag) without spaces or control characters.
pub fn image_part(field: &str, value: &str) -> Result<(), Error> {
    non_empty(field, value)?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(field, "must not contain spaces"));
    }
    Ok(())
}

/// `"768m"`, `"1g"`, `"65536k"` or plain bytes → bytes.
pub fn memory(field: &str, value: &str) -> Result<u64, Error> {
    let v = value.trim().to_ascii_lowercase();
    let (digits, mult) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m') => (&v[..v.len() - 1], 1 << 20),
        Some('g') => (&v[..v.len() - 1], 1 << 30),
        _ => (&v[..], 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| Error::invalid(field, "must be a size such as \"768m\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<(), Error>) -> String {
        match r {
            Err(Error::InvalidParams(m)) => m,
            other => panic!("expected invalid-params, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_container_station() {
        assert!(name("name", "web-1.a_b").is_ok());
        assert!(name("name", "ab").is_ok());
        assert_eq!(
            msg(name("name", "a")),
            "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$"
        );
        assert!(name("name", "-ab").is_err());
        assert!(name("name", "a b").is_err());
        assert!(name("name", &"a".repeat(65)).is_err());
        assert!(name("name", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn share_paths_stay_relative() {
        assert!(share_path("path", "test/c.tgz").is_ok());
        assert!(share_path("path", "/test/c.tgz").is_ok());
        assert_eq!(msg(share_path("path", "../etc/passwd")), "path: must not contain `..`");
        assert!(share_path("path", "a/../../b").is_err());
        assert!(share_path("path", "/").is_err());
        assert!(share_path("path", "").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("m", "768m").unwrap(), 768 << 20);
        assert_eq!(memory("m", "1G").unwrap(), 1 << 30);
        assert_eq!(memory("m", "4096").unwrap(), 4096);
        assert!(memory("m", "lots").is_err());
        assert!(memory("m", "99999999999999999999g").is_err());
    }
}
