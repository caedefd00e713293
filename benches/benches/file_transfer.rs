//! Files peer to peer: one 1 GiB transfer between two real `huddle` clients on loopback,
//! against the floor of the same rustls configuration (ring provider, TLS 1.3, ECDSA P-256
//! certificates, client authentication) copying 1 GiB between two threads over loopback TCP
//! in one process. Also the RSS growth of both clients during the transfer (from /proc), and
//! the CPU time each side spends per GiB: on a machine with few cores, the transfer's extra
//! work (hashing, writing the file) competes with the encryption for the same cores.
//! The transfer includes everything a user waits for after `/accept`: the lookup, dial and
//! greeting, hashing while receiving, writing, the final fsync and rename.
//!
//! Not a criterion bench (one run of each takes seconds): `cargo bench -p huddle-benches
//! --bench file_transfer` after building the binaries in the same profile
//! (`cargo build --profile bench -p huddle -p huddle-server`). `FILE_BENCH_MIB` changes the
//! size (default 1024), `FILE_BENCH_ROUNDS` the number of rounds (default 5). The summary
//! gives the median of the per-round ratios (each transfer against the floor measured right
//! after it) and the best transfer against the best floor.
//!
//! Memory handed back to a VM's host (virtio-balloon free page reporting returns freed
//! memory a couple of seconds after it is freed) costs a hypervisor fault per page when the
//! kernel uses it again: writing a new 1 GiB file then takes several times as long as
//! writing it over pages freed a moment ago, whatever writes it. So that rounds compare the
//! transfer and not the host's memory, the previous round's received file (before round 1,
//! a file of the same size) is deleted right before `/accept`: the receiver's page cache
//! gets pages that were in use a moment ago, as on a machine without a balloon.
//! `FILE_BENCH_COLD=1` deletes it right after its round instead (the old behaviour: the
//! receiver writes into memory the host took back).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use huddle_benches::procstat::{process_cpu, thread_cpu};
use huddle_testkit::proc::proc_rss_kib;
use huddle_testkit::{pinned_config, CliClient, PeerIdentity, TestServer};
use huddle_trust::{AnyCert, Verifier};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const CHUNK: usize = 256 * 1024;

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// The floor: `bytes` through rustls from one thread to another over loopback TCP, with the
/// peers' configuration (the client authenticates with its certificate). Returns the time
/// taken and the CPU time both threads spent copying.
fn floor(bytes: u64) -> (Duration, Duration) {
    let (server_id, client_id) = (PeerIdentity::new(), PeerIdentity::new());
    let server_config = ServerConfig::builder_with_provider(huddle_trust::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(Verifier::new(AnyCert)))
        .with_single_cert(vec![server_id.cert.clone()], server_id.key())
        .unwrap();
    let client_config = pinned_config(&server_id.fp, Some(client_id.pair()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();
        let conn = ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        let cpu = thread_cpu();
        while got < bytes {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "early end");
            got += n as u64;
        }
        (Instant::now(), thread_cpu() - cpu)
    });
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("huddle-peer").unwrap();
    let conn = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.flush().unwrap();
    let chunk = vec![0x5au8; CHUNK];
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        tls.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
    }
    tls.flush().unwrap();
    let cpu = thread_cpu() - cpu;
    let (end, reader_cpu) = reader.join().unwrap();
    (end - start, cpu + reader_cpu)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// User + system CPU time of each client process.
fn clients_cpu(pids: &[u32; 2]) -> [Duration; 2] {
    pids.map(|p| process_cpu(p).unwrap_or_default())
}

/// Samples the peak RSS of `pids` until `stop`.
fn sample_rss(pids: Vec<u32>, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let peaks: Vec<AtomicU64> = pids.iter().map(|_| AtomicU64::new(0)).collect();
        while !stop.load(Ordering::SeqCst) {
            for (pid, peak) in pids.iter().zip(&peaks) {
                peak.fetch_max(proc_rss_kib(*pid), Ordering::SeqCst);
            }
            thread::sleep(Duration::from_millis(20));
        }
        peaks.iter().map(|p| p.load(Ordering::SeqCst)).collect()
    })
}

fn main() {
    let mib: u64 = std::env::var("FILE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib << 20;

    // The floor never touches a disk: by default the files live in memory (tmpfs) too, so
    // the comparison is of the network path; FILE_BENCH_DIR=/some/disk measures with the
    // receiver's writes and final fsync reaching a disk.
    let base_dir = std::env::var("FILE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    println!("files in {base_dir}");
    let src = tempfile::tempdir_in(&base_dir).unwrap();
    let dl = tempfile::tempdir_in(&base_dir).unwrap();
    let path = src.path().join("big.bin");
    {
        let mut f = File::create(&path).unwrap();
        let mut block = vec![0u8; CHUNK];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..bytes / CHUNK as u64 {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }

    let rounds: usize = std::env::var("FILE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cold = std::env::var("FILE_BENCH_COLD").is_ok_and(|v| v == "1");
    // The file whose pages the next transfer reuses (see the comment at the top).
    let warm = dl.path().join("warm.bin");
    if !cold {
        std::fs::copy(&path, &warm).unwrap();
    }
    let server = TestServer::start(&[]);
    let dl_arg = dl.path().display().to_string();
    let mut alice = CliClient::logged_in(&server, "alice", &[]);
    let mut bob = CliClient::logged_in(&server, "bob", &["--download-dir", &dl_arg]);
    // Transfers and floors alternate, so a machine whose speed drifts treats both alike.
    let (mut transfers, mut floors, mut growth) = (Vec::new(), Vec::new(), [0u64; 2]);
    let (mut ratios, mut cpu_real, mut cpu_floor) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_sender, mut cpu_receiver) = (Vec::new(), Vec::new());
    let gib = bytes as f64 / (1u64 << 30) as f64;
    for round in 0..rounds {
        alice.send(&format!("/send bob {}", path.display()));
        let offer = bob.expect_prefix("-- file offer ");
        alice.expect_prefix("-- offered ");
        let id = offer.split(' ').nth(3).unwrap().to_string();

        let base = [proc_rss_kib(alice.pid()), proc_rss_kib(bob.pid())];
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_rss(vec![alice.pid(), bob.pid()], stop.clone());
        if !cold {
            std::fs::remove_file(&warm).unwrap();
        }
        let pids = [alice.pid(), bob.pid()];
        let cpu_before = clients_cpu(&pids);
        let start = Instant::now();
        bob.send(&format!("/accept {id}"));
        let done = bob.expect_by("the saved line", |l| {
            l.starts_with(&format!("-- file {id} from alice saved as ")) || l.starts_with("!!")
        });
        let took = start.elapsed();
        let cpu_after = clients_cpu(&pids);
        let [cpu_s, cpu_r] = [0, 1].map(|i| cpu_after[i].saturating_sub(cpu_before[i]));
        let cpu = cpu_s + cpu_r;
        stop.store(true, Ordering::SeqCst);
        let peaks = sampler.join().unwrap();
        assert!(done.contains("SHA-256 verified"), "{done}");
        for (g, (peak, b)) in growth.iter_mut().zip(peaks.iter().zip(base)) {
            *g = (*g).max(peak.saturating_sub(b));
        }
        let received = dl.path().join("big.bin");
        if cold {
            std::fs::remove_file(received).unwrap();
        } else {
            std::fs::rename(received, &warm).unwrap();
        }
        let (floor_took, fcpu) = floor(bytes);
        let (real, fl) = (mib_per_s(bytes, took), mib_per_s(bytes, floor_took));
        let per_gib = |d: Duration| d.as_secs_f64() / gib;
        let (cr, cf) = (per_gib(cpu), per_gib(fcpu));
        println!(
            "round {}: transfer {real:.0} MiB/s ({:.2} s, CPU {cr:.2} s/GiB: sender {:.2}, \
             receiver {:.2}), floor {fl:.0} MiB/s ({:.2} s, CPU {cf:.2} s/GiB): {:.0}%",
            round + 1,
            took.as_secs_f64(),
            per_gib(cpu_s),
            per_gib(cpu_r),
            floor_took.as_secs_f64(),
            100.0 * real / fl
        );
        transfers.push(real);
        floors.push(fl);
        ratios.push(100.0 * real / fl);
        cpu_real.push(cr);
        cpu_floor.push(cf);
        cpu_sender.push(per_gib(cpu_s));
        cpu_receiver.push(per_gib(cpu_r));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (real, fl) = (best(&transfers), best(&floors));
    println!(
        "{mib} MiB, {rounds} rounds: median of the per-round ratios {:.0}% of the floor; best \
         transfer {real:.0} MiB/s against best floor (rustls, two threads, loopback TCP, one \
         process) {fl:.0} MiB/s: {:.0}%",
        median(&ratios),
        100.0 * real / fl
    );
    println!(
        "median CPU time per GiB: transfer {:.2} s (both clients; sender {:.2} s, receiver \
         {:.2} s), floor {:.2} s (both threads); {} cores; {}",
        median(&cpu_real),
        median(&cpu_sender),
        median(&cpu_receiver),
        median(&cpu_floor),
        thread::available_parallelism().map_or(0, |n| n.get()),
        if cold {
            "the receiver wrote into memory freed rounds ago (FILE_BENCH_COLD=1)"
        } else {
            "the receiver wrote over the pages of the previous round's file"
        }
    );
    println!(
        "largest RSS growth during a transfer: sender {} KiB, receiver {} KiB",
        growth[0], growth[1]
    );
}
