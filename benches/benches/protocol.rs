//! Parse and serialise throughput of the wire format.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use huddle_protocol::{LineReader, Message};

const LINE: &str = "@time=2026-11-25T13:00:00.000Z;msgid=abc :alice!alice@huddle PRIVMSG #lobby :hello everyone, how are things going today?";

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Bytes(LINE.len() as u64));
    g.bench_function("parse", |b| b.iter(|| Message::parse(black_box(LINE))));
    let msg = Message::parse(LINE).expect("bench line parses");
    g.bench_function("serialise", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            black_box(&msg).write_to(&mut out);
            black_box(out.len())
        })
    });
    let stream: Vec<u8> = format!("{LINE}\r\n").repeat(64).into_bytes();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("frame_64_lines", |b| {
        b.iter(|| {
            let mut r = LineReader::default();
            r.feed(black_box(&stream));
            let mut n = 0;
            while let Some(Ok(_)) = r.next_line() {
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
