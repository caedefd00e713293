//! Handler flows driven through [`dispatch`], the way the event loop drives them: lines in,
//! worker results in, effects out.

use crate::guards::logins::Guards;
use crate::irc::capabilities;
use crate::irc::context::{HandlerState, JobSink, ServerInfo};
use crate::irc::dispatch::{completed, disconnect, handle_frame_error, handle_line};
use crate::irc::outbox::Effect;
use crate::irc::session::Session;
use crate::state::chat::ClientId;
use crate::state::history::History;
use crate::storage::accounts::{LoginError, RegisterError};
use crate::storage::workers::{Completion, Job};
use huddle_protocol::{sasl, FrameError};
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};

pub(super) const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Records submitted jobs; refuses them when `full`.
#[derive(Default)]
struct Jobs {
    taken: RefCell<Vec<Job>>,
    full: bool,
}

impl JobSink for Jobs {
    fn submit(&self, job: Job) -> Result<(), Job> {
        if self.full {
            return Err(job);
        }
        self.taken.borrow_mut().push(job);
        Ok(())
    }
}

pub(super) struct World {
    pub(super) state: HandlerState,
    jobs: Jobs,
}

impl World {
    pub(super) fn new() -> World {
        let info = ServerInfo::unconfigured("srv");
        World {
            state: HandlerState::new(info, History::in_memory(10), Guards::permissive()),
            jobs: Jobs::default(),
        }
    }

    pub(super) fn line(&mut self, s: &mut Session, line: &str) {
        handle_line(s, line, &mut self.state.ctx(&self.jobs));
    }

    pub(super) fn complete(&mut self, s: &mut Session, done: Completion) {
        completed(s, done, &mut self.state.ctx(&self.jobs));
    }

    /// Lines sent to `id` since the last call.
    pub(super) fn take(&mut self, id: ClientId) -> Vec<String> {
        let lines = self.state.out().lines_for(id);
        self.state.discard_effects();
        lines
    }

    /// Allows guests from now on.
    pub(super) fn allow_guests(&mut self) {
        self.state.info_mut().allow_guests = true;
    }

    /// The jobs handed to workers so far, taken.
    pub(super) fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut *self.jobs.taken.borrow_mut())
    }

    fn closes(&self) -> Vec<ClientId> {
        (0..8).filter(|&id| self.out_has_close(id)).collect()
    }

    fn out_has_close(&self, id: ClientId) -> bool {
        self.state
            .out()
            .effects()
            .iter()
            .any(|e| matches!(e, Effect::Close { id: i, .. } if *i == id))
    }

    /// Logs `s` in as `name` through SASL PLAIN and NICK/USER.
    pub(super) fn log_in(&mut self, s: &mut Session, name: &str) {
        self.line(s, "AUTHENTICATE PLAIN");
        let payload = sasl::encode_plain(name, "password123");
        self.line(s, &format!("AUTHENTICATE {payload}"));
        let job = self.jobs.taken.borrow_mut().pop().expect("login job");
        let Job::Login {
            origin, account, ..
        } = job
        else {
            panic!("expected a login job");
        };
        self.complete(
            s,
            Completion::LoggedIn {
                origin,
                account: account.clone(),
                result: Ok(account),
            },
        );
        self.line(s, &format!("NICK {name}"));
        self.line(s, "USER u 0 * :U");
    }
}

#[test]
fn one_privmsg_to_several_targets_reaches_each_with_the_same_text() {
    let mut w = World::new();
    let (mut a, mut b, mut c) = (
        Session::new(1, 1, LOCAL),
        Session::new(2, 1, LOCAL),
        Session::new(3, 1, LOCAL),
    );
    w.log_in(&mut a, "alice");
    w.log_in(&mut b, "bob");
    w.log_in(&mut c, "carol");
    w.line(&mut a, "JOIN #r");
    w.line(&mut b, "JOIN #r");
    for id in 1..=3 {
        w.take(id);
    }
    w.line(&mut a, "PRIVMSG #R,carol,#nope,bob :hi  there");
    let to_bob = w.state.out().lines_for(2);
    let to_carol = w.state.out().lines_for(3);
    let to_alice = w.state.out().lines_for(1);
    assert_eq!(
        to_bob,
        vec![
            ":alice!~u@huddle/user/alice PRIVMSG #r :hi  there",
            ":alice!~u@huddle/user/alice PRIVMSG bob :hi  there"
        ]
    );
    assert_eq!(
        to_carol,
        vec![":alice!~u@huddle/user/alice PRIVMSG carol :hi  there"]
    );
    assert_eq!(to_alice, vec![":srv 403 alice #nope :No such room"]);
    w.take(1);
    // Too few parameters: the right error, nothing relayed.
    w.line(&mut a, "PRIVMSG #r");
    w.line(&mut a, "NOTICE #r");
    w.line(&mut a, "PRIVMSG :");
    assert_eq!(
        w.take(1),
        vec![
            ":srv 412 alice :No text to send",
            ":srv 411 alice :No recipient given (PRIVMSG)"
        ]
    );
    assert!(w.take(2).is_empty());
}

#[test]
fn commands_before_login_get_451() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "PRIVMSG #lobby :hi");
    assert_eq!(
        w.take(1),
        vec![":srv 451 * :You have not registered (log in with SASL PLAIN first)"]
    );
}

#[test]
fn nick_user_without_login_is_refused_and_closed() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "NICK bob");
    w.line(&mut s, "USER b 0 * :B");
    assert!(w.out_has_close(1));
    let lines = w.take(1);
    assert!(lines[0].starts_with(":srv FAIL * ACCOUNT_REQUIRED"));
    assert!(!s.is_registered());
}

#[test]
fn cap_negotiation_holds_registration_until_end() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "CAP LS 302");
    assert_eq!(
        w.take(1),
        vec![format!(":srv CAP * LS :{}", capabilities::ls_list(true))]
    );
    w.line(&mut s, "NICK bob");
    w.line(&mut s, "USER b 0 * :B");
    assert!(w.take(1).is_empty());
    assert!(w.closes().is_empty());
    w.line(&mut s, "CAP REQ :sasl unknown-cap");
    assert_eq!(w.take(1), vec![":srv CAP * NAK :sasl unknown-cap"]);
    w.line(&mut s, "CAP REQ :sasl");
    assert_eq!(w.take(1), vec![":srv CAP * ACK sasl"]);
    w.line(&mut s, "CAP END");
    assert!(w.out_has_close(1), "no login: refused at CAP END");
}

#[test]
fn sasl_login_then_registration_welcomes() {
    let mut w = World::new();
    let mut s = Session::new(3, 7, LOCAL);
    w.line(&mut s, "AUTHENTICATE PLAIN");
    assert_eq!(w.take(3), vec![":srv AUTHENTICATE +"]);
    w.line(
        &mut s,
        &format!("AUTHENTICATE {}", sasl::encode_plain("Alice", "pw")),
    );
    let job = w.jobs.taken.borrow_mut().pop().unwrap();
    assert!(matches!(&job, Job::Login { origin, account, password }
        if origin.slot == 3 && origin.generation == 7 && account == "Alice" && password == "pw"));
    let origin = s.origin();
    w.complete(
        &mut s,
        Completion::LoggedIn {
            origin,
            account: "Alice".into(),
            result: Ok("alice".into()),
        },
    );
    let lines = w.take(3);
    assert_eq!(
        lines[0],
        ":srv 900 * *!alice@huddle/user/alice alice :You are now logged in as alice"
    );
    assert_eq!(lines[1], ":srv 903 * :SASL authentication successful");
    w.line(&mut s, "NICK whatever");
    w.line(&mut s, "USER u 0 * :U");
    let lines = w.take(3);
    let codes: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        codes,
        ["001", "002", "003", "004", "005", "005", "251", "254", "255", "265", "266", "422"]
    );
    assert!(lines[0].starts_with(":srv 001 alice :Welcome"));
    assert!(s.is_registered());
    assert_eq!(w.state.chat().find_nick("ALICE"), Some(3));
}

#[test]
fn failed_login_and_unknown_mechanism() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "AUTHENTICATE EXTERNAL");
    assert_eq!(
        w.take(1),
        vec![
            ":srv 908 * PLAIN :are available SASL mechanisms",
            ":srv 904 * :SASL authentication failed"
        ]
    );
    w.line(&mut s, "AUTHENTICATE PLAIN");
    w.line(&mut s, "AUTHENTICATE not-base64!");
    assert_eq!(
        w.take(1),
        vec![
            ":srv AUTHENTICATE +",
            ":srv 904 * :SASL authentication failed"
        ]
    );
    w.line(&mut s, "AUTHENTICATE PLAIN");
    w.line(
        &mut s,
        &format!("AUTHENTICATE {}", sasl::encode_plain("bob", "bad")),
    );
    let origin = s.origin();
    w.complete(
        &mut s,
        Completion::LoggedIn {
            origin,
            account: "bob".into(),
            result: Err(LoginError::Invalid),
        },
    );
    assert_eq!(
        w.take(1).last().unwrap(),
        ":srv 904 * :SASL authentication failed"
    );
    assert_eq!(s.account(), None);
}

#[test]
fn sasl_payload_of_exactly_400_bytes_waits_for_plus() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "AUTHENTICATE PLAIN");
    // A password that makes the base64 exactly 400 bytes: 300 raw bytes.
    let password = "p".repeat(300 - 2 - 5);
    let b64 = sasl::encode_plain("alice", &password);
    assert_eq!(b64.len(), 400);
    for chunk in sasl::chunks(&b64) {
        assert!(w.jobs.taken.borrow().is_empty());
        w.line(&mut s, &format!("AUTHENTICATE {chunk}"));
    }
    assert_eq!(w.jobs.taken.borrow().len(), 1);
}

#[test]
fn register_validates_before_queueing_and_reports_busy() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "REGISTER bad!name * password123");
    assert_eq!(
        w.take(1)[0].split(' ').take(4).collect::<Vec<_>>(),
        [":srv", "FAIL", "REGISTER", "BAD_ACCOUNT_NAME"]
    );
    w.line(&mut s, "REGISTER alice * short");
    assert!(w.take(1)[0].contains("WEAK_PASSWORD"));
    w.line(&mut s, "REGISTER alice");
    assert!(w.take(1)[0].contains("NEED_MORE_PARAMS"));
    assert!(w.jobs.taken.borrow().is_empty());
    w.jobs.full = true;
    w.line(&mut s, "REGISTER alice * password123");
    assert!(w.take(1)[0].starts_with(":srv FAIL REGISTER TEMPORARILY_UNAVAILABLE alice"));
    w.jobs.full = false;
    w.line(&mut s, "REGISTER alice * password123");
    let origin = s.origin();
    w.complete(
        &mut s,
        Completion::Registered {
            origin,
            account: "alice".into(),
            result: Ok("alice".into()),
        },
    );
    assert_eq!(
        w.take(1),
        vec![":srv REGISTER SUCCESS alice :Account created"]
    );
    w.line(&mut s, "REGISTER alice * password123");
    w.complete(
        &mut s,
        Completion::Registered {
            origin,
            account: "alice".into(),
            result: Err(RegisterError::Exists),
        },
    );
    assert_eq!(
        w.take(1),
        vec![":srv FAIL REGISTER ACCOUNT_EXISTS alice :Account name already taken"]
    );
}

#[test]
fn a_guest_nick_is_checked_from_memory() {
    let mut w = World::new();
    w.state.info_mut().allow_guests = true;
    w.state
        .set_account_names(["alice", "Bob"].into_iter().collect());
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "NICK aIice");
    w.line(&mut s, "USER g 0 * :G");
    assert_eq!(
        w.take(1),
        vec![":srv 433 * aIice :Nickname looks like a registered account; choose another"]
    );
    w.line(&mut s, "NICK BOB");
    assert_eq!(
        w.take(1),
        vec![":srv 433 * BOB :Nickname is reserved by a registered account; log in to use it"]
    );
    w.line(&mut s, "NICK no.dots");
    assert_eq!(
        w.take(1),
        vec![":srv 432 * no.dots :Nicks are 1-32 characters of A-Z a-z 0-9 _ -"]
    );
    w.line(&mut s, "NICK guest1");
    assert!(s.is_guest(), "no worker job needed");
    assert!(w.jobs.taken.borrow().is_empty());
    w.take(1);
    // A guest cannot log in on the same connection.
    w.line(&mut s, "AUTHENTICATE PLAIN");
    assert_eq!(
        w.take(1),
        vec![":srv 907 guest1 :You are connected as a guest; reconnect to log in"]
    );
    assert_eq!(s.account(), None);
}

#[test]
fn second_login_takes_over() {
    let mut w = World::new();
    let mut a = Session::new(1, 1, LOCAL);
    let mut b = Session::new(2, 2, LOCAL);
    let mut old = Session::new(3, 3, LOCAL);
    w.log_in(&mut a, "ann");
    w.log_in(&mut old, "bob");
    w.line(&mut a, "JOIN #x");
    w.line(&mut old, "JOIN #x");
    w.take(1);
    w.log_in(&mut b, "bob");
    assert!(w.out_has_close(3));
    assert!(w
        .take(1)
        .contains(&":bob!~u@huddle/user/bob QUIT :Logged in from another connection".to_string()));
    assert_eq!(w.state.chat().find_nick("bob"), Some(2));
}

#[test]
fn quit_closes_with_reason() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    w.line(&mut s, "QUIT :bye now");
    assert!(matches!(&w.state.out().effects()[0],
        Effect::Close { id: 1, error, quit } if error == "Closing link (Quit: bye now)" && quit == "Quit: bye now"));
}

#[test]
fn frame_errors_and_bad_lines_are_answered() {
    let mut w = World::new();
    let mut s = Session::new(1, 1, LOCAL);
    let mut ctx = w.state.ctx(&w.jobs);
    handle_frame_error(&mut s, FrameError::TooLong, &mut ctx);
    handle_frame_error(&mut s, FrameError::InvalidUtf8, &mut ctx);
    handle_line(&mut s, "12AB x", &mut ctx);
    handle_line(&mut s, "   ", &mut ctx);
    handle_line(&mut s, "PING :tok en", &mut ctx);
    assert_eq!(
        w.take(1),
        vec![
            ":srv 417 * :Input line was too long",
            ":srv FAIL * INVALID_UTF8 :Message rejected: it is not valid UTF-8",
            ":srv 421 * 12AB :Unknown command",
            ":srv PONG srv :tok en",
        ]
    );
}

#[test]
fn peer_endpoints_live_and_die_with_the_session() {
    let mut w = World::new();
    let mut a = Session::new(1, 1, LOCAL);
    let mut b = Session::new(2, 2, "::1".parse().unwrap());
    let fp = "ab".repeat(32);
    w.line(&mut a, &format!("PEERADDR 4000 {fp}"));
    assert!(w.take(1)[0].starts_with(":srv 451 "), "not before login");
    w.log_in(&mut a, "ann");
    w.log_in(&mut b, "bob");
    w.take(1);
    w.line(&mut a, "PEER bob");
    assert_eq!(
        w.take(1),
        vec![
            ":srv FAIL PEER NO_ENDPOINT bob :That user has not announced a direct-message endpoint"
        ]
    );
    w.line(&mut b, &format!("PEERADDR 4000 {fp}"));
    let announced = w.take(2);
    assert_eq!(
        announced[0],
        format!(":srv PEER bob [::1] 4000 {fp} [::1]:4000")
    );
    assert!(announced[1].starts_with(":srv PEERMAP "), "{announced:?}");
    assert_eq!(announced.len(), 2);
    w.line(&mut a, "PEER BOB");
    assert_eq!(
        w.take(1),
        vec![format!(":srv PEER bob [::1] 4000 {fp} [::1]:4000")]
    );
    w.line(&mut a, "PEERADDR 0 abc");
    assert!(w.take(1)[0].starts_with(":srv FAIL PEERADDR INVALID_PORT 0 "));
    w.line(&mut a, "PEERADDR 4000 ABC");
    assert!(w.take(1)[0].starts_with(":srv FAIL PEERADDR INVALID_FINGERPRINT ABC "));
    w.line(&mut a, "PEERADDR 4000");
    assert!(w.take(1)[0].starts_with(":srv 461 ann PEERADDR "));
    let mut ctx = w.state.ctx(&w.jobs);
    disconnect(&mut b, "Quit", &mut ctx);
    w.take(1);
    w.line(&mut a, "PEER bob");
    assert_eq!(
        w.take(1),
        vec![":srv FAIL PEER NO_SUCH_NICK bob :No such user online"]
    );
}

#[test]
fn a_room_made_again_hides_the_old_rooms_history_even_from_the_same_millisecond() {
    let mut w = World::new();
    w.allow_guests();
    let (mut g, mut h) = (Session::new(1, 1, LOCAL), Session::new(2, 1, LOCAL));
    for (s, nick) in [(&mut g, "gina"), (&mut h, "hank")] {
        w.line(s, &format!("NICK {nick}"));
        w.line(s, "USER u 0 * :U");
    }
    w.line(&mut g, "JOIN #g");
    w.line(&mut g, "PRIVMSG #g :for the first crowd only");
    w.line(&mut g, "PART #g");
    w.line(&mut h, "JOIN #g");
    // As if made in the same millisecond as the old room's last message: the creation
    // time alone would let that message through.
    if let Some(room) = w.state.ctx(&w.jobs).chat.room_mut("#g") {
        room.created = std::time::UNIX_EPOCH;
    }
    w.take(2);
    w.line(&mut h, "CHATHISTORY LATEST #g * 10");
    let got = w.take(2);
    assert!(!got.iter().any(|l| l.contains("PRIVMSG")), "{got:?}");
    // What is said in the new room is kept.
    w.line(&mut h, "PRIVMSG #g :for the second crowd");
    w.line(&mut h, "CHATHISTORY LATEST #g * 10");
    let got = w.take(2);
    assert!(
        got.iter().any(|l| l.contains("for the second crowd")),
        "{got:?}"
    );
}
