//! One message fanned out through an in-process Huddle server to 20 TLS clients over loopback:
//! the time from sending it until all 20 have received it (the sender gets it back through
//! `echo-message`).

use criterion::{criterion_group, criterion_main, Criterion};
use huddle_benches::engine::{establish, now_nanos, Ready};
use huddle_benches::irc::{self, AuthMode, LoginSpec, RunLine};
use huddle_benches::net::{client_config, Target, TlsSetup};
use huddle_benches::scenarios;
use huddle_testkit::{InProcServer, RunningServer};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
const ROOM: &str = "#bench";

struct Room {
    poll: Poll,
    events: Events,
    conns: Vec<Ready>,
    scratch: Vec<u8>,
    run: u32,
    seq: u32,
}

impl Room {
    /// Sends one message from client 0 and waits until every client has it.
    fn fan_out_one(&mut self) {
        let seq = self.seq;
        self.seq += 1;
        let sender = &mut self.conns[0].conn;
        irc::write_chat(sender.out_buf(), ROOM, self.run, 0, seq, now_nanos(), 100);
        sender.flush().expect("send");
        let mut got = vec![false; self.conns.len()];
        let mut missing = self.conns.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut todo: Vec<usize> = (0..self.conns.len()).collect();
        while missing > 0 {
            assert!(
                Instant::now() < deadline,
                "fan-out did not complete in 10 s"
            );
            for i in todo.drain(..) {
                let c = &mut self.conns[i].conn;
                c.read(&mut self.scratch).expect("read");
                let run = self.run;
                let mut hit = false;
                c.lines(|line, out| {
                    match irc::classify(line) {
                        RunLine::Chat(m) if m.run == run && m.seq == seq => hit = true,
                        RunLine::Ping(t) => {
                            out.extend_from_slice(b"PONG :");
                            out.extend_from_slice(t);
                            out.extend_from_slice(b"\r\n");
                        }
                        _ => {}
                    }
                    Ok(())
                })
                .expect("lines");
                c.flush().expect("flush");
                if hit && !got[i] {
                    got[i] = true;
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(100)))
                .expect("poll");
            todo.extend(self.events.iter().map(|e| e.token().0));
        }
    }
}

fn fanout(c: &mut Criterion) {
    let server = InProcServer::start_without_rate_limits(&[
        "--max-clients",
        "100",
        "--allow-guests",
        "--history",
        "0",
    ])
    .expect("in-process server starts");
    let target = Target {
        addr: server.addr(),
        tls: Some(TlsSetup {
            config: client_config(None).expect("TLS config"),
            server_name: ServerName::try_from("localhost").expect("name"),
        }),
    };
    let specs = (0..CLIENTS)
        .map(|i| LoginSpec {
            nick: format!("f{i}"),
            auth: AuthMode::Nick,
            password: String::new(),
            register: false,
            join: Some(ROOM.to_string()),
            echo: i == 0,
            first_line_only: false,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let est = establish(&target, specs, CLIENTS, deadline, false)
        .and_then(|e| e.require_all())
        .expect("20 clients log in and join");
    let poll = Poll::new().expect("poll");
    let mut conns = est.ready;
    for (i, r) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut r.conn.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
    }
    let mut room = Room {
        poll,
        events: Events::with_capacity(256),
        conns,
        scratch: vec![0; 64 * 1024],
        run: scenarios::run_id(),
        seq: 0,
    };
    // Let the JOIN traffic settle.
    room.fan_out_one();
    let mut g = c.benchmark_group("fanout");
    g.bench_function("one_message_to_20_tls_clients", |b| {
        b.iter(|| room.fan_out_one())
    });
    g.finish();
    drop(room);
    let _ = server.stop();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
