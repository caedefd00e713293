//! Command-line flags and the validated configuration built from them.

use crate::guards::flood::FloodPolicy;
use crate::guards::ip_limits::{IpPolicy, Net};
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `--admin-name`/`--admin-email`: one line of text that fits a reply.
fn admin_text(s: &str) -> Result<String, String> {
    if s.len() > 200 || s.chars().any(char::is_control) {
        return Err("at most 200 bytes, no control characters".to_string());
    }
    Ok(s.to_string())
}

/// Huddle chat server: TLS-only IRC-style group chat with accounts.
#[derive(Debug, Parser)]
#[command(name = "huddle-server", version, about, long_about = None)]
pub struct Args {
    /// TCP port to listen on (0 picks a free one).
    #[arg(default_value_t = 6697)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Directory for the account database and the generated certificate.
    #[arg(long, default_value = "./huddle-data")]
    pub data_dir: PathBuf,

    /// Most clients connected at once; the next one is told the server is full.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_clients: u32,

    /// PEM certificate chain (needs --key). Without both, a self-signed one is generated.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key for --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,

    /// Threads for password hashing and database writes (default: one less than the number
    /// of CPUs, at least one, so the event loop keeps a core to itself during login storms).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,

    /// Server name used as the source of replies.
    #[arg(long, default_value = "huddle.local")]
    pub name: String,

    /// Seconds a client may take to finish the TLS handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub handshake_timeout: u64,

    /// Seconds a connection may stay without logging in.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub login_timeout: u64,

    /// Seconds of silence before the server PINGs a client; as long again without PONG drops it.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub ping_interval: u64,

    /// Bytes of unsent output allowed per connection before it is dropped as too slow.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(4096..=1 << 30))]
    pub sendq: u64,

    /// Message of the day: a text file sent after login (otherwise 422).
    #[arg(long, value_name = "FILE")]
    pub motd: Option<PathBuf>,

    /// Let clients connect as guests without logging in (they can't use registered names).
    #[arg(long)]
    pub allow_guests: bool,

    /// Who runs the server, for `ADMIN` (up to 200 bytes).
    #[arg(long, value_name = "TEXT", value_parser = admin_text)]
    pub admin_name: Option<String>,

    /// How to reach who runs the server, for `ADMIN` (up to 200 bytes).
    #[arg(long, value_name = "TEXT", value_parser = admin_text)]
    pub admin_email: Option<String>,

    /// Messages kept per room and replayed on JOIN (0 disables history).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub history: u64,

    /// Bytes of room history kept in memory across all rooms; beyond it the least recently
    /// used rooms are dropped from memory (they stay on disk and are read again when used).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(65536..=1 << 36))]
    pub history_memory: u64,

    /// Seconds after its last message that the history of a room that no longer exists (no
    /// members) is deleted (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30 * 24 * 3600)]
    pub history_expire: u64,

    /// Also listen WITHOUT TLS on [ADDR:]PORT (address defaults to 127.0.0.1), for local tools.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub plain_listener: Option<String>,

    /// Allow --plain-listener on a non-loopback address (passwords would cross the network
    /// unencrypted).
    #[arg(long)]
    pub force_plaintext: bool,

    /// Connections at once from one address (0: unlimited).
    #[arg(long, default_value_t = 5)]
    pub max_per_ip: u32,

    /// Connection attempts per minute from one address (0: unlimited).
    #[arg(long, default_value_t = 30)]
    pub connects_per_minute: u32,

    /// Accounts created per hour from one address (0: unlimited).
    #[arg(long, default_value_t = 10)]
    pub registrations_per_hour: u32,

    /// Failed logins (per account name; twice as many per address) within 10 minutes before
    /// further attempts are refused; from the third failure each attempt waits longer (0: off).
    #[arg(long, default_value_t = 10)]
    pub login_failures: u32,

    /// Networks exempt from the per-address limits, comma separated CIDRs, or "none".
    #[arg(long, default_value = "127.0.0.0/8,::1/128", value_name = "CIDR,...")]
    pub exempt_net: String,

    /// Lines a client may send at once before flood control paces it.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub flood_burst: u32,

    /// Lines per second a client may send after its burst (0 turns flood control off).
    #[arg(long, default_value_t = 5)]
    pub flood_rate: u32,

    /// Lines that may wait for flood control before the client is cut off ("Excess flood").
    #[arg(long, default_value_t = 100)]
    pub flood_queue: u32,

    /// Server operators: one `name $argon2id$...` a line (make the hash with
    /// --hash-password); read again on SIGHUP and REHASH.
    #[arg(long, value_name = "FILE")]
    pub opers: Option<PathBuf>,

    /// Read a password from standard input, print its argon2id hash for the --opers file,
    /// and exit.
    #[arg(long)]
    pub hash_password: bool,

    /// Relay direct links between users whose clients cannot reach each other (the bytes
    /// stay end-to-end encrypted between the clients; off by default).
    #[arg(long)]
    pub relay: bool,

    /// Port of the relay's plain TCP listener, on the --bind address (0: a free one,
    /// announced in ISUPPORT as PEERRELAY=<port>).
    #[arg(long, value_name = "PORT", default_value_t = 0, requires = "relay")]
    pub relay_port: u16,

    /// Bandwidth cap of each relayed link, in bytes per second each way.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, requires = "relay",
          value_parser = clap::value_parser!(u64).range(1024..=1 << 34))]
    pub relay_rate: u64,
}

/// The relay (`--relay`): where it listens and how fast each link may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// Bytes per second each way, per link.
    pub rate: u64,
}

/// Everything the server needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_clients: usize,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub workers: usize,
    pub name: String,
    pub handshake_timeout: Duration,
    pub login_timeout: Duration,
    pub ping_interval: Duration,
    pub sendq: usize,
    pub motd: Option<PathBuf>,
    pub allow_guests: bool,
    pub admin_name: Option<String>,
    pub admin_email: Option<String>,
    pub history: usize,
    pub history_memory: usize,
    pub history_expire: Duration,
    pub plain_listener: Option<SocketAddr>,
    pub ip_policy: IpPolicy,
    pub flood: FloodPolicy,
    pub login_failures: usize,
    pub opers: Option<PathBuf>,
    /// `None` without `--relay`.
    pub relay: Option<RelayConfig>,
}

impl Config {
    /// Builds the configuration from parsed flags.
    pub fn from_args(args: Args) -> Result<Config, String> {
        if !valid_server_name(&args.name) {
            return Err(format!(
                "invalid --name {:?}: use letters, digits, '.', '-' and '_' (1-63 chars)",
                args.name
            ));
        }
        let workers = match args.workers {
            Some(n) => n as usize,
            None => {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            }
        };
        let plain_listener = match &args.plain_listener {
            Some(spec) => Some(parse_plain_listener(spec, args.force_plaintext)?),
            None => None,
        };
        let exempt = parse_exempt(&args.exempt_net)?;
        let login_failures = args.login_failures as usize;
        let ip_policy = IpPolicy {
            max_connections: args.max_per_ip as usize,
            connects_per_minute: args.connects_per_minute as usize,
            registrations_per_hour: args.registrations_per_hour as usize,
            login_failures: login_failures * 2,
            exempt,
        };
        let flood = FloodPolicy {
            burst: args.flood_burst,
            rate: args.flood_rate,
            max_queued: args.flood_queue as usize,
        };
        Ok(Config {
            listen: SocketAddr::new(args.bind, args.port),
            data_dir: args.data_dir,
            max_clients: args.max_clients as usize,
            cert: args.cert,
            key: args.key,
            workers,
            name: args.name,
            handshake_timeout: Duration::from_secs(args.handshake_timeout),
            login_timeout: Duration::from_secs(args.login_timeout),
            ping_interval: Duration::from_secs(args.ping_interval),
            sendq: args.sendq as usize,
            motd: args.motd,
            allow_guests: args.allow_guests,
            admin_name: args.admin_name,
            admin_email: args.admin_email,
            history: args.history as usize,
            history_memory: args.history_memory as usize,
            history_expire: Duration::from_secs(args.history_expire),
            plain_listener,
            ip_policy,
            flood,
            login_failures,
            opers: args.opers,
            relay: args.relay.then_some(RelayConfig {
                listen: SocketAddr::new(args.bind, args.relay_port),
                rate: args.relay_rate,
            }),
        })
    }

    /// Defaults for an in-process server on `listen` with data in `data_dir`.
    pub fn for_dir(listen: SocketAddr, data_dir: PathBuf) -> Config {
        let args = Args::parse_from(["huddle-server"]);
        let mut config = Config::from_args(args).unwrap_or_else(|_| unreachable!());
        config.listen = listen;
        config.data_dir = data_dir;
        config
    }
}

fn parse_exempt(list: &str) -> Result<Vec<Net>, String> {
    if list.trim().eq_ignore_ascii_case("none") || list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|n| Net::parse(n.trim()).map_err(|e| format!("invalid --exempt-net: {e}")))
        .collect()
}

/// `PORT` (on 127.0.0.1) or `ADDR:PORT`; non-loopback only with `force`.
fn parse_plain_listener(spec: &str, force: bool) -> Result<SocketAddr, String> {
    let addr = match spec.parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
        Err(_) => spec.parse::<SocketAddr>().map_err(|_| {
            format!(
                "invalid --plain-listener {spec:?}: use PORT or ADDR:PORT (e.g. 127.0.0.1:6667)"
            )
        })?,
    };
    if !addr.ip().is_loopback() && !force {
        return Err(format!(
            "refusing --plain-listener on non-loopback address {addr}: plaintext would expose \
             passwords and messages; add --force-plaintext if you really mean it"
        ));
    }
    Ok(addr)
}

fn valid_server_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let all = std::iter::once("huddle-server").chain(args.iter().copied());
        let args = Args::try_parse_from(all).map_err(|e| e.to_string())?;
        Config::from_args(args)
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.port(), 6697);
        assert_eq!(c.max_clients, 20);
        assert_eq!(c.name, "huddle.local");
        assert_eq!(c.data_dir, PathBuf::from("./huddle-data"));
    }

    #[test]
    fn port_and_flags() {
        let c = parse(&[
            "7000",
            "--bind",
            "127.0.0.1",
            "--max-clients",
            "3",
            "--workers",
            "2",
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.max_clients, 3);
        assert_eq!(c.workers, 2);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--max-clients", "0"]).is_err());
        assert!(parse(&["--cert", "a.pem"]).is_err());
        assert!(parse(&["--name", "bad name"]).is_err());
        assert!(parse(&["99999"]).is_err());
        assert!(parse(&["--plain-listener", "0.0.0.0:6667"]).is_err());
        assert!(parse(&["--plain-listener", "nope"]).is_err());
    }

    #[test]
    fn plain_listener() {
        let c = parse(&["--plain-listener", "6667"]).unwrap();
        assert_eq!(c.plain_listener, Some("127.0.0.1:6667".parse().unwrap()));
        let c = parse(&["--plain-listener", "[::1]:0"]).unwrap();
        assert_eq!(c.plain_listener, Some("[::1]:0".parse().unwrap()));
        let c = parse(&["--plain-listener", "0.0.0.0:6667", "--force-plaintext"]).unwrap();
        assert!(c.plain_listener.is_some());
        assert!(!parse(&[]).unwrap().allow_guests);
        let c = parse(&["--exempt-net", "none", "--flood-rate", "0"]).unwrap();
        assert!(c.ip_policy.exempt.is_empty());
        assert_eq!(c.flood.rate, 0);
        assert_eq!(parse(&[]).unwrap().ip_policy.exempt.len(), 2);
        assert!(parse(&["--exempt-net", "10.0.0.0/99"]).is_err());
        assert_eq!(parse(&[]).unwrap().history, 200);
    }

    #[test]
    fn relay_flags() {
        assert_eq!(parse(&[]).unwrap().relay, None);
        let c = parse(&["--bind", "127.0.0.1", "--relay"]).unwrap();
        assert_eq!(
            c.relay,
            Some(RelayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                rate: 1 << 20
            })
        );
        let c = parse(&["--relay", "--relay-port", "7000", "--relay-rate", "65536"]).unwrap();
        let relay = c.relay.unwrap();
        assert_eq!((relay.listen.port(), relay.rate), (7000, 65536));
        assert!(parse(&["--relay-port", "7000"]).is_err(), "needs --relay");
        assert!(parse(&["--relay", "--relay-rate", "10"]).is_err());
    }
}
