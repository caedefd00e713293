//! Which server certificates the client accepts.
//!
//! Two policies:
//! - `--ca FILE`: the PEM certificates in FILE are trust anchors for the usual webpki checks
//!   (chain, validity, server name). A certificate presented by the server that is
//!   byte-for-byte one of them is accepted as an explicit pin as well; that covers CA-flagged
//!   self-signed certificates (`openssl req -x509`) which webpki refuses as end entities.
//! - Trust on first use: the SHA-256 fingerprint of the server's certificate is remembered per
//!   `host:port` in a known-servers file; a later connection presenting another certificate is
//!   refused.
//!
//! Each is a [`Policy`](huddle_trust::Policy) inside [`huddle_trust::Verifier`], which checks the handshake
//! signatures, so a peer that merely replays a certificate it has seen cannot pass as the
//! server.
//!
//! Known-servers file format: one entry per line, `host:port <64 lowercase hex digits>`; blank
//! lines and lines starting with `#` are ignored. IPv6 hosts are written `[::1]:6697`. The
//! file is mode 0600 and rewritten whole (see [`crate::io::config_files`]); the default
//! configuration directory is kept at mode 0700.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use huddle_trust::{hex, refused, Policy, Presented, Verifier};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};

use crate::core::{parse_fingerprint, Fingerprint};
use crate::io::config_files;

/// The default known-servers file: `known_servers` in the user's configuration directory.
fn default_known_servers() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "huddle").map(|d| d.config_dir().join("known_servers"))
}

/// The key of a server in the known-servers file: `host:port`, host lowercased, IPv6 in
/// brackets.
pub(crate) fn server_key(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Everything that can go wrong while deciding whom to trust.
#[derive(Debug)]
pub(crate) enum TrustError {
    CaRead {
        path: PathBuf,
        err: String,
    },
    CaEmpty {
        path: PathBuf,
    },
    KnownServersRead {
        path: PathBuf,
        err: io::Error,
    },
    KnownServersWrite {
        path: PathBuf,
        err: io::Error,
    },
    NoConfigDir,
    /// The server presented a certificate other than the remembered one.
    Changed {
        server: String,
        expected: Fingerprint,
        seen: Fingerprint,
        file: PathBuf,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::CaRead { path, err } => {
                write!(f, "cannot read CA certificate {}: {err}", path.display())
            }
            TrustError::CaEmpty { path } => write!(
                f,
                "no PEM certificate (-----BEGIN CERTIFICATE-----) found in {}",
                path.display()
            ),
            TrustError::KnownServersRead { path, err } => {
                write!(f, "cannot read known-servers file {}: {err}", path.display())
            }
            TrustError::KnownServersWrite { path, err } => write!(
                f,
                "cannot write known-servers file {}: {err}",
                path.display()
            ),
            TrustError::NoConfigDir => write!(
                f,
                "cannot find a configuration directory for the known-servers file; \
                 use --known-servers FILE or --ca FILE"
            ),
            TrustError::Changed {
                server,
                expected,
                seen,
                file,
            } => write!(
                f,
                "SERVER CERTIFICATE CHANGED for {server}: expected SHA-256 fingerprint {}, \
                 the server presented {}. Someone may be intercepting the connection, or the \
                 server got a new certificate. Connection refused. If you trust the new \
                 certificate, remove the line starting with \"{server} \" from {} and connect again.",
                hex(expected),
                hex(seen),
                file.display()
            ),
        }
    }
}

impl std::error::Error for TrustError {}

/// The known-servers file: `host:port fingerprint` lines.
#[derive(Debug)]
pub(crate) struct KnownServers {
    path: PathBuf,
    entries: Vec<(String, Fingerprint)>,
}

impl KnownServers {
    /// Whether `path` is the default file, whose directory is the client's own.
    fn in_own_dir(&self) -> bool {
        default_known_servers().as_deref() == Some(self.path.as_path())
    }

    /// Reads the file; a missing file is an empty list. A file (or the client's own
    /// configuration directory) that others may read is made private.
    pub(crate) fn load(path: &Path) -> Result<KnownServers, TrustError> {
        let known = KnownServers {
            path: path.to_owned(),
            entries: Vec::new(),
        };
        if known.in_own_dir() {
            if let Some(dir) = path.parent().filter(|d| d.exists()) {
                if let Err(e) = config_files::ensure_private_dir(dir, true) {
                    log::warn!("cannot make {} private: {e}", dir.display());
                }
            }
        }
        match config_files::tighten_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                log::warn!("cannot make {} private: {e}", path.display());
            }
            _ => {}
        }
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(TrustError::KnownServersRead {
                    path: path.to_owned(),
                    err,
                })
            }
        };
        Ok(KnownServers {
            entries: parse_known_servers(&text),
            ..known
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The remembered fingerprint of `key` (`host:port`). The first entry wins.
    pub(crate) fn lookup(&self, key: &str) -> Option<Fingerprint> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, fp)| *fp)
    }

    /// Adds an entry to the file (creating it, and its directory with mode 0700, if
    /// needed): the file is rewritten whole with mode 0600.
    pub(crate) fn remember(&mut self, key: &str, fp: &Fingerprint) -> Result<(), TrustError> {
        let werr = |err| TrustError::KnownServersWrite {
            path: self.path.clone(),
            err,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            config_files::ensure_private_dir(dir, self.in_own_dir()).map_err(werr)?;
        }
        config_files::refuse_symlink(&self.path).map_err(werr)?;
        let existing = match fs::read(&self.path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(werr(e)),
        };
        let mut text = existing.unwrap_or_default();
        if text.is_empty() {
            text.extend_from_slice(b"# huddle known servers: host:port SHA-256-fingerprint\n");
        } else if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(format!("{key} {}\n", hex(fp)).as_bytes());
        config_files::write_atomically(&self.path, &text).map_err(werr)?;
        self.entries.push((key.to_string(), *fp));
        Ok(())
    }
}

/// Parses the known-servers text; malformed lines are skipped (and logged).
fn parse_known_servers(text: &str) -> Vec<(String, Fingerprint)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(parse_fingerprint),
            words.next(),
        ) {
            (Some(key), Some(fp), None) => out.push((key.to_ascii_lowercase(), fp)),
            _ => log::warn!("known-servers line {} ignored: {line:?}", n + 1),
        }
    }
    out
}

/// Reads every certificate from a PEM file.
fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let read_err = |err: String| TrustError::CaRead {
        path: path.to_owned(),
        err,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(pem_error_text(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(pem_error_text(&e)))?;
    if certs.is_empty() {
        return Err(TrustError::CaEmpty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn pem_error_text(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a valid PEM file ({other:?})"),
    }
}

/// `--ca`: webpki with the given roots, or an exact match with one of them.
#[derive(Debug)]
pub(crate) struct CaPolicy {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
}

impl CaPolicy {
    fn new(certs: Vec<CertificateDer<'static>>) -> CaPolicy {
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            if let Err(e) = roots.add(cert.clone()) {
                log::debug!("CA certificate not usable as a trust anchor ({e}); pinned only");
            }
        }
        let webpki = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), huddle_trust::provider())
                .build()
                .ok()
        };
        CaPolicy {
            pinned: certs,
            webpki,
        }
    }
}

impl Policy for CaPolicy {
    fn check(&self, cert: &Presented<'_>) -> Result<(), rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == cert.end_entity.as_ref())
        {
            return Ok(());
        }
        match (&self.webpki, cert.server_name) {
            (Some(v), Some(name)) => v
                .verify_server_cert(
                    cert.end_entity,
                    cert.intermediates,
                    name,
                    cert.ocsp_response,
                    cert.now,
                )
                .map(|_| ()),
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }
}

/// How a presented fingerprint compares with the remembered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinVerdict {
    /// Nothing remembered yet for this server.
    FirstContact(Fingerprint),
    Matches,
    Changed {
        expected: Fingerprint,
        seen: Fingerprint,
    },
}

fn check_pin(expected: Option<Fingerprint>, seen: Fingerprint) -> PinVerdict {
    match expected {
        None => PinVerdict::FirstContact(seen),
        Some(e) if e == seen => PinVerdict::Matches,
        Some(expected) => PinVerdict::Changed { expected, seen },
    }
}

/// Trust on first use for one connection attempt: accepts the remembered certificate, or any
/// certificate when none is remembered, and records what it saw.
#[derive(Debug)]
pub(crate) struct Tofu {
    expected: Option<Fingerprint>,
    verdict: Mutex<Option<PinVerdict>>,
}

impl Tofu {
    pub(crate) fn new(expected: Option<Fingerprint>) -> Tofu {
        Tofu {
            expected,
            verdict: Mutex::new(None),
        }
    }

    /// What the certificate check decided, once the server's certificate arrived.
    pub(crate) fn verdict(&self) -> Option<PinVerdict> {
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Policy for Tofu {
    fn check(&self, cert: &Presented<'_>) -> Result<(), rustls::Error> {
        let verdict = check_pin(self.expected, cert.fingerprint());
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        match verdict {
            PinVerdict::Changed { .. } => Err(refused()),
            _ => Ok(()),
        }
    }
}

/// The trust policy chosen on the command line.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    Ca(Arc<Verifier<CaPolicy>>),
    Tofu { file: PathBuf },
}

impl Trust {
    /// `--ca FILE`.
    pub(crate) fn from_ca_file(path: &Path) -> Result<Trust, TrustError> {
        Ok(Trust::Ca(Arc::new(Verifier::new(CaPolicy::new(
            load_ca_file(path)?,
        )))))
    }

    /// Trust on first use with `file`, or the default file in the user's config dir.
    pub(crate) fn tofu(file: Option<PathBuf>) -> Result<Trust, TrustError> {
        let file = match file {
            Some(f) => f,
            None => default_known_servers().ok_or(TrustError::NoConfigDir)?,
        };
        Ok(Trust::Tofu { file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_trust::fingerprint;
    use rustls::pki_types::{ServerName, UnixTime};

    const FP_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const FP_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn fingerprint_is_sha256() {
        assert_eq!(
            hex(&fingerprint(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys() {
        assert_eq!(server_key("LocalHost", 6697), "localhost:6697");
        assert_eq!(server_key("::1", 7), "[::1]:7");
        assert_eq!(server_key("[::1]", 7), "[::1]:7");
    }

    #[test]
    fn parsing_skips_comments_and_junk() {
        let text = format!(
            "# comment\n\nlocalhost:6697 {FP_A}\nbroken line\nx:1 {FP_A} extra\n  \
             Example.org:7 {FP_B}  \r\ny:2 not-hex\n"
        );
        let e = parse_known_servers(&text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "localhost:6697");
        assert_eq!(
            e[1],
            (
                "example.org:7".to_string(),
                parse_fingerprint(FP_B).unwrap()
            )
        );
    }

    #[test]
    fn remember_appends_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known");
        let mut ks = KnownServers::load(&path).unwrap();
        assert_eq!(ks.lookup("a:1"), None);
        let a = parse_fingerprint(FP_A).unwrap();
        let b = parse_fingerprint(FP_B).unwrap();
        ks.remember("a:1", &a).unwrap();
        assert_eq!(ks.lookup("a:1"), Some(a));
        // A file without a final newline gets one before the new entry.
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("# no newline");
        fs::write(&path, &text).unwrap();
        let mut ks = KnownServers::load(&path).unwrap();
        ks.remember("b:2", &b).unwrap();
        let ks = KnownServers::load(&path).unwrap();
        assert_eq!(ks.lookup("a:1"), Some(a));
        assert_eq!(ks.lookup("b:2"), Some(b));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# huddle known servers"));
        assert!(text.ends_with(&format!("# no newline\nb:2 {FP_B}\n")));
    }

    #[test]
    fn pin_logic() {
        let a = parse_fingerprint(FP_A).unwrap();
        let b = parse_fingerprint(FP_B).unwrap();
        assert_eq!(check_pin(None, a), PinVerdict::FirstContact(a));
        assert_eq!(check_pin(Some(a), a), PinVerdict::Matches);
        assert_eq!(
            check_pin(Some(a), b),
            PinVerdict::Changed {
                expected: a,
                seen: b
            }
        );
    }

    #[test]
    fn tofu_verifier_records_and_refuses() {
        let cert = CertificateDer::from(b"not really a certificate".to_vec());
        let name = ServerName::try_from("localhost").unwrap();
        let fp = fingerprint(cert.as_ref());

        let v = Verifier::new(Tofu::new(None));
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert_eq!(v.policy().verdict(), Some(PinVerdict::FirstContact(fp)));

        let v = Verifier::new(Tofu::new(Some(fp)));
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert_eq!(v.policy().verdict(), Some(PinVerdict::Matches));

        let other = parse_fingerprint(FP_A).unwrap();
        let v = Verifier::new(Tofu::new(Some(other)));
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_err());
        assert_eq!(
            v.policy().verdict(),
            Some(PinVerdict::Changed {
                expected: other,
                seen: fp
            })
        );
    }

    #[test]
    fn changed_message_says_how_to_fix() {
        let e = TrustError::Changed {
            server: "h:1".into(),
            expected: parse_fingerprint(FP_A).unwrap(),
            seen: parse_fingerprint(FP_B).unwrap(),
            file: PathBuf::from("/x/known"),
        };
        let s = e.to_string();
        assert!(s.contains(FP_A) && s.contains(FP_B));
        assert!(s.contains("remove the line starting with \"h:1 \" from /x/known"));
    }

    #[test]
    fn ca_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "hello\n").unwrap();
        assert!(matches!(
            load_ca_file(&empty),
            Err(TrustError::CaEmpty { .. })
        ));
        assert!(matches!(
            load_ca_file(&dir.path().join("missing.pem")),
            Err(TrustError::CaRead { .. })
        ));
    }

    /// In-memory TLS handshakes against a real rustls server.
    mod handshake {
        use super::*;
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use rustls::server::{ClientHello, ResolvesServerCert};
        use rustls::sign::CertifiedKey;
        use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

        struct Generated {
            cert: CertificateDer<'static>,
            key: Vec<u8>,
        }

        fn generate(ca: bool) -> Generated {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            if ca {
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Generated {
                cert: cert.der().clone(),
                key: key.serialize_der(),
            }
        }

        /// Presents `cert` but signs with `key` (which may belong to another certificate).
        #[derive(Debug)]
        struct Presents(Arc<CertifiedKey>);

        impl ResolvesServerCert for Presents {
            fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(self.0.clone())
            }
        }

        fn server(cert: &Generated, key_of: &Generated, tls12: bool) -> ServerConnection {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_of.key.clone()));
            let signer = provider.key_provider.load_private_key(key).unwrap();
            let certified = Arc::new(CertifiedKey::new(vec![cert.cert.clone()], signer));
            let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
                &[&rustls::version::TLS12]
            } else {
                &[&rustls::version::TLS13]
            };
            let config = ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Presents(certified)));
            ServerConnection::new(Arc::new(config)).unwrap()
        }

        fn client(verifier: Arc<dyn ServerCertVerifier>) -> ClientConnection {
            let config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
            let name = ServerName::try_from("localhost").unwrap();
            ClientConnection::new(Arc::new(config), name).unwrap()
        }

        /// Runs the handshake to completion; the client's error if it fails.
        fn run(mut c: ClientConnection, mut s: ServerConnection) -> Result<(), rustls::Error> {
            for _ in 0..20 {
                let mut buf = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut buf).unwrap();
                }
                if !buf.is_empty() {
                    s.read_tls(&mut buf.as_slice()).unwrap();
                    if s.process_new_packets().is_err() {
                        // Deliver the server's alert, then report the client's view.
                        let mut alert = Vec::new();
                        while s.wants_write() {
                            s.write_tls(&mut alert).unwrap();
                        }
                        c.read_tls(&mut alert.as_slice()).unwrap();
                        return c.process_new_packets().map(|_| ());
                    }
                }
                let mut buf = Vec::new();
                while s.wants_write() {
                    s.write_tls(&mut buf).unwrap();
                }
                if !buf.is_empty() {
                    c.read_tls(&mut buf.as_slice()).unwrap();
                    c.process_new_packets()?;
                }
                if !c.is_handshaking() && !s.is_handshaking() {
                    return Ok(());
                }
            }
            panic!("handshake did not finish");
        }

        #[test]
        fn tofu_accepts_first_and_remembered_and_refuses_other() {
            let a = generate(false);
            let b = generate(false);
            for tls12 in [false, true] {
                let v = Arc::new(Verifier::new(Tofu::new(None)));
                assert!(run(client(v.clone()), server(&a, &a, tls12)).is_ok());
                let fp = fingerprint(a.cert.as_ref());
                assert_eq!(v.policy().verdict(), Some(PinVerdict::FirstContact(fp)));

                let v = Arc::new(Verifier::new(Tofu::new(Some(fp))));
                assert!(run(client(v.clone()), server(&a, &a, tls12)).is_ok());
                assert_eq!(v.policy().verdict(), Some(PinVerdict::Matches));

                let v = Arc::new(Verifier::new(Tofu::new(Some(fp))));
                let err = run(client(v.clone()), server(&b, &b, tls12)).unwrap_err();
                assert!(
                    matches!(err, rustls::Error::InvalidCertificate(_)),
                    "{err:?}"
                );
                assert!(matches!(
                    v.policy().verdict(),
                    Some(PinVerdict::Changed { .. })
                ));
            }
        }

        #[test]
        fn pinned_certificate_without_its_key_is_refused() {
            // An attacker replays the remembered certificate but cannot sign with its key.
            let real = generate(false);
            let attacker = generate(false);
            for tls12 in [false, true] {
                let fp = fingerprint(real.cert.as_ref());
                let v = Arc::new(Verifier::new(Tofu::new(Some(fp))));
                let err = run(client(v.clone()), server(&real, &attacker, tls12)).unwrap_err();
                assert_eq!(v.policy().verdict(), Some(PinVerdict::Matches));
                assert_eq!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::BadSignature)
                );

                let ca = Arc::new(Verifier::new(CaPolicy::new(vec![real.cert.clone()])));
                assert!(run(client(ca), server(&real, &attacker, tls12)).is_err());
            }
        }

        #[test]
        fn ca_file_trusts_self_signed_and_pinned_ca_certs_only() {
            let ee = generate(false);
            let ca_flagged = generate(true);
            let other = generate(false);

            let v = Arc::new(Verifier::new(CaPolicy::new(vec![ee.cert.clone()])));
            assert!(run(client(v.clone()), server(&ee, &ee, false)).is_ok());
            assert!(run(client(v), server(&other, &other, false)).is_err());

            // A CA-flagged self-signed cert is refused by webpki as an end entity but
            // accepted as an exact pin.
            let v = Arc::new(Verifier::new(CaPolicy::new(vec![ca_flagged.cert.clone()])));
            assert!(run(client(v), server(&ca_flagged, &ca_flagged, false)).is_ok());
        }
    }
}
