//! End-to-end tests of files sent peer to peer: real `huddle` processes offer, accept and
//! stream files to each other over their own TLS connections while the real `huddle-server`
//! only tells them where the other listens. Byte counts the clients report (not timing) show
//! what a resumed transfer carried.
//!
//! Everything listens on 127.0.0.1. Nothing sleeps to synchronise (see `huddle_testkit`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use huddle_testkit::{CliClient, Paused, RunningServer, TestServer};
use ring::rand::{SecureRandom, SystemRandom};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(1 << 16) {
        SystemRandom::new().fill(chunk).unwrap();
    }
    v
}

fn sha_hex(data: &[u8]) -> String {
    huddle_trust::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// A logged-in client whose downloads go to `dir`.
fn user(server: &TestServer, name: &str, dir: &Path, extra: &[&str]) -> CliClient {
    let dir = dir.display().to_string();
    let mut args = vec!["--download-dir", dir.as_str()];
    args.extend_from_slice(extra);
    CliClient::logged_in(server, name, &args)
}

/// The number in `-- file offer N from ...`.
fn offer_id(line: &str) -> u64 {
    line.split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {line:?}"))
}

struct Pair {
    server: TestServer,
    alice: CliClient,
    bob: CliClient,
    /// Alice's files to send.
    src: tempfile::TempDir,
    /// Bob's download directory.
    dl: tempfile::TempDir,
}

fn pair(extra: &[&str]) -> Pair {
    let server = TestServer::start(&[]);
    let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = user(&server, "alice", src.path(), extra);
    let bob = user(&server, "bob", dl.path(), extra);
    Pair {
        server,
        alice,
        bob,
        src,
        dl,
    }
}

impl Pair {
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.src.path().join(name);
        fs::write(&p, data).unwrap();
        p
    }

    /// Alice offers `path`; bob sees the offer line; returns bob's number for it.
    fn offer(&mut self, path: &Path) -> u64 {
        self.alice.send(&format!("/send bob {}", path.display()));
        let line = self.bob.expect_prefix("-- file offer ");
        self.alice.expect_prefix("-- offered ");
        offer_id(&line)
    }
}

#[test]
fn small_and_empty_files_arrive_byte_identical() {
    let mut p = pair(&[]);
    for (name, data) in [("empty.bin", Vec::new()), ("one.bin", vec![0x5a])] {
        let path = p.write(name, &data);
        p.alice.send(&format!("/send bob {}", path.display()));
        let line = p.bob.expect_prefix("-- file offer ");
        assert!(
            line.ends_with(&format!(
                "from alice: {name} ({} bytes, sha256 {}): /accept {} or /reject {}",
                data.len(),
                sha_hex(&data),
                offer_id(&line),
                offer_id(&line)
            )),
            "{line}"
        );
        p.alice.expect_prefix("-- offered ");
        let id = offer_id(&line);
        p.bob.send(&format!("/accept {id}"));
        let done = p
            .bob
            .expect_prefix(&format!("-- file {id} from alice saved as "));
        assert!(
            done.ends_with(&format!(
                "received {} bytes (resumed at 0), SHA-256 verified",
                data.len()
            )),
            "{done}"
        );
        p.alice.expect_prefix("-- file ");
        assert_eq!(fs::read(p.dl.path().join(name)).unwrap(), data);
        assert!(!p.dl.path().join(format!("{name}.part")).exists());
    }
}

#[test]
fn a_large_file_arrives_while_the_server_is_paused_and_dms_keep_flowing() {
    let mut p = pair(&[]);
    let data = random_bytes(100 << 20);
    let path = p.write("big.bin", &data);
    let id = p.offer(&path);
    // Make sure the DM link is up before the server sleeps.
    p.alice.send("msg bob ready?");
    p.bob.expect("[direct] <alice> ready?");
    p.alice.expect("-- delivered to bob (direct)");
    // Bob looks alice up before the server is paused; the data itself never needs it.
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- accepted file {id} from alice"));
    p.alice.expect_prefix("-- bob accepted file 1");
    let paused = Paused::stop(p.server.pid());
    p.alice.send("msg bob still there during the transfer?");
    p.bob
        .expect("[direct] <alice> still there during the transfer?");
    p.alice.expect("-- delivered to bob (direct)");
    // The message came before the end of the transfer.
    let done = p
        .bob
        .expect_prefix(&format!("-- file {id} from alice saved as "));
    assert!(
        done.ends_with(&format!(
            "received {} bytes (resumed at 0), SHA-256 verified",
            data.len()
        )),
        "{done}"
    );
    p.alice.expect_prefix("-- file 1 sent to bob");
    drop(paused);
    assert!(fs::read(p.dl.path().join("big.bin")).unwrap() == data);
    // Progress lines at every tenth, without a terminal.
    let tenths = p
        .bob
        .seen()
        .iter()
        .filter(|l| l.starts_with(&format!("-- file {id} from alice (big.bin): ")))
        .count();
    assert!((5..=10).contains(&tenths), "{tenths}: {:?}", p.bob.seen());
}

#[test]
fn with_a_link_up_a_file_is_offered_accepted_and_fetched_while_the_server_is_paused() {
    let mut p = pair(&[]);
    p.alice.send("msg bob link up?");
    p.bob.expect("[direct] <alice> link up?");
    p.alice.expect("-- delivered to bob (direct)");
    let paused = Paused::stop(p.server.pid());
    // The offer rides the link; bob reaches alice where the link says she is, pinned to the
    // certificate it proved, and alice admits the data connection on the link's word.
    let data = random_bytes(256 << 10);
    let path = p.write("asleep.bin", &data);
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    let done = p.bob.expect_by("the outcome", |l| {
        l.starts_with(&format!("-- file {id} from alice saved as ")) || l.starts_with("!! ")
    });
    assert!(
        done.ends_with("received 262144 bytes (resumed at 0), SHA-256 verified"),
        "{done}"
    );
    p.alice.expect_prefix("-- file 1 sent to bob");
    assert!(fs::read(p.dl.path().join("asleep.bin")).unwrap() == data);
    drop(paused);
}

#[test]
fn rejection_and_expiry_are_told_to_both_sides() {
    let mut p = pair(&["--offer-expiry", "2"]);
    let path = p.write("note.txt", b"hello");
    let id = p.offer(&path);
    p.bob.send(&format!("/reject {id}"));
    p.bob
        .expect(&format!("-- rejected file {id} (note.txt) from alice"));
    p.alice.expect("-- bob rejected file 1 (note.txt)");

    // Unanswered, the next offer lapses on both sides.
    let id = p.offer(&path);
    p.bob.send("/files");
    p.bob.expect_prefix(&format!(
        "-- file {id} from alice: note.txt (5 bytes): offered"
    ));
    p.alice
        .expect("-- file 2 to bob (note.txt): the offer expired; bob did not accept it within 2 s");
    p.bob
        .expect(&format!("-- file offer {id} from alice (note.txt) expired"));
    p.bob.send(&format!("/accept {id}"));
    p.bob.expect(&format!("!! no file offer {id} (see /files)"));
    assert!(!p.dl.path().join("note.txt").exists());
}

#[test]
fn either_side_cancels_a_running_transfer_and_the_other_is_told() {
    let mut p = pair(&[]);
    let data = random_bytes(100 << 20);
    let path = p.write("big.bin", &data);

    let part = p.dl.path().join("big.bin.part");

    // The sender cancels once bytes flow; the receiver keeps what came, for a resume.
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (big.bin): 10%"));
    p.alice.send("/cancel 1");
    p.alice.expect("-- cancelled file 1 (big.bin)");
    p.bob
        .expect(&format!("-- alice cancelled file {id} (big.bin)"));
    assert!(!p.dl.path().join("big.bin").exists() && part.exists());

    // The receiver cancels: the part file goes.
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (big.bin): "));
    p.bob.send(&format!("/cancel {id}"));
    p.bob.expect(&format!("-- cancelled file {id} (big.bin)"));
    p.alice.expect("-- bob cancelled file 2 (big.bin)");
    assert!(!p.dl.path().join("big.bin").exists() && !part.exists());

    // An offer not yet accepted can be withdrawn.
    let id = p.offer(&path);
    p.alice.send("/cancel 3");
    p.alice.expect("-- cancelled file 3 (big.bin)");
    p.bob
        .expect(&format!("-- alice cancelled file {id} (big.bin)"));
}

/// Logs in `name` (registered earlier) with downloads into `dir`.
fn login_again(server: &TestServer, name: &str, dir: &Path) -> CliClient {
    let dir = dir.display().to_string();
    let mut c = CliClient::trusting(server, name, &["--download-dir", &dir]);
    c.send(&format!("login {name} {}", huddle_testkit::PW));
    c.expect(&format!("-- logged in as {name}"));
    c.expect("-- joined #lobby");
    c
}

/// The bytes before "bytes (resumed at" and the offset in a completion line.
fn received_and_resumed(line: &str) -> (u64, u64) {
    let after = line.split("received ").nth(1).unwrap();
    let mut words = after.split(' ');
    let received = words.next().unwrap().parse().unwrap();
    let resumed = after
        .split("resumed at ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    (received, resumed)
}

#[test]
fn a_transfer_resumes_after_the_receiver_is_killed_and_corruption_is_caught() {
    let mut p = pair(&[]);
    let size = 100u64 << 20;
    let data = random_bytes(size as usize);
    let path = p.write("big.bin", &data);
    let part = p.dl.path().join("big.bin.part");

    // Killed at about half way.
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (big.bin): 50%"));
    p.bob.kill();
    p.alice
        .expect_prefix("!! file 1 to bob (big.bin) interrupted: ");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept >= size * 4 / 10 && kept < size, "{kept}");
    let got = fs::read(&part).unwrap();
    let first_bad = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "part file differs (len {})", got.len());

    // Bob comes back; alice sends the same file again; only the rest travels.
    p.bob = login_again(&p.server, "bob", p.dl.path());
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob.expect(&format!(
        "-- accepted file {id} from alice: receiving into {}, resuming at {kept} bytes",
        part.display()
    ));
    let done = p
        .bob
        .expect_prefix(&format!("-- file {id} from alice saved as "));
    assert_eq!(received_and_resumed(&done), (size - kept, kept), "{done}");
    p.alice.expect_prefix("-- file 2 sent to bob");
    assert!(fs::read(p.dl.path().join("big.bin")).unwrap() == data);
    assert!(!part.exists() && !p.dl.path().join("big.bin.part.meta").exists());

    // Again, but the part file is damaged while bob is away: the whole-file hash catches it.
    fs::remove_file(p.dl.path().join("big.bin")).unwrap();
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (big.bin): 50%"));
    p.bob.kill();
    p.alice
        .expect_prefix("!! file 3 to bob (big.bin) interrupted: ");
    let mut bytes = fs::read(&part).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&part, &bytes).unwrap();
    p.bob = login_again(&p.server, "bob", p.dl.path());
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    let bad = p
        .bob
        .expect_prefix(&format!("!! file {id} from alice: SHA-256 mismatch"));
    assert!(
        bad.ends_with("the part file was deleted and nothing was saved"),
        "{bad}"
    );
    p.alice.expect_prefix(
        "!! file 4 to bob (big.bin) failed: the receiver's check failed: SHA-256 mismatch",
    );
    assert!(!part.exists() && !p.dl.path().join("big.bin").exists());
}

#[test]
fn refusals_directories_and_unwritable_targets() {
    let mut p = pair(&[]);
    // A directory is not offered.
    let sub = p.src.path().join("folder");
    fs::create_dir(&sub).unwrap();
    p.alice.send(&format!("/send bob {}", sub.display()));
    p.alice.expect(&format!(
        "!! cannot send {}: it is a directory; only regular files can be sent",
        sub.display()
    ));
    // Offline user: the same errors as for messages.
    let path = p.write("a.txt", b"abc");
    p.alice.send(&format!("/send nobody {}", path.display()));
    p.alice
        .expect("!! nobody is not online (the offer was not sent)");

    // A directory the receiver cannot write to: the offer stays open for another one.
    let id = p.offer(&path);
    let locked = p.dl.path().join("locked");
    fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
    if fs::write(locked.join("probe"), b"x").is_ok() {
        // Running as root: permissions do not stop writes; nothing to check here.
        return;
    }
    p.bob.send(&format!("/accept {id} {}", locked.display()));
    p.bob.expect(&format!(
        "!! cannot accept file {id}: cannot write to {}: permission denied",
        locked.display()
    ));
    p.bob
        .send(&format!("/accept {id} {}", p.dl.path().display()));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice saved as "));
    // Never overwrite: the same name again gets a number.
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    let done = p
        .bob
        .expect_prefix(&format!("-- file {id} from alice saved as "));
    assert!(done.contains("a (1).txt"), "{done}");
    assert_eq!(fs::read(p.dl.path().join("a (1).txt")).unwrap(), b"abc");
}

/// The port and fingerprint of a `PEER <nick> <ip> <port> <fp> :<endpoints>` reply.
fn port_and_fp(line: &str) -> (&str, &str) {
    let words: Vec<&str> = line.split(' ').collect();
    let at = words
        .iter()
        .position(|w| *w == "PEER")
        .unwrap_or_else(|| panic!("not a PEER reply: {line}"));
    (words[at + 3], words[at + 4])
}

/// A test-controlled sender: a raw IRC user `mallory` whose announced endpoint is a TLS
/// listener of this test, and who offers whatever names it likes.
struct FakeSender {
    id: huddle_testkit::PeerIdentity,
    _irc: huddle_testkit::Client,
    listener: std::net::TcpListener,
    /// The direct link to bob, greeted and welcomed.
    link: huddle_testkit::Client,
}

impl FakeSender {
    fn start(server: &TestServer) -> FakeSender {
        let id = huddle_testkit::PeerIdentity::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut irc = server.user_with_caps("mallory", "sasl draft/account-registration");
        irc.send(&format!("PEERADDR {port} {}", id.fp));
        irc.expect_by("the PEER confirmation", |l| l.contains(" PEER mallory "));
        irc.send("PEER bob");
        let line = irc.expect_by("bob's endpoint", |l| l.contains(" PEER bob 127.0.0.1 "));
        let (bob_port, bob_fp) = port_and_fp(&line);
        let mut link = huddle_testkit::Client::connect_pinned(
            bob_port.parse().unwrap(),
            bob_fp,
            Some(id.pair()),
            "mallory's link",
        );
        link.send("PEERHELLO mallory bob");
        link.expect_by("the welcome", |l| l == "PEERWELCOME bob mallory");
        FakeSender {
            id,
            _irc: irc,
            listener,
            link,
        }
    }

    /// Serves offer `n` (`data`) on the next data connection bob dials.
    fn serve(&self, n: u64, data: &'static [u8]) -> std::thread::JoinHandle<String> {
        use rustls::{ServerConfig, ServerConnection, StreamOwned};
        let config = ServerConfig::builder_with_provider(huddle_trust::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.id.cert.clone()], self.id.key())
            .unwrap();
        let listener = self.listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let conn = ServerConnection::new(std::sync::Arc::new(config)).unwrap();
            let mut peer = huddle_testkit::PeerLink::new(StreamOwned::new(conn, sock), "data");
            peer.expect_by("the greeting", |l| l == "PEERHELLO bob mallory");
            peer.send("PEERWELCOME mallory bob");
            peer.expect_by("FILEGET", |l| l == format!("FILEGET {n} 0"));
            peer.send(&format!("FILEDATA {n} 0"));
            peer.expect_by("FILEGO", |l| l == "FILEGO");
            peer.send_raw(data);
            peer.expect_by("the verdict", |l| l.starts_with("FILE"))
        })
    }
}

#[test]
fn hostile_names_land_safely_inside_the_target_directory() {
    let mut p = pair(&[]);
    let inside = p.dl.path().join("inbox");
    fs::create_dir(&inside).unwrap();
    let data: &'static [u8] = b"hello";
    let sha = sha_hex(data);
    let mut m = FakeSender::start(&p.server);
    let long = "y".repeat(300);
    let cases = [
        ("../../x", "x".to_string()),
        ("/etc/passwd", "passwd".to_string()),
        (".bashrc", "bashrc".to_string()),
        ("..", "file".to_string()),
        // A line cannot carry a newline; tabs and terminal escapes are the control
        // characters that can come.
        ("a\tb", "a b".to_string()),
        ("a\u{1b}[2Jb", "a[2Jb".to_string()),
        (long.as_str(), "y".repeat(200)),
    ];
    for (n, (offered, saved)) in (1u64..).zip(cases) {
        m.link
            .send(&format!("FILEOFFER {n} {n} 5 {sha} 300 :{offered}"));
        m.link.expect_by("the ack", |l| l == format!("ACK {n}"));
        let line = p.bob.expect_prefix("-- file offer ");
        assert!(
            line.contains(&format!("from mallory: {saved} (5 bytes")),
            "{line}"
        );
        let id = offer_id(&line);
        let server = m.serve(n, data);
        p.bob.send(&format!("/accept {id} {}", inside.display()));
        let done = p
            .bob
            .expect_prefix(&format!("-- file {id} from mallory saved as "));
        assert_eq!(server.join().unwrap(), format!("FILEDONE {n}"));
        assert!(
            done.contains(&inside.join(&saved).display().to_string()),
            "{done}"
        );
        assert_eq!(fs::read(inside.join(&saved)).unwrap(), data);
    }
    // Nothing was written outside the chosen directory.
    let mut outside: Vec<_> = fs::read_dir(p.dl.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["inbox"]);
}

#[test]
fn files_need_the_same_proof_of_identity_as_messages() {
    let p = pair(&[]);
    let mut m = FakeSender::start(&p.server);
    drop(m.link);
    // A connection that has not been welcomed cannot offer or ask for anything.
    let mut raw = p
        .server
        .user_with_caps("watcher", "sasl draft/account-registration");
    raw.send("PEER bob");
    let line = raw.expect_by("bob's endpoint", |l| l.contains(" PEER bob 127.0.0.1 "));
    let (port, fp) = port_and_fp(&line);
    let sha = sha_hex(b"x");
    // Claiming to be alice with mallory's certificate: refused before any offer is read.
    let mut link = huddle_testkit::Client::connect_pinned(
        port.parse().unwrap(),
        fp,
        Some(m.id.pair()),
        "impostor",
    );
    link.send("PEERHELLO alice bob");
    link.send(&format!("FILEOFFER 1 1 1 {sha} 300 :evil"));
    link.expect_by("a refusal", |l| l.starts_with("ERROR"));
    // Asking for data before the welcome.
    m.link = huddle_testkit::Client::connect_pinned(
        port.parse().unwrap(),
        fp,
        Some(m.id.pair()),
        "early",
    );
    m.link.send("FILEGET 1 0");
    m.link.expect_by("a refusal", |l| l.starts_with("ERROR"));
    let (_, lines) = p.bob.finish();
    assert!(!lines.iter().any(|l| l.contains("file offer")), "{lines:?}");
    assert_eq!(fs::read_dir(p.dl.path()).unwrap().count(), 0);
}

#[test]
fn on_a_terminal_progress_bars_leave_the_input_line_alone() {
    let server = TestServer::start(&[]);
    drop(server.user_with_caps("bob", "sasl draft/account-registration"));
    let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = user(&server, "alice", src.path(), &[]);
    let args = [
        "127.0.0.1".to_string(),
        server.port().to_string(),
        "--ca".into(),
        server.cert_path().display().to_string(),
        "--download-dir".into(),
        dl.path().display().to_string(),
    ];
    let tmux = huddle_testkit::TmuxClient::launch(&args, &[], 150);
    tmux.wait_for("huddle>");
    tmux.keys(&[&format!("login bob {}", huddle_testkit::PW), "Enter"]);
    tmux.wait_for("joined #lobby");

    let data = random_bytes(100 << 20);
    let path = src.path().join("big.bin");
    fs::write(&path, &data).unwrap();
    alice.send(&format!("/send bob {}", path.display()));
    alice.expect_prefix("-- offered ");
    tmux.wait_for("file offer 1 from alice");
    tmux.keys(&["/accept 1", "Enter"]);
    tmux.wait_for("from alice (big.bin) [");
    // Ctrl-C at the prompt does not stop the transfer.
    tmux.keys(&["C-c"]);
    // Half a line typed while the bars print.
    tmux.keys(&["-l", "hello wor"]);
    tmux.wait_for("saved as");
    // The keys may reach the client after a fast transfer has ended: wait for their echo on
    // the input line (a line the client lost never shows).
    // The keys may reach the client after a fast transfer has ended: wait for their echo on
    // the input line (a line the client lost never shows).
    tmux.wait_prompt("bob #lobby> hello wor");
    let screen = tmux.screen();
    let lines: Vec<&String> = screen.iter().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.last().map(|l| l.trim_end()),
        Some("bob #lobby> hello wor"),
        "{screen:#?}"
    );
    // The bar was redrawn in place at the bottom and went with the transfer's end.
    assert!(
        !lines.iter().any(|l| l.contains("from alice (big.bin) [")),
        "{screen:#?}"
    );
    assert!(
        lines.iter().filter(|l| l.contains("hello wor")).count() == 1,
        "{screen:#?}"
    );
    assert!(fs::read(dl.path().join("big.bin")).unwrap() == data);
}

#[test]
fn a_file_that_changes_during_the_transfer_is_refused_and_transfers_run_side_by_side() {
    let mut p = pair(&[]);
    let size = 100usize << 20;
    let path = p.write("grows.bin", &random_bytes(size));
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (grows.bin): 10%"));
    // The sender's file changes (size and modification time) while it is sent.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"more")
        .unwrap();
    let failed = p
        .alice
        .expect_prefix("!! file 1 to bob (grows.bin) failed: the file changed on disk");
    assert!(failed.ends_with("the transfer stopped"), "{failed}");
    let told = p.bob.expect_prefix(&format!(
        "-- alice cancelled file {id} (grows.bin): the file changed on disk"
    ));
    assert!(!told.is_empty());
    assert!(!p.dl.path().join("grows.bin").exists());

    // Two transfers at once, each on its own connection.
    let one = random_bytes(30 << 20);
    let two = random_bytes(20 << 20);
    let (a, b) = (p.write("one.bin", &one), p.write("two.bin", &two));
    let (ida, idb) = (p.offer(&a), p.offer(&b));
    p.bob.send(&format!("/accept {ida}"));
    p.bob.send(&format!("/accept {idb}"));
    let mut saved = 0;
    while saved < 2 {
        p.bob.expect_by("a saved line", |l| {
            l.contains(" from alice saved as ") || l.starts_with("!!")
        });
        saved += 1;
    }
    assert!(fs::read(p.dl.path().join("one.bin")).unwrap() == one);
    assert!(fs::read(p.dl.path().join("two.bin")).unwrap() == two);
}

#[test]
fn a_stalled_transfer_resumes_on_the_same_offer_while_both_clients_run() {
    // Each step is bounded by 2 s, so a transfer without a byte for 12 s is interrupted.
    let mut p = pair(&["--peer-timeout", "2"]);
    let size = 100u64 << 20;
    let data = random_bytes(size as usize);
    let path = p.write("big.bin", &data);
    let id = p.offer(&path);
    p.bob.send(&format!("/accept {id}"));
    p.bob
        .expect_prefix(&format!("-- file {id} from alice (big.bin): 10%"));
    let interrupted = {
        let _stopped = Paused::stop(p.alice.pid());
        p.bob
            .expect_prefix(&format!("!! file {id} from alice: interrupted after "))
    };
    assert!(
        interrupted.ends_with(&format!("; /accept {id} continues")),
        "{interrupted}"
    );
    p.alice
        .expect_prefix("!! file 1 to bob (big.bin) interrupted: ");
    p.bob.send(&format!("/accept {id}"));
    let resumed = p.bob.expect_prefix(&format!(
        "-- accepted file {id} from alice: receiving into "
    ));
    let at: u64 = resumed
        .rsplit("resuming at ")
        .next()
        .and_then(|r| r.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume offset in {resumed:?}"));
    assert!(at >= size / 10, "{resumed}");
    let done = p
        .bob
        .expect_prefix(&format!("-- file {id} from alice saved as "));
    assert_eq!(received_and_resumed(&done), (size - at, at), "{done}");
    p.alice.expect_prefix("-- file 1 sent to bob");
    assert!(fs::read(p.dl.path().join("big.bin")).unwrap() == data);
}
