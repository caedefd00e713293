//! Files over the direct links: offers ride the link like a `DM` (acknowledged), answers and
//! cancellations are notices (sent on an open link, or on one made for them: `notices`), and
//! the bytes go over a data connection the receiver dials with the same pinning and greeting
//! as any direct link. The file state lives in [`crate::core::files`]; this is where it meets
//! the links.

use std::time::Instant;

use huddle_protocol::Message;

use super::reach::Purpose;
use super::{peer_send, same, OutStage, Outgoing, Peers};
use crate::core::effect::{error, info, Effect};
use crate::core::files::names::safe_name;
use crate::core::files::wire::{parse_id, parse_offer, size_text};
use crate::core::files::{
    Failure, HashedFile, OfferedFile, PreparedFile, Progress, Receiving, RecvStage, SendStage,
    Sending,
};
use crate::core::output::Output;

/// Offers and transfers from one sender kept at once; more are refused.
const MAX_OFFERS_PER_SENDER: usize = 16;

/// Which end of a transfer a `FILECANCEL` comes from.
const SENDER: &str = "SENDER";
const RECEIVER: &str = "RECEIVER";

impl Peers {
    /// `/send to path`: hash first (the command waits), then offer.
    pub(crate) fn offer_file(&mut self, to: &str, path: &str) -> Vec<Effect> {
        if let Some(o) = &self.outgoing {
            return vec![error(format!(
                "still sending to {}; wait for it to finish",
                o.to
            ))];
        }
        if self.files.full() {
            return vec![error("too many file offers and transfers at once")];
        }
        let id = self.files.next_id();
        self.files.sending.insert(
            id,
            Sending {
                to: to.to_string(),
                path: path.to_string(),
                file: None,
                stage: SendStage::Hashing,
                progress: Progress::default(),
            },
        );
        vec![Effect::FileHash {
            id,
            path: path.to_string(),
        }]
    }

    /// The hash of a file to offer is done: the offer goes out as a message does.
    pub(crate) fn on_file_hashed(
        &mut self,
        id: u64,
        result: Result<HashedFile, String>,
    ) -> Vec<Effect> {
        let Some(s) = self.files.sending.get_mut(&id) else {
            return Vec::new();
        };
        if s.stage != SendStage::Hashing {
            return Vec::new();
        }
        let file = match result {
            Ok(file) => file,
            Err(why) => {
                let path = s.path.clone();
                self.files.sending.remove(&id);
                return vec![error(format!("cannot send {path}: {why}"))];
            }
        };
        s.file = Some(file);
        s.stage = SendStage::Offering;
        let to = s.to.clone();
        let ids = self.frame_ids(1);
        let out = Outgoing {
            to,
            parts: Vec::new(),
            ids,
            offer: Some(id),
            stage: OutStage::Connecting,
            reused: false,
        };
        self.dispatch(out)
    }

    /// The parameters of offer `id`'s `FILEOFFER` after the frame number.
    pub(super) fn offer_params(&self, id: u64) -> Vec<String> {
        let Some(f) = self.files.sending.get(&id).and_then(|s| s.file.as_ref()) else {
            return Vec::new();
        };
        vec![
            id.to_string(),
            f.size.to_string(),
            f.sha.clone(),
            self.files.expiry.as_secs().max(1).to_string(),
            f.name.clone(),
        ]
    }

    /// The receiver acknowledged offer `id`; `to` is its name as the server spells it.
    pub(super) fn offer_delivered(&mut self, id: u64, to: &str) -> Vec<Effect> {
        let expires = Instant::now() + self.files.expiry;
        let Some(s) = self.files.sending.get_mut(&id) else {
            return Vec::new();
        };
        s.stage = SendStage::Offered { expires };
        s.to = to.to_string();
        let (name, size) = s
            .file
            .as_ref()
            .map(|f| (safe_name(&f.name), size_text(f.size)))
            .unwrap_or_default();
        vec![info(format!(
            "offered {name} ({size}) to {} as file {id}: waiting for {} to accept",
            s.to, s.to
        ))]
    }

    /// A line starting with `FILE` on an open link from `from` (acknowledged by
    /// `on_file_line`).
    pub(super) fn file_line(&mut self, conn: u64, from: &str, msg: &Message) -> Vec<Effect> {
        match msg.command.to_ascii_uppercase().as_str() {
            "FILEOFFER" => self.on_offer(conn, from, msg),
            "FILEREJECT" => {
                let Some(id) = parse_id(msg.param(0)) else {
                    return Vec::new();
                };
                match self.files.sending.get(&id) {
                    Some(s)
                        if same(&s.to, from) && matches!(s.stage, SendStage::Offered { .. }) =>
                    {
                        let name = sent_name(s);
                        self.files.sending.remove(&id);
                        vec![
                            Effect::FileAbort { id },
                            info(format!("{from} rejected file {id} ({name})")),
                        ]
                    }
                    _ => Vec::new(),
                }
            }
            "FILECANCEL" => {
                let Some(id) = parse_id(msg.param(0)) else {
                    return Vec::new();
                };
                let side = msg.param(1).unwrap_or("");
                let why = msg.param(2).map(|r| format!(": {r}")).unwrap_or_default();
                if side.eq_ignore_ascii_case(RECEIVER) {
                    match self.files.sending.get(&id) {
                        Some(s) if same(&s.to, from) => {
                            let name = sent_name(s);
                            self.files.sending.remove(&id);
                            vec![
                                Effect::FileAbort { id },
                                info(format!("{from} cancelled file {id} ({name}){why}")),
                            ]
                        }
                        _ => Vec::new(),
                    }
                } else if side.eq_ignore_ascii_case(SENDER) {
                    let Some(local) = self.files.received_from(from, id) else {
                        return Vec::new();
                    };
                    let mut fx = self.drop_receiving(local);
                    if let Some(r) = self.files.receiving.remove(&local) {
                        fx.push(info(format!(
                            "{from} cancelled file {local} ({}){why}",
                            safe_name(&r.name)
                        )));
                    }
                    fx
                } else {
                    Vec::new()
                }
            }
            _ => {
                log::debug!("ignoring {} from {from}", msg.command);
                Vec::new()
            }
        }
    }

    fn on_offer(&mut self, conn: u64, from: &str, msg: &Message) -> Vec<Effect> {
        let Some(offer) = parse_offer(msg) else {
            log::warn!("malformed FILEOFFER from {from}");
            return Vec::new();
        };
        let ack = peer_send(conn, "ACK", &[&offer.frame]);
        if self.files.received_from(from, offer.id).is_some() {
            return vec![ack];
        }
        let name = safe_name(&offer.name);
        let from_them = self
            .files
            .receiving
            .values()
            .filter(|r| same(&r.from, from))
            .count();
        if self.files.full() || from_them >= MAX_OFFERS_PER_SENDER {
            return vec![
                ack,
                peer_send(conn, "FILEREJECT", &[&offer.id.to_string()]),
                error(format!(
                    "refused a file offer from {from} ({name}): too many offers and transfers at once"
                )),
            ];
        }
        let id = self.files.next_id();
        // The sender's expiry, but never longer than ours: offers cannot hold slots for long.
        let expiry = std::time::Duration::from_secs(offer.expiry_secs).min(self.files.expiry);
        let lapses = Instant::now() + expiry;
        let text = format!(
            "file offer {id} from {from}: {name} ({}, sha256 {}): /accept {id} or /reject {id}",
            size_text(offer.size),
            offer.sha
        );
        self.files.receiving.insert(
            id,
            Receiving {
                from: from.to_string(),
                remote: offer.id,
                name: offer.name,
                size: offer.size,
                sha: offer.sha,
                expiry,
                lapses,
                dir: None,
                prepared: None,
                stage: RecvStage::Offered { expires: lapses },
                progress: Progress::default(),
            },
        );
        vec![ack, info(text)]
    }

    /// `/accept id [dir]`.
    pub(crate) fn accept_file(&mut self, id: u64, dir: Option<String>) -> Vec<Effect> {
        let Some(r) = self.files.receiving.get_mut(&id) else {
            return vec![error(format!("no file offer {id} (see /files)"))];
        };
        if !matches!(r.stage, RecvStage::Offered { .. }) {
            return vec![error(format!("file {id} is already being received"))];
        }
        r.stage = RecvStage::Preparing;
        r.dir = dir.clone();
        vec![Effect::FilePrepare {
            id,
            dir,
            offer: OfferedFile {
                from: r.from.clone(),
                remote: r.remote,
                name: r.name.clone(),
                size: r.size,
                sha: r.sha.clone(),
            },
        }]
    }

    /// The directory for offer `id` is checked: ask the server where the sender is.
    pub(crate) fn on_file_prepared(
        &mut self,
        id: u64,
        result: Result<PreparedFile, String>,
    ) -> Vec<Effect> {
        let deadline = Instant::now() + self.timeout;
        let Some(r) = self.files.receiving.get_mut(&id) else {
            return Vec::new();
        };
        if r.stage != RecvStage::Preparing {
            return Vec::new();
        }
        let prepared = match result {
            Ok(p) => p,
            Err(why) => {
                // The offer stays, as long as it was going to: another directory may do.
                r.stage = RecvStage::Offered { expires: r.lapses };
                return vec![error(format!("cannot accept file {id}: {why}"))];
            }
        };
        let resume = if prepared.offset > 0 {
            format!(", resuming at {} bytes", prepared.offset)
        } else {
            String::new()
        };
        let text = format!(
            "accepted file {id} from {}: receiving into {}{resume}",
            r.from, prepared.part
        );
        r.progress = Progress::start(r.size, prepared.offset);
        r.prepared = Some(prepared);
        r.stage = RecvStage::Lookup { deadline };
        let nick = r.from.clone();
        let mut fx = vec![info(text)];
        fx.extend(self.fetch_from(id, &nick));
        fx
    }

    /// How far file `id` got.
    pub(crate) fn on_file_progress(&mut self, id: u64, done: u64, total: u64) -> Vec<Effect> {
        if let Some(s) = self.files.sending.get_mut(&id) {
            let (label, p) = match s.stage {
                SendStage::Hashing => {
                    if s.progress.total != total {
                        s.progress = Progress::start(total, 0);
                    }
                    (format!("hashing {}", s.path), &mut s.progress)
                }
                SendStage::Sending { .. } => (
                    format!("file {id} to {} ({})", s.to, sent_name(s)),
                    &mut s.progress,
                ),
                _ => return Vec::new(),
            };
            return vec![Effect::Show(p.update(id, &label, done))];
        }
        if let Some(r) = self.files.receiving.get_mut(&id) {
            if matches!(r.stage, RecvStage::Receiving { .. }) {
                let label = format!("file {id} from {} ({})", r.from, safe_name(&r.name));
                return vec![Effect::Show(r.progress.update(id, &label, done))];
            }
        }
        Vec::new()
    }

    /// A transfer ended.
    pub(crate) fn on_file_ended(
        &mut self,
        id: u64,
        result: Result<String, Failure>,
    ) -> Vec<Effect> {
        let expires = Instant::now() + self.files.expiry;
        if let Some(s) = self.files.sending.get_mut(&id) {
            let sending = matches!(s.stage, SendStage::Sending { .. });
            if let (Err(f), true) = (&result, sending) {
                if f.resumable {
                    // The receiver may ask again and continue where it stopped.
                    s.stage = SendStage::Offered { expires };
                    return vec![error(format!(
                        "file {id} to {} ({}) interrupted: {}; it continues if {} accepts it again",
                        s.to,
                        sent_name(s),
                        f.why,
                        s.to
                    ))];
                }
            }
        }
        if let Some(s) = self.files.sending.remove(&id) {
            let name = sent_name(&s);
            let size = s.file.as_ref().map_or(0, |f| f.size);
            return match result {
                Ok(_) => vec![
                    Effect::Show(Output::Progress {
                        id,
                        label: format!("file {id} to {} ({name})", s.to),
                        done: size,
                        total: size,
                        line: false,
                    }),
                    info(format!(
                        "file {id} sent to {}: {name}, {size} bytes, SHA-256 confirmed by {}",
                        s.to, s.to
                    )),
                ],
                Err(Failure {
                    why, peer_knows, ..
                }) => {
                    let mut fx = Vec::new();
                    if !peer_knows {
                        let id = id.to_string();
                        let what = format!("that file {id} failed");
                        fx = self.notice(&s.to, what, "FILECANCEL", &[&id, SENDER, &why]);
                    }
                    fx.push(error(format!(
                        "file {id} to {} ({name}) failed: {why}",
                        s.to
                    )));
                    fx
                }
            };
        }
        if let Some(r) = self.files.receiving.get_mut(&id) {
            if let Some(f) = result.as_ref().err().filter(|f| f.resumable) {
                // The part file keeps what came; the offer stays open for another try, as
                // long as the sender keeps it open (it starts its expiry again now).
                r.lapses = Instant::now() + r.expiry;
                r.stage = RecvStage::Offered { expires: r.lapses };
                return vec![error(format!(
                    "file {id} from {}: {}; /accept {id} continues",
                    r.from, f.why
                ))];
            }
        }
        let Some(r) = self.files.receiving.remove(&id) else {
            return Vec::new();
        };
        let offset = r.prepared.as_ref().map_or(0, |p| p.offset);
        match result {
            Ok(path) => vec![
                Effect::Show(Output::Progress {
                    id,
                    label: format!("file {id} from {} ({})", r.from, safe_name(&r.name)),
                    done: r.size,
                    total: r.size,
                    line: false,
                }),
                info(format!(
                    "file {id} from {} saved as {path}: received {} bytes (resumed at {offset}), SHA-256 verified",
                    r.from,
                    r.size - offset
                )),
            ],
            Err(Failure { why, .. }) => vec![error(format!("file {id} from {}: {why}", r.from))],
        }
    }

    /// `/reject id`.
    pub(crate) fn reject_file(&mut self, id: u64) -> Vec<Effect> {
        match self.files.receiving.get(&id) {
            Some(r) if matches!(r.stage, RecvStage::Offered { .. }) => {}
            Some(_) => {
                return vec![error(format!(
                    "file {id} is already accepted: /cancel {id}"
                ))]
            }
            None => return vec![error(format!("no file offer {id} (see /files)"))],
        }
        let Some(r) = self.files.receiving.remove(&id) else {
            return Vec::new();
        };
        let what = format!("that file {id} was rejected");
        let mut fx = self.notice(&r.from, what, "FILEREJECT", &[&r.remote.to_string()]);
        fx.push(Effect::FileAbort { id });
        fx.push(info(format!(
            "rejected file {id} ({}) from {}",
            safe_name(&r.name),
            r.from
        )));
        fx
    }

    /// `/cancel id`, on either side.
    pub(crate) fn cancel_file(&mut self, id: u64) -> Vec<Effect> {
        // Notices go before the data connection closes, so the other side hears why
        // before it sees the connection end.
        if let Some(s) = self.files.sending.remove(&id) {
            let mut fx = Vec::new();
            if s.stage == SendStage::Offering {
                self.outgoing = None;
            }
            if !matches!(s.stage, SendStage::Hashing | SendStage::Offering) {
                let what = format!("that file {id} was cancelled");
                fx.extend(self.notice(&s.to, what, "FILECANCEL", &[&id.to_string(), SENDER]));
            }
            fx.push(Effect::FileAbort { id });
            fx.push(info(format!("cancelled file {id} ({})", sent_name(&s))));
            return fx;
        }
        let Some(r) = self.files.receiving.get(&id) else {
            return vec![error(format!(
                "no file offer or transfer {id} (see /files)"
            ))];
        };
        let (from, remote) = (r.from.clone(), r.remote.to_string());
        let what = format!("that file {id} was cancelled");
        let mut fx = self.notice(&from, what, "FILECANCEL", &[&remote, RECEIVER]);
        // The receiver does not want it: what came so far goes too.
        fx.push(Effect::FileDiscard { id });
        fx.extend(self.drop_receiving(id));
        if let Some(r) = self.files.receiving.remove(&id) {
            fx.push(info(format!(
                "cancelled file {id} ({})",
                safe_name(&r.name)
            )));
        }
        fx
    }

    /// Stops what runs for receiving `id` (its data connection, the shell's transfer).
    fn drop_receiving(&mut self, id: u64) -> Vec<Effect> {
        let mut fx = vec![Effect::FileAbort { id }];
        if let Some(r) = self.files.receiving.get(&id) {
            match r.stage {
                RecvStage::Dialing => fx.extend(self.drop_attempts(Purpose::Data(id))),
                RecvStage::Receiving { conn } => {
                    self.conns.remove(&conn);
                    fx.push(Effect::PeerClose { conn });
                }
                _ => {}
            }
        }
        fx
    }

    /// Offers that lapsed, data lookups and dials overdue.
    pub(super) fn files_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let lapsed: Vec<u64> = self
            .files
            .sending
            .iter()
            .filter(|(_, s)| matches!(s.stage, SendStage::Offered { expires } if expires <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in lapsed {
            if let Some(s) = self.files.sending.remove(&id) {
                fx.push(Effect::FileAbort { id });
                fx.push(info(format!(
                    "file {id} to {} ({}): the offer expired; {} did not accept it within {} s",
                    s.to,
                    sent_name(&s),
                    s.to,
                    self.files.expiry.as_secs()
                )));
            }
        }
        let due: Vec<(u64, bool)> = self
            .files
            .receiving
            .iter()
            .filter_map(|(&id, r)| match r.stage {
                RecvStage::Offered { expires } if expires <= now => Some((id, true)),
                RecvStage::Lookup { deadline } if deadline <= now => Some((id, false)),
                _ => None,
            })
            .collect();
        for (id, lapsed) in due {
            if lapsed {
                if let Some(r) = self.files.receiving.remove(&id) {
                    fx.push(Effect::FileAbort { id });
                    fx.push(info(format!(
                        "file offer {id} from {} ({}) expired",
                        r.from,
                        safe_name(&r.name)
                    )));
                }
            } else {
                fx.extend(
                    self.data_failed(id, "the server did not say where the sender is".into()),
                );
            }
        }
        fx
    }
}

pub(super) fn sent_name(s: &Sending) -> String {
    s.file
        .as_ref()
        .map_or_else(|| s.path.clone(), |f| safe_name(&f.name))
}
