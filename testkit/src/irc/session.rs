//! IRC conversations of the test client: account registration, SASL PLAIN login, capability
//! negotiation, the welcome burst and joining a room, each checking the server's replies.

use huddle_protocol::{sasl, Message};

use super::assertions::source_nick;
use super::{IrcClient, Transport};

impl<S: Transport> IrcClient<S> {
    /// `REGISTER <name> * :<pw>`; returns the `REGISTER` or `FAIL REGISTER` reply.
    pub fn register(&mut self, name: &str, pw: &str) -> Message {
        self.send_msg(&Message::new("REGISTER", [name, "*", pw]));
        self.expect("REGISTER reply", |m| {
            m.is("REGISTER") || (m.is("FAIL") && m.param(0) == Some("REGISTER"))
        })
    }

    /// [`IrcClient::register`] that must succeed.
    pub fn register_ok(&mut self, name: &str, pw: &str) {
        let r = self.register(name, pw);
        assert!(
            r.is("REGISTER") && r.param(0) == Some("SUCCESS"),
            "[{name}] REGISTER failed: {r}"
        );
    }

    /// SASL PLAIN only: `AUTHENTICATE PLAIN`, `+`, payload. True on `900`+`903`, false on `904`.
    pub fn authenticate(&mut self, name: &str, pw: &str) -> bool {
        self.send("AUTHENTICATE PLAIN");
        let m = self.expect("AUTHENTICATE +", |m| {
            m.is("AUTHENTICATE") || m.is("904") || m.is("908")
        });
        assert_eq!(
            m.params,
            vec!["+".to_string()],
            "[{}] bad SASL challenge: {m}",
            self.label()
        );
        for chunk in sasl::chunks(&sasl::encode_plain(name, pw)) {
            self.send(&format!("AUTHENTICATE {chunk}"));
        }
        let m = self.recv();
        if m.is("904") {
            return false;
        }
        assert!(
            m.is("900"),
            "[{}] expected 900 or 904, got {m}",
            self.label()
        );
        assert_eq!(
            m.param(2),
            Some(name),
            "[{}] 900 account: {m}",
            self.label()
        );
        let m = self.recv();
        assert!(
            m.is("903"),
            "[{}] expected 903 after 900, got {m}",
            self.label()
        );
        true
    }

    /// `NICK`/`USER`, then waits for `001` and the end of the welcome burst (`422`/`376`).
    /// Returns the `001`.
    pub fn finish_registration(&mut self, nick: &str) -> Message {
        self.send(&format!("NICK {nick}"));
        self.send(&format!("USER {nick} 0 * :{nick}"));
        let welcome = self.expect_command("001");
        self.expect("end of MOTD (422/376)", |m| m.is("422") || m.is("376"));
        self.nick = welcome.param(0).map(str::to_string);
        welcome
    }

    /// SASL PLAIN login, then NICK/USER and the welcome burst. False when SASL fails.
    pub fn login(&mut self, name: &str, pw: &str) -> bool {
        if !self.authenticate(name, pw) {
            return false;
        }
        self.welcome_as(name);
        true
    }

    /// After a successful SASL exchange: NICK/USER, and `001` must address `name`.
    fn welcome_as(&mut self, name: &str) {
        let welcome = self.finish_registration(name);
        assert_eq!(
            welcome.param(0),
            Some(name),
            "[{}] 001 must address the account name: {welcome}",
            self.label()
        );
    }

    /// With `caps` negotiated first (`CAP LS 302`, `CAP REQ`), optionally registers `name`,
    /// then logs in with SASL PLAIN, ends negotiation and completes the welcome burst.
    pub fn login_with_caps(&mut self, name: &str, pw: &str, caps: &str, register: bool) {
        self.cap_ls_302();
        self.cap_req(caps);
        if register {
            self.register_ok(name, pw);
        }
        assert!(self.authenticate(name, pw), "[{name}] SASL login failed");
        self.send("CAP END");
        self.welcome_as(name);
    }

    /// `CAP LS 302`; returns the offered capabilities (with their values).
    pub fn cap_ls_302(&mut self) -> Vec<String> {
        self.send("CAP LS 302");
        let m = self.expect("CAP LS", |m| m.is("CAP") && m.param(1) == Some("LS"));
        m.params
            .last()
            .map(|l| {
                l.split(' ')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `CAP REQ :<caps>`; the server must ACK exactly that list.
    pub fn cap_req(&mut self, caps: &str) {
        self.send(&format!("CAP REQ :{caps}"));
        let m = self.expect("CAP ACK/NAK", |m| {
            m.is("CAP") && matches!(m.param(1), Some("ACK" | "NAK"))
        });
        assert!(
            m.param(1) == Some("ACK") && m.param(2) == Some(caps),
            "[{}] CAP REQ :{caps} not acknowledged: {m}",
            self.label()
        );
    }

    /// `JOIN <room>`: expects our own JOIN echo, the names (353..., 366). Returns the names.
    pub fn join(&mut self, room: &str) -> Vec<String> {
        self.send(&format!("JOIN {room}"));
        let nick = self.nick.clone().expect("join before login");
        let j = self.expect("own JOIN", |m| m.is("JOIN"));
        assert!(
            source_nick(&j) == Some(nick.as_str()) && j.param(0) == Some(room),
            "[{}] bad JOIN echo: {j}",
            self.label()
        );
        self.names_reply(room)
    }

    /// Reads `353 <nick> =|@ <room> :names` lines until `366`; returns the names without
    /// their status prefixes (`@`, `+`), sorted. [`IrcClient::names_with_prefixes`] keeps them.
    pub fn names_reply(&mut self, room: &str) -> Vec<String> {
        self.names_with_prefixes(room)
            .into_iter()
            .map(|n| n.trim_start_matches(['@', '+']).to_string())
            .collect()
    }

    /// [`IrcClient::names_reply`] with each nick's status prefixes kept, sorted by nick.
    pub fn names_with_prefixes(&mut self, room: &str) -> Vec<String> {
        let nick = self.nick.clone().expect("names before login");
        let mut names = Vec::new();
        loop {
            let m = self.recv();
            if m.is("366") {
                assert_eq!(
                    m.params,
                    [nick.as_str(), room, "End of /NAMES list"],
                    "[{}] bad 366: {m}",
                    self.label()
                );
                break;
            }
            assert!(m.is("353"), "[{}] expected 353/366, got {m}", self.label());
            assert!(
                m.params.len() == 4
                    && m.params[0] == nick
                    && (m.params[1] == "=" || m.params[1] == "@")
                    && m.params[2] == room,
                "[{}] bad 353: {m}",
                self.label()
            );
            names.extend(
                m.params[3]
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        names.sort_by(|a, b| {
            a.trim_start_matches(['@', '+'])
                .cmp(b.trim_start_matches(['@', '+']))
        });
        names
    }
}
