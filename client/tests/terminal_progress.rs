//! File transfers' progress bars in a real terminal (tmux): one bar per transfer in a status
//! area at the bottom, redrawn in place, while the prompt, what is typed and incoming
//! messages stay above it; the area goes when the transfers end and when the client exits.
//!
//! A transfer is held half-way by stopping the other client with SIGSTOP once its plain
//! output reports a tenth; everything else waits on the screen's content, never on time.

use std::fs;
use std::path::{Path, PathBuf};

use huddle_testkit::{CliClient, Client, Paused, RunningServer, TestServer, TmuxClient, PW};
use ring::rand::{SecureRandom, SystemRandom};

/// Rows of the tmux pane.
const ROWS: usize = 40;

fn random_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(1 << 16) {
        SystemRandom::new().fill(chunk).unwrap();
    }
    let path = dir.join(name);
    fs::write(&path, &v).unwrap();
    path
}

/// `huddle` in a 100-column tmux pane, logged in as `name` (an account made with a raw
/// client first), downloading into `dl`.
fn terminal_user(server: &TestServer, name: &str, data: &Path, dl: &Path) -> TmuxClient {
    drop(server.user_with_caps(name, "sasl"));
    let args = [
        "127.0.0.1".to_string(),
        server.port().to_string(),
        "--ca".into(),
        server.cert_path().display().to_string(),
        "--download-dir".into(),
        dl.display().to_string(),
    ];
    let env = [("XDG_DATA_HOME", data.display().to_string())];
    let tmux = TmuxClient::launch(&args, &env, 100);
    tmux.wait_for("huddle>");
    tmux.type_text(&format!("login {name} {PW}"));
    tmux.keys(&["Enter"]);
    tmux.wait_prompt(&format!("{name} #lobby>"));
    tmux
}

fn plain_user(server: &TestServer, name: &str, dl: &Path) -> CliClient {
    let dl = dl.display().to_string();
    CliClient::logged_in(server, name, &["--download-dir", dl.as_str()])
}

/// A raw IRC user in #lobby.
fn talker(server: &TestServer, name: &str) -> Client {
    let mut c = server.user_with_caps(name, "sasl");
    c.join("#lobby");
    c
}

/// The number in `-- file offer N from ...`.
fn offer_id(line: &str) -> u64 {
    line.split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {line:?}"))
}

fn row_of(screen: &[String], text: &str) -> Option<usize> {
    screen.iter().position(|l| l.contains(text))
}

/// The percentage a bar row shows.
fn percent(row: &str) -> u32 {
    row.split("] ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {row:?}"))
}

#[test]
fn the_senders_bar_stays_at_the_bottom_below_the_prompt_and_messages_until_the_end() {
    let server = TestServer::start(&[]);
    let (data, src, dl) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let alice = terminal_user(&server, "alice", data.path(), src.path());
    let mut bob = plain_user(&server, "bob", dl.path());
    let mut carol = talker(&server, "carol");
    let path = random_file(src.path(), "big.bin", 100 << 20);
    // A full screen: the prompt is on the bottom row where the bar will go.
    for i in 1..=ROWS {
        carol.send(&format!("PRIVMSG #lobby :before {i}"));
    }
    alice.wait_for(&format!("<carol> before {ROWS}"));
    alice.wait_screen("the prompt on the bottom row", |s| {
        s.len() == ROWS && s[ROWS - 1].trim_end() == "alice #lobby>"
    });

    alice.type_text(&format!("/send bob {}", path.display()));
    alice.keys(&["Enter"]);
    let id = offer_id(&bob.expect_prefix("-- file offer "));
    bob.send(&format!("/accept {id}"));
    bob.expect_prefix(&format!("-- file {id} from alice (big.bin): 10%"));
    let stopped = Paused::stop(bob.pid());

    // The bar is on the bottom row, below 100% while bob takes nothing more.
    let bar = "file 1 to bob (big.bin) [";
    alice.wait_screen("the bar on the bottom row", |s| {
        s.len() == ROWS && s[ROWS - 1].contains(bar) && s[ROWS - 1].contains(" MiB of 100.0 MiB")
    });
    let screen = alice.screen();
    assert!(percent(&screen[ROWS - 1]) < 100, "{screen:#?}");
    // The screen scrolled up to make room: the prompt and the lines before it are above
    // the bar, none overwritten.
    assert_eq!(screen[ROWS - 2].trim_end(), "alice #lobby>", "{screen:#?}");
    assert!(
        screen[ROWS - 3].contains("-- bob accepted file 1 (big.bin)"),
        "{screen:#?}"
    );
    assert!(
        screen
            .iter()
            .any(|l| l.contains(&format!("<carol> before {ROWS}"))),
        "{screen:#?}"
    );
    assert_eq!(
        screen.iter().filter(|l| l.contains(bar)).count(),
        1,
        "{screen:#?}"
    );

    // Typing meanwhile, and a message arriving: both above the bar, nothing overwritten.
    alice.type_text("hello wor");
    carol.send("PRIVMSG #lobby :hi during the transfer");
    alice.wait_screen("the message, the prompt with the typing, the bar", |s| {
        let (msg, prompt, bar) = (
            row_of(s, "<carol> hi during the transfer"),
            row_of(s, "alice #lobby> hello wor"),
            row_of(s, bar),
        );
        matches!((msg, prompt, bar), (Some(m), Some(p), Some(b)) if m < p && p < b && b == ROWS - 1)
    });
    let screen = alice.screen();
    let prompt = row_of(&screen, "alice #lobby> hello wor").unwrap();
    assert_eq!(
        screen[prompt].trim_end(),
        "alice #lobby> hello wor",
        "{screen:#?}"
    );
    assert!(
        screen[prompt + 1..ROWS - 1]
            .iter()
            .all(|l| l.trim().is_empty()),
        "{screen:#?}"
    );

    // Bob goes on: the transfer ends, the bar goes, the line saying so stays.
    drop(stopped);
    bob.expect_prefix(&format!("-- file {id} from alice saved as "));
    alice.wait_screen("the bar gone and the end of the transfer said", |s| {
        row_of(s, bar).is_none() && row_of(s, "file 1 sent to bob: big.bin").is_some()
    });
    let screen = alice.screen();
    let typed: Vec<&String> = screen.iter().filter(|l| l.contains("hello wor")).collect();
    assert_eq!(typed.len(), 1, "{screen:#?}");
    assert_eq!(
        screen
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim_end()),
        Some("alice #lobby> hello wor"),
        "{screen:#?}"
    );

    // The whole screen scrolls again: the next messages push the prompt to the bottom row.
    for i in 1..=3 {
        carol.send(&format!("PRIVMSG #lobby :after {i}"));
    }
    alice.wait_for("<carol> after 3");
    alice.wait_screen("the prompt on the bottom row", |s| {
        s.len() == ROWS && s[ROWS - 1].trim_end() == "alice #lobby> hello wor"
    });
}

#[test]
fn two_transfers_show_two_bars_on_the_receiving_side_and_exiting_removes_them() {
    let server = TestServer::start(&[]);
    let (data, src, dl) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let bob = terminal_user(&server, "bob", data.path(), dl.path());
    let mut alice = plain_user(&server, "alice", src.path());
    let one = random_file(src.path(), "one.bin", 100 << 20);
    let two = random_file(src.path(), "two.bin", 100 << 20);
    for path in [&one, &two] {
        alice.send(&format!("/send bob {}", path.display()));
        alice.expect_prefix("-- offered ");
    }
    bob.wait_for("file offer 2 from alice");
    bob.type_text("/accept 1");
    bob.keys(&["Enter"]);
    bob.type_text("/accept 2");
    bob.keys(&["Enter"]);
    // Both under way on alice's side (her plain output reports tenths), then held there.
    let mut under_way = [false; 2];
    while under_way.contains(&false) {
        let line = alice.expect_by("a tenth of a file", |l| {
            l.starts_with("-- file ") && l.contains(" to bob (") && l.contains("%")
        });
        for (n, seen) in ["-- file 1 ", "-- file 2 "].iter().zip(&mut under_way) {
            *seen |= line.starts_with(n);
        }
    }
    let stopped = Paused::stop(alice.pid());

    let bars = [
        "file 1 from alice (one.bin) [",
        "file 2 from alice (two.bin) [",
    ];
    bob.wait_screen("two bars on the two bottom rows", |s| {
        s.len() == ROWS
            && bars.iter().all(|b| {
                let row = row_of(s, b);
                row == Some(ROWS - 2) || row == Some(ROWS - 1)
            })
    });
    let screen = bob.screen();
    assert!(
        screen[ROWS - 2..].iter().all(|r| percent(r) < 100),
        "{screen:#?}"
    );
    let prompt = screen
        .iter()
        .rposition(|l| l.starts_with("bob #lobby>"))
        .unwrap_or_else(|| panic!("no prompt: {screen:#?}"));
    assert!(prompt < ROWS - 2, "{screen:#?}");

    // A smaller terminal: the area follows to its new bottom rows, each bar once.
    bob.run(&["resize-window", "-t", "huddle", "-y", "30"]);
    bob.wait_screen("two bars on the two bottom rows of 30", |s| {
        s.len() == 30
            && bars.iter().all(|b| {
                let rows: Vec<usize> = s
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.contains(b))
                    .map(|(i, _)| i)
                    .collect();
                rows == [28] || rows == [29]
            })
    });
    let screen = bob.screen();
    assert!(
        screen[..28].iter().any(|l| l.starts_with("bob #lobby>")),
        "{screen:#?}"
    );

    // Leaving with the transfers held: the area goes with the client.
    bob.type_text("/quit");
    bob.keys(&["Enter"]);
    assert_eq!(bob.exit_status(), 0);
    let screen = bob.screen();
    assert!(
        bars.iter().all(|b| row_of(&screen, b).is_none()),
        "{screen:#?}"
    );
    drop(stopped);
}
