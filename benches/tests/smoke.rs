//! Smoke run of the load tool against a real in-process Huddle server over TLS: a tiny fan-out
//! (5 clients x 50 messages, SASL accounts registered first) must lose and reorder nothing.

use huddle_benches::irc::AuthMode;
use huddle_benches::net::{client_config, Target, TlsSetup};
use huddle_benches::scenarios::{self, ChatParams, Common};
use huddle_testkit::{InProcServer, RunningServer};
use rustls::pki_types::ServerName;
use std::time::Duration;

fn common(server: &InProcServer, auth: AuthMode, prefix: &str) -> Common {
    Common {
        target: Target {
            addr: server.addr(),
            tls: Some(TlsSetup {
                config: client_config(None).expect("TLS client config"),
                server_name: ServerName::try_from("localhost").expect("server name"),
            }),
        },
        label: "huddle (in-process)".into(),
        auth,
        register: auth == AuthMode::Sasl,
        password: "smoke-test-password".into(),
        prefix: prefix.into(),
        room: "#smoke".into(),
        threads: 1,
        server_pid: Some(std::process::id()),
        setup_in_flight: 16,
        time_limit: Duration::from_secs(30),
        drain: Duration::from_secs(2),
    }
}

#[test]
fn fanout_loses_and_reorders_nothing() {
    let server =
        InProcServer::start_without_rate_limits(&["--max-clients", "50", "--history", "0"])
            .expect("server starts");
    let c = common(&server, AuthMode::Sasl, "smoke");
    let p = ChatParams {
        clients: 5,
        senders: 5,
        messages: 50,
        rate: None,
        size: 80,
        window: 100,
    };
    let r = scenarios::chat(&c, "fanout", &p).expect("fan-out runs");
    println!("{}", r.to_human());
    println!("{}", r.to_json());
    assert_eq!(r.num("deliveries_expected"), Some((5 * 50 * 4) as f64));
    assert_eq!(r.num("deliveries"), Some((5 * 50 * 4) as f64));
    assert_eq!(r.num("lost"), Some(0.0));
    assert_eq!(r.num("reordered"), Some(0.0));
    assert!(r.ok(), "problems: {:?}", r.problems);
    assert!(r.num("latency_p99_us").is_some_and(|v| v > 0.0));
    server.stop().expect("server shuts down cleanly");
}

#[test]
fn connect_storm_and_guests_work() {
    let server = InProcServer::start_without_rate_limits(&[
        "--max-clients",
        "50",
        "--allow-guests",
        "--history",
        "0",
    ])
    .expect("server starts");
    let c = common(&server, AuthMode::Nick, "g");
    let r = scenarios::connect(&c, 40, 10).expect("connect storm runs");
    println!("{}", r.to_human());
    assert_eq!(r.num("completed"), Some(40.0));
    assert!(r.ok(), "problems: {:?}", r.problems);
    let p = ChatParams {
        clients: 3,
        senders: 1,
        messages: 20,
        rate: Some(200.0),
        size: 100,
        window: 0,
    };
    let r = scenarios::chat(&c, "light", &p).expect("light load runs");
    println!("{}", r.to_human());
    assert_eq!(r.num("deliveries"), Some(40.0));
    assert!(r.ok(), "problems: {:?}", r.problems);
    server.stop().expect("server shuts down cleanly");
}

#[test]
fn a_refused_login_fails_the_run() {
    // Guests are not allowed here, so NICK/USER alone is refused: the scenario must error out
    // rather than report success.
    let server =
        InProcServer::start_without_rate_limits(&["--max-clients", "50", "--history", "0"])
            .expect("server starts");
    let c = common(&server, AuthMode::Nick, "x");
    let p = ChatParams {
        clients: 2,
        senders: 1,
        messages: 5,
        rate: None,
        size: 50,
        window: 0,
    };
    let err = scenarios::chat(&c, "fanout", &p).expect_err("set-up must fail");
    assert!(err.to_string().contains("failed to set up"), "{err}");
}
