//! The data connections of files: the receiver reaches the sender (where the open link to it
//! says it is, else where the server says) with the same pinning and greeting as a direct
//! link, then asks for the bytes from its offset (`FILEGET`); the sender answers on that
//! connection (`FILEDATA`). From the welcome on the connection belongs to the transfer, not
//! to the links.

use std::net::SocketAddr;
use std::time::Instant;

use huddle_protocol::Message;

use super::file_link::sent_name;
use super::reach::{join_endpoints, Purpose};
use super::{peer_send, same, Lookup, Peers, Stage};
use crate::core::effect::{error, info, Effect};
use crate::core::files::wire::parse_id_offset;
use crate::core::files::{Progress, RecvStage, SendStage};
use crate::core::Fingerprint;

/// The sender's refusal of a `FILEGET` for an offer it does not hold (for that user).
const NO_SUCH_OFFER: &str = "No such offer";

impl Peers {
    /// Starts fetching offer `id` from `nick`: at once over what an open link to it knows
    /// (its certificate and endpoints; see `linked_peer`), so no server is needed; else the
    /// server is asked where it is.
    pub(super) fn fetch_from(&mut self, id: u64, nick: &str) -> Vec<Effect> {
        match self.linked_peer(nick) {
            Some(peer) => {
                log::info!(
                    "fetching file {id} from {} at what the open link knows: {}",
                    peer.nick,
                    join_endpoints(&peer.endpoints)
                );
                if let Some(r) = self.files.receiving.get_mut(&id) {
                    r.stage = RecvStage::Dialing;
                }
                self.reach(&peer.nick, peer.endpoints, peer.fp, Purpose::Data(id))
            }
            None if self.server_away => {
                let why = format!(
                    "{} and there is no open direct link to {nick}",
                    super::server_loss::SERVER_LOST
                );
                self.data_failed(id, why)
            }
            None => {
                self.push_lookup(Lookup::Data {
                    nick: nick.to_string(),
                    id,
                });
                vec![Effect::Send(Message::new("PEER", [nick]))]
            }
        }
    }

    /// The server's answer about the sender of offer `id`: reach it for the data, the same
    /// way as a direct link (every endpoint, hole punching, the relay if allowed).
    pub(super) fn data_endpoint(
        &mut self,
        id: u64,
        endpoint: Option<(&str, Vec<SocketAddr>, Fingerprint)>,
    ) -> Vec<Effect> {
        match self.files.receiving.get(&id) {
            Some(r) if matches!(r.stage, RecvStage::Lookup { .. }) => {}
            _ => return Vec::new(),
        }
        let Some((spelled, endpoints, fingerprint)) = endpoint else {
            return self.data_failed(id, "the server sent no usable address".into());
        };
        if let Some(r) = self.files.receiving.get_mut(&id) {
            r.stage = RecvStage::Dialing;
        }
        self.reach(spelled, endpoints, fingerprint, Purpose::Data(id))
    }

    /// Fetching offer `id` failed before any byte came: the offer stays open for another try
    /// until it lapses as it would have (the sender's expiry kept running).
    pub(super) fn data_failed(&mut self, id: u64, why: String) -> Vec<Effect> {
        let Some(r) = self.files.receiving.get_mut(&id) else {
            return Vec::new();
        };
        let from = r.from.clone();
        if r.lapses <= Instant::now() {
            self.files.receiving.remove(&id);
            return vec![
                Effect::FileAbort { id },
                error(format!(
                    "cannot fetch file {id} from {from}: {why}; the offer has expired"
                )),
            ];
        }
        r.stage = RecvStage::Offered { expires: r.lapses };
        vec![error(format!(
            "cannot fetch file {id} from {from}: {why}; /accept {id} tries again"
        ))]
    }

    /// The sender no longer offers `id` (it withdrew it, or it expired there): it goes here too.
    fn data_withdrawn(&mut self, id: u64) -> Vec<Effect> {
        let Some(r) = self.files.receiving.remove(&id) else {
            return Vec::new();
        };
        vec![
            Effect::FileAbort { id },
            error(format!(
                "cannot fetch file {id} from {}: {} no longer offers it",
                r.from, r.from
            )),
        ]
    }

    /// The data connection for offer `id` completed its greeting on `conn`: ask for the
    /// bytes; the connection now belongs to the transfer, not to the links.
    pub(super) fn data_link_ready(&mut self, id: u64, conn: u64) -> Vec<Effect> {
        self.conns.remove(&conn);
        let Some(r) = self.files.receiving.get_mut(&id) else {
            return vec![Effect::PeerClose { conn }];
        };
        let offset = r.prepared.as_ref().map_or(0, |p| p.offset);
        r.stage = RecvStage::Receiving { conn };
        vec![peer_send(
            conn,
            "FILEGET",
            &[&r.remote.to_string(), &offset.to_string()],
        )]
    }

    /// A line on a connection that is no longer a link: a data connection before its
    /// bytes, whose sender refused (`ERROR`).
    pub(super) fn on_data_conn_line(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let Some(id) = self.files.receiving_on(conn) else {
            return Vec::new();
        };
        let why = msg.param(0).unwrap_or("unexpected line").to_string();
        let mut fx = vec![Effect::PeerClose { conn }];
        if msg.is("ERROR") && why == NO_SUCH_OFFER {
            fx.extend(self.data_withdrawn(id));
        } else {
            fx.extend(self.data_failed(id, format!("the sender refused: {why}")));
        }
        fx
    }

    /// A data connection ended before its bytes; `None` if `conn` is not one.
    pub(super) fn data_closed(&mut self, conn: u64, reason: Option<&str>) -> Option<Vec<Effect>> {
        let id = self.files.receiving_on(conn)?;
        self.conns.remove(&conn);
        let why = reason.unwrap_or("the sender closed the connection");
        Some(self.data_failed(id, why.to_string()))
    }

    /// A connection stopped reading lines at `FILEGET` (we send) or `FILEDATA` (we receive).
    pub(crate) fn on_peer_data(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        if msg.is("FILEGET") {
            return self.on_get(conn, msg);
        }
        let Some(id) = self.files.receiving_on(conn) else {
            return vec![Effect::PeerClose { conn }];
        };
        let wanted = self
            .files
            .receiving
            .get(&id)
            .map(|r| (r.remote, r.prepared.as_ref().map_or(0, |p| p.offset)));
        if msg.is("FILEDATA") && parse_id_offset(msg) == wanted {
            return vec![Effect::FileReceive { id, conn }];
        }
        let mut fx = vec![Effect::PeerClose { conn }];
        fx.extend(self.data_failed(id, "the sender answered something else".into()));
        fx
    }

    fn on_get(&mut self, conn: u64, msg: &Message) -> Vec<Effect> {
        let refuse = |why: &str| vec![peer_send(conn, "ERROR", &[why]), Effect::PeerClose { conn }];
        let nick = match self.conns.remove(&conn) {
            Some(c) if c.stage == Stage::Open => c.nick,
            _ => return refuse("Not allowed before PEERWELCOME"),
        };
        let Some((id, offset)) = parse_id_offset(msg) else {
            return refuse("Bad FILEGET");
        };
        let Some(s) = self.files.sending.get_mut(&id) else {
            return refuse(NO_SUCH_OFFER);
        };
        let size = s.file.as_ref().map_or(0, |f| f.size);
        if !same(&s.to, &nick) || !matches!(s.stage, SendStage::Offered { .. }) || offset > size {
            return refuse(NO_SUCH_OFFER);
        }
        s.stage = SendStage::Sending { conn };
        s.progress = Progress::start(size, offset);
        let resume = if offset > 0 {
            format!(", resuming at {offset} bytes")
        } else {
            String::new()
        };
        let text = format!("{nick} accepted file {id} ({}){resume}", sent_name(s));
        vec![info(text), Effect::FileServe { id, conn, offset }]
    }
}
