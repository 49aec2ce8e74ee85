//! What a user (or node) name may be: it becomes a folder name under the
//! share root and the data folder.

/// Whether `name` is 1 to `max` bytes of `[A-Za-z0-9_.-]`: the characters
/// a name that becomes a folder, a label or a path segment may hold.
pub fn is_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A user name: 1 to 64 of `[A-Za-z0-9_.-]`, and not `.` or `..` (a user
/// name is a folder name under the share root and the data folder).
pub fn valid_user_name(name: &str) -> bool {
    check_user_name(name).is_ok()
}

/// [`valid_user_name`], with the sentence that says why not.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if !is_name(name, 64) {
        return Err("a user name is 1 to 64 letters, digits, `_`, `.` or `-`".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a user name: it names a folder's own or parent folder"
        ));
    }
    Ok(())
}
