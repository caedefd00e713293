//! Splitting a message source of the form `nick!user@host`.

/// Splits a source into nick, user and host.
///
/// The nick ends at the first `!` or `@`. After a `!`, the user runs up to the next `@`; the
/// host is everything after that `@`. Parts that are absent are `None`; parts that are present
/// but empty (`nick!@host`, `nick!user@`) are `Some("")`. A server name (`irc.example.com`)
/// comes back as the nick with neither user nor host, as IRC sources are ambiguous there.
pub fn split(source: &str) -> (&str, Option<&str>, Option<&str>) {
    let Some(i) = source.find(['!', '@']) else {
        return (source, None, None);
    };
    let (nick, rest) = (&source[..i], &source[i + 1..]);
    if source.as_bytes()[i] == b'@' {
        return (nick, None, Some(rest));
    }
    match rest.split_once('@') {
        Some((user, host)) => (nick, Some(user), Some(host)),
        None => (nick, Some(rest), None),
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn full_and_partial_sources() {
        assert_eq!(
            split("alice!alice@127.0.0.1"),
            ("alice", Some("alice"), Some("127.0.0.1"))
        );
        assert_eq!(split("alice@host"), ("alice", None, Some("host")));
        assert_eq!(split("alice!~a"), ("alice", Some("~a"), None));
        assert_eq!(split("alice!@host"), ("alice", Some(""), Some("host")));
        assert_eq!(split("alice!a@"), ("alice", Some("a"), Some("")));
        assert_eq!(split("!a@h"), ("", Some("a"), Some("h")));
        assert_eq!(split("huddle.local"), ("huddle.local", None, None));
        assert_eq!(split(""), ("", None, None));
    }

    #[test]
    fn only_the_first_separators_split() {
        // A host may contain anything after the first `@`.
        assert_eq!(split("n!u@h@x!y"), ("n", Some("u"), Some("h@x!y")));
        // `@` before any `!`: no user; the rest is the host.
        assert_eq!(split("n@h!x"), ("n", None, Some("h!x")));
    }
}
