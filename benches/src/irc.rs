//! The IRC side of a load client: logging in (SASL PLAIN or NICK/USER), joining, and the
//! timestamped chat lines the scenarios send and check.

use std::io::Write;
use std::time::{Duration, Instant};

/// Marks our chat lines: `HLD <run> <sender> <seq> <nanos>`.
pub const MAGIC: &[u8] = b"HLD ";
/// How often a login refused with "server busy" is tried again.
pub const MAX_BUSY_RETRIES: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// NICK/USER only (servers without accounts, or Huddle with `--allow-guests`).
    Nick,
    /// SASL PLAIN with account = nick.
    Sasl,
}

#[derive(Debug, Clone)]
pub struct LoginSpec {
    pub nick: String,
    pub auth: AuthMode,
    pub password: String,
    /// Send `REGISTER <nick> * <password>` first (an existing account is fine).
    pub register: bool,
    pub join: Option<String>,
    /// Ask for `echo-message` (the sender gets its own lines back).
    pub echo: bool,
    /// Connect storm: send `CAP LS 302` and be done at the first server line.
    pub first_line_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Ready,
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    FirstLine,
    Registering,
    Authenticating,
    WaitWelcome,
    Joining,
    Ready,
}

/// One connection's way from connected to ready (logged in, joined).
pub struct Login {
    spec: LoginSpec,
    phase: Phase,
    pub busy_retries: u32,
    retry: Option<(Instant, &'static str)>,
}

/// A server line, split without copying.
pub struct Parsed<'a> {
    pub command: &'a [u8],
    /// Middle parameters and the trailing one, in order.
    pub params: Vec<&'a [u8]>,
}

/// Splits `[@tags] [:source] COMMAND params... [:trailing]`.
pub fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    let mut rest = line;
    if rest.first() == Some(&b'@') {
        rest = &rest[memchr::memchr(b' ', rest)? + 1..];
    }
    if rest.first() == Some(&b':') {
        rest = &rest[memchr::memchr(b' ', rest)? + 1..];
    }
    let (command, mut rest) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let mut params = Vec::new();
    while !rest.is_empty() {
        if rest[0] == b':' {
            params.push(&rest[1..]);
            break;
        }
        match memchr::memchr(b' ', rest) {
            Some(i) => {
                if i > 0 {
                    params.push(&rest[..i]);
                }
                rest = &rest[i + 1..];
            }
            None => {
                params.push(rest);
                break;
            }
        }
    }
    if command.is_empty() {
        return None;
    }
    Some(Parsed { command, params })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Login {
    pub fn new(spec: LoginSpec) -> Login {
        Login {
            spec,
            phase: Phase::Registering,
            busy_retries: 0,
            retry: None,
        }
    }

    pub fn spec(&self) -> &LoginSpec {
        &self.spec
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The first lines, once the connection is up.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.spec.first_line_only {
            self.phase = Phase::FirstLine;
            out.extend_from_slice(b"CAP LS 302\r\n");
        } else if self.spec.register {
            self.phase = Phase::Registering;
            let _ = write!(
                out,
                "REGISTER {} * {}\r\n",
                self.spec.nick, self.spec.password
            );
        } else {
            self.begin_login(out);
        }
    }

    fn begin_login(&mut self, out: &mut Vec<u8>) {
        let nick = &self.spec.nick;
        match self.spec.auth {
            AuthMode::Sasl => {
                let caps = if self.spec.echo {
                    "sasl echo-message"
                } else {
                    "sasl"
                };
                let _ = write!(
                    out,
                    "CAP REQ :{caps}\r\nNICK {nick}\r\nUSER {nick} 0 * :huddle-load\r\nAUTHENTICATE PLAIN\r\n"
                );
                self.phase = Phase::Authenticating;
            }
            AuthMode::Nick => {
                if self.spec.echo {
                    out.extend_from_slice(b"CAP REQ :echo-message\r\n");
                }
                let _ = write!(out, "NICK {nick}\r\nUSER {nick} 0 * :huddle-load\r\n");
                if self.spec.echo {
                    out.extend_from_slice(b"CAP END\r\n");
                }
                self.phase = Phase::WaitWelcome;
            }
        }
    }

    /// When a delayed retry is due.
    pub fn retry_due(&self) -> Option<Instant> {
        self.retry.map(|(at, _)| at)
    }

    /// Sends a retry whose time has come.
    pub fn poll_timer(&mut self, now: Instant, out: &mut Vec<u8>) {
        if let Some((at, line)) = self.retry {
            if now >= at {
                self.retry = None;
                match line {
                    "REGISTER" => {
                        let _ = write!(
                            out,
                            "REGISTER {} * {}\r\n",
                            self.spec.nick, self.spec.password
                        );
                    }
                    _ => out.extend_from_slice(b"AUTHENTICATE PLAIN\r\n"),
                }
            }
        }
    }

    fn busy(&mut self, what: &'static str, now: Instant) -> Progress {
        self.busy_retries += 1;
        if self.busy_retries > MAX_BUSY_RETRIES {
            return Progress::Failed(format!(
                "{}: server busy {} times in a row",
                self.spec.nick, self.busy_retries
            ));
        }
        let backoff = Duration::from_millis(20 * u64::from(self.busy_retries.min(10)));
        self.retry = Some((now + backoff, what));
        Progress::Pending
    }

    /// Handles one server line; replies go to `out`.
    pub fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>, now: Instant) -> Progress {
        let Some(m) = parse(line) else {
            return Progress::Pending;
        };
        let p = |i: usize| m.params.get(i).copied().unwrap_or(b"");
        match m.command {
            b"PING" => {
                out.extend_from_slice(b"PONG :");
                out.extend_from_slice(p(0));
                out.extend_from_slice(b"\r\n");
                return if self.phase == Phase::FirstLine {
                    self.phase = Phase::Ready;
                    Progress::Ready
                } else {
                    Progress::Pending
                };
            }
            b"ERROR" => {
                return Progress::Failed(format!("{}: ERROR {}", self.spec.nick, text(p(0))))
            }
            _ => {}
        }
        let nick = &self.spec.nick;
        match self.phase {
            Phase::FirstLine => {
                self.phase = Phase::Ready;
                Progress::Ready
            }
            Phase::Ready => Progress::Pending,
            Phase::Registering => match m.command {
                b"REGISTER" if p(0) == b"SUCCESS" => {
                    self.begin_login(out);
                    Progress::Pending
                }
                b"FAIL" if p(0) == b"REGISTER" && p(1) == b"ACCOUNT_EXISTS" => {
                    self.begin_login(out);
                    Progress::Pending
                }
                b"FAIL" if p(0) == b"REGISTER" && p(1) == b"TEMPORARILY_UNAVAILABLE" => {
                    self.busy("REGISTER", now)
                }
                b"FAIL" if p(0) == b"REGISTER" => Progress::Failed(format!(
                    "{nick}: REGISTER refused: {} {}",
                    text(p(1)),
                    text(m.params.last().copied().unwrap_or(b""))
                )),
                b"421" => Progress::Failed(format!("{nick}: server does not know REGISTER (421)")),
                _ => Progress::Pending,
            },
            Phase::Authenticating => match m.command {
                b"AUTHENTICATE" if p(0) == b"+" => {
                    let b64 = huddle_protocol::sasl::encode_plain(nick, &self.spec.password);
                    for chunk in huddle_protocol::sasl::chunks(&b64) {
                        let _ = write!(out, "AUTHENTICATE {chunk}\r\n");
                    }
                    Progress::Pending
                }
                b"903" => {
                    out.extend_from_slice(b"CAP END\r\n");
                    self.phase = Phase::WaitWelcome;
                    Progress::Pending
                }
                b"904" => {
                    let why = text(m.params.last().copied().unwrap_or(b""));
                    if why.contains("busy") {
                        self.busy("AUTHENTICATE", now)
                    } else {
                        Progress::Failed(format!("{nick}: SASL login failed (904 {why})"))
                    }
                }
                b"902" | b"905" | b"906" | b"907" | b"908" => Progress::Failed(format!(
                    "{nick}: SASL: {} {}",
                    text(m.command),
                    text(m.params.last().copied().unwrap_or(b""))
                )),
                b"CAP" if p(1) == b"NAK" => {
                    Progress::Failed(format!("{nick}: server refused CAP {}", text(p(2))))
                }
                b"421" => Progress::Failed(format!("{nick}: server does not support SASL")),
                _ => Progress::Pending,
            },
            Phase::WaitWelcome => match m.command {
                b"001" => match &self.spec.join {
                    Some(room) => {
                        let _ = write!(out, "JOIN {room}\r\n");
                        self.phase = Phase::Joining;
                        Progress::Pending
                    }
                    None => {
                        self.phase = Phase::Ready;
                        Progress::Ready
                    }
                },
                b"432" | b"433" | b"436" | b"437" => Progress::Failed(format!(
                    "{nick}: nick refused ({} {})",
                    text(m.command),
                    text(m.params.last().copied().unwrap_or(b""))
                )),
                b"FAIL" => Progress::Failed(format!(
                    "{nick}: FAIL {}",
                    text(m.params.last().copied().unwrap_or(b""))
                )),
                b"CAP" if p(1) == b"NAK" => {
                    Progress::Failed(format!("{nick}: server refused CAP {}", text(p(2))))
                }
                _ => Progress::Pending,
            },
            Phase::Joining => match m.command {
                b"366" => {
                    self.phase = Phase::Ready;
                    Progress::Ready
                }
                b"403" | b"405" | b"471" | b"473" | b"474" | b"475" | b"477" => {
                    Progress::Failed(format!(
                        "{nick}: JOIN refused ({} {})",
                        text(m.command),
                        text(m.params.last().copied().unwrap_or(b""))
                    ))
                }
                _ => Progress::Pending,
            },
        }
    }
}

/// Appends `PRIVMSG <room> :HLD <run> <sender> <seq> <nanos> <padding>` so the text is
/// `size` bytes long (or as short as the fields allow).
pub fn write_chat(
    out: &mut Vec<u8>,
    room: &str,
    run: u32,
    sender: u32,
    seq: u32,
    nanos: u64,
    size: usize,
) {
    out.extend_from_slice(b"PRIVMSG ");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b" :");
    let start = out.len();
    let _ = write!(out, "HLD {run:08x} {sender} {seq} {nanos} ");
    let used = out.len() - start;
    if size > used {
        out.resize(start + size, b'x');
    }
    out.extend_from_slice(b"\r\n");
}

/// One of our chat lines as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chat {
    pub run: u32,
    pub sender: u32,
    pub seq: u32,
    pub nanos: u64,
}

/// What a line in the run phase is.
#[derive(Debug, PartialEq, Eq)]
pub enum RunLine<'a> {
    Chat(Chat),
    Ping(&'a [u8]),
    Error(&'a [u8]),
    Other,
}

/// One hex digit's value.
fn hex_digit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'a'..=b'f' => Some(u32::from(c - b'a' + 10)),
        b'A'..=b'F' => Some(u32::from(c - b'A' + 10)),
        _ => None,
    }
}

/// Takes a decimal field of 1 to 19 digits (so it fits a u64) ending at a space or at the
/// end of `rest`, and the space after it.
fn decimal_field(rest: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    let mut len = 0;
    for &c in rest.iter() {
        let digit = c.wrapping_sub(b'0');
        if digit >= 10 {
            if c != b' ' {
                return None;
            }
            break;
        }
        len += 1;
        if len > 19 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    if len == 0 {
        return None;
    }
    *rest = rest.get(len + 1..).unwrap_or_default();
    Some(value)
}

/// Classifies a line cheaply (the hot path of every receiver).
pub fn classify(line: &[u8]) -> RunLine<'_> {
    let mut rest = line;
    if rest.first() == Some(&b'@') {
        match memchr::memchr(b' ', rest) {
            Some(i) => rest = &rest[i + 1..],
            None => return RunLine::Other,
        }
    }
    if rest.first() == Some(&b':') {
        match memchr::memchr(b' ', rest) {
            Some(i) => rest = &rest[i + 1..],
            None => return RunLine::Other,
        }
    }
    if let Some(after) = rest.strip_prefix(b"PRIVMSG ") {
        // The target has no spaces: the text starts after the first " :".
        let Some(i) = memchr::memchr(b' ', after) else {
            return RunLine::Other;
        };
        let Some(payload) = after[i + 1..]
            .strip_prefix(b":")
            .and_then(|p| p.strip_prefix(MAGIC))
        else {
            return RunLine::Other;
        };
        return parse_chat(payload).map_or(RunLine::Other, RunLine::Chat);
    }
    if let Some(token) = rest.strip_prefix(b"PING ") {
        return RunLine::Ping(token.strip_prefix(b":").unwrap_or(token));
    }
    if let Some(msg) = rest.strip_prefix(b"ERROR ") {
        return RunLine::Error(msg.strip_prefix(b":").unwrap_or(msg));
    }
    RunLine::Other
}

/// `<run: 8 hex digits> <sender> <seq> <nanos>[ padding]`, parsed in one pass: this runs
/// for every delivery the tool receives.
fn parse_chat(payload: &[u8]) -> Option<Chat> {
    let (run_hex, rest) = payload.split_at_checked(8)?;
    let mut rest = rest.strip_prefix(b" ")?;
    let run = run_hex
        .iter()
        .try_fold(0u32, |v, &c| Some(v << 4 | hex_digit(c)?))?;
    let sender = u32::try_from(decimal_field(&mut rest)?).ok()?;
    let seq = u32::try_from(decimal_field(&mut rest)?).ok()?;
    let nanos = decimal_field(&mut rest)?;
    Some(Chat {
        run,
        sender,
        seq,
        nanos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_line_round_trip() {
        let mut out = Vec::new();
        write_chat(&mut out, "#bench", 0xabc, 7, 42, 123_456_789, 100);
        let line = std::str::from_utf8(&out).unwrap();
        assert!(line.starts_with("PRIVMSG #bench :HLD 00000abc 7 42 123456789 x"));
        assert_eq!(out.len(), "PRIVMSG #bench :".len() + 100 + 2);
        let relayed = format!(
            "@time=2026-01-01T00:00:00.000Z :u7!u7@huddle {}",
            line.trim_end()
        );
        assert_eq!(
            classify(relayed.as_bytes()),
            RunLine::Chat(Chat {
                run: 0xabc,
                sender: 7,
                seq: 42,
                nanos: 123_456_789
            })
        );
    }

    #[test]
    fn classify_others() {
        assert_eq!(classify(b"PING :abc"), RunLine::Ping(b"abc"));
        assert_eq!(classify(b":srv PING x"), RunLine::Ping(b"x"));
        assert_eq!(
            classify(b"ERROR :SendQ exceeded"),
            RunLine::Error(b"SendQ exceeded")
        );
        assert_eq!(classify(b":a!a@h PRIVMSG #r :hello"), RunLine::Other);
        assert_eq!(classify(b":a!a@h PRIVMSG #r :HLD zz 1 2 3"), RunLine::Other);
        assert_eq!(classify(b":srv 001 me :Welcome"), RunLine::Other);
    }

    #[test]
    fn chat_payload_fields() {
        let chat = |p: &[u8]| parse_chat(p);
        let want = Some(Chat {
            run: 0xabc,
            sender: 7,
            seq: 42,
            nanos: 9,
        });
        assert_eq!(chat(b"00000ABC 7 42 9"), want, "no padding, upper-case hex");
        assert_eq!(chat(b"00000abc 7 42 9 xxxx"), want);
        assert_eq!(chat(b"abc 7 42 9"), None, "the run id has 8 digits");
        assert_eq!(chat(b"00000abc 7  42 9"), None);
        assert_eq!(chat(b"00000abc 7 42"), None);
        assert_eq!(chat(b"00000abc 7 4x2 9"), None);
        assert_eq!(chat(b"00000abc 4294967296 1 1"), None, "sender is a u32");
        assert_eq!(
            chat(b"00000abc 1 1 9999999999999999999").map(|c| c.nanos),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(chat(b"00000abc 1 1 10000000000000000000"), None);
    }

    #[test]
    fn sasl_login_flow() {
        let mut l = Login::new(LoginSpec {
            nick: "u1".into(),
            auth: AuthMode::Sasl,
            password: "secret-password".into(),
            register: true,
            join: Some("#bench".into()),
            echo: false,
            first_line_only: false,
        });
        let now = Instant::now();
        let mut out = Vec::new();
        l.start(&mut out);
        assert_eq!(out, b"REGISTER u1 * secret-password\r\n");
        out.clear();
        let p = l.on_line(b":h FAIL REGISTER ACCOUNT_EXISTS u1 :taken", &mut out, now);
        assert_eq!(p, Progress::Pending);
        assert!(String::from_utf8_lossy(&out).contains("AUTHENTICATE PLAIN"));
        out.clear();
        l.on_line(b"AUTHENTICATE +", &mut out, now);
        assert!(out.starts_with(b"AUTHENTICATE AHUx"));
        out.clear();
        l.on_line(
            b":h 904 * :SASL authentication failed: server busy, try again shortly",
            &mut out,
            now,
        );
        assert_eq!(l.busy_retries, 1);
        assert!(out.is_empty());
        l.poll_timer(now + Duration::from_secs(1), &mut out);
        assert_eq!(out, b"AUTHENTICATE PLAIN\r\n");
        out.clear();
        l.on_line(b":h 903 u1 :ok", &mut out, now);
        assert_eq!(out, b"CAP END\r\n");
        out.clear();
        l.on_line(b":h 001 u1 :Welcome", &mut out, now);
        assert_eq!(out, b"JOIN #bench\r\n");
        assert_eq!(
            l.on_line(b":h 366 u1 #bench :End", &mut out, now),
            Progress::Ready
        );
        assert!(l.is_ready());
    }

    #[test]
    fn failures_are_reported() {
        let mut l = Login::new(LoginSpec {
            nick: "u1".into(),
            auth: AuthMode::Sasl,
            password: "pw".into(),
            register: false,
            join: None,
            echo: false,
            first_line_only: false,
        });
        let mut out = Vec::new();
        l.start(&mut out);
        let p = l.on_line(
            b":h 904 * :SASL authentication failed",
            &mut out,
            Instant::now(),
        );
        assert!(matches!(p, Progress::Failed(m) if m.contains("904")));
    }
}
