//! The rules for account names and passwords that the server enforces and the client checks
//! before sending.

/// Longest account name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Shortest accepted password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// The account-name rule, as users are told it.
pub const NAME_RULE: &str = "Account names are 1-32 characters of A-Z, a-z, 0-9, _ and -";

/// Whether `name` is a valid account name: 1-32 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("Alice_Bob-9"));
        assert!(is_valid_name(&"x".repeat(32)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"x".repeat(33)));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn rule_text_matches_the_limit() {
        assert!(NAME_RULE.contains(&format!("1-{MAX_NAME_CHARS} ")));
    }
}
