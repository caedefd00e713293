//! TLS identity: load the operator's PEM files or generate (once) a self-signed certificate,
//! and build the rustls server configuration.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// File name of the generated certificate inside the data directory.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the generated private key inside the data directory.
pub const KEY_FILE: &str = "key.pem";

/// Resumption cache entries (TLS 1.2 session ids); tickets are off.
const SESSION_CACHE_ENTRIES: usize = 256;

/// The server's certificate chain and key, plus the leaf's SHA-256 fingerprint.
pub struct TlsIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex characters.
    pub fingerprint: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs.len())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What went wrong with the certificate or key.
#[derive(Debug)]
pub enum TlsError {
    /// Only one of certificate and key was given.
    Incomplete {
        given: PathBuf,
        missing: &'static str,
    },
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The file is not valid PEM.
    BadPem { path: PathBuf, message: String },
    /// The file has no CERTIFICATE section.
    NoCertificate(PathBuf),
    /// The file has no PRIVATE KEY section.
    NoPrivateKey(PathBuf),
    /// The key is of an unsupported type or malformed.
    BadKey { path: PathBuf, message: String },
    /// The key does not belong to the certificate.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rcgen could not make a certificate.
    Generate(String),
    /// rustls refused the configuration.
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Incomplete { given, missing } => write!(
                f,
                "--cert and --key must be given together: got {}, but no {missing} file",
                given.display()
            ),
            TlsError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            TlsError::BadPem { path, message } => {
                write!(f, "{}: not a valid PEM file ({message})", path.display())
            }
            TlsError::NoCertificate(path) => write!(
                f,
                "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
                path.display()
            ),
            TlsError::NoPrivateKey(path) => write!(
                f,
                "{}: no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \
                 \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)",
                path.display()
            ),
            TlsError::BadKey { path, message } => {
                write!(f, "{}: unusable private key ({message})", path.display())
            }
            TlsError::KeyMismatch { cert, key } => write!(
                f,
                "the private key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::Generate(msg) => {
                write!(f, "cannot generate a self-signed certificate: {msg}")
            }
            TlsError::Config(msg) => write!(f, "cannot set up TLS: {msg}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Loads `cert` + `key`, or reuses / generates `<data_dir>/cert.pem` + `key.pem`.
pub fn load_or_generate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<TlsIdentity, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => load(cert, key),
        (Some(cert), None) => Err(TlsError::Incomplete {
            given: cert.to_path_buf(),
            missing: "key",
        }),
        (None, Some(key)) => Err(TlsError::Incomplete {
            given: key.to_path_buf(),
            missing: "certificate",
        }),
        (None, None) => {
            let cert = data_dir.join(CERT_FILE);
            let key = data_dir.join(KEY_FILE);
            match (cert.exists(), key.exists()) {
                (true, true) => load(&cert, &key),
                (c, k) => {
                    if c || k {
                        log::warn!(
                            "only one of {} and {} exists; generating a new pair",
                            cert.display(),
                            key.display()
                        );
                    }
                    generate(data_dir, &cert, &key)
                }
            }
        }
    }
}

/// Builds the rustls server configuration: TLS 1.3 and 1.2, ring, no client auth,
/// no session tickets.
pub fn server_config(id: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Config("the private key does not belong to the certificate".into())
            }
            other => TlsError::Config(other.to_string()),
        })?;
    config.send_tls13_tickets = 0;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}

/// SHA-256 of a certificate's DER as 64 lowercase hex characters.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    huddle_trust::sha256_hex(cert.as_ref())
}

fn load(cert_path: &Path, key_path: &Path) -> Result<TlsIdentity, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert_path, e))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey(key_path.to_path_buf()),
        other => pem_error(key_path, other),
    })?;
    check_pair(&certs, &key, cert_path, key_path)?;
    Ok(TlsIdentity {
        certs,
        key,
        fingerprint,
    })
}

/// Fails early, with both paths in the message, if the key is unusable or not the cert's.
fn check_pair(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            message: e.to_string(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(certs.to_vec(), signer);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        // `Unknown` means rustls could not tell; the handshake will.
        _ => Ok(()),
    }
}

fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        },
        other => TlsError::BadPem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

fn generate(data_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<TlsIdentity, TlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Some(host) = hostname() {
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let generated = match rcgen::generate_simple_self_signed(names.clone()) {
        Ok(g) => g,
        // A host name rcgen won't take must not stop the server.
        Err(e) if names.len() > 2 => {
            log::warn!("host name {:?} not usable in a certificate: {e}", names[2]);
            names.truncate(2);
            rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| TlsError::Generate(e.to_string()))?
        }
        Err(e) => return Err(TlsError::Generate(e.to_string())),
    };
    log::info!(
        "generating a self-signed certificate for {} into {} and {}",
        names.join(", "),
        cert_path.display(),
        key_path.display()
    );
    fs::create_dir_all(data_dir).map_err(|source| TlsError::Io {
        path: data_dir.to_path_buf(),
        action: "create directory",
        source,
    })?;
    // Key first: a crash in between leaves no cert.pem, so the next start regenerates.
    write_atomically(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomically(cert_path, generated.cert.pem().as_bytes(), 0o644)?;

    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    Ok(TlsIdentity {
        fingerprint: fingerprint(&cert),
        certs: vec![cert],
        key,
    })
}

/// Writes `path.tmp` with `mode` (unix), syncs it, then renames it over `path`.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io_err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| TlsError::Io {
            path: p,
            action,
            source,
        }
    };
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp)(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("write", path))?;
    Ok(())
}

/// This machine's host name, lowercase, if it is a plausible DNS name.
pub(crate) fn hostname() -> Option<String> {
    let raw = hostname_libc().or_else(|| fs::read_to_string("/etc/hostname").ok())?;
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    plausible.then_some(name)
}

#[cfg(unix)]
fn hostname_libc() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(not(unix))]
fn hostname_libc() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
    use std::io::Read;

    fn generated() -> (tempfile::TempDir, TlsIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_generate(dir.path(), None, None).unwrap();
        (dir, id)
    }

    #[test]
    fn generate_then_reuse_keeps_fingerprint() {
        let (dir, first) = generated();
        assert!(dir.path().join(CERT_FILE).is_file());
        assert!(dir.path().join(KEY_FILE).is_file());
        assert_eq!(first.fingerprint.len(), 64);
        assert!(first
            .fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(first.fingerprint, fingerprint(&first.certs[0]));

        let again = load_or_generate(dir.path(), None, None).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.certs, first.certs);
        assert_eq!(again.key.secret_der(), first.key.secret_der());

        // The same files passed explicitly load the same identity.
        let explicit = load_or_generate(
            Path::new("/nonexistent"),
            Some(&dir.path().join(CERT_FILE)),
            Some(&dir.path().join(KEY_FILE)),
        )
        .unwrap();
        assert_eq!(explicit.fingerprint, first.fingerprint);
    }

    #[test]
    fn creates_missing_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        load_or_generate(&nested, None, None).unwrap();
        assert!(nested.join(CERT_FILE).is_file());
        assert!(!nested.join("cert.pem.tmp").exists());
        assert!(!nested.join("key.pem.tmp").exists());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _) = generated();
        let mode = |f: &str| {
            fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        // 0644 minus whatever the umask removes; never writable by others.
        assert_eq!(mode(CERT_FILE) & 0o002, 0);
        assert_eq!(mode(CERT_FILE) & 0o600, 0o600);
    }

    #[test]
    fn missing_half_regenerates() {
        let (dir, first) = generated();
        fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let second = load_or_generate(dir.path(), None, None).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        let third = load_or_generate(dir.path(), None, None).unwrap();
        assert_eq!(third.fingerprint, second.fingerprint);
    }

    #[test]
    fn only_one_of_cert_and_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        let err = load_or_generate(dir.path(), Some(&p), None).unwrap_err();
        assert!(matches!(err, TlsError::Incomplete { missing: "key", .. }));
        assert!(err.to_string().contains("--key"), "{err}");
        let err = load_or_generate(dir.path(), None, Some(&p)).unwrap_err();
        assert!(matches!(
            err,
            TlsError::Incomplete {
                missing: "certificate",
                ..
            }
        ));
        // Nothing was generated.
        assert!(!dir.path().join(CERT_FILE).exists());
    }

    #[test]
    fn garbage_files_give_clear_errors() {
        let (dir, _) = generated();
        let good_key = dir.path().join(KEY_FILE);
        let good_cert = dir.path().join(CERT_FILE);

        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "this is not a certificate\n").unwrap();
        let err = load_or_generate(dir.path(), Some(&garbage), Some(&good_key)).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("garbage.pem") && msg.contains("no certificate"),
            "{msg}"
        );

        let err = load_or_generate(dir.path(), Some(&good_cert), Some(&garbage)).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey(_)), "{err:?}");
        assert!(err.to_string().contains("garbage.pem"));

        let broken = dir.path().join("broken.pem");
        fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_or_generate(dir.path(), Some(&broken), Some(&good_key)).unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
        assert!(err.to_string().contains("broken.pem"), "{err}");

        let missing = dir.path().join("missing.pem");
        let err = load_or_generate(dir.path(), Some(&missing), Some(&good_key)).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn mismatched_key_is_reported() {
        let (a, _) = generated();
        let (b, _) = generated();
        let cert = a.path().join(CERT_FILE);
        let key = b.path().join(KEY_FILE);
        let err = load_or_generate(a.path(), Some(&cert), Some(&key)).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("does not belong"), "{msg}");

        // server_config catches it too when handed a bad identity directly.
        let id_a = load_or_generate(a.path(), None, None).unwrap();
        let id_b = load_or_generate(b.path(), None, None).unwrap();
        let bad = TlsIdentity {
            certs: id_a.certs,
            key: id_b.key,
            fingerprint: id_a.fingerprint,
        };
        let err = server_config(&bad).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        let cert = CertificateDer::from(b"abc".to_vec());
        assert_eq!(
            fingerprint(&cert),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn server_config_settings() {
        let (_dir, id) = generated();
        let config = server_config(&id).unwrap();
        assert_eq!(config.send_tls13_tickets, 0);
        assert!(!config.ticketer.enabled());
    }

    fn client_config(
        id: &TlsIdentity,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(id.certs[0].clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Hands all of `buf` to one side's `read_tls`.
    fn feed(buf: &[u8], mut read_tls: impl FnMut(&mut &[u8]) -> io::Result<usize>) {
        let mut rd = buf;
        while !rd.is_empty() {
            read_tls(&mut rd).unwrap();
        }
    }

    /// Moves TLS records from one side to the other until neither has anything to send.
    fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
        for _ in 0..20 {
            let mut moved = false;
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                moved = true;
                feed(&buf, |rd| server.read_tls(rd));
                server.process_new_packets().unwrap();
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                moved = true;
                feed(&buf, |rd| client.read_tls(rd));
                client.process_new_packets().unwrap();
            }
            if !moved {
                return;
            }
        }
        panic!("handshake did not settle");
    }

    fn handshake(
        id: &TlsIdentity,
        name: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ProtocolVersion {
        let server_cfg = server_config(id).unwrap();
        let mut server = ServerConnection::new(server_cfg).unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = ClientConnection::new(client_config(id, versions), server_name).unwrap();

        pump(&mut client, &mut server);
        assert!(!client.is_handshaking());
        assert!(!server.is_handshaking());

        client.writer().write_all(b"CAP LS 302\r\n").unwrap();
        server.writer().write_all(b"hello client\r\n").unwrap();
        pump(&mut client, &mut server);
        let mut got = vec![0u8; 64];
        let n = server.reader().read(&mut got).unwrap();
        assert_eq!(&got[..n], b"CAP LS 302\r\n");
        let n = client.reader().read(&mut got).unwrap();
        assert_eq!(&got[..n], b"hello client\r\n");
        client.protocol_version().unwrap()
    }

    #[test]
    fn in_memory_handshake_tls13_and_tls12() {
        let (_dir, id) = generated();
        assert_eq!(
            handshake(&id, "localhost", &[&rustls::version::TLS13]),
            rustls::ProtocolVersion::TLSv1_3
        );
        assert_eq!(
            handshake(&id, "localhost", &[&rustls::version::TLS12]),
            rustls::ProtocolVersion::TLSv1_2
        );
        assert_eq!(
            handshake(&id, "127.0.0.1", &[&rustls::version::TLS13]),
            rustls::ProtocolVersion::TLSv1_3
        );
        if let Some(host) = hostname() {
            if host != "localhost" {
                handshake(&id, &host, &[&rustls::version::TLS13]);
            }
        }
    }

    #[test]
    fn wrong_server_name_is_rejected() {
        let (_dir, id) = generated();
        let mut server = ServerConnection::new(server_config(&id).unwrap()).unwrap();
        let name = ServerName::try_from("example.com").unwrap();
        let mut client =
            ClientConnection::new(client_config(&id, &[&rustls::version::TLS13]), name).unwrap();
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        feed(&buf, |rd| server.read_tls(rd));
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        feed(&buf, |rd| client.read_tls(rd));
        let err = client.process_new_packets().unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn hostname_is_plausible_or_absent() {
        if let Some(h) = hostname() {
            assert!(!h.is_empty());
            assert_eq!(h, h.to_ascii_lowercase());
        }
    }
}
