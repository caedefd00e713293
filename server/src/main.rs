//! `huddle-server`: parse flags, set up logging and signals, run the event loop.

use clap::Parser;
use huddle_server::{connect_hint, Server};
use huddle_server::{Args, Config};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    release_large_allocations();
    huddle_server::private_umask();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if args.hash_password {
        return hash_password();
    }
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let hint_config = config.clone();
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = install_signal_handlers(&server) {
        return fail(&format!("cannot install signal handlers: {e}"));
    }
    // Machine-readable start-up lines (scripts and tests wait for the first two), printed
    // once: stdout, not the log.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "huddle-server listening on {}", server.local_addr());
    let _ = writeln!(
        stdout,
        "certificate SHA-256 fingerprint: {}",
        server.fingerprint()
    );
    if let Some(plain) = server.plain_addr() {
        log::warn!("plaintext (no TLS) listener on {plain}");
        let _ = writeln!(stdout, "huddle-server plaintext listener on {plain}");
    }
    if let Some(relay) = server.relay_addr() {
        log::info!("relay for direct links listening on {relay} (plain TCP, blind)");
        let _ = writeln!(stdout, "huddle-server relay listening on {relay}");
    }
    for line in connect_hint(&hint_config, server.local_addr()) {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    drop(stdout);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// `--hash-password`: one line from standard input (the password, without its line end)
/// becomes an argon2id PHC string on standard output, for the `--opers` file.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        return fail(&format!("cannot read the password: {e}"));
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return fail("the password is empty");
    }
    match huddle_server::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot hash the password: {e}")),
    }
}

/// SIGINT and SIGTERM ask the event loop to shut down gracefully; SIGHUP reloads TLS files.
fn install_signal_handlers(server: &Server) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = server.shutdown_handle();
    std::thread::Builder::new()
        .name("huddle-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("SIGHUP: reloading certificate, key and MOTD");
                    handle.reload();
                } else {
                    log::info!("signal {sig} received");
                    handle.shutdown();
                    break;
                }
            }
        })?;
    Ok(())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("huddle-server: error: {message}");
    ExitCode::FAILURE
}

/// Makes glibc serve every allocation of 128 KiB or more (its default threshold) with its own
/// mapping, given back to the system when freed, for good. By default glibc raises that
/// threshold to the size of the largest block freed so far, so after the first argon2 hash
/// (19 MiB of working memory) every later one would come from a thread's heap and stay
/// resident after it is freed, across many heaps: over 1 GiB after a storm of 200
/// registrations. Setting the threshold turns that adjustment off, and RSS returns to a few
/// MiB once hashing stops.
fn release_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
