//! The peer connections: dial outcomes, the greeting on both ends, messages and their
//! acknowledgements on open links, links that end, and deadlines.

use std::net::SocketAddr;
use std::time::Instant;

use huddle_protocol::account::is_valid_name;
use huddle_protocol::Message;

use super::{peer_send, same, valid_id, DialFailure, Lookup, OutStage, Peers, Role, Stage};
use crate::core::effect::{error, info, Effect};
use crate::core::output::Output;
use crate::core::Fingerprint;

impl Peers {
    /// A dial reached the peer; TLS is up with the pinned certificate.
    pub(crate) fn on_connected(&mut self, conn: u64) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        match self.conns.get_mut(&conn) {
            Some(c) if c.stage == Stage::Dialing => {
                c.stage = Stage::Greeting;
                c.deadline = Some(deadline);
                vec![peer_send(conn, "PEERHELLO", &[&me, &c.nick])]
            }
            _ => vec![Effect::PeerClose { conn }],
        }
    }

    /// A dial failed.
    pub(crate) fn on_dial_failed(&mut self, conn: u64, failure: &DialFailure) -> Vec<Effect> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if !self.in_attempt(conn) {
            self.conns.remove(&conn);
            return Vec::new();
        }
        let (to, addr) = (c.nick.clone(), c.addr.clone());
        let (why, text) = match failure {
            DialFailure::Unreachable(why) => (
                why.clone(),
                format!("cannot reach {to} directly at {addr}: {why} (the message was not sent)"),
            ),
            DialFailure::TimedOut => ("timed out".to_string(), format!(
                "cannot reach {to} directly at {addr}: no answer within {} s (the message was not sent)",
                self.secs()
            )),
            DialFailure::WrongCertificate { seen } => (
                format!(
                    "refused: the peer did not prove it is {to} (certificate fingerprint \
                     mismatch: it presented {})",
                    huddle_trust::hex(seen)
                ),
                format!(
                    "refused: the peer at {addr} did not prove it is {to} (certificate fingerprint \
                     mismatch: it presented {}); nothing was sent",
                    huddle_trust::hex(seen)
                ),
            ),
            DialFailure::BadSignature => (
                format!(
                    "refused: the peer did not prove it is {to} (it presented {to}'s \
                     certificate without signing with its key)"
                ),
                format!(
                    "refused: the peer at {addr} did not prove it is {to} (it presented {to}'s \
                     certificate without signing with its key); nothing was sent"
                ),
            ),
            DialFailure::Tls(why) => (
                format!("TLS failed: {why}"),
                format!(
                    "secure connection to {to} at {addr} failed: {why} (the message was not sent)"
                ),
            ),
        };
        self.attempt_failed(conn, addr, why, text)
    }

    /// The TLS handshake of an incoming connection is done (admitted by
    /// [`Peers::on_incoming`]); the greeting deadline set at the accept still runs.
    pub(crate) fn on_accepted(
        &mut self,
        conn: u64,
        addr: SocketAddr,
        cert: Fingerprint,
    ) -> Vec<Effect> {
        match self.conns.get_mut(&conn) {
            Some(c) if c.stage == Stage::Handshaking && self.me.is_some() => {
                c.stage = Stage::AwaitHello;
                c.addr = addr.to_string();
                c.cert = Some(cert);
                Vec::new()
            }
            _ => vec![Effect::PeerClose { conn }],
        }
    }

    /// One line from a peer connection.
    pub(crate) fn on_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return self.on_data_conn_line(conn, msg);
        };
        c.last_active = Instant::now();
        match c.stage {
            Stage::Dialing | Stage::Handshaking => Vec::new(),
            Stage::Greeting => self.on_greeting_line(conn, msg),
            Stage::AwaitHello => self.on_hello(conn, msg),
            Stage::Verifying => {
                // The dialer must wait for PEERWELCOME.
                vec![
                    peer_send(conn, "ERROR", &["Wait for PEERWELCOME"]),
                    self.close(conn),
                ]
            }
            Stage::Open => self.on_open_line(conn, msg),
        }
    }

    fn on_greeting_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let (to, addr) = (c.nick.clone(), c.addr.clone());
        let (why, text) = if msg.is("PEERWELCOME") {
            c.stage = Stage::Open;
            c.deadline = None;
            let mut fx = self.attempt_won(conn);
            fx.extend(self.cap_links(conn));
            return fx;
        } else if msg.is("ERROR") {
            let why = msg.param(0).unwrap_or("no reason given");
            (
                format!("refused by the peer: {why}"),
                format!(
                    "{to}'s client at {addr} refused the direct connection: {why}; nothing was sent"
                ),
            )
        } else {
            (
                format!("answered {} instead of PEERWELCOME", msg.command),
                format!(
                    "{to}'s client at {addr} answered {} instead of PEERWELCOME; nothing was sent",
                    msg.command
                ),
            )
        };
        if self.in_attempt(conn) {
            let mut out = vec![Effect::PeerClose { conn }];
            out.extend(self.attempt_failed(conn, addr, why, text));
            return out;
        }
        vec![self.close(conn)]
    }

    fn on_hello(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let addr = c.addr.clone();
        if !msg.is("PEERHELLO") {
            log::info!("direct connection from {addr} did not start with PEERHELLO");
            return vec![
                peer_send(conn, "ERROR", &["Expected PEERHELLO <from> <to>"]),
                self.close(conn),
            ];
        }
        let (from, to) = (msg.param(0).unwrap_or(""), msg.param(1).unwrap_or(""));
        if !same(to, &me) {
            let to = if is_valid_name(to) {
                to
            } else {
                "someone else"
            };
            return vec![
                error(format!(
                    "refused a direct connection from {addr}: it was meant for {to}, not for you"
                )),
                peer_send(conn, "ERROR", &[&format!("This is {me}, not {to}")]),
                self.close(conn),
            ];
        }
        if !is_valid_name(from) || same(from, &me) {
            return vec![
                error(format!(
                    "refused a direct connection from {addr}: it gave no valid name of its own"
                )),
                peer_send(conn, "ERROR", &["Bad PEERHELLO"]),
                self.close(conn),
            ];
        }
        let now = Instant::now();
        c.stage = Stage::Verifying;
        c.nick = from.to_string();
        c.deadline = Some(now + self.timeout);
        let (from, cert) = (from.to_string(), c.cert);
        self.verify(conn, &from, cert, now)
    }

    /// Asks the server to vouch for `from`, unless a recent answer says enough, a lookup
    /// for `from` is already out (the connection waits for it too), or the lookup budget
    /// is spent (the connection waits for a token, see `verify_cache`).
    fn verify(
        &mut self,
        conn: u64,
        from: &str,
        cert: Option<Fingerprint>,
        now: Instant,
    ) -> Vec<Effect> {
        if let Some(vouched) = self.vouched_by_link(from, cert) {
            return self.verified(conn, from, vouched);
        }
        if let Some(vouched) = self.vouched.get(from, cert, now) {
            // A refusal repeated from the cache was shown when the server gave it: a dialer
            // repeating a false claim does not fill the screen.
            let fx = self.verified(conn, from, vouched);
            return fx
                .into_iter()
                .filter(|e| !matches!(e, Effect::Show(_)))
                .collect();
        }
        let waiting = self.lookups.iter_mut().find_map(|l| match l {
            Lookup::Verify { conns, nick } if same(nick, from) => Some(conns),
            _ => None,
        });
        if let Some(conns) = waiting {
            conns.push(conn);
            return Vec::new();
        }
        if !self.vouched.take_token(now) {
            log::info!("direct connection from {from} waits for a lookup");
            self.unverified.push(conn);
            return Vec::new();
        }
        let ip = self.conns.get(&conn).and_then(|c| c.ip);
        self.vouched.count(ip, now);
        self.push_lookup(Lookup::Verify {
            conns: vec![conn],
            nick: from.to_string(),
        });
        vec![Effect::Send(Message::new("PEER", [from]))]
    }

    fn on_open_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let (from, cert) = (c.nick.clone(), c.cert);
        match msg.command.to_ascii_uppercase().as_str() {
            "DM" => match (msg.param(0), msg.param(1)) {
                (Some(id), Some(text)) if valid_id(id) && msg.params.len() == 2 => {
                    let mut fx = Vec::new();
                    // A resend of a frame already shown is only acknowledged again.
                    if cert.is_none_or(|cert| self.seen.first_time(cert, id)) {
                        fx.push(Effect::Show(Output::Direct {
                            from,
                            text: text.to_string(),
                        }));
                    }
                    fx.push(peer_send(conn, "ACK", &[id]));
                    fx
                }
                _ => {
                    log::warn!("malformed DM from {from}");
                    Vec::new()
                }
            },
            "ACK" => match msg.param(0) {
                Some(id) => self.on_ack(conn, id),
                None => Vec::new(),
            },
            "ERROR" => {
                log::info!(
                    "{from} closes the direct connection: {}",
                    msg.param(0).unwrap_or("")
                );
                let mut fx = vec![Effect::PeerClose { conn }];
                fx.extend(self.on_closed(conn, msg.param(0)));
                fx
            }
            "FILECALL" => self.on_file_call(conn, &from, msg),
            cmd if cmd.starts_with("FILE") => self.on_file_line(conn, &from, msg),
            _ => {
                log::debug!("ignoring {} from {from}", msg.command);
                Vec::new()
            }
        }
    }

    /// `ACK <id>` on `conn`: the message in progress is delivered once every part is; an
    /// overdue one is reported as delivered late.
    fn on_ack(&mut self, conn: u64, id: &str) -> Vec<Effect> {
        if self.notice_acked(conn, id) {
            return Vec::new();
        }
        if let Some(to) = self.late.ack(conn, id) {
            return vec![info(format!("delivered to {to} (late)"))];
        }
        let Some(out) = &mut self.outgoing else {
            return Vec::new();
        };
        let OutStage::Acks {
            conn: c, pending, ..
        } = &mut out.stage
        else {
            return Vec::new();
        };
        if *c != conn {
            return Vec::new();
        }
        pending.retain(|p| p != id);
        if !pending.is_empty() {
            return Vec::new();
        }
        let (to, offer) = (out.to.clone(), out.offer);
        self.outgoing = None;
        if let Some(id) = offer {
            return self.offer_delivered(id, &to);
        }
        let via = self.conns.get(&conn).map(|c| c.via).unwrap_or_default();
        vec![info(format!("delivered to {to} ({})", via.describe()))]
    }

    /// A peer connection ended (see `on_closed` for the file notices on it).
    pub(super) fn conn_closed(&mut self, conn: u64, reason: Option<&str>) -> Vec<Effect> {
        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        if let (true, Some(c)) = (self.in_attempt(conn), self.conns.get(&conn)) {
            let text = format!(
                "{}'s client at {} closed the connection before accepting it{why}; nothing was sent",
                c.nick, c.addr
            );
            let (addr, why) = (c.addr.clone(), format!("closed before accepting{why}"));
            return self.attempt_failed(conn, addr, why, text);
        }
        if let Some(fx) = self.data_closed(conn, reason) {
            return fx;
        }
        let Some(_) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        self.late.forget(conn);
        let Some(mut out) = self.outgoing.take() else {
            return Vec::new();
        };
        match out.stage {
            OutStage::Acks { conn: oc, .. } if oc == conn => {
                if out.reused {
                    // The link may have died while idle: dial afresh, once.
                    out.reused = false;
                    let fx = self.lookup_for(&mut out);
                    self.outgoing = Some(out);
                    fx
                } else {
                    self.fail(format!(
                        "the direct connection to {} broke before the message was acknowledged{why}; it may not have arrived",
                        out.to
                    ))
                }
            }
            _ => {
                self.outgoing = Some(out);
                Vec::new()
            }
        }
    }

    /// Deadlines that passed by `now`.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = self.files_tick(now);
        fx.extend(self.notices_tick(now));
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for conn in expired {
            fx.extend(self.conn_expired(conn));
        }
        fx.extend(self.idle_expired(now));
        fx.extend(self.outgoing_expired(now));
        fx.extend(self.attempt_progress(now));
        fx.extend(self.verify_waiting(now));
        fx
    }

    /// Connections waiting for a lookup token, served while tokens last: the one from the
    /// address with the fewest recent lookups first, then the oldest.
    fn verify_waiting(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        loop {
            self.unverified.retain(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|c| c.stage == Stage::Verifying)
            });
            let next = self
                .unverified
                .iter()
                .enumerate()
                .filter_map(|(i, id)| self.conns.get(id).map(|c| (i, c)))
                .min_by_key(|(_, c)| (self.vouched.recent(c.ip, now), c.opened))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            if self.vouched.next_token() > now {
                break;
            }
            let conn = self.unverified.remove(i);
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let (nick, cert) = (c.nick.clone(), c.cert);
            fx.extend(self.verify(conn, &nick, cert, now));
        }
        fx
    }

    /// A connection that did not get through its greeting in time is closed; a message
    /// waiting for it fails.
    fn conn_expired(&mut self, conn: u64) -> Vec<Effect> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let (stage, role, nick, addr) = (c.stage, c.role, c.nick.clone(), c.addr.clone());
        let connecting = self.in_attempt(conn);
        let mut fx = Vec::new();
        match stage {
            Stage::Verifying => {
                fx.push(error(format!(
                    "refused a direct connection from {addr} claiming to be {nick}: the server \
                     did not confirm {nick}'s certificate within {} s",
                    self.secs()
                )));
                fx.push(peer_send(
                    conn,
                    "ERROR",
                    &[&format!("Could not verify {nick} in time")],
                ));
            }
            Stage::Handshaking => {
                log::info!(
                    "direct connection from {addr} did not finish its TLS handshake in time"
                );
            }
            Stage::AwaitHello => {
                log::info!("direct connection from {addr} sent no PEERHELLO in time");
                fx.push(peer_send(
                    conn,
                    "ERROR",
                    &["Timed out waiting for PEERHELLO"],
                ));
            }
            _ => {}
        }
        if connecting && role == Role::Dialer {
            fx.push(Effect::PeerClose { conn });
            let (why, text) = match stage {
                Stage::Greeting => ("no welcome in time".to_string(), format!(
                    "{nick}'s client at {addr} did not accept the direct connection within {} s; nothing was sent",
                    self.secs()
                )),
                _ => ("timed out".to_string(), format!(
                    "cannot reach {nick} directly at {addr}: no answer in time (the message was not sent)"
                )),
            };
            fx.extend(self.attempt_failed(conn, addr, why, text));
        } else {
            fx.push(self.close(conn));
        }
        fx
    }

    /// The message in progress fails if the server's answer or the peer's acknowledgement
    /// is overdue.
    fn outgoing_expired(&mut self, now: Instant) -> Vec<Effect> {
        let Some(out) = &self.outgoing else {
            return Vec::new();
        };
        let to = out.to.clone();
        match out.stage {
            OutStage::Lookup { deadline } if deadline <= now => self.fail(format!(
                "the server did not say where {to} is within {} s (the message was not sent)",
                self.secs()
            )),
            OutStage::Acks {
                deadline,
                conn,
                ref pending,
            } if deadline <= now => {
                // The link stays open for a late acknowledgement, but the next message to
                // this user dials afresh.
                self.late.add(conn, &to, pending.clone());
                self.fail(format!(
                    "{to} did not acknowledge the message within {} s; you will be told if it arrives later",
                    self.secs()
                ))
            }
            _ => Vec::new(),
        }
    }
}
