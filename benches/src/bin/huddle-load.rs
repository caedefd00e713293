//! `huddle-load`: load generator for Huddle and other IRC servers (TLS or plain TCP, loopback
//! only). Every scenario is bounded in count and time and stops by itself.

use clap::{Args, Parser, Subcommand};
use huddle_benches::floor::{self, FloorParams};
use huddle_benches::irc::AuthMode;
use huddle_benches::net::{client_config, Target, TlsSetup};
use huddle_benches::report::Report;
use huddle_benches::scenarios::{self, ChatParams, Common};
use huddle_benches::{procstat, LoadError};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Load generator for IRC servers (Huddle, ngIRCd, InspIRCd...), loopback only.
#[derive(Debug, Parser)]
#[command(name = "huddle-load", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// Server host: must resolve to a loopback address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, global = true, default_value_t = 6697)]
    port: u16,
    /// Plain TCP instead of TLS.
    #[arg(long, global = true)]
    plain: bool,
    /// Trust this PEM CA/certificate instead of accepting any certificate.
    #[arg(long, global = true, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (the default without --ca; handshake signatures are still
    /// checked). Fine for loopback benchmarks, never for real use.
    #[arg(long, global = true, conflicts_with = "ca")]
    insecure: bool,
    /// TLS server name (SNI and, with --ca, the name checked).
    #[arg(long, global = true, default_value = "localhost")]
    sni: String,
    /// Log in with SASL PLAIN (account = nick); otherwise plain NICK/USER.
    #[arg(long, global = true)]
    sasl: bool,
    /// Create the accounts with REGISTER first (Huddle; existing accounts are fine).
    #[arg(long, global = true, requires = "sasl")]
    register: bool,
    /// Password of every benchmark account.
    #[arg(long, global = true, default_value = "huddle-load-password")]
    password: String,
    /// Nicks/accounts are <PREFIX><n> (default: "u" with --sasl, "n" without).
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// Room the chat scenarios use.
    #[arg(long, global = true, default_value = "#bench")]
    room: String,
    /// Threads for the chat phase (1 leaves the other core to the server on a 2-core box).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// PID of the server, for its CPU time, RSS and descriptors from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Connections set up at once.
    #[arg(long, global = true, default_value_t = 64)]
    setup_in_flight: usize,
    /// Hard bound on each scenario, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    time_limit: u64,
    /// Seconds without any delivery, once every message is sent, before missing deliveries
    /// count as lost.
    #[arg(long, global = true, default_value_t = 3)]
    drain: u64,
    /// Name of the server in the report.
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// One JSON object per scenario on stdout (the human summary goes to stderr).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Args, Clone)]
struct FanoutArgs {
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 500)]
    messages: u32,
    /// Text bytes per message.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Most messages a sender may be ahead of the average receiver (0: unbounded; large
    /// values let the server's send queues overflow when the tool reads slower than it sends).
    #[arg(long, default_value_t = 100)]
    window: u32,
    /// Runs; the report with the median deliveries/s is printed (all with --json).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

#[derive(Debug, Args, Clone)]
struct LightArgs {
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Messages per second of the one sender.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 2000)]
    messages: u32,
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Debug, Args, Clone)]
struct CrowdArgs {
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    senders: usize,
    #[arg(long, default_value_t = 100)]
    messages: u32,
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Most messages a sender may be ahead of the average receiver (0: unbounded).
    #[arg(long, default_value_t = 100)]
    window: u32,
}

#[derive(Debug, Args, Clone)]
struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Seconds to hold the connections after all are up.
    #[arg(long, default_value_t = 3)]
    hold: u64,
}

#[derive(Debug, Args, Clone)]
struct ConnectArgs {
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
}

#[derive(Debug, Args, Clone)]
struct LoginArgs {
    /// Logged-in users chatting during the storm.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Logins started at once.
    #[arg(long, default_value_t = 200)]
    logins: usize,
    /// Chat messages per second (one sender).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// 1: clients in one room, each sending as fast as the server takes them.
    Fanout(FanoutArgs),
    /// 2: clients in one room, one sender at a fixed rate.
    Light(LightArgs),
    /// 3: many clients in one room, a few senders.
    Crowd(CrowdArgs),
    /// 4: many connections logged in and held idle (server RSS per connection).
    Idle(IdleArgs),
    /// 5: connection storm until the first server line (handshakes/s).
    Connect(ConnectArgs),
    /// 6: a storm of logins while users chat (chat latency during the storm).
    Login(LoginArgs),
    /// The loopback floor of scenario 2: no server, a relay thread in this process copies each
    /// line to the other clients over plain TCP (the lowest latency this machine allows).
    Floor(LightArgs),
}

fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddr, LoadError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| LoadError::Setup(format!("cannot resolve {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .copied()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            LoadError::Setup(format!(
                "{host} is not a loopback address: huddle-load only loads servers on this \
                 machine (127.0.0.0/8 or ::1)"
            ))
        })
}

fn common(args: &CommonArgs) -> Result<Common, LoadError> {
    if args
        .host
        .parse::<IpAddr>()
        .is_ok_and(|ip| !ip.is_loopback())
    {
        return Err(LoadError::Setup(format!(
            "{} is not a loopback address: huddle-load only loads servers on this machine",
            args.host
        )));
    }
    let addr = resolve_loopback(&args.host, args.port)?;
    let tls = if args.plain {
        None
    } else {
        let server_name = ServerName::try_from(args.sni.clone())
            .map_err(|e| LoadError::Setup(format!("bad --sni {:?}: {e}", args.sni)))?;
        Some(TlsSetup {
            config: client_config(args.ca.as_deref())?,
            server_name,
        })
    };
    let auth = if args.sasl {
        AuthMode::Sasl
    } else {
        AuthMode::Nick
    };
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        match auth {
            AuthMode::Sasl => "u",
            AuthMode::Nick => "n",
        }
        .to_string()
    });
    Ok(Common {
        target: Target { addr, tls },
        label: args.label.clone(),
        auth,
        register: args.register,
        password: args.password.clone(),
        prefix,
        room: args.room.clone(),
        threads: args.threads.max(1),
        server_pid: args.server_pid,
        setup_in_flight: args.setup_in_flight.max(1),
        time_limit: Duration::from_secs(args.time_limit.max(1)),
        drain: Duration::from_secs(args.drain),
    })
}

fn run(cli: &Cli) -> Result<Vec<Report>, LoadError> {
    let c = common(&cli.common)?;
    match &cli.scenario {
        Scenario::Fanout(a) => {
            let p = ChatParams {
                clients: a.clients,
                senders: a.clients,
                messages: a.messages,
                rate: None,
                size: a.size,
                window: a.window,
            };
            let mut reports = Vec::new();
            for i in 0..a.repeat.max(1) {
                let mut r = scenarios::chat(&c, "fanout", &p)?;
                r.set("repeat", i + 1);
                reports.push(r);
            }
            Ok(reports)
        }
        Scenario::Light(a) => {
            let p = ChatParams {
                clients: a.clients,
                senders: 1,
                messages: a.messages,
                rate: Some(a.rate),
                size: a.size,
                window: 0,
            };
            Ok(vec![scenarios::chat(&c, "light", &p)?])
        }
        Scenario::Crowd(a) => {
            let p = ChatParams {
                clients: a.clients,
                senders: a.senders,
                messages: a.messages,
                rate: None,
                size: a.size,
                window: a.window,
            };
            Ok(vec![scenarios::chat(&c, "crowd", &p)?])
        }
        Scenario::Idle(a) => Ok(vec![scenarios::idle(
            &c,
            a.connections,
            a.in_flight.max(1),
            Duration::from_secs(a.hold),
        )?]),
        Scenario::Connect(a) => Ok(vec![scenarios::connect(
            &c,
            a.connections,
            a.in_flight.max(1),
        )?]),
        Scenario::Login(a) => Ok(vec![scenarios::login_storm(
            &c, a.clients, a.logins, a.rate, a.size,
        )?]),
        Scenario::Floor(a) => {
            let p = FloorParams {
                clients: a.clients,
                rate: a.rate,
                messages: a.messages,
                size: a.size,
            };
            Ok(vec![floor::floor(&p, c.time_limit, c.drain)?])
        }
    }
}

/// Connections this run may hold at once (plus slack for the process itself).
fn fds_needed(s: &Scenario) -> u64 {
    let n = match s {
        Scenario::Fanout(a) => a.clients,
        Scenario::Light(a) => a.clients,
        // Both ends of every connection are in this process.
        Scenario::Floor(a) => 2 * a.clients,
        Scenario::Crowd(a) => a.clients,
        Scenario::Idle(a) => a.connections,
        Scenario::Connect(a) => a.in_flight,
        Scenario::Login(a) => a.clients + a.logins,
    };
    n as u64 + 64
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let want = fds_needed(&cli.scenario);
    let got = procstat::raise_nofile(want);
    if got < want {
        eprintln!(
            "huddle-load: error: need {want} file descriptors but the limit is {got} \
             (raise it with ulimit -n)"
        );
        return ExitCode::FAILURE;
    }
    let reports = match run(&cli) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("huddle-load: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut all_ok = true;
    for r in &reports {
        all_ok &= r.ok();
        if cli.common.json {
            println!("{}", r.to_json());
            eprint!("{}", r.to_human());
        } else {
            print!("{}", r.to_human());
        }
    }
    if reports.len() > 1 {
        let mut rates: Vec<f64> = reports
            .iter()
            .filter_map(|r| r.num("deliveries_per_s"))
            .collect();
        rates.sort_by(f64::total_cmp);
        if let Some(m) = rates.get(rates.len() / 2) {
            let line = format!(
                "median of {} runs: {} deliveries/s",
                rates.len(),
                huddle_benches::report::thousands(*m)
            );
            if cli.common.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
