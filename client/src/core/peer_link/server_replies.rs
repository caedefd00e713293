//! The server's answers about direct messages: `PEER` endpoints (our own, a recipient's,
//! or the one an incoming connection claims), `FAIL PEER`/`FAIL PEERADDR`, and a server
//! without the extension.

use std::time::Instant;

use huddle_protocol::Message;

use super::verify_cache::Vouched;
use super::{parse_endpoint, peer_send, reach, same, Announce, Lookup, OutStage, Peers, Stage};
use crate::core::effect::{error, info, Effect};

/// Why the server could not say where `asked` is (`FAIL PEER <code> ... :text`).
fn not_found(code: &str, asked: &str, text: &str) -> String {
    match code {
        "NO_SUCH_NICK" => format!("{asked} is not online"),
        "NO_ENDPOINT" => format!("{asked} has no direct-message endpoint"),
        _ => format!("cannot find {asked}: {text}"),
    }
}

impl Peers {
    /// The server's `PEER <nick> <ip> <port> <fingerprint>`.
    pub(crate) fn on_peer_reply(&mut self, msg: &Message) -> Vec<Effect> {
        let Some(nick) = msg.param(0) else {
            return Vec::new();
        };
        let endpoint = parse_endpoint(msg);
        if let Some((spelled, addr, fp)) = endpoint {
            if !self.me.as_deref().is_some_and(|me| same(me, spelled)) {
                self.nat
                    .known
                    .store(spelled, fp, reach::endpoints(msg, addr));
            }
        }
        match self.take_lookup(nick) {
            Some(Lookup::Announce) => {
                self.announce = Announce::Confirmed;
                endpoint
                    .map(|(_, addr, fp)| {
                        info(format!(
                            "direct messages: listening on port {}, certificate SHA-256 {}",
                            addr.port(),
                            huddle_trust::hex(&fp)
                        ))
                    })
                    .into_iter()
                    .collect()
            }
            Some(Lookup::Send { nick: asked }) if self.is_looking_up(&asked) => match endpoint {
                Some((spelled, addr, fp)) => {
                    let spelled = spelled.to_string();
                    let endpoints = reach::endpoints(msg, addr);
                    self.reach(&spelled, endpoints, fp, reach::Purpose::Message)
                }
                None => self.fail(format!(
                    "the server sent an unusable address for {asked} (the message was not sent)"
                )),
            },
            Some(Lookup::Send { .. }) => Vec::new(),
            Some(Lookup::Data { id, .. }) => self.data_endpoint(
                id,
                endpoint.map(|(spelled, addr, fp)| (spelled, reach::endpoints(msg, addr), fp)),
            ),
            Some(Lookup::Notice { nick: asked }) => self.notice_endpoint(
                &asked,
                endpoint.map(|(spelled, addr, fp)| (spelled, reach::endpoints(msg, addr), fp)),
            ),
            Some(Lookup::Verify {
                conns,
                nick: claimed,
            }) => {
                let vouched = endpoint
                    .map(|(spelled, _, fp)| (spelled.to_string(), fp))
                    .ok_or_else(|| format!("the server sent no usable endpoint for {claimed}"));
                self.verified_all(&conns, &claimed, vouched)
            }
            None => {
                log::debug!("unrequested PEER reply for {nick}");
                Vec::new()
            }
        }
    }

    /// The message in progress waits for the server to say where `nick` is.
    fn is_looking_up(&self, nick: &str) -> bool {
        matches!(&self.outgoing,
            Some(o) if same(&o.to, nick) && matches!(o.stage, OutStage::Lookup { .. }))
    }

    /// `FAIL PEERADDR`: the server refused our endpoint.
    fn announcement_refused(&mut self, code: &str, text: &str) -> Vec<Effect> {
        if let Some(i) = self
            .lookups
            .iter()
            .position(|l| matches!(l, Lookup::Announce))
        {
            self.lookups.remove(i);
        }
        let why = format!("the server refused our endpoint ({code}: {text})");
        self.announce = Announce::Unavailable(why.clone());
        vec![
            error(format!("direct messages are unavailable: {why}")),
            Effect::PeerStopListening,
        ]
    }

    /// `FAIL PEER <code> <nick> :text` or `FAIL PEERADDR <code> ... :text`.
    pub(crate) fn on_fail(&mut self, msg: &Message) -> Vec<Effect> {
        let command = msg.param(0).unwrap_or("");
        let code = msg.param(1).unwrap_or("");
        let text = msg.params.last().map(String::as_str).unwrap_or("");
        if same(command, "PEERADDR") {
            return self.announcement_refused(code, text);
        }
        if same(command, "PEERCALL") || same(command, "PEERRELAY") {
            return self.on_step_refused(same(command, "PEERRELAY"), msg);
        }
        if same(command, "PEERPROBE") {
            return self.on_probe_refused(text);
        }
        if same(command, "PEERMAP") {
            log::info!("the server refused the mapping probe: {code} {text}");
            return Vec::new();
        }
        let nick = msg.param(2).unwrap_or("");
        match self.take_lookup(nick) {
            Some(Lookup::Send { nick: asked }) => {
                if !self.is_looking_up(&asked) {
                    return Vec::new();
                }
                let why = not_found(code, &asked, text);
                let mut fx = self.fail(format!("{why} (the message was not sent)"));
                if code == "NO_ENDPOINT" {
                    // A user of another IRC client: only the server can carry the message.
                    fx.push(info(format!(
                        "{asked} cannot take direct messages (another IRC client?): \
                         /pm {asked} TEXT sends it through the server"
                    )));
                }
                fx
            }
            Some(Lookup::Verify {
                conns,
                nick: claimed,
            }) => {
                let why = match code {
                    "NO_SUCH_NICK" => format!("{claimed} is not online"),
                    "NO_ENDPOINT" => format!("{claimed} has no registered certificate"),
                    _ => format!("the server cannot vouch for {claimed} ({text})"),
                };
                self.verified_all(&conns, &claimed, Err(why))
            }
            Some(Lookup::Data { id, nick }) => {
                self.data_failed(id, format!("{nick} is not reachable ({text})"))
            }
            Some(Lookup::Notice { nick: asked }) => {
                self.notice_lookup_failed(&asked, &not_found(code, &asked, text))
            }
            Some(Lookup::Announce) | None => {
                log::debug!("unmatched FAIL PEER {code} {nick}");
                Vec::new()
            }
        }
    }

    /// `PEERMAP <token>` (the server's token for the mapping probe), or the extension
    /// commands `PEERCALL` and `PEERRELAY`: from a user (`nick!ident@host`) they ring us,
    /// from the server they answer our request.
    pub(crate) fn on_extension(&mut self, msg: &Message) -> Vec<Effect> {
        let from_user = msg.source.as_deref().is_some_and(|s| s.contains('!'));
        match msg.command.to_ascii_uppercase().as_str() {
            "PEERMAP" => match msg.param(0) {
                Some(token) if !from_user && self.announce != Announce::Off => {
                    vec![Effect::PeerMapProbe {
                        token: token.to_string(),
                    }]
                }
                _ => Vec::new(),
            },
            "PEERCALL" if from_user => self.answer_call(msg),
            "PEERCALL" => self.on_call_ringing(msg),
            "PEERRELAY" if from_user => self.answer_relay(msg),
            "PEERRELAY" => self.on_relay_ready(msg),
            "PEERPROBE" if !from_user => self.on_probe_token(msg),
            _ => Vec::new(),
        }
    }

    /// The server does not know `PEER`/`PEERADDR` at all (421).
    pub(crate) fn on_unsupported(&mut self) -> Vec<Effect> {
        let why = "the server does not support them".to_string();
        self.lookups.clear();
        let mut fx = Vec::new();
        if self.announce == Announce::Pending {
            fx.push(error(format!("direct messages are unavailable: {why}")));
            fx.push(Effect::PeerStopListening);
        }
        self.announce = Announce::Unavailable(why);
        if let Some(o) = self.outgoing.take() {
            fx.push(error(format!(
                "cannot send to {} directly: the server does not support direct messages (the message was not sent)",
                o.to
            )));
        }
        fx
    }

    /// The server's verdict on `claimed`, remembered and applied to every connection that
    /// waited for it.
    fn verified_all(&mut self, conns: &[u64], claimed: &str, vouched: Vouched) -> Vec<Effect> {
        let now = Instant::now();
        let mut fx = Vec::new();
        for &conn in conns {
            let cert = self.conns.get(&conn).and_then(|c| c.cert);
            self.vouched.store(claimed, cert, vouched.clone(), now);
            fx.extend(self.verified(conn, claimed, vouched.clone()));
        }
        fx
    }

    /// The server's verdict on an incoming connection claiming to be `claimed`: its
    /// spelling and vouched fingerprint, or why there is none.
    pub(super) fn verified(&mut self, conn: u64, claimed: &str, vouched: Vouched) -> Vec<Effect> {
        let me = self.me.clone().unwrap_or_default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if c.stage != Stage::Verifying {
            return Vec::new();
        }
        let addr = c.addr.clone();
        let refuse = |why: String, to_peer: String| {
            vec![
                error(format!(
                    "refused a direct connection from {addr} claiming to be {claimed}: {why}"
                )),
                peer_send(conn, "ERROR", &[&to_peer]),
            ]
        };
        let mut fx = match vouched {
            Ok((spelled, fp)) if Some(fp) == c.cert => {
                c.stage = Stage::Open;
                c.deadline = None;
                c.nick = spelled.clone();
                let mut fx = vec![peer_send(conn, "PEERWELCOME", &[&me, &spelled])];
                fx.extend(self.call_answered(conn));
                fx.extend(self.cap_links(conn));
                return fx;
            }
            Ok(_) => refuse(
                format!("certificate not registered for {claimed}"),
                format!("Certificate does not belong to {claimed}"),
            ),
            Err(why) => refuse(why.clone(), format!("Cannot verify {claimed}: {why}")),
        };
        fx.push(self.close(conn));
        fx
    }
}
