//! The file commands and the shell's reports about files, at the level of the whole client
//! state (login, the command that waits); the protocol is in `peer_link/file_link.rs`.

use std::time::Instant;

use super::effect::Effect;
use super::event::Event;
use super::files::command::FileCommand;
use super::output::Output;
use super::state::{Op, State};

impl State {
    /// `/send`, `/accept`, `/reject`, `/files`, `/cancel`.
    pub(super) fn file_command(&mut self, cmd: FileCommand) -> Vec<Effect> {
        let me = match self.direct_sender() {
            Ok(n) => n,
            Err(e) => return vec![e],
        };
        match cmd {
            FileCommand::Send { to, path } => {
                if let Err(e) = self.direct_ready(&me, &to) {
                    return vec![e];
                }
                let fx = self.peers.offer_file(&to, &path);
                if self.peers.busy() && self.nick.is_some() {
                    self.op = Some(Op::Direct { to });
                }
                fx
            }
            FileCommand::Accept { id, dir } => self.peers.accept_file(id, dir),
            FileCommand::Reject(id) => self.peers.reject_file(id),
            FileCommand::Cancel(id) => {
                let fx = self.peers.cancel_file(id);
                self.settle();
                fx
            }
            FileCommand::List => self
                .peers
                .files
                .listing(Instant::now())
                .into_iter()
                .map(|l| Effect::Show(Output::Info(l)))
                .collect(),
        }
    }

    /// What the shell reports about files and data connections.
    pub(super) fn on_file_event(&mut self, event: Event) -> Vec<Effect> {
        let fx = match event {
            Event::PeerData { conn, msg } => self.peers.on_peer_data(conn, &msg),
            Event::FileHashed { id, result } => self.peers.on_file_hashed(id, result),
            Event::FilePrepared { id, result } => self.peers.on_file_prepared(id, result),
            Event::FileProgress { id, done, total } => self.peers.on_file_progress(id, done, total),
            Event::FileEnded { id, result } => self.peers.on_file_ended(id, result),
            other => {
                log::debug!("not a file event: {other:?}");
                Vec::new()
            }
        };
        self.settle();
        fx
    }
}
