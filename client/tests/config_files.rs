//! End-to-end tests of the client's files: the real `huddle` binary, started under a
//! permissive umask with its configuration directory in a temporary HOME, records the real
//! server's certificate (trust on first use) and keeps its directory and known-servers file
//! private, written whole, and never through a planted symbolic link.

use std::fs::{self, Permissions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use huddle_testkit::{target_binary, CliClient, RunningServer, TestServer, PW};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `huddle 127.0.0.1 PORT ARGS` under umask 000, with `config` as its configuration home.
fn client(server: &TestServer, config: &Path, args: &[&str]) -> CliClient {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(target_binary("huddle"))
        .arg("127.0.0.1")
        .arg(server.port().to_string())
        .args(args)
        .env_remove("HUDDLE_KNOWN_SERVERS")
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config);
    CliClient::spawn("alice", cmd)
}

fn first_contact(c: &mut CliClient) {
    c.send(&format!("register alice {PW}"));
    c.expect_prefix("-- first connection to 127.0.0.1:");
    c.expect_prefix("-- remembered in ");
}

#[test]
fn the_config_directory_and_known_servers_stay_private() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let dir = config.join("huddle");
    let file = dir.join("known_servers");

    // A fresh start creates both private, whatever the umask.
    let mut alice = client(&server, &config, &[]);
    first_contact(&mut alice);
    alice.expect("-- registered alice");
    drop(alice.finish());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{} ", server.port())),
        "{text}"
    );

    // Left readable by an older version: made private again, contents kept.
    fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
    fs::write(&file, format!("{text}other:1 {}\n", "ab".repeat(32))).unwrap();
    let mut alice = client(&server, &config, &[]);
    alice.send(&format!("login alice {PW}"));
    alice.expect("-- joined #lobby");
    drop(alice.finish());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert!(fs::read_to_string(&file).unwrap().contains("other:1 "));
    let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "only known_servers is in the directory");
}

#[test]
fn a_planted_symbolic_link_is_not_written_through() {
    let server = TestServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let link = tmp.path().join("known_servers");
    symlink(&victim, &link).unwrap();

    let ks = link.display().to_string();
    let mut alice = client(&server, tmp.path(), &["--known-servers", &ks]);
    alice.send(&format!("register alice {PW}"));
    let err = alice.expect_prefix("!! ");
    assert!(err.contains("symbolic link"), "{err}");
    drop(alice.finish());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}
