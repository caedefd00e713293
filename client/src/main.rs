//! `huddle`: the Huddle command-line chat client.
//!
//! `main` reads the arguments, sets up certificate trust, picks interactive (line editor) or
//! plain (stdin is not a terminal) mode, and runs the event loop of the I/O shell
//! ([`io`]) around the sans-I/O core ([`core`]).

mod core;
mod io;
mod trust;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::io::event_loop::{App, PeerOptions};
use crate::io::Report;
use crate::trust::Trust;

/// Huddle chat client: secure group chat over TLS.
///
/// Type `/help` at the prompt for the commands; a line without a leading `/` goes to the
/// current room. When standard input is not a terminal, one command is read per line and
/// every event is printed on its own line.
#[derive(Debug, Parser)]
#[command(name = "huddle", version)]
struct Args {
    /// Server host name or IP address.
    #[arg(value_name = "SERVER-HOST", default_value = "localhost")]
    host: String,

    /// Server port.
    #[arg(value_name = "SERVER-PORT", default_value_t = 6697,
          value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,

    /// Trust the server certificate(s) in this PEM file (for example the server's
    /// cert.pem) instead of trusting on first use.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Where trust-on-first-use fingerprints are kept [default: known_servers in the user's
    /// config directory, e.g. ~/.config/huddle/known_servers].
    #[arg(long, value_name = "FILE", env = "HUDDLE_KNOWN_SERVERS")]
    known_servers: Option<PathBuf>,

    /// Address to accept direct (peer-to-peer) connections on [default: the local address
    /// of the connection to the server; 0.0.0.0 for every interface].
    #[arg(long, value_name = "ADDR")]
    peer_host: Option<IpAddr>,

    /// Port to accept direct connections on (0: any free port).
    #[arg(long, value_name = "N", default_value_t = 0)]
    peer_port: u16,

    /// When no direct connection works, carry direct messages through the server's blind
    /// relay (if it offers one): end-to-end encrypted, the server sees only ciphertext.
    /// Also needed to accept a relayed link from others.
    #[arg(long)]
    allow_relay: bool,

    /// Seconds each step of a direct message may take (server lookup, connect, TLS
    /// handshake, greeting, acknowledgement).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    peer_timeout: u64,

    /// Where accepted files go unless /accept names a directory [default: the user's
    /// download directory, e.g. ~/Downloads, else the data directory].
    #[arg(long, value_name = "DIR")]
    download_dir: Option<PathBuf>,

    /// Seconds a file offer waits for /accept or /reject before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    offer_expiry: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .target(env_logger::Target::Stderr)
        .init();

    let trust = match &args.ca {
        Some(ca) => Trust::from_ca_file(ca),
        None => Trust::tofu(args.known_servers.clone()),
    };
    let trust = match trust {
        Ok(t) => t,
        Err(e) => {
            eprintln!("huddle: error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let interactive = std::io::stdin().is_terminal();
    let peer = PeerOptions {
        host: args.peer_host,
        port: args.peer_port,
        timeout: Duration::from_secs(args.peer_timeout),
        allow_relay: args.allow_relay,
        download_dir: args
            .download_dir
            .clone()
            .unwrap_or_else(io::file_transfer::part_file::default_download_dir),
        offer_expiry: Duration::from_secs(args.offer_expiry),
    };
    let app = App::new(args.host, args.port, trust, interactive, peer);
    if interactive {
        forward_ctrl_c(app.sender());
    }
    ExitCode::from(app.run())
}

/// Outside the line editor (which reads Ctrl-C as a key), Ctrl-C cancels the command that is
/// waiting for the server instead of killing the program, and the password prompt gets the
/// chance to restore the terminal.
fn forward_ctrl_c(events: std::sync::mpsc::Sender<Report>) {
    use signal_hook::consts::SIGINT;
    use signal_hook::iterator::Signals;
    match Signals::new([SIGINT]) {
        Ok(mut signals) => {
            let spawned = std::thread::Builder::new()
                .name("huddle-signals".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        if events.send(Report::Interrupt).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                log::debug!("no Ctrl-C handler: {e}");
            }
        }
        Err(e) => log::debug!("no Ctrl-C handler: {e}"),
    }
}
