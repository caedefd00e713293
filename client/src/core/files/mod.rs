//! Files sent peer to peer, without I/O: the offers and transfers of one login session, on
//! the sending and the receiving side, and what to show about them.
//!
//! The lines travel over the direct-message links ([`super::peer_link`], whose
//! `file_link.rs` drives this state); the shell hashes, reads, writes and streams the bytes
//! (`io::file_transfer`). Numbers (`/accept 3`) are local to each client; the wire carries
//! the sender's number of the offer.
//!
//! - [`names`]: the offered name reduced to a safe base name.
//! - [`wire`]: the file lines and their parsing.

pub(crate) mod command;
pub(crate) mod names;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::output::Output;

/// How long an offer waits for an answer unless configured otherwise.
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::from_secs(300);
/// Offers and transfers kept at once per side; more are refused.
pub(crate) const MAX_FILES: usize = 64;

/// What the sender's hash of a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashedFile {
    /// The file's base name as offered.
    pub(crate) name: String,
    pub(crate) size: u64,
    /// SHA-256, lowercase hex.
    pub(crate) sha: String,
}

/// A file offered to us, as the shell needs it to find or create its part file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedFile {
    pub(crate) from: String,
    /// The sender's number for the offer.
    pub(crate) remote: u64,
    /// The name as offered (the shell reduces it to a safe base name).
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha: String,
}

/// Why a transfer ended without the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) why: String,
    /// The connection broke: asking again continues where it stopped.
    pub(crate) resumable: bool,
    /// The other side found it and knows already.
    pub(crate) peer_knows: bool,
}

impl Failure {
    pub(crate) fn resumable(why: String) -> Failure {
        Failure {
            why,
            resumable: true,
            peer_knows: false,
        }
    }

    /// A failure the other side reported.
    pub(crate) fn reported(why: String) -> Failure {
        Failure {
            why,
            resumable: false,
            peer_knows: true,
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure {
            why,
            resumable: false,
            peer_knows: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Failure {
        Failure::from(why.to_string())
    }
}

/// Where an accepted file is written: the directory (for messages) and the bytes already in
/// its part file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedFile {
    pub(crate) part: String,
    pub(crate) offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendStage {
    /// The shell computes the SHA-256 (a `/send` waits for it).
    Hashing,
    /// The offer is on its way (the `/send` waits for the acknowledgement).
    Offering,
    /// Delivered; waiting for the receiver until `expires`.
    Offered { expires: Instant },
    /// The receiver fetches it on data connection `conn`.
    Sending { conn: u64 },
}

/// A file this client offers.
#[derive(Debug, Clone)]
pub(crate) struct Sending {
    pub(crate) to: String,
    pub(crate) path: String,
    pub(crate) file: Option<HashedFile>,
    pub(crate) stage: SendStage,
    pub(crate) progress: Progress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecvStage {
    /// Waiting for `/accept` or `/reject` until `expires`.
    Offered { expires: Instant },
    /// The shell checks the directory and the part file.
    Preparing,
    /// Asked the server where the sender is.
    Lookup { deadline: Instant },
    /// Dialling the sender for the data connection `conn`.
    Dialing,
    /// `FILEGET` sent on `conn`; then the bytes arrive.
    Receiving { conn: u64 },
}

/// A file offered to this client.
#[derive(Debug, Clone)]
pub(crate) struct Receiving {
    pub(crate) from: String,
    /// The sender's number for the offer.
    pub(crate) remote: u64,
    /// The name as offered (for the part file's metadata); shown as its safe form.
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha: String,
    /// How long an unanswered offer lives.
    pub(crate) expiry: Duration,
    /// When it lapses unless a transfer is under way: set when the offer comes and renewed
    /// when a transfer breaks (the sender renews its own then). Never later than the
    /// sender's, so an offer listed here is one the sender still holds.
    pub(crate) lapses: Instant,
    pub(crate) dir: Option<String>,
    pub(crate) prepared: Option<PreparedFile>,
    pub(crate) stage: RecvStage,
    pub(crate) progress: Progress,
}

/// Progress of one transfer: a line at every 10%.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub(crate) total: u64,
    pub(crate) done: u64,
    /// The last tenth a line was shown for.
    pub(crate) shown: u64,
}

impl Progress {
    pub(crate) fn start(total: u64, done: u64) -> Progress {
        let shown = tenth(done, total);
        Progress { total, done, shown }
    }

    /// Bytes done now; the output (a line when a new tenth is reached).
    pub(crate) fn update(&mut self, id: u64, label: &str, done: u64) -> Output {
        self.done = done.min(self.total);
        let t = tenth(self.done, self.total);
        let line = t > self.shown && t < 10;
        if line {
            self.shown = t;
        }
        Output::Progress {
            id,
            label: label.to_string(),
            done: self.done,
            total: self.total,
            line,
        }
    }
}

fn tenth(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 10;
    }
    (u128::from(done) * 10 / u128::from(total)) as u64
}

/// The files of one login session.
#[derive(Debug)]
pub(crate) struct Files {
    pub(crate) expiry: Duration,
    next_id: u64,
    pub(crate) sending: BTreeMap<u64, Sending>,
    pub(crate) receiving: BTreeMap<u64, Receiving>,
}

impl Default for Files {
    fn default() -> Self {
        Files::new(DEFAULT_EXPIRY)
    }
}

impl Files {
    pub(crate) fn new(expiry: Duration) -> Files {
        Files {
            expiry,
            next_id: 0,
            sending: BTreeMap::new(),
            receiving: BTreeMap::new(),
        }
    }

    /// A state for the next session: the same settings, nothing else. Numbers keep counting,
    /// so a late report from a transfer of the last session matches nothing.
    pub(crate) fn fresh(&self) -> Files {
        Files {
            next_id: self.next_id,
            ..Files::new(self.expiry)
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn full(&self) -> bool {
        self.sending.len() + self.receiving.len() >= MAX_FILES
    }

    /// Whether an offer or transfer with `nick` is under way.
    pub(crate) fn involves(&self, nick: &str) -> bool {
        self.sending
            .values()
            .any(|s| s.to.eq_ignore_ascii_case(nick))
            || self
                .receiving
                .values()
                .any(|r| r.from.eq_ignore_ascii_case(nick))
    }

    /// Whether file `id` is being hashed or its bytes are moving: what a progress bar shows.
    pub(crate) fn in_progress(&self, id: u64) -> bool {
        self.sending
            .get(&id)
            .is_some_and(|s| matches!(s.stage, SendStage::Hashing | SendStage::Sending { .. }))
            || self
                .receiving
                .get(&id)
                .is_some_and(|r| matches!(r.stage, RecvStage::Receiving { .. }))
    }

    /// A `/send` waits for its hash.
    pub(crate) fn hashing(&self) -> bool {
        self.sending.values().any(|s| s.stage == SendStage::Hashing)
    }

    /// The receiving transfer using data connection `conn`.
    pub(crate) fn receiving_on(&self, conn: u64) -> Option<u64> {
        self.receiving.iter().find_map(|(&id, r)| match r.stage {
            RecvStage::Receiving { conn: c } if c == conn => Some(id),
            _ => None,
        })
    }

    /// The local number of the offer `remote` from `from`.
    pub(crate) fn received_from(&self, from: &str, remote: u64) -> Option<u64> {
        self.receiving
            .iter()
            .find(|(_, r)| r.remote == remote && r.from.eq_ignore_ascii_case(from))
            .map(|(&id, _)| id)
    }

    /// The earliest deadline: an offer's expiry or a lookup's.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let out = self.sending.values().filter_map(|s| match s.stage {
            SendStage::Offered { expires } => Some(expires),
            _ => None,
        });
        let inc = self.receiving.values().filter_map(|r| match r.stage {
            RecvStage::Offered { expires } => Some(expires),
            RecvStage::Lookup { deadline } => Some(deadline),
            _ => None,
        });
        out.chain(inc).min()
    }

    /// `/files`: one line per offer or transfer.
    pub(crate) fn listing(&self, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        for (id, s) in &self.sending {
            let what = s
                .file
                .as_ref()
                .map(|f| {
                    format!(
                        "{} ({})",
                        names::safe_name(&f.name),
                        wire::size_text(f.size)
                    )
                })
                .unwrap_or_else(|| s.path.clone());
            let state = match &s.stage {
                SendStage::Hashing => "hashing".to_string(),
                SendStage::Offering => "offering".to_string(),
                SendStage::Offered { expires } => format!(
                    "waiting for {} to accept ({} s left)",
                    s.to,
                    expires.saturating_duration_since(now).as_secs()
                ),
                SendStage::Sending { .. } => format!("sending, {}", percent(&s.progress)),
            };
            lines.push(format!("file {id} to {}: {what}: {state}", s.to));
        }
        for (id, r) in &self.receiving {
            let state = match &r.stage {
                RecvStage::Offered { expires } => format!(
                    "offered ({} s left): /accept {id} or /reject {id}",
                    expires.saturating_duration_since(now).as_secs()
                ),
                RecvStage::Preparing | RecvStage::Lookup { .. } | RecvStage::Dialing => {
                    "connecting".to_string()
                }
                RecvStage::Receiving { .. } => format!("receiving, {}", percent(&r.progress)),
            };
            lines.push(format!(
                "file {id} from {}: {} ({}): {state}",
                r.from,
                names::safe_name(&r.name),
                wire::size_text(r.size)
            ));
        }
        if lines.is_empty() {
            lines.push("no file offers or transfers".to_string());
        }
        lines
    }
}

fn percent(p: &Progress) -> String {
    let pct = if p.total == 0 {
        100
    } else {
        u128::from(p.done) * 100 / u128::from(p.total)
    };
    format!(
        "{pct}% ({} of {})",
        wire::size_text(p.done),
        wire::size_text(p.total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_a_line_per_tenth() {
        let mut p = Progress::start(1000, 0);
        let lines: Vec<bool> = [50, 100, 150, 250, 990, 1000]
            .iter()
            .map(|&d| matches!(p.update(1, "x", d), Output::Progress { line: true, .. }))
            .collect();
        assert_eq!(lines, [false, true, false, true, true, false]);
        // A resumed transfer starts counting from its offset.
        let mut p = Progress::start(1000, 500);
        assert!(matches!(
            p.update(1, "x", 550),
            Output::Progress { line: false, .. }
        ));
        assert!(matches!(
            p.update(1, "x", 600),
            Output::Progress { line: true, .. }
        ));
    }
}
