//! IRCv3 capability names Huddle understands.

/// SASL authentication (value: the mechanism list).
pub const SASL: &str = "sasl";
/// `REGISTER` (IRCv3 draft/account-registration).
pub const ACCOUNT_REGISTRATION: &str = "draft/account-registration";

/// Splits a `CAP REQ`/`CAP ACK` list into names, dropping empty entries.
pub fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(' ').filter(|c| !c.is_empty())
}

/// The name of a capability as written in `CAP LS 302` (`name=value` -> `name`,
/// `-name` -> `name`).
pub fn name(entry: &str) -> &str {
    let entry = entry.strip_prefix('-').unwrap_or(entry);
    entry.split_once('=').map_or(entry, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        assert_eq!(name("sasl=PLAIN,EXTERNAL"), "sasl");
        assert_eq!(name("-echo-message"), "echo-message");
        let v: Vec<_> = split_list(" sasl  draft/account-registration ").collect();
        assert_eq!(v, vec!["sasl", "draft/account-registration"]);
    }
}
