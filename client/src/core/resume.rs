//! Surviving a lost server connection: when the link to the server drops during a session
//! (server restart, network), the client reconnects with back-off ([`super::backoff`]), logs in
//! again with the credentials it holds in memory for this run only, announces its direct
//! message endpoint again (the same one: links and transfers stay through the loss, see
//! `peer_link::server_loss`), rejoins every room it was in and replays only what it missed.
//!
//! The steps after the new login:
//!
//! 1. `JOIN` each room, then `PING :huddle-rejoined`. The server answers in order, so every
//!    history batch for those rooms before the `PONG` is the replay that comes with a JOIN:
//!    dropped, it repeats what was shown before the drop.
//! 2. `CHATHISTORY AFTER <room> msgid=<last seen> 100` for each room rejoined (`LATEST <room> *`
//!    for a room where nothing was seen: everything in it is new), then `PING :huddle-replayed`.
//!    Lines of those batches are shown as history and counted, except our own and those already
//!    shown live since the reconnection.
//! 3. At that `PONG`, a room whose `AFTER` batch came back full may have missed more: the next
//!    page is asked `AFTER` the last message of that batch, with another `PING`, at most
//!    [`MAX_PAGES`] pages per room. So every missed message is shown once, oldest first.
//! 4. At the last `PONG`: `-- reconnected; rejoined #a, #b; 3 missed messages`.
//!
//! `logout` (or `exit`) during the back-off stops it; an `ERROR` saying another connection
//! logged in to the account, or a refused login, ends the reconnecting for good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use huddle_protocol::Message;

use super::backoff;
use super::effect::{info, Effect};
use super::state::{State, LOBBY};

/// Rooms whose last seen message is remembered.
const MAX_ROOMS_TRACKED: usize = 256;
/// Message ids shown live during the replay, remembered so the replay does not repeat them.
const MAX_LIVE_IDS: usize = 1024;
/// History batches of one resume step remembered.
const MAX_BATCHES: usize = 64;
/// Missed messages asked for per request: the server's `CHATHISTORY` maximum.
const MISSED_LIMIT: usize = 100;
/// Requests for missed messages per room and resume: ten pages of [`MISSED_LIMIT`] reach well
/// past what the server keeps of a room (`--history`, 200 by default).
const MAX_PAGES: u32 = 10;
const REJOINED: &str = "huddle-rejoined";
const REPLAYED: &str = "huddle-replayed";

/// What to restore, and how many attempts were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Plan {
    attempt: u32,
    rooms: Vec<String>,
    current: Option<String>,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    /// Waiting for the next attempt.
    Waiting { plan: Plan, at: Instant },
    /// Connecting and logging in again.
    Connecting { plan: Plan },
    /// Logged in; rejoining, join replays dropped until the first `PONG`.
    Rejoining { plan: Plan },
    /// Missed messages asked for, until a `PONG` after which no page is left to ask.
    Replaying {
        rooms: Vec<String>,
        missed: usize,
        /// Pages asked so far per room (lowercase) asked `AFTER` a message.
        pages: HashMap<String, u32>,
    },
}

/// A history batch of the current resume step.
#[derive(Debug)]
struct StepBatch {
    id: String,
    /// The room as the batch names it.
    room: String,
    /// Lines in the batch, and the id of the last: where the next page starts.
    lines: usize,
    last: Option<String>,
}

/// How a room message is to be treated while resuming.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Shown as usual.
    Show,
    /// Already shown before the drop (a join replay), or shown live since: not again.
    Drop,
    /// Missed while away: shown as history, and counted.
    Missed,
}

/// The session's memory across connections.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The credentials of this run's session, in memory only.
    credentials: Option<(String, String)>,
    /// The credentials of the login in progress.
    pending: Option<(String, String)>,
    /// The id of the last message seen per room (lowercase name).
    last_seen: HashMap<String, String>,
    /// `last_seen` when the connection was lost: where the missed messages start.
    anchors: HashMap<String, String>,
    /// Rooms (lowercase) with live messages since the reconnection: a missed message there
    /// is older than what was seen last.
    live_rooms: HashSet<String>,
    phase: Phase,
    /// The history batches of the current step: join replays or missed messages.
    batches: Vec<StepBatch>,
    /// Message ids shown live since the reconnection.
    live: HashSet<String>,
    live_order: VecDeque<String>,
    /// The server said not to come back: another connection logged in to the account.
    refused: bool,
}

impl Resume {
    /// A login with these credentials is under way.
    pub(super) fn logging_in(&mut self, account: &str, password: &str) {
        self.pending = Some((account.to_string(), password.to_string()));
    }

    /// The login succeeded: its credentials are kept for reconnecting.
    pub(super) fn logged_in(&mut self) {
        if let Some(c) = self.pending.take() {
            self.credentials = Some(c);
        }
        self.refused = false;
    }

    /// The server closes the connection with this `ERROR` text.
    pub(super) fn server_error(&mut self, text: &str) {
        if text.to_ascii_lowercase().contains("another connection") {
            self.refused = true;
        }
    }

    /// When the next attempt is due, while waiting for one.
    pub(crate) fn due(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { at, .. } => Some(*at),
            _ => None,
        }
    }

    pub(super) fn waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
    }

    /// Connecting or logging in again.
    pub(crate) fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    /// Logged in again and restoring the rooms: the login does not wait for #lobby.
    pub(super) fn after_reconnect(&self) -> bool {
        matches!(
            self.phase,
            Phase::Rejoining { .. } | Phase::Replaying { .. }
        )
    }

    /// Remembers the id of a message seen in `room`.
    fn seen(&mut self, room: &str, msgid: &str) {
        let key = room.to_ascii_lowercase();
        if self.last_seen.len() >= MAX_ROOMS_TRACKED && !self.last_seen.contains_key(&key) {
            return;
        }
        self.last_seen.insert(key, msgid.to_string());
    }

    fn live_id(&mut self, msgid: &str) {
        if self.live_order.len() >= MAX_LIVE_IDS {
            if let Some(old) = self.live_order.pop_front() {
                self.live.remove(&old);
            }
        }
        if self.live.insert(msgid.to_string()) {
            self.live_order.push_back(msgid.to_string());
        }
    }

    /// A `chathistory` batch `id` for `room` opened.
    pub(super) fn batch_opened(&mut self, id: &str, room: &str) {
        let ours = match &self.phase {
            Phase::Rejoining { plan } => plan.rooms.iter().any(|r| r.eq_ignore_ascii_case(room)),
            Phase::Replaying { .. } => true,
            _ => false,
        };
        if ours && self.batches.len() < MAX_BATCHES {
            self.batches.push(StepBatch {
                id: id.to_string(),
                room: room.to_string(),
                lines: 0,
                last: None,
            });
        }
    }

    /// What to do with a message in `room` (`mine`: sent by us), and remember it as seen.
    pub(super) fn verdict(&mut self, msg: &Message, room: &str, mine: bool) -> Verdict {
        let msgid = msg.tag("msgid");
        let step = msg
            .tag("batch")
            .and_then(|b| self.batches.iter().position(|x| x.id == b));
        let in_step = step.is_some();
        let verdict = match &mut self.phase {
            Phase::Rejoining { .. } if in_step => Verdict::Drop,
            Phase::Replaying { missed, .. } if in_step => {
                if let Some(batch) = step.and_then(|i| self.batches.get_mut(i)) {
                    batch.lines += 1;
                    batch.last = msgid.map(str::to_string);
                }
                if mine || msgid.is_some_and(|id| self.live.contains(id)) {
                    Verdict::Drop
                } else {
                    *missed += 1;
                    Verdict::Missed
                }
            }
            Phase::Rejoining { .. } | Phase::Replaying { .. } => {
                if let Some(id) = msgid {
                    self.live_id(id);
                }
                if self.live_rooms.len() < MAX_ROOMS_TRACKED {
                    self.live_rooms.insert(room.to_ascii_lowercase());
                }
                Verdict::Show
            }
            _ => Verdict::Show,
        };
        let newest = match verdict {
            Verdict::Show => true,
            Verdict::Missed => !self.live_rooms.contains(&room.to_ascii_lowercase()),
            Verdict::Drop => false,
        };
        if let (true, Some(id)) = (newest, msgid) {
            self.seen(room, id);
        }
        verdict
    }
}

impl State {
    /// The connection is gone (the state is reset already): a session that was logged in,
    /// or an attempt to resume one, is resumed after a back-off.
    pub(super) fn resume_after_loss(
        &mut self,
        was_logged_in: bool,
        rooms: Vec<String>,
        current: Option<String>,
    ) -> Vec<Effect> {
        let plan = match std::mem::take(&mut self.resume.phase) {
            Phase::Connecting { mut plan } | Phase::Rejoining { mut plan } => {
                plan.attempt = plan.attempt.saturating_add(1);
                plan
            }
            Phase::Replaying { .. } | Phase::Idle | Phase::Waiting { .. } if was_logged_in => {
                Plan {
                    attempt: 0,
                    rooms,
                    current,
                }
            }
            phase => {
                // A connection that never logged in changes nothing.
                self.resume.phase = phase;
                return Vec::new();
            }
        };
        if self.resume.refused || self.resume.credentials.is_none() {
            self.resume = Resume::default();
            return Vec::new();
        }
        self.schedule(plan, Instant::now())
    }

    fn schedule(&mut self, plan: Plan, now: Instant) -> Vec<Effect> {
        let wait = backoff::delay(plan.attempt, backoff::jitter());
        self.resume.batches.clear();
        self.resume.phase = Phase::Waiting {
            plan,
            at: now + wait,
        };
        let secs = wait.as_secs_f64().round().max(1.0);
        vec![info(format!("reconnecting in {secs} s (logout stops it)"))]
    }

    /// The back-off is over: connect, and log in again once connected
    /// ([`State::resume_login`]). Nothing waits for the connection meanwhile: commands run,
    /// those that need the server saying it is reconnecting.
    pub(super) fn on_reconnect(&mut self, now: Instant) -> Vec<Effect> {
        let due = self.resume.due().is_some_and(|at| at <= now);
        if !due || self.resume.credentials.is_none() {
            return Vec::new();
        }
        let Phase::Waiting { plan, .. } = std::mem::take(&mut self.resume.phase) else {
            return Vec::new();
        };
        self.resume.phase = Phase::Connecting { plan };
        vec![Effect::Connect]
    }

    /// Connected again while resuming, before the login: log in with the session's
    /// credentials (nothing when the login is already under way).
    pub(super) fn resume_login(&mut self) -> Vec<Effect> {
        if !self.resume.connecting() || self.op.is_some() {
            return Vec::new();
        }
        let Some((account, password)) = self.resume.credentials.clone() else {
            return Vec::new();
        };
        self.start_login(account, &password)
    }

    /// A connection attempt failed (the user was told why): try again later.
    pub(super) fn resume_connect_failed(&mut self) -> Vec<Effect> {
        match std::mem::take(&mut self.resume.phase) {
            Phase::Connecting { mut plan } => {
                plan.attempt = plan.attempt.saturating_add(1);
                self.schedule(plan, Instant::now())
            }
            other => {
                self.resume.phase = other;
                Vec::new()
            }
        }
    }

    /// The login of a resume was refused or cancelled: stop, the user logs in by hand.
    pub(super) fn abandon_resume(&mut self) -> Vec<Effect> {
        if !self.resume.connecting() {
            return Vec::new();
        }
        self.resume = Resume::default();
        vec![info("stopped reconnecting: log in again")]
    }

    /// Stops a resume waiting for its next attempt or for its connection (`logout`, a
    /// login by hand); true if there was one.
    pub(super) fn stop_resuming(&mut self) -> bool {
        let waiting = self.resume.waiting() || (self.resume.connecting() && self.op.is_none());
        if waiting {
            self.resume = Resume::default();
        }
        waiting
    }

    /// Welcomed again while resuming: the rooms to join (instead of #lobby), followed by
    /// the `PING` that marks the end of their join replays. `None` when not resuming.
    pub(super) fn rejoin(&mut self) -> Option<Vec<Effect>> {
        let Phase::Connecting { plan } = std::mem::take(&mut self.resume.phase) else {
            return None;
        };
        let rooms = if plan.rooms.is_empty() {
            vec![LOBBY.to_string()]
        } else {
            plan.rooms.clone()
        };
        let mut fx: Vec<Effect> = rooms
            .iter()
            .map(|r| Effect::Send(Message::new("JOIN", [r.as_str()])))
            .collect();
        fx.push(Effect::Send(Message::new("PING", [REJOINED])));
        self.resume.batches.clear();
        self.resume.anchors = self.resume.last_seen.clone();
        self.resume.live_rooms.clear();
        self.resume.phase = Phase::Rejoining {
            plan: Plan { rooms, ..plan },
        };
        Some(fx)
    }

    /// `PONG`: the end of a resume step.
    pub(super) fn on_pong(&mut self, msg: &Message) -> Vec<Effect> {
        let token = msg.params.last().map(String::as_str);
        match (token, std::mem::take(&mut self.resume.phase)) {
            (Some(REJOINED), Phase::Rejoining { plan }) => self.ask_missed(plan),
            (
                Some(REPLAYED),
                Phase::Replaying {
                    rooms,
                    missed,
                    mut pages,
                },
            ) => {
                let fx = self.ask_next_pages(&mut pages);
                if !fx.is_empty() {
                    self.resume.phase = Phase::Replaying {
                        rooms,
                        missed,
                        pages,
                    };
                    return fx;
                }
                self.resume.batches.clear();
                self.resume.live.clear();
                self.resume.live_order.clear();
                self.resume.live_rooms.clear();
                self.resume.anchors.clear();
                vec![info(summary(&rooms, missed))]
            }
            (_, phase) => {
                self.resume.phase = phase;
                Vec::new()
            }
        }
    }

    /// Every room is rejoined (or refused): ask for what was missed in each.
    fn ask_missed(&mut self, plan: Plan) -> Vec<Effect> {
        if let Some(current) = plan
            .current
            .as_ref()
            .and_then(|c| self.rooms.iter().find(|r| r.eq_ignore_ascii_case(c)))
        {
            self.current = Some(current.clone());
        }
        let rooms = self.rooms.clone();
        let mut pages = HashMap::new();
        let mut fx = Vec::new();
        for room in &rooms {
            let key = room.to_ascii_lowercase();
            fx.push(match self.resume.anchors.get(&key) {
                Some(id) => {
                    pages.insert(key, 1);
                    missed_after(room, id)
                }
                None => history_request("LATEST", room, "*"),
            });
        }
        fx.push(Effect::Send(Message::new("PING", [REPLAYED])));
        self.resume.batches.clear();
        self.resume.phase = Phase::Replaying {
            rooms,
            missed: 0,
            pages,
        };
        fx
    }

    /// The step's `AFTER` batches that came back full: ask the next page of each (at most
    /// [`MAX_PAGES`] per room), then `PING`. Nothing when no room may have missed more.
    fn ask_next_pages(&mut self, pages: &mut HashMap<String, u32>) -> Vec<Effect> {
        let mut fx = Vec::new();
        for batch in &self.resume.batches {
            let (true, Some(last)) = (batch.lines >= MISSED_LIMIT, &batch.last) else {
                continue;
            };
            let Some(asked) = pages.get_mut(&batch.room.to_ascii_lowercase()) else {
                continue;
            };
            if *asked < MAX_PAGES {
                *asked += 1;
                fx.push(missed_after(&batch.room, last));
            }
        }
        if !fx.is_empty() {
            fx.push(Effect::Send(Message::new("PING", [REPLAYED])));
        }
        self.resume.batches.clear();
        fx
    }
}

/// `CHATHISTORY AFTER <room> msgid=<id> 100`: the missed messages after message `id`.
fn missed_after(room: &str, id: &str) -> Effect {
    history_request("AFTER", room, &format!("msgid={id}"))
}

fn history_request(sub: &str, room: &str, reference: &str) -> Effect {
    Effect::Send(Message::new(
        "CHATHISTORY",
        [sub, room, reference, &MISSED_LIMIT.to_string()],
    ))
}

/// `reconnected; rejoined #a, #b; 3 missed messages`
fn summary(rooms: &[String], missed: usize) -> String {
    let rejoined = if rooms.is_empty() {
        "no rooms to rejoin".to_string()
    } else {
        format!("rejoined {}", rooms.join(", "))
    };
    let missed = match missed {
        0 => "no missed messages".to_string(),
        1 => "1 missed message".to_string(),
        n => format!("{n} missed messages"),
    };
    format!("reconnected; {rejoined}; {missed}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::Command;
    use crate::core::output::shows;
    use crate::core::tests::{m, sends};
    use crate::core::Output;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// Through login: SASL, welcome, the endpoint announcement; returns what was sent after
    /// the welcome.
    fn log_in(st: &mut State) -> Vec<String> {
        st.on_connected();
        st.on_message(&m(":s AUTHENTICATE +"));
        st.on_message(&m(":s 903 alice :ok"));
        let fx = st.on_message(&m(":s 001 alice :welcome"));
        // After a lost connection the kept endpoint is announced again without a new
        // listener (`peer_link::server_loss`).
        if fx.contains(&Effect::PeerListen) {
            st.on_listening(Ok((4000, crate::core::parse_fingerprint(FP).unwrap())));
        }
        st.on_message(&m(&format!(":s PEER alice 127.0.0.1 4000 {FP}")));
        sends(&fx)
    }

    /// alice's `login` typed, before the connection.
    fn logging_in() -> State {
        let mut st = State::default();
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        st
    }

    /// alice logged in and in #lobby.
    fn in_lobby() -> State {
        let mut st = logging_in();
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        st
    }

    #[test]
    fn a_lost_session_is_resumed_with_only_the_missed_messages() {
        let mut st = logging_in();
        assert_eq!(log_in(&mut st), ["JOIN #lobby"]);
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        assert_eq!(st.op, None);
        st.on_message(&m(":alice!a@h JOIN #dev"));
        st.on_message(&m("@msgid=m1 :bob!b@h PRIVMSG #dev :one"));
        st.on_command(Command::Join(vec!["#lobby".into()]));

        let fx = st.on_closed(Some("connection reset"));
        assert_eq!(
            shows(&fx),
            [
                "!! connection to the server lost: connection reset",
                "-- reconnecting in 1 s (logout stops it)"
            ]
        );
        assert!(st.nick.is_none());
        let at = st.resume.due().expect("a reconnection is planned");
        assert!(st
            .on_reconnect(at - std::time::Duration::from_millis(1))
            .is_empty());
        assert_eq!(st.on_reconnect(at), [Effect::Connect]);
        assert_eq!(st.op, None, "nothing waits for the connection");
        // Once connected, the login starts after the capability requests.
        let fx = st.on_connected();
        assert_eq!(
            sends(&fx).last().map(String::as_str),
            Some("AUTHENTICATE PLAIN")
        );
        assert!(matches!(st.op, Some(crate::core::state::Op::Login { .. })));

        // Logged in again: the kept endpoint announced again, every room rejoined, then the
        // marker for the end of the replays.
        assert_eq!(
            log_in(&mut st),
            [
                format!("PEERADDR 4000 {FP}"),
                "JOIN #lobby".to_string(),
                "JOIN #dev".to_string(),
                "PING huddle-rejoined".to_string()
            ]
        );
        assert_eq!(st.op, None, "the login does not wait for the rooms");
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        st.on_message(&m(":alice!a@h JOIN #dev"));
        // The replay that comes with the JOIN repeats what was seen: dropped.
        st.on_message(&m(":s BATCH +r1 chathistory #dev"));
        assert!(
            shows(&st.on_message(&m("@batch=r1;msgid=m1 :bob!b@h PRIVMSG #dev :one"))).is_empty()
        );
        st.on_message(&m(":s BATCH -r1"));
        // Live meanwhile.
        assert_eq!(
            shows(&st.on_message(&m("@msgid=m3 :bob!b@h PRIVMSG #dev :three"))),
            ["[#dev] <bob> three"]
        );

        let fx = st.on_message(&m(":s PONG s :huddle-rejoined"));
        assert_eq!(
            sends(&fx),
            [
                "CHATHISTORY LATEST #lobby * 100",
                "CHATHISTORY AFTER #dev msgid=m1 100",
                "PING huddle-replayed"
            ]
        );
        assert_eq!(
            st.current.as_deref(),
            Some("#lobby"),
            "current room restored"
        );
        st.on_message(&m(":s BATCH +h1 chathistory #dev"));
        let time = "time=2026-01-02T13:05:00.000Z";
        assert_eq!(
            shows(&st.on_message(&m(&format!(
                "@batch=h1;msgid=m2;{time} :bob!b@h PRIVMSG #dev :two"
            )))),
            ["[#dev] [history 13:05] <bob> two"]
        );
        // Shown live already, and our own: not again.
        assert!(
            shows(&st.on_message(&m("@batch=h1;msgid=m3 :bob!b@h PRIVMSG #dev :three"))).is_empty()
        );
        assert!(
            shows(&st.on_message(&m("@batch=h1;msgid=m4 :alice!a@h PRIVMSG #dev :mine")))
                .is_empty()
        );
        st.on_message(&m(":s BATCH -h1"));
        let fx = st.on_message(&m(":s PONG s :huddle-replayed"));
        assert_eq!(
            shows(&fx),
            ["-- reconnected; rejoined #lobby, #dev; 1 missed message"]
        );
        // The next loss resumes after the last message seen.
        assert_eq!(
            st.resume.last_seen.get("#dev").map(String::as_str),
            Some("m3")
        );
    }

    /// Logged in and in #dev (having seen `m0` if `seen`), the connection lost and logged in
    /// again: the join replays are over; returns what was sent to ask the missed messages.
    fn resume_in_dev(seen: bool) -> (State, Vec<String>) {
        let mut st = logging_in();
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #dev"));
        if seen {
            st.on_message(&m("@msgid=m0 :bob!b@h PRIVMSG #dev :zero"));
        }
        st.on_closed(None);
        st.on_reconnect(st.resume.due().unwrap());
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #dev"));
        let fx = st.on_message(&m(":s PONG s :huddle-rejoined"));
        (st, sends(&fx))
    }

    /// [`resume_in_dev`] having seen `m0`: the first page is asked after it.
    fn resumed_in_dev() -> State {
        let (st, sent) = resume_in_dev(true);
        assert_eq!(
            sent,
            [
                "CHATHISTORY AFTER #dev msgid=m0 100",
                "PING huddle-replayed"
            ]
        );
        st
    }

    /// A history batch `id` for #dev with messages `from..to` from bob; what it shows.
    fn page(st: &mut State, id: &str, from: usize, to: usize) -> Vec<String> {
        st.on_message(&m(&format!(":s BATCH +{id} chathistory #dev")));
        let mut shown = Vec::new();
        for i in from..to {
            let line = format!("@batch={id};msgid=m{i} :bob!b@h PRIVMSG #dev :text {i}");
            shown.extend(shows(&st.on_message(&m(&line))));
        }
        st.on_message(&m(&format!(":s BATCH -{id}")));
        shown
    }

    #[test]
    fn more_missed_messages_than_one_request_are_paged_in_order() {
        let mut st = resumed_in_dev();
        let mut shown = page(&mut st, "h1", 1, 101);
        // Live meanwhile: the page that repeats it leaves it out.
        shown.extend(shows(
            &st.on_message(&m("@msgid=m102 :bob!b@h PRIVMSG #dev :text 102")),
        ));
        let fx = st.on_message(&m(":s PONG s :huddle-replayed"));
        assert!(shows(&fx).is_empty(), "no summary yet");
        assert_eq!(
            sends(&fx),
            [
                "CHATHISTORY AFTER #dev msgid=m100 100",
                "PING huddle-replayed"
            ]
        );
        shown.extend(page(&mut st, "h2", 101, 103));
        let fx = st.on_message(&m(":s PONG s :huddle-replayed"));
        assert!(sends(&fx).is_empty());
        assert_eq!(
            shows(&fx),
            ["-- reconnected; rejoined #dev; 101 missed messages"]
        );
        let texts: Vec<String> = shown
            .iter()
            .map(|l| l.rsplit("> ").next().unwrap_or_default().to_string())
            .collect();
        let mut expected: Vec<String> = (1..=100).map(|i| format!("text {i}")).collect();
        expected.extend(["text 102".to_string(), "text 101".to_string()]);
        assert_eq!(texts, expected, "each once; the live one when it came");
        assert_eq!(
            st.resume.last_seen.get("#dev").map(String::as_str),
            Some("m102")
        );
    }

    #[test]
    fn paging_stops_after_the_page_bound() {
        let mut st = resumed_in_dev();
        let mut asked = 1;
        loop {
            let first = (asked - 1) * MISSED_LIMIT + 1;
            page(&mut st, &format!("h{asked}"), first, first + MISSED_LIMIT);
            let fx = st.on_message(&m(":s PONG s :huddle-replayed"));
            if !sends(&fx).is_empty() {
                asked += 1;
                continue;
            }
            assert_eq!(
                shows(&fx),
                ["-- reconnected; rejoined #dev; 1000 missed messages"]
            );
            break;
        }
        assert_eq!(asked, MAX_PAGES as usize);
        // A full batch of `LATEST *` (nothing seen in the room) is not paged.
        let (mut st, sent) = resume_in_dev(false);
        assert_eq!(sent[0], "CHATHISTORY LATEST #dev * 100");
        page(&mut st, "l1", 0, MISSED_LIMIT);
        let fx = st.on_message(&m(":s PONG s :huddle-replayed"));
        assert!(sends(&fx).is_empty());
    }

    #[test]
    fn failed_attempts_back_off_and_logout_stops_them() {
        let mut st = in_lobby();
        st.on_closed(None);
        let at = st.resume.due().unwrap();
        st.on_reconnect(at);
        let fx = st.on_connect_failed();
        assert_eq!(shows(&fx), ["-- reconnecting in 2 s (logout stops it)"]);
        assert_eq!(
            shows(&st.on_command(Command::Say("anyone?".into()))),
            ["!! not connected: reconnecting to the server (logout stops it)"]
        );
        assert_eq!(
            shows(&st.on_command(Command::Logout)),
            ["-- stopped reconnecting"]
        );
        assert_eq!(st.resume.due(), None);

        // Logging in by hand during the back-off replaces it.
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        st.on_closed(None);
        assert!(st.resume.waiting());
        let fx = st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        assert_eq!(fx[0], Effect::Connect);
        assert!(!st.resume.waiting());

        // A connection that closes before logging in leaves a waiting resume alone.
        st.on_closed(None);
        st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        st.on_closed(None);
        assert!(st.resume.waiting());
        st.on_connected();
        st.on_closed(None);
        assert!(st.resume.waiting());
    }

    #[test]
    fn commands_run_while_the_reconnection_connects() {
        let mut st = in_lobby();
        st.on_closed(None);
        assert_eq!(st.on_reconnect(st.resume.due().unwrap()), [Effect::Connect]);
        assert!(st.resume.connecting() && st.op.is_none());
        // Local commands answer; those that need the server say why they cannot.
        let help = st.on_command(Command::Help);
        assert!(matches!(&help[..], [Effect::Show(Output::Text(_))]));
        assert_eq!(
            shows(&st.on_command(Command::Say("anyone?".into()))),
            ["!! not connected: reconnecting to the server (logout stops it)"]
        );
        // A failed connection backs off and tries again.
        assert_eq!(
            shows(&st.on_connect_failed()),
            ["-- reconnecting in 2 s (logout stops it)"]
        );
        st.on_reconnect(st.resume.due().unwrap());
        // `logout` gives up the connection being opened.
        assert_eq!(
            st.on_command(Command::Logout),
            [Effect::Close, info("stopped reconnecting")]
        );
        assert!(!st.resume.connecting() && st.resume.due().is_none());
        // A connection that comes up all the same logs nobody in.
        assert!(sends(&st.on_connected())
            .iter()
            .all(|s| !s.starts_with("AUTHENTICATE")));
        assert_eq!(st.op, None);

        // A login typed while the reconnection connects replaces it.
        let mut st = in_lobby();
        st.on_closed(None);
        st.on_reconnect(st.resume.due().unwrap());
        let fx = st.on_command(Command::Login {
            name: Some("alice".into()),
            password: Some("secret pw".into()),
        });
        assert_eq!(fx[0], Effect::Connect);
        assert!(!st.resume.connecting());
        let fx = st.on_connected();
        let auth = sends(&fx);
        let auth = auth.iter().filter(|s| s.starts_with("AUTHENTICATE"));
        assert_eq!(
            auth.count(),
            0,
            "the typed login sends its own, after the connect"
        );
    }

    #[test]
    fn a_refused_login_or_a_logout_ends_resuming() {
        let mut st = in_lobby();
        st.on_closed(None);
        st.on_reconnect(st.resume.due().unwrap());
        st.on_connected();
        st.on_message(&m(":s AUTHENTICATE +"));
        let fx = st.on_message(&m(":s 904 alice :SASL authentication failed"));
        assert_eq!(
            shows(&fx),
            [
                "!! login failed: wrong name or password",
                "-- stopped reconnecting: log in again"
            ]
        );
        st.on_closed(None);
        assert_eq!(st.resume.due(), None);

        // Ctrl-C while logging in again stops it too.
        log_in(&mut st);
        st.on_message(&m(":alice!a@h JOIN #lobby"));
        st.resume.logging_in("alice", "secret pw");
        st.resume.logged_in();
        st.on_closed(None);
        st.on_reconnect(st.resume.due().unwrap());
        st.on_connected();
        assert_eq!(
            shows(&st.on_interrupt()),
            [
                "-- login cancelled",
                "-- stopped reconnecting: log in again"
            ]
        );
        assert!(!st.resume.connecting() && st.resume.due().is_none());

        // A logout is not a loss.
        let mut st = in_lobby();
        st.on_command(Command::Logout);
        st.on_closed(None);
        assert_eq!(st.resume.due(), None);
    }

    #[test]
    fn summaries() {
        let rooms = vec!["#a".to_string(), "#b".to_string()];
        assert_eq!(
            summary(&rooms, 3),
            "reconnected; rejoined #a, #b; 3 missed messages"
        );
        assert_eq!(
            summary(&rooms[..1], 1),
            "reconnected; rejoined #a; 1 missed message"
        );
        assert_eq!(
            summary(&[], 0),
            "reconnected; no rooms to rejoin; no missed messages"
        );
    }

    #[test]
    fn another_login_ends_resuming() {
        let mut r = Resume::default();
        r.server_error("Closing link: Logged in from another connection");
        assert!(r.refused);
        let mut r = Resume::default();
        r.server_error("Server shutting down");
        assert!(!r.refused);
    }
}
