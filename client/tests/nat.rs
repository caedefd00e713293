//! Direct messages across NATs, on a real (small) network: `scripts/netns.sh` builds Linux
//! network namespaces with a public segment holding the server, a client with a public
//! address, and two home networks each behind its own NAT router that drops unsolicited
//! packets; real `huddle-server` and `huddle` processes run inside them (`ip netns exec`).
//!
//! Needs root (CI runs as root); as any other user every test says so and returns. Every
//! test builds its own namespaces under a unique name, so they run in parallel, and tears
//! them down when it ends, failed or not. Nothing sleeps to synchronise: waits are for lines
//! the programs print, each bounded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use huddle_testkit::child::{line_channel, ChildGuard};
use huddle_testkit::wait::wait_for_value;
use huddle_testkit::{install_test_tools, target_binary, CliClient, Paused, CLI_DEADLINE, PW};

const SERVER_IP: &str = "203.0.113.1";
const SERVER_PORT: &str = "6697";
/// The bound the issue sets on direct attempts, hole punching and the relay together, with
/// room for a slow machine.
const ATTEMPT_BOUND: Duration = Duration::from_secs(25);

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: the NAT tests build network namespaces and need root");
    }
    root
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh")
}

/// One set of namespaces; torn down on drop.
struct Net {
    name: String,
}

impl Net {
    /// Builds the network with NAT modes `a` and `b` (`eim` or `random`).
    fn up(a: &str, b: &str) -> Net {
        install_test_tools("the NAT tests");
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hn{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let net = Net { name };
        let out = Command::new("bash")
            .arg(script())
            .args(["up", &net.name, a, b])
            .output()
            .expect("run netns.sh");
        assert!(
            out.status.success(),
            "netns.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        net
    }

    /// `program args...` inside namespace `host`.
    fn command(&self, host: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-{host}", self.name)])
            .arg(program)
            .env_remove("HUDDLE_KNOWN_SERVERS");
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.name])
            .status();
    }
}

/// `huddle-server` in the server's namespace.
struct Server {
    child: ChildGuard,
    _lines: Receiver<String>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(net: &Net, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = net.command("srv", &target_binary("huddle-server"));
        cmd.args([SERVER_PORT, "--bind", SERVER_IP, "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start huddle-server");
        let lines = line_channel(child.stdout.take().unwrap());
        let child = ChildGuard::new(child);
        let want = if extra.contains(&"--relay") {
            "huddle-server relay listening on"
        } else {
            "certificate SHA-256 fingerprint"
        };
        let deadline = Instant::now() + CLI_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.starts_with(want) => break,
                Ok(_) => {}
                Err(e) => panic!("huddle-server did not start: {e}"),
            }
        }
        Server {
            child,
            _lines: lines,
            cert: dir.path().join("cert.pem"),
            _dir: dir,
        }
    }

    fn pause(&self) -> Paused {
        Paused::stop(self.child.pid())
    }
}

/// `huddle` in namespace `host`, registered and logged in as `name`, in #lobby.
fn client(net: &Net, server: &Server, host: &str, name: &str, extra: &[&str]) -> CliClient {
    logging_client(net, server, host, name, extra, None)
}

/// [`client`], with its log (at level info) going to the file `log` when given.
fn logging_client(
    net: &Net,
    server: &Server,
    host: &str,
    name: &str,
    extra: &[&str],
    log: Option<&Path>,
) -> CliClient {
    let mut cmd = net.command(host, &target_binary("huddle"));
    cmd.args([SERVER_IP, SERVER_PORT, "--ca"])
        .arg(&server.cert)
        .args(extra);
    let mut c = match log {
        Some(file) => {
            cmd.env("RUST_LOG", "huddle=info");
            let file = std::fs::File::create(file).expect("create the log file");
            CliClient::spawn_with_stderr(name, cmd, Stdio::from(file))
        }
        None => CliClient::spawn(name, cmd),
    };
    c.send(&format!("register {name} {PW}"));
    c.expect(&format!("-- registered {name}"));
    c.expect(&format!("-- logged in as {name}"));
    c.expect("-- joined #lobby");
    c
}

/// The port `huddle` said it listens on.
fn listening_port(c: &CliClient) -> u16 {
    let line = c
        .seen()
        .iter()
        .find_map(|l| l.strip_prefix("-- direct messages: listening on port "))
        .expect("the listening line");
    line.split(',').next().unwrap().parse().unwrap()
}

/// The public port the mapping probe learnt, from the client's log.
fn mapped_port(log: &Path) -> u16 {
    let needle = "the server sees our listening port as ";
    wait_for_value(
        CLI_DEADLINE,
        || {
            let text = std::fs::read_to_string(log).ok()?;
            let at = text.find(needle)? + needle.len();
            let addr: std::net::SocketAddr = text[at..].split_whitespace().next()?.parse().ok()?;
            Some(addr.port())
        },
        || format!("no mapping in {}", log.display()),
    )
}

/// Sends `text` from `from` to `to` and waits for the delivery line; how it went (the part
/// in brackets) and how long it took.
fn deliver(from: &mut CliClient, to: &str, text: &str) -> (String, Duration) {
    let started = Instant::now();
    from.send(&format!("msg {to} {text}"));
    let line = from.expect_by("the outcome", |l| {
        l.starts_with(&format!("-- delivered to {to} (")) || l.starts_with("!! ")
    });
    let how = line
        .strip_prefix(&format!("-- delivered to {to} ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not delivered: {line}"));
    (how.to_string(), started.elapsed())
}

/// `from` offers a 1 MiB file to `to`, who accepts it into `dir`: it arrives intact.
fn send_file(
    (from, from_name): (&mut CliClient, &str),
    (to, to_name): (&mut CliClient, &str),
    dir: &Path,
    name: &str,
) {
    let files = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = files.path().join(name);
    std::fs::write(&path, &data).unwrap();
    from.send(&format!("/send {to_name} {}", path.display()));
    let offer = to.expect_by("the offer", |l| l.starts_with("-- file offer "));
    let id = offer
        .strip_prefix("-- file offer ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    to.send(&format!("/accept {id}"));
    let done = to.expect_by("the saved file", |l| {
        l.starts_with(&format!("-- file {id} from {from_name} saved as ")) || l.starts_with("!! ")
    });
    assert!(done.ends_with("SHA-256 verified"), "{done}");
    assert_eq!(std::fs::read(dir.join(name)).unwrap(), data);
}

/// The TCP connections established in namespace `host`, as `ss` lists them.
fn established(net: &Net, host: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-{host}", net.name),
            "ss",
            "-Htn",
            "state",
            "established",
        ])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn behind_two_endpoint_independent_nats_hole_punching_connects_and_the_server_can_pause() {
    if !root() {
        return;
    }
    let net = Net::up("eim", "eim");
    let server = Server::start(&net, &[]);
    let (alice_dl, bob_dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dl = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();
    let (alice_dir, bob_dir) = (dl(&alice_dl), dl(&bob_dl));
    let mut alice = client(&net, &server, "a", "alice", &["--download-dir", &alice_dir]);
    let logs = tempfile::tempdir().unwrap();
    let bob_log = logs.path().join("bob.log");
    let bob_args = ["--download-dir", bob_dir.as_str()];
    let mut bob = logging_client(&net, &server, "b", "bob", &bob_args, Some(&bob_log));

    let (how, took) = deliver(&mut alice, "bob", "through two NATs");
    eprintln!("alice -> bob through two NATs: {how}, {took:?}");
    assert!(how.starts_with("direct"), "{how}");
    assert!(took < ATTEMPT_BOUND, "{took:?}");
    bob.expect("[direct] <alice> through two NATs");
    // Peer to peer: bob's end of the link is alice's router, not the server.
    assert!(
        established(&net, "b").contains("203.0.113.2:"),
        "{}",
        established(&net, "b")
    );

    // Files, both ways, directly (the server has no relay): each data connection is
    // punched from a fresh port of the receiver, since the link holds the pair of
    // listening ports.
    let started = Instant::now();
    send_file(
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        bob_dl.path(),
        "through-two-nats.bin",
    );
    let log = std::fs::read_to_string(&bob_log).unwrap();
    assert!(
        log.contains("asking alice to dial back to the fresh port at 203.0.113.3:"),
        "{log}"
    );
    send_file(
        (&mut bob, "bob"),
        (&mut alice, "alice"),
        alice_dl.path(),
        "and-back.bin",
    );
    eprintln!("two files through two NATs: {:?}", started.elapsed());

    // The link is up: the server is not needed any more, either way.
    let paused = server.pause();
    let (how, _) = deliver(&mut alice, "bob", "server asleep");
    assert!(how.starts_with("direct"), "{how}");
    bob.expect("[direct] <alice> server asleep");
    let (how, _) = deliver(&mut bob, "alice", "still here");
    assert!(how.starts_with("direct"), "{how}");
    alice.expect("[direct] <bob> still here");

    // New files, both ways, with the server still paused: the offer rides the link, the
    // receiver reaches the sender where the link says it is, punches from a fresh port
    // whose mapping it guesses (no probe token comes), and the sender admits the data
    // connection on the link's word.
    send_file(
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        bob_dl.path(),
        "server-asleep.bin",
    );
    let log = std::fs::read_to_string(&bob_log).unwrap();
    assert!(
        log.contains("punching to alice from a fresh port without it"),
        "{log}"
    );
    assert!(log.contains("guessing the fresh port 10.0.2.2:"), "{log}");
    send_file(
        (&mut bob, "bob"),
        (&mut alice, "alice"),
        alice_dl.path(),
        "server-still-asleep.bin",
    );
    drop(paused);
    let (how, _) = deliver(&mut alice, "bob", "server awake");
    assert!(how.starts_with("direct"), "{how}");
}

#[test]
fn behind_the_same_nat_the_lan_hint_connects() {
    if !root() {
        return;
    }
    let net = Net::up("eim", "eim");
    let server = Server::start(&net, &[]);
    let mut alice = client(&net, &server, "a", "alice", &[]);
    let mut dave = client(&net, &server, "a2", "dave", &[]);
    let (how, took) = deliver(&mut alice, "dave", "over the LAN");
    assert_eq!(how, "direct");
    assert!(took < Duration::from_secs(5), "{took:?}");
    dave.expect("[direct] <alice> over the LAN");
    // The link runs between the two LAN addresses.
    let links = established(&net, "a2");
    assert!(
        links
            .lines()
            .any(|l| l.contains("10.0.1.3:") && l.contains("10.0.1.2:")),
        "{links}"
    );
}

#[test]
fn behind_a_random_port_nat_direct_fails_in_bounded_time_with_a_clear_error() {
    if !root() {
        return;
    }
    let net = Net::up("random", "eim");
    let server = Server::start(&net, &[]);
    let mut alice = client(&net, &server, "a", "alice", &[]);
    let bob = client(&net, &server, "b", "bob", &["--allow-relay"]);
    let started = Instant::now();
    alice.send("msg bob nobody gets this");
    let line = alice.expect_by("the failure", |l| l.starts_with("!! "));
    let took = started.elapsed();
    assert!(took < ATTEMPT_BOUND, "{took:?}");
    assert!(line.starts_with("!! cannot reach bob: direct: "), "{line}");
    assert!(
        line.contains("; hole punching: no answer; relay: not allowed (start with --allow-relay) (the message was not sent)"),
        "{line}"
    );
    // With --allow-relay but a server without a relay, the error says so.
    drop(alice);
    let mut carol = client(&net, &server, "a2", "carol", &["--allow-relay"]);
    carol.send("msg bob nobody gets this either");
    let line = carol.expect_by("the failure", |l| l.starts_with("!! "));
    assert!(
        line.ends_with("relay: the server offers none (the message was not sent)"),
        "{line}"
    );
    assert!(bob.seen().iter().all(|l| !l.contains("nobody gets this")));
}

/// A packet capture on the server's interface, until dropped or [`Capture::finish`]ed.
struct Capture {
    child: ChildGuard,
    file: PathBuf,
}

impl Capture {
    fn start(net: &Net, dir: &Path) -> Capture {
        let file = dir.join("server.pcap");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-srv", net.name)])
            .args(["tcpdump", "-i", "wan", "-U", "-s", "0", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start tcpdump");
        let lines = line_channel(child.stderr.take().unwrap());
        let child = ChildGuard::new(child);
        let deadline = Instant::now() + CLI_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains("listening on") => break,
                Ok(_) => {}
                Err(e) => panic!("tcpdump did not start: {e}"),
            }
        }
        Capture { child, file }
    }

    /// Stops the capture (SIGINT: it writes what it has) and returns the file's bytes.
    fn finish(mut self) -> Vec<u8> {
        huddle_testkit::child::signal(self.child.pid(), libc::SIGINT);
        self.child
            .wait_exit(CLI_DEADLINE)
            .expect("tcpdump stops on SIGINT");
        let mut bytes = Vec::new();
        std::fs::File::open(&self.file)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read the capture");
        bytes
    }
}

#[test]
fn behind_a_random_port_nat_the_opt_in_relay_delivers_and_sees_only_ciphertext() {
    if !root() {
        return;
    }
    let net = Net::up("random", "eim");
    let server = Server::start(&net, &["--relay"]);
    let mut alice = client(&net, &server, "a", "alice", &["--allow-relay"]);
    let mut bob = client(&net, &server, "b", "bob", &["--allow-relay"]);
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start(&net, dir.path());
    let secret = "the-blind-relay-never-reads-this-7f3a";
    let (how, took) = deliver(&mut alice, "bob", secret);
    assert_eq!(how, "relayed, end-to-end encrypted");
    assert!(took < ATTEMPT_BOUND, "{took:?}");
    bob.expect(&format!("[direct] <alice> {secret}"));
    let (how, _) = deliver(&mut bob, "alice", "and back");
    assert_eq!(how, "relayed, end-to-end encrypted");
    let pcap = capture.finish();
    // The capture holds the relayed traffic (both clients' TLS records) ...
    assert!(pcap.len() > 4000, "capture of {} bytes", pcap.len());
    // ... and never the text.
    let needle = secret.as_bytes();
    assert!(
        !pcap.windows(needle.len()).any(|w| w == needle),
        "the message text crossed the server's interface in the clear"
    );
}

#[test]
fn a_public_client_is_reached_at_once_and_reaches_a_nated_one_by_dial_back() {
    if !root() {
        return;
    }
    let net = Net::up("eim", "eim");
    let server = Server::start(&net, &[]);
    let (carol_dl, alice_dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dl = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();
    let (carol_dir, alice_dir) = (dl(&carol_dl), dl(&alice_dl));
    let mut carol = client(&net, &server, "c", "carol", &["--download-dir", &carol_dir]);
    let mut alice = client(&net, &server, "a", "alice", &["--download-dir", &alice_dir]);
    let mut bob = client(&net, &server, "b", "bob", &[]);

    // From the public client to one behind a NAT: the call makes alice dial back.
    let (how, took) = deliver(&mut carol, "alice", "from the open internet");
    eprintln!("carol -> alice behind a NAT: {how}, {took:?}");
    assert!(how.starts_with("direct"), "{how}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    alice.expect("[direct] <carol> from the open internet");

    // Files both ways: alice fetches carol's file directly; carol fetches alice's through
    // the NAT, by the dial-back.
    send_file(
        (&mut carol, "carol"),
        (&mut alice, "alice"),
        alice_dl.path(),
        "to-alice.bin",
    );
    send_file(
        (&mut alice, "alice"),
        (&mut carol, "carol"),
        carol_dl.path(),
        "to-carol.bin",
    );

    // From behind a NAT to the public client: direct, at once.
    let (how, took) = deliver(&mut bob, "carol", "to the open internet");
    assert_eq!(how, "direct");
    assert!(took < Duration::from_secs(3), "{took:?}");
    carol.expect("[direct] <bob> to the open internet");
}

#[test]
fn the_mapping_probe_learns_the_port_each_nat_gives_the_listener() {
    if !root() {
        return;
    }
    let net = Net::up("random", "eim");
    let server = Server::start(&net, &[]);
    let logs = tempfile::tempdir().unwrap();
    let (a_log, b_log) = (logs.path().join("alice.log"), logs.path().join("bob.log"));
    let alice = logging_client(&net, &server, "a", "alice", &[], Some(&a_log));
    let bob = logging_client(&net, &server, "b", "bob", &[], Some(&b_log));
    // The endpoint-independent NAT keeps the listening port; the random one picks another.
    assert_eq!(mapped_port(&b_log), listening_port(&bob));
    assert_ne!(mapped_port(&a_log), listening_port(&alice));
}
