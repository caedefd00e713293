//! argon2id verify with the server's parameters (`Argon2::default()`: m=19 MiB, t=2, p=1), so
//! login throughput has a known ceiling: at most (workers / this time) logins per second.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const PASSWORD: &[u8] = b"huddle-load-password";

fn verify(c: &mut Criterion) {
    let salt = SaltString::encode_b64(b"huddle bench salt").expect("salt encodes");
    let phc = Argon2::default()
        .hash_password(PASSWORD, &salt)
        .expect("hashing works")
        .to_string();
    let parsed = PasswordHash::new(&phc).expect("own hash parses");
    let mut g = c.benchmark_group("argon2");
    g.sample_size(10);
    g.bench_function("verify_default_params", |b| {
        b.iter(|| {
            Argon2::default()
                .verify_password(black_box(PASSWORD), &parsed)
                .is_ok()
        })
    });
    g.bench_function("verify_wrong_password", |b| {
        b.iter(|| {
            Argon2::default()
                .verify_password(black_box(b"not the password"), &parsed)
                .is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
