//! Checks on IRC messages the server sent: sources, exact replies, the `HELLO` text, and
//! IRCv3 `server-time` values.

use huddle_protocol::Message;

/// `nick` from a `nick!user@host` source.
pub fn source_nick(m: &Message) -> Option<&str> {
    m.source
        .as_deref()
        .map(|s| s.split('!').next().unwrap_or(s))
}

/// True when `m` comes from user `nick`: `nick!<user>@<host>`, both non-empty (the user
/// part is the ident from `USER`, e.g. `~nick`).
pub fn from_user(m: &Message, nick: &str) -> bool {
    m.source
        .as_deref()
        .and_then(|s| s.strip_prefix(nick)?.strip_prefix('!'))
        .and_then(|rest| rest.split_once('@'))
        .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
}

/// The host the server shows for a user logged in as `account`: `huddle/user/<account>`,
/// the account name lower-cased.
pub fn account_host(account: &str) -> String {
    format!("huddle/user/{}", account.to_ascii_lowercase())
}

/// True for a guest's cloaked host: `huddle/guest/` and 10 lowercase hex digits.
pub fn is_guest_host(host: &str) -> bool {
    host.strip_prefix("huddle/guest/").is_some_and(|hex| {
        hex.len() == 10
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The host of a `nick!user@host` source.
pub fn source_host(m: &Message) -> Option<&str> {
    m.source.as_deref()?.rsplit_once('@').map(|(_, host)| host)
}

/// Checks the text of the `HELLO` reply.
///
/// The contract writes it as `Hello <nick>! This is <name>, <N> user(s) online.`; "user(s)" is
/// read as "user or users", so both the literal `user(s)` and the correctly pluralised form
/// (`1 user`, `2 users`) are accepted. Nick, server name and count must be exact.
#[track_caller]
pub fn assert_hello(m: &Message, server: &str, nick: &str, online: usize) {
    let plural = if online == 1 { "user" } else { "users" };
    let literal = format!("Hello {nick}! This is {server}, {online} user(s) online.");
    let natural = format!("Hello {nick}! This is {server}, {online} {plural} online.");
    assert!(
        m.source.as_deref() == Some(server)
            && m.is("NOTICE")
            && m.params.len() == 2
            && m.param(0) == Some(nick)
            && (m.params[1] == literal || m.params[1] == natural),
        "expected `:{server} NOTICE {nick} :{natural}` (or `{literal}`), got `{m}`"
    );
}

/// Asserts command and parameters exactly.
#[track_caller]
pub fn assert_msg(m: &Message, cmd: &str, params: &[&str]) {
    assert!(
        m.is(cmd) && m.params == params,
        "expected `{cmd} {params:?}`, got `{m}`"
    );
}

/// Asserts a server reply: source `:<server>`, command and parameters exactly.
#[track_caller]
pub fn assert_reply(m: &Message, server: &str, cmd: &str, params: &[&str]) {
    assert_eq!(m.source.as_deref(), Some(server), "source of `{m}`");
    assert_msg(m, cmd, params);
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as u64
}

/// Parses an IRCv3 `server-time` value, exactly `YYYY-MM-DDThh:mm:ss.sssZ`, to Unix
/// milliseconds. `None` if it is not in that form or not a real date and time.
pub fn parse_server_time(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| v[r].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let (h, mi, s, ms) = (n(11..13), n(14..16), n(17..19), n(20..23));
    let month_days = [
        31,
        28 + i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    // Days from civil (H. Hinnant), independent of the server's implementation.
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + mi) * 60 + s)
        .ok()
        .map(|secs| secs * 1000 + ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_parses_to_unix_millis() {
        assert_eq!(parse_server_time("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_server_time("2024-02-29T23:59:59.999Z"),
            Some(1_709_251_199_999)
        );
    }

    #[test]
    fn server_time_rejects_other_forms_and_impossible_dates() {
        for bad in [
            "2024-02-29T23:59:59Z",
            "2024-02-29 23:59:59.999Z",
            "2023-02-29T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
        ] {
            assert_eq!(parse_server_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_sources_are_recognised() {
        let m = Message::parse(":alice!alice@127.0.0.1 PRIVMSG #r :hi").expect("valid line");
        assert_eq!(source_nick(&m), Some("alice"));
        assert!(from_user(&m, "alice"));
        assert!(!from_user(&m, "bob"));
        let server = Message::parse(":huddle.local NOTICE alice :hi").expect("valid line");
        assert!(!from_user(&server, "alice"));
    }

    #[test]
    fn cloaked_hosts_are_recognised() {
        let m = Message::parse(":Al!~al@huddle/user/al PRIVMSG #r :hi").expect("valid line");
        assert_eq!(source_host(&m), Some(account_host("AL").as_str()));
        assert!(is_guest_host("huddle/guest/0123456789"));
        assert!(!is_guest_host("huddle/guest/012345678"));
        assert!(!is_guest_host("huddle/guest/012345678A"));
        assert!(!is_guest_host("huddle/user/al"));
    }
}
