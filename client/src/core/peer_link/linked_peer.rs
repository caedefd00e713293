//! What an open link already proves about its peer, so a new connection to a peer we are
//! linked to needs no word from the server (which may be paused or unreachable while the
//! link stays up):
//!
//! - its certificate: the link was pinned to it (we dialed the fingerprint the server
//!   vouched for) or the server vouched for it when the link arrived. A dialer claiming
//!   that name and presenting that certificate holds the same key, so it is admitted
//!   without asking the server again;
//! - where it is: the link's far end (its listening port as our side sees it, which is its
//!   NAT's public mapping when the link was punched) and the endpoints the server listed
//!   for it in an earlier `PEER` answer, remembered per name with the certificate they came
//!   with.
//!
//! A file's data connection uses both: `/accept` reaches the sender at once, and the
//! sender's dial-back (answering `FILECALL` over the link) is admitted on the link's word.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::reach::MAX_ENDPOINTS;
use super::verify_cache::Vouched;
use super::{same, Peers, Stage};
use crate::core::Fingerprint;

/// Names whose endpoints are remembered (the oldest answer goes first).
const MAX_KNOWN: usize = 64;

/// The endpoints the server last listed per name, with the certificate it vouched for.
#[derive(Debug, Default)]
pub(super) struct KnownEndpoints(VecDeque<(String, Fingerprint, Vec<SocketAddr>)>);

impl KnownEndpoints {
    /// Remembers the server's answer about `nick`, replacing an older one.
    pub(super) fn store(&mut self, nick: &str, fp: Fingerprint, endpoints: Vec<SocketAddr>) {
        self.0.retain(|(n, ..)| !same(n, nick));
        if self.0.len() >= MAX_KNOWN {
            self.0.pop_front();
        }
        self.0.push_back((nick.to_string(), fp, endpoints));
    }

    /// The endpoints listed for `nick` when it had certificate `fp`.
    fn get(&self, nick: &str, fp: Fingerprint) -> &[SocketAddr] {
        self.0
            .iter()
            .find(|(n, f, _)| same(n, nick) && *f == fp)
            .map_or(&[], |(.., e)| e.as_slice())
    }
}

/// How to reach a peer we have an open link to, without asking the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LinkedPeer {
    /// The name as the link's greeting spelled it.
    pub(super) nick: String,
    pub(super) fp: Fingerprint,
    /// The link's far end first, then the endpoints the server listed last.
    pub(super) endpoints: Vec<SocketAddr>,
}

impl Peers {
    /// The open link to `nick` (the newest if there are several) and its certificate.
    fn open_link_cert(&self, nick: &str) -> Option<(u64, Fingerprint)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Open && same(&c.nick, nick))
            .filter_map(|(&id, c)| Some((id, c.cert?)))
            .max_by_key(|&(id, _)| id)
    }

    /// What the open link to `nick` tells about it, when there is one and it gives at least
    /// one endpoint.
    pub(super) fn linked_peer(&self, nick: &str) -> Option<LinkedPeer> {
        let (id, fp) = self.open_link_cert(nick)?;
        let c = self.conns.get(&id)?;
        // A link through the relay has no address of the peer's ("the relay").
        let far_end = c.addr.parse::<SocketAddr>().ok();
        let mut endpoints: Vec<SocketAddr> = Vec::new();
        for &addr in far_end.iter().chain(self.nat.known.get(nick, fp)) {
            if !endpoints.contains(&addr) && endpoints.len() < MAX_ENDPOINTS && addr.port() != 0 {
                endpoints.push(addr);
            }
        }
        if endpoints.is_empty() {
            return None;
        }
        Some(LinkedPeer {
            nick: c.nick.clone(),
            fp,
            endpoints,
        })
    }

    /// The verdict on a dialer claiming `nick` and presenting `cert`, when an open link to
    /// `nick` holds that certificate: the server need not be asked.
    pub(super) fn vouched_by_link(&self, nick: &str, cert: Option<Fingerprint>) -> Option<Vouched> {
        let (id, fp) = self.open_link_cert(nick)?;
        if Some(fp) != cert {
            return None;
        }
        let spelled = self.conns.get(&id)?.nick.clone();
        Some(Ok((spelled, fp)))
    }
}
