//! TLS for the test clients: rustls client configurations that trust a PEM file or pin one
//! certificate by fingerprint (through `huddle_trust`), and the TLS-only parts of the IRC
//! client (connecting, the handshake, the presented certificate).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use huddle_trust::{Fingerprint, Pinned, Verifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::irc::{Client, IrcClient};
use crate::raw::is_timeout;
use crate::REPLY_DEADLINE;

/// A fresh self-signed certificate and its key, as a test-controlled peer presents on a
/// direct link.
pub struct PeerIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The certificate's SHA-256 fingerprint, as the server hands it out.
    pub fp: String,
}

impl PeerIdentity {
    pub fn new() -> PeerIdentity {
        let params = rcgen::CertificateParams::new(vec!["huddle-peer".to_string()])
            .expect("certificate parameters");
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed").der().clone();
        PeerIdentity {
            fp: huddle_trust::sha256_hex(cert.as_ref()),
            cert,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Certificate and key, as a client-auth pair.
    pub fn pair(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (self.cert.clone(), self.key())
    }
}

impl Default for PeerIdentity {
    fn default() -> Self {
        Self::new()
    }
}

/// A client TLS configuration (TLS 1.2 and 1.3) that trusts exactly the certificates in the
/// PEM file at `path`.
pub fn client_config_trusting(path: &Path) -> Arc<ClientConfig> {
    client_config_for(&pem_certs(path), None)
}

/// A client TLS configuration trusting `certs`; `version` pins one protocol version.
pub fn client_config_for(
    certs: &[CertificateDer<'static>],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).expect("trust certificate");
    }
    let builder = ClientConfig::builder_with_provider(huddle_trust::provider());
    let builder = match version {
        Some(v) => builder.with_protocol_versions(&[v]),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("protocol versions");
    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A client TLS configuration that accepts only the certificate whose SHA-256 fingerprint is
/// `fingerprint` (64 hex digits), presenting `client_cert` if given.
pub fn pinned_config(
    fingerprint: &str,
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let verifier = Verifier::new(Pinned(parse_fingerprint(fingerprint)));
    let builder = ClientConfig::builder_with_provider(huddle_trust::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Arc::new(match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    })
}

/// A fingerprint written as 64 hex digits. Panics on anything else.
pub fn parse_fingerprint(hex: &str) -> Fingerprint {
    assert!(
        hex.len() == 64 && hex.is_ascii(),
        "not a SHA-256 fingerprint: {hex:?}"
    );
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .unwrap_or_else(|e| panic!("not a SHA-256 fingerprint: {hex:?}: {e}"));
    }
    out
}

/// The DER certificates in a PEM file.
pub fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {path:?}: {e}"))
        .map(|c| c.expect("parse PEM certificate"))
        .collect()
}

impl IrcClient<StreamOwned<ClientConnection, TcpStream>> {
    /// A TLS connection to `addr` with the given client configuration (server name
    /// `localhost`; the handshake happens on first I/O).
    pub fn connect_to(addr: SocketAddr, cfg: Arc<ClientConfig>, label: &str) -> Client {
        let sock =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("[{label}] connect {addr}: {e}"));
        Client::over(sock, cfg, label)
    }

    /// A TLS client over an already connected socket.
    pub fn over(sock: TcpStream, cfg: Arc<ClientConfig>, label: &str) -> Client {
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = ClientConnection::new(cfg, name).expect("ClientConnection");
        IrcClient::new(StreamOwned::new(conn, sock), label)
    }

    /// A TLS connection to 127.0.0.1:`port` that accepts only the certificate with
    /// `fingerprint` and presents `client_cert` if given.
    pub fn connect_pinned(
        port: u16,
        fingerprint: &str,
        client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
        label: &str,
    ) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Client::connect_to(addr, pinned_config(fingerprint, client_cert), label)
    }

    pub fn tls(&self) -> &ClientConnection {
        &self.stream_ref().conn
    }

    /// Drives the TLS handshake to completion (bounded).
    pub fn handshake(&mut self) {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let label = self.label().to_string();
        let stream = self.stream_mut();
        while stream.conn.is_handshaking() {
            match stream.conn.complete_io(&mut stream.sock) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => panic!("[{label}] TLS handshake: {e}"),
            }
        }
    }

    /// SHA-256 (hex) of the certificate the server presented (after the handshake).
    pub fn server_fingerprint(&mut self) -> String {
        self.handshake();
        let certs = self.tls().peer_certificates().expect("peer certificate");
        huddle_trust::sha256_hex(certs[0].as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_hex_round_trips() {
        let fp = huddle_trust::fingerprint(b"certificate bytes");
        assert_eq!(parse_fingerprint(&huddle_trust::hex(&fp)), fp);
    }

    #[test]
    #[should_panic(expected = "not a SHA-256 fingerprint")]
    fn short_fingerprint_is_refused() {
        parse_fingerprint("abcd");
    }

    #[test]
    #[should_panic(expected = "not a SHA-256 fingerprint")]
    fn non_hex_fingerprint_is_refused() {
        parse_fingerprint(&"zz".repeat(32));
    }
}
