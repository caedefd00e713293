//! End-to-end tests of files sent peer to peer: real `huddle` processes offer, accept and
//! stream files to each other over their own TLS connections while the real `huddle-server`
//! only tells them where the other listens. Byte counts the clients report (not timing) show
//! what a resumed transfer carried.
//!
//! Everything listens on 127.0.0.1. Nothing sleeps to synchronise (see `huddle_testkit`).

use std::fs;
use std::path::{Path, PathBuf};

use huddle_testkit::{CliClient, Paused, TestServer};
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
