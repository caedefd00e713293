//! A file's data connection to a peer we already have a link to, punched from a fresh port.
//!
//! Every direct connection leaves from the listening port, so the link to the file's sender
//! (over which its offer came) already holds the one pair of ends `our listening port - its
//! listening port`; TCP allows one connection per pair, and a second dial between the same
//! ports leaves from a port of the system's choosing, which the other side's NAT drops. So
//! the receiver, besides dialing and ringing as for any link, punches from a fresh port:
//!
//! 1. it asks the server for a probe token (`PEERPROBE`, answered `PEERPROBE <token>`);
//! 2. the shell binds a fresh port, learns its public mapping with a probe connection to the
//!    server (`PEERMAP <token>`, which does not touch our announced endpoint), and dials every
//!    endpoint of the sender from that port for a few seconds
//!    ([`Effect::PeerPunch`], reported as [`Peers::on_punch_mapped`], then as dials).
//!    When the server has not given a token within [`PROBE_WAIT`] (it may be paused or gone
//!    while the link stays up), the punch goes ahead without the probe: the shell guesses
//!    the fresh port's mapping as the public address of our listening port (learnt by the
//!    mapping probe at announce time) with the fresh port's own number, since Linux
//!    masquerade and most home routers keep the source port when it is free. A NAT that
//!    renumbers ports defeats the guess; that needs the server's probe;
//! 3. over the open link (authenticated both ways) it asks the sender to dial back:
//!    `FILECALL <offer-id> <token> :<endpoints of the fresh port>`;
//! 4. the sender dials back from its listening port to those endpoints, sends the preamble
//!    `PEERCALLBACK <token>` and is the TLS server, as when the server rings it. The two dials
//!    meet (TCP simultaneous open through both NATs) on a pair of ends no link holds.
//!
//! The first connection of the attempt to complete its greeting wins, as for every attempt;
//! the rest is closed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use huddle_protocol::Message;

use super::super::answer::public;
use super::super::{peer_send, same, Conn, Peers, Role, Stage};
use super::{join_endpoints, Purpose, MAX_ATTEMPTS};
use crate::core::effect::Effect;
use crate::core::files::wire::parse_id;
use crate::core::files::SendStage;

/// How long the server's probe token is waited for before the punch goes ahead without it.
pub(super) const PROBE_WAIT: Duration = Duration::from_secs(1);

/// How far the fresh-port punch of one attempt has come.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Not asked for (yet): no link to the peer, not a data connection, or before the call.
    #[default]
    Idle,
    /// `PEERPROBE` sent at this moment; waiting for the server's token.
    Asked(Instant),
    /// The shell binds the fresh port and learns its mapping.
    Mapping,
    /// `FILECALL` sent; our dials and the peer's dial-backs run.
    Punching,
    /// Failed or ran out of time.
    Over,
}

/// The fresh-port punch of one attempt.
#[derive(Debug, Default)]
pub(super) struct Fresh {
    progress: Progress,
    /// The call token the peer's dial-back presents.
    token: Option<String>,
    /// Our dials from the fresh port.
    conns: Vec<u64>,
}

impl Fresh {
    /// The call token, once there is one (to be forgotten when the attempt ends).
    pub(super) fn token(&self) -> Option<String> {
        self.token.clone()
    }

    /// Still to produce connections: the attempt must wait for it.
    pub(super) fn pending(&self) -> bool {
        matches!(self.progress, Progress::Asked(_) | Progress::Mapping)
    }

    /// When the punch stops waiting for the server's probe token.
    pub(super) fn due(&self) -> Option<Instant> {
        match self.progress {
            Progress::Asked(at) => Some(at + PROBE_WAIT),
            _ => None,
        }
    }

    pub(super) fn time_out(&mut self) {
        if self.pending() {
            self.progress = Progress::Over;
        }
    }
}

impl Peers {
    /// The id of an open link to `nick`, the newest if there are several.
    fn open_link(&self, nick: &str) -> Option<u64> {
        self.conns
            .iter()
            .filter_map(|(&id, c)| (c.stage == Stage::Open && same(&c.nick, nick)).then_some(id))
            .max()
    }

    /// When attempt `i` rings its peer: a data connection to a peer we have a link to also
    /// asks the server for a probe token, if the server gives them.
    pub(super) fn ask_fresh_port(&mut self, i: usize, now: Instant) -> Vec<Effect> {
        let a = &self.nat.attempts[i];
        let wanted = matches!(a.purpose, Purpose::Data(_))
            && self.nat.probes
            && a.fresh.progress == Progress::Idle
            && self.nat.probing.len() < MAX_ATTEMPTS
            && self.open_link(&a.nick).is_some();
        if !wanted {
            return Vec::new();
        }
        let purpose = a.purpose;
        self.nat.attempts[i].fresh.progress = Progress::Asked(now);
        self.nat.probing.push_back(purpose);
        vec![Effect::Send(Message::new("PEERPROBE", [] as [&str; 0]))]
    }

    /// The attempt that asked for the oldest unanswered probe token, if it still waits.
    fn take_probing(&mut self) -> Option<usize> {
        let purpose = self.nat.probing.pop_front()?;
        self.nat
            .attempts
            .iter()
            .position(|a| a.purpose == purpose && matches!(a.fresh.progress, Progress::Asked(_)))
    }

    /// At `now`: the punch of attempt `i` whose probe token is overdue goes ahead without
    /// the probe (the shell guesses the fresh port's mapping). A token that comes later is
    /// ignored.
    pub(super) fn fresh_overdue(&mut self, i: usize, now: Instant) -> Vec<Effect> {
        let a = &self.nat.attempts[i];
        if a.fresh.due().is_none_or(|due| due > now) {
            return Vec::new();
        }
        log::info!(
            "no probe token from the server within {} ms: punching to {} from a fresh port without it",
            PROBE_WAIT.as_millis(),
            a.nick
        );
        self.start_punch(i, None)
    }

    /// The server's `PEERPROBE <token>`: the shell binds a fresh port, probes its mapping
    /// and dials every endpoint of the peer from it.
    pub(in crate::core::peer_link) fn on_probe_token(&mut self, msg: &Message) -> Vec<Effect> {
        let Some(i) = self.take_probing() else {
            return Vec::new();
        };
        let Some(probe) = msg.param(0).filter(|t| !t.is_empty()) else {
            return self.fresh_failed(i, "the server sent no probe token".into());
        };
        self.start_punch(i, Some(probe.to_string()))
    }

    /// Attempt `i` punches from a fresh port: its mapping learnt with the probe token
    /// `probe`, or guessed without one.
    fn start_punch(&mut self, i: usize, probe: Option<String>) -> Vec<Effect> {
        let call = self.nat.token();
        let now = Instant::now();
        let a = &mut self.nat.attempts[i];
        let mut dials = Vec::new();
        for &addr in &a.endpoints {
            let conn = self.ids.next();
            let shown = format!("{addr} from a fresh port");
            let mut c = Conn::new(Role::Dialer, Stage::Dialing, &a.nick, shown, now);
            c.cert = Some(a.fp);
            c.deadline = Some(a.deadline);
            self.conns.insert(conn, c);
            a.conns.push(conn);
            a.fresh.conns.push(conn);
            dials.push((conn, addr));
        }
        a.fresh.progress = Progress::Mapping;
        a.fresh.token = Some(call.clone());
        vec![
            Effect::PeerExpectCallback {
                token: call.clone(),
                fingerprint: a.fp,
            },
            Effect::PeerPunch {
                call,
                probe,
                dials,
                fingerprint: a.fp,
            },
        ]
    }

    /// `FAIL PEERPROBE <code> :text`: no fresh port for the oldest attempt that asked.
    pub(in crate::core::peer_link) fn on_probe_refused(&mut self, text: &str) -> Vec<Effect> {
        match self.take_probing() {
            Some(i) => self.fresh_failed(i, format!("the server refused a probe ({text})")),
            None => Vec::new(),
        }
    }

    /// The fresh port of the call `call` is mapped: these are its endpoints (the public
    /// mapping first), to be sent to the peer, which dials back; or why it is not.
    pub(crate) fn on_punch_mapped(
        &mut self,
        call: &str,
        result: Result<Vec<SocketAddr>, String>,
    ) -> Vec<Effect> {
        let Some(i) = self.nat.attempts.iter().position(|a| {
            a.fresh.progress == Progress::Mapping && a.fresh.token.as_deref() == Some(call)
        }) else {
            return Vec::new();
        };
        let endpoints = match result {
            Ok(endpoints) if !endpoints.is_empty() => endpoints,
            Ok(_) => return self.fresh_failed(i, "no endpoint for the fresh port".into()),
            Err(why) => return self.fresh_failed(i, why),
        };
        let (purpose, nick) = {
            let a = &self.nat.attempts[i];
            (a.purpose, a.nick.clone())
        };
        let Purpose::Data(id) = purpose else {
            return self.fresh_failed(i, "not a data connection".into());
        };
        let remote = self.files.receiving.get(&id).map(|r| r.remote);
        let (Some(remote), Some(link)) = (remote, self.open_link(&nick)) else {
            return self.fresh_failed(i, format!("the link to {nick} is gone"));
        };
        log::info!(
            "asking {nick} to dial back to the fresh port at {}",
            join_endpoints(&endpoints)
        );
        self.nat.attempts[i].fresh.progress = Progress::Punching;
        vec![peer_send(
            link,
            "FILECALL",
            &[&remote.to_string(), call, &join_endpoints(&endpoints)],
        )]
    }

    /// The fresh-port punch of attempt `i` cannot go on: its dials end; the attempt goes on
    /// with what else it tries.
    fn fresh_failed(&mut self, i: usize, why: String) -> Vec<Effect> {
        let a = &mut self.nat.attempts[i];
        log::info!("no fresh-port punch to {}: {why}", a.nick);
        a.fresh.progress = Progress::Over;
        let dials = std::mem::take(&mut a.fresh.conns);
        a.conns.retain(|c| !dials.contains(c));
        let mut fx: Vec<Effect> = dials
            .into_iter()
            .map(|conn| {
                self.conns.remove(&conn);
                Effect::PeerClose { conn }
            })
            .collect();
        fx.extend(self.attempt_progress(Instant::now()));
        fx
    }

    /// `FILECALL <offer-id> <token> :<endpoints>` on the open link `link` from `from`: the
    /// receiver of our offer punches its data connection from a fresh port; we dial back to
    /// it as when the server rings us. Each private endpoint's port is also tried at the
    /// public address the link comes from (a port-preserving NAT maps the fresh port to it),
    /// for a receiver that could not learn its public address.
    pub(in crate::core::peer_link) fn on_file_call(
        &mut self,
        link: u64,
        from: &str,
        msg: &Message,
    ) -> Vec<Effect> {
        let (Some(id), Some(token)) = (parse_id(msg.param(0)), msg.param(1)) else {
            log::warn!("malformed FILECALL from {from}");
            return Vec::new();
        };
        let offered = self
            .files
            .sending
            .get(&id)
            .is_some_and(|s| same(&s.to, from) && matches!(s.stage, SendStage::Offered { .. }));
        if !offered {
            log::info!("{from} asks for a dial-back for file {id}, which is not on offer to it");
            return Vec::new();
        }
        let listed = msg.param(2).unwrap_or("");
        let seen_at = self
            .conns
            .get(&link)
            .and_then(|c| c.addr.parse::<SocketAddr>().ok())
            .map(|a| a.ip())
            .filter(|&ip| public(ip));
        let guessed = listed
            .split(' ')
            .filter_map(|e| e.parse::<SocketAddr>().ok())
            .filter(|a| !public(a.ip()))
            .filter_map(|a| Some(SocketAddr::new(seen_at?, a.port())));
        let endpoints: Vec<String> = listed
            .split(' ')
            .map(str::to_string)
            .chain(guessed.map(|a| a.to_string()))
            .collect();
        self.dial_back(from, token, &endpoints.join(" "))
    }
}

#[cfg(test)]
#[path = "fresh_punch_tests.rs"]
mod tests;
