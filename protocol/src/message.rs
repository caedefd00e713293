//! One IRC message: `[@tags] [:source] COMMAND [params...] [:trailing]`.

use std::fmt;

/// One IRCv3 message tag. `value` is stored unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: Option<String>,
}

/// A parsed IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub tags: Vec<Tag>,
    pub source: Option<String>,
    pub command: String,
    pub params: Vec<String>,
}

/// Why a line is not a valid IRC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace (or tags/source without a command).
    Empty,
    MissingCommand,
    /// The command is neither letters nor a three-digit numeric.
    BadCommand(String),
    /// CR, LF or NUL inside the line.
    ForbiddenCharacter,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty line"),
            ParseError::MissingCommand => write!(f, "missing command"),
            ParseError::BadCommand(c) => write!(f, "malformed command {c:?}"),
            ParseError::ForbiddenCharacter => write!(f, "line contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for ParseError {}

impl Message {
    /// A message with no tags and no source.
    pub fn new<C, I, P>(command: C, params: I) -> Message
    where
        C: Into<String>,
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        Message {
            tags: Vec::new(),
            source: None,
            command: command.into(),
            params: params.into_iter().map(Into::into).collect(),
        }
    }

    /// Sets the source (prefix) and returns the message.
    pub fn with_source(mut self, source: impl Into<String>) -> Message {
        self.source = Some(source.into());
        self
    }

    /// Adds a tag and returns the message.
    pub fn with_tag(mut self, key: impl Into<String>, value: Option<String>) -> Message {
        self.tags.push(Tag {
            key: key.into(),
            value,
        });
        self
    }

    /// The command, compared case-insensitively.
    pub fn is(&self, command: &str) -> bool {
        self.command.eq_ignore_ascii_case(command)
    }

    /// Parameter `i`, if present.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// The value of tag `key` (`Some("")` for a tag without value). When the tag is repeated,
    /// the last one counts (IRCv3: "disregard all but the final occurrence").
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .rev()
            .find(|t| t.key == key)
            .map(|t| t.value.as_deref().unwrap_or(""))
    }

    /// Parses one line. A single trailing `\r\n` or `\n` is accepted and ignored.
    pub fn parse(line: &str) -> Result<Message, ParseError> {
        let line = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(line);
        if memchr::memchr3(b'\r', b'\n', 0, line.as_bytes()).is_some() {
            return Err(ParseError::ForbiddenCharacter);
        }
        let mut rest = line.trim_start_matches(' ');
        if rest.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut msg = Message::default();
        if let Some(after) = rest.strip_prefix('@') {
            let (tags, tail) = split_word(after);
            msg.tags = parse_tags(tags);
            rest = tail;
        }
        if let Some(after) = rest.strip_prefix(':') {
            let (source, tail) = split_word(after);
            if !source.is_empty() {
                msg.source = Some(source.to_string());
            }
            rest = tail;
        }
        let (command, mut rest) = split_word(rest);
        if command.is_empty() {
            return Err(ParseError::MissingCommand);
        }
        if !valid_command(command) {
            return Err(ParseError::BadCommand(command.to_string()));
        }
        msg.command = command.to_string();
        while !rest.is_empty() {
            if let Some(trailing) = rest.strip_prefix(':') {
                msg.params.push(trailing.to_string());
                break;
            }
            let (word, tail) = split_word(rest);
            msg.params.push(word.to_string());
            rest = tail;
        }
        Ok(msg)
    }

    /// Serialises with the closing `\r\n` into `out`.
    ///
    /// Output is always exactly one line: CR, LF and NUL anywhere are replaced by spaces, and
    /// a middle parameter that cannot be sent as such (empty, containing a space, starting
    /// with `:`) is made safe, so no value can forge a second line or shift parameters.
    pub fn write_to(&self, out: &mut String) {
        if !self.tags.is_empty() {
            out.push('@');
            self.write_tags(out);
            out.push(' ');
        }
        self.write_without_tags(out);
    }

    /// The tags as `a=1;b` (without `@` and the space after), appended to `out`.
    pub fn write_tags(&self, out: &mut String) {
        for (i, tag) in self.tags.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            write_tag(out, &tag.key, tag.value.as_deref().unwrap_or_default());
        }
    }

    /// [`Message::write_to`] leaving the tags out: the source, command and parameters, with
    /// the closing `\r\n`.
    pub fn write_without_tags(&self, out: &mut String) {
        if let Some(source) = &self.source {
            out.push(':');
            push_clean(out, source, true);
            out.push(' ');
        }
        push_clean(out, &self.command, true);
        let last = self.params.len().saturating_sub(1);
        for (i, param) in self.params.iter().enumerate() {
            out.push(' ');
            if i == last {
                if needs_trailing_colon(param) {
                    out.push(':');
                }
                push_clean(out, param, false);
            } else if param.is_empty() {
                out.push('*');
            } else if let Some(rest) = param.strip_prefix(':') {
                out.push('_');
                push_clean(out, rest, true);
            } else {
                push_clean(out, param, true);
            }
        }
        out.push_str("\r\n");
    }

    /// The serialised line, including `\r\n`.
    /// Bytes the serialised line will take, give or take escapes: sizes the buffer once.
    pub fn estimated_len(&self) -> usize {
        let tags: usize = self
            .tags
            .iter()
            .map(|t| t.key.len() + t.value.as_ref().map_or(0, |v| v.len() + 1) + 1)
            .sum();
        let params: usize = self.params.iter().map(|p| p.len() + 2).sum();
        tags + 2 + self.source.as_ref().map_or(0, |s| s.len() + 2) + self.command.len() + params + 2
    }

    pub fn to_line(&self) -> String {
        let mut s = String::with_capacity(self.estimated_len());
        self.write_to(&mut s);
        s
    }
}

impl fmt::Display for Message {
    /// The serialised line without the closing `\r\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.to_line();
        f.write_str(line.trim_end_matches("\r\n"))
    }
}

/// Splits off the next space-delimited word, skipping the run of spaces after it.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

fn valid_command(c: &str) -> bool {
    c.bytes().all(|b| b.is_ascii_alphabetic())
        || (c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
}

/// The tags of `@a=1;b` (without the `@`). Empty items and items without a key (`=x`) are
/// skipped: a tag key is never empty, so every tag survives being serialised and parsed.
fn parse_tags(s: &str) -> Vec<Tag> {
    s.split(';')
        .filter(|t| !t.is_empty() && !t.starts_with('='))
        .map(|t| match t.split_once('=') {
            Some((k, v)) => Tag {
                key: k.to_string(),
                value: Some(unescape_tag_value(v)),
            },
            None => Tag {
                key: t.to_string(),
                value: None,
            },
        })
        .collect()
}

/// IRCv3 tag value unescaping: `\:` `;`, `\s` space, `\\` `\`, `\r`, `\n`; other `\x` is `x`;
/// a lone trailing backslash is dropped.
pub fn unescape_tag_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// One tag as a tag section holds it: `key=value` with the value escaped, just `key` when
/// the value is empty (the separators around it are the caller's).
pub fn write_tag(out: &mut String, key: &str, value: &str) {
    push_clean(out, key, true);
    if !value.is_empty() {
        out.push('=');
        escape_tag_value(out, value);
    }
}

/// IRCv3 tag value escaping (the inverse of [`unescape_tag_value`]).
pub fn escape_tag_value(out: &mut String, v: &str) {
    if !v
        .bytes()
        .any(|b| matches!(b, b';' | b' ' | b'\\' | b'\r' | b'\n' | 0))
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\0' => {}
            c => out.push(c),
        }
    }
}

/// Appends `s` with CR, LF and NUL replaced by spaces (and, for words, spaces by `_`).
///
/// Copies runs of clean bytes at once: this is on the path of every relayed line.
fn push_clean(out: &mut String, s: &str, word: bool) {
    let replacement = if word { '_' } else { ' ' };
    // Words are short; a trailing parameter (the text of every relayed line) is searched
    // with memchr3, a SIMD scan, rather than byte by byte.
    let find = |r: &str| {
        if word {
            r.bytes()
                .position(|b| matches!(b, b'\r' | b'\n' | 0 | b' '))
        } else {
            memchr::memchr3(b'\r', b'\n', 0, r.as_bytes())
        }
    };
    let mut rest = s;
    // Every byte matched is ASCII, so `i` and `i + 1` are character boundaries.
    while let Some(i) = find(rest) {
        out.push_str(&rest[..i]);
        out.push(replacement);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Whether the last parameter needs the `:` form: empty, starting with `:`, or holding a
/// space (CR, LF and NUL are sent as spaces, so they count too).
fn needs_trailing_colon(param: &str) -> bool {
    param.is_empty()
        || param.starts_with(':')
        || param.bytes().any(|b| matches!(b, b' ' | b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_message() {
        let m = Message::parse("@time=2024;msgid=a\\sb :nick!u@h PRIVMSG #room :hello there\r\n")
            .unwrap();
        assert_eq!(m.tag("time"), Some("2024"));
        assert_eq!(m.tag("msgid"), Some("a b"));
        assert_eq!(m.source.as_deref(), Some("nick!u@h"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#room", "hello there"]);
    }

    #[test]
    fn parses_without_trailing_and_with_extra_spaces() {
        let m = Message::parse("JOIN   #a   key").unwrap();
        assert_eq!(m.params, vec!["#a", "key"]);
        let m = Message::parse("PING").unwrap();
        assert!(m.params.is_empty());
        let m = Message::parse("PRIVMSG #a :").unwrap();
        assert_eq!(m.params, vec!["#a", ""]);
        let m = Message::parse("PRIVMSG #a ::-)").unwrap();
        assert_eq!(m.params, vec!["#a", ":-)"]);
    }

    #[test]
    fn numeric_and_bad_commands() {
        assert_eq!(
            Message::parse(":srv 001 me :Welcome").unwrap().command,
            "001"
        );
        assert!(matches!(
            Message::parse("12 x"),
            Err(ParseError::BadCommand(_))
        ));
        assert!(matches!(
            Message::parse("PR1VMSG x"),
            Err(ParseError::BadCommand(_))
        ));
        assert_eq!(Message::parse("   "), Err(ParseError::Empty));
        assert_eq!(Message::parse(":src"), Err(ParseError::MissingCommand));
        assert_eq!(Message::parse("@a=b"), Err(ParseError::MissingCommand));
        assert_eq!(
            Message::parse("PRIVMSG a\0b"),
            Err(ParseError::ForbiddenCharacter)
        );
    }

    #[test]
    fn tag_without_value_and_escapes() {
        let m = Message::parse("@a;b=;c=x\\:y\\\\z\\ CMD").unwrap();
        assert_eq!(
            m.tags[0],
            Tag {
                key: "a".into(),
                value: None
            }
        );
        assert_eq!(m.tag("b"), Some(""));
        assert_eq!(m.tag("c"), Some("x;y\\z"));
    }

    #[test]
    fn tags_without_a_key_are_skipped() {
        // Found by the parse_message fuzz target: `=x` was a tag with an empty key, which
        // serialised as `@;=x`-style text that parsed back differently.
        let m = Message::parse("@=;=v;a=1;=;b CMD").unwrap();
        assert_eq!(
            m.tags,
            vec![
                Tag {
                    key: "a".into(),
                    value: Some("1".into())
                },
                Tag {
                    key: "b".into(),
                    value: None
                }
            ]
        );
        assert_eq!(Message::parse(&m.to_line()).unwrap(), m);
    }

    #[test]
    fn repeated_tag_last_one_counts() {
        let m = Message::parse("@a=1;b=2;a=3;vendor/b=4 CMD").unwrap();
        assert_eq!(m.tag("a"), Some("3"));
        assert_eq!(m.tag("b"), Some("2"));
        assert_eq!(m.tag("vendor/b"), Some("4"));
        let m = Message::parse("@a=1;a CMD").unwrap();
        assert_eq!(m.tag("a"), Some(""));
    }

    #[test]
    fn serialises_trailing_only_when_needed() {
        assert_eq!(Message::new("NICK", ["bob"]).to_line(), "NICK bob\r\n");
        assert_eq!(
            Message::new("PRIVMSG", ["#a", "hi there"]).to_line(),
            "PRIVMSG #a :hi there\r\n"
        );
        assert_eq!(
            Message::new("TOPIC", ["#a", ""]).to_line(),
            "TOPIC #a :\r\n"
        );
        assert_eq!(
            Message::new("X", [":a"]).with_source("srv").to_line(),
            ":srv X ::a\r\n"
        );
    }

    #[test]
    fn serialising_never_forges_a_line() {
        let m = Message::new("PRIVMSG", ["#a\r\nQUIT", "hi\r\nQUIT :x"])
            .with_source("e\nvil")
            .with_tag("k", Some("v\r\nX".into()));
        let line = m.to_line();
        assert_eq!(line.matches("\r\n").count(), 1);
        assert!(line.ends_with("\r\n"));
        assert!(!line[..line.len() - 2].contains(['\r', '\n']));
        let back = Message::parse(&line).unwrap();
        assert_eq!(back.command, "PRIVMSG");
        assert_eq!(back.params.len(), 2);
        assert_eq!(back.tag("k"), Some("v\r\nX"));
    }

    #[test]
    fn sanitised_last_param_keeps_its_place() {
        // Found by the parse_message fuzz target: a last parameter whose CR/LF/NUL became a
        // space was sent without `:`, so it split into two parameters or lost the space.
        for (param, sent) in [
            ("a\rb", "X :a b\r\n"),
            ("\nY", "X : Y\r\n"),
            ("a\0", "X :a \r\n"),
        ] {
            let m = Message::new("X", [param]);
            assert_eq!(m.to_line(), sent);
            let back = Message::parse(&m.to_line()).unwrap();
            assert_eq!(back.params, [param.replace(['\r', '\n', '\0'], " ")]);
        }
    }

    #[test]
    fn unsafe_middle_params_are_made_safe() {
        let line = Message::new("X", ["a b", "", ":c", "last"]).to_line();
        assert_eq!(line, "X a_b * _c last\r\n");
    }

    #[test]
    fn display_has_no_line_ending() {
        assert_eq!(Message::new("PING", ["x"]).to_string(), "PING x");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn word() -> impl Strategy<Value = String> {
            "[A-Za-z0-9#&!@.*_\\-\\[\\]{}|^`]{1,12}"
        }

        fn message() -> impl Strategy<Value = Message> {
            (
                proptest::collection::vec(
                    ("[a-z0-9/+.\\-]{1,8}", proptest::option::of("[ -~]{0,10}")),
                    0..3,
                ),
                proptest::option::of(word()),
                prop_oneof!["[A-Za-z]{1,10}", "[0-9]{3}"],
                proptest::collection::vec(word(), 0..5),
                proptest::option::of("[^\r\n\0]{0,40}"),
            )
                .prop_map(|(tags, source, command, mut params, trailing)| {
                    if let Some(t) = trailing {
                        params.push(t);
                    }
                    Message {
                        tags: tags
                            .into_iter()
                            .map(|(key, value)| Tag {
                                key,
                                // An empty value serialises as a bare key.
                                value: value.filter(|v| !v.is_empty()),
                            })
                            .collect(),
                        source,
                        command,
                        params,
                    }
                })
        }

        proptest! {
            #[test]
            fn round_trip(m in message()) {
                let line = m.to_line();
                prop_assert_eq!(Message::parse(&line).unwrap(), m);
            }

            #[test]
            fn parse_never_panics(s in "\\PC{0,200}") {
                let _ = Message::parse(&s);
            }

            #[test]
            fn parsed_fields_are_never_larger_than_the_line(
                s in "(@[a-z=;\\\\:s ]{0,30} )?(:[!-~]{0,10} )?[A-Za-z0-9]{0,8}( [ -~]{0,40}){0,4}",
            ) {
                // The parser allocates no more than the line it was given (tag unescaping
                // only shrinks), so the line limit bounds what one message costs.
                if let Ok(m) = Message::parse(&s) {
                    let held = m.tags.iter()
                        .map(|t| t.key.len() + t.value.as_ref().map_or(0, String::len))
                        .sum::<usize>()
                        + m.source.as_ref().map_or(0, String::len)
                        + m.command.len()
                        + m.params.iter().map(String::len).sum::<usize>();
                    prop_assert!(held <= s.len(), "{} bytes from {:?}", held, s);
                }
            }

            #[test]
            fn built_messages_are_one_line_with_their_params_in_place(
                command in "[A-Za-z]{1,8}",
                source in proptest::option::of("[^ ]{0,12}"),
                params in proptest::collection::vec("(?s).{0,12}", 0..6),
            ) {
                // Any text, CR/LF/NUL and spaces included: exactly one line comes out, and
                // it has the same command and number of parameters.
                let mut m = Message::new(command, params);
                m.source = source;
                let line = m.to_line();
                prop_assert!(line.ends_with("\r\n"));
                prop_assert!(!line[..line.len() - 2].contains(['\r', '\n', '\0']));
                let back = Message::parse(&line).unwrap();
                prop_assert_eq!(&back.command, &m.command);
                prop_assert_eq!(back.params.len(), m.params.len());
            }

            #[test]
            fn any_parsed_message_reserialises_to_one_line(s in "[ -~]{0,200}") {
                if let Ok(m) = Message::parse(&s) {
                    let line = m.to_line();
                    prop_assert_eq!(line.matches('\n').count(), 1);
                    prop_assert_eq!(Message::parse(&line).unwrap().command, m.command);
                }
            }
        }
    }
}
