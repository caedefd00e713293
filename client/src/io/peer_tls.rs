//! TLS for direct messages: the per-session identity, the two verifiers and the rustls
//! configurations of both ends.
//!
//! Trust comes from the server: it tells each side the SHA-256 fingerprint of the other
//! side's certificate. The dialer pins the responder's certificate to that fingerprint
//! ([`PinnedPeer`]); the responder accepts any client certificate during the handshake
//! ([`AnyCert`]) and compares its fingerprint with what the server reports for the name
//! claimed in `PEERHELLO` (see [`crate::core::peer_link`]). Both policies run inside
//! [`huddle_trust::Verifier`], which checks the handshake signatures, so a replayed
//! certificate without its private key is refused. Session resumption is off on both ends:
//! every connection proves possession of the key again.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use huddle_trust::{fingerprint, hex, provider, refused, AnyCert, Policy, Presented, Verifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use crate::core::Fingerprint;

/// The server name the dialer uses. Certificates are pinned by fingerprint, so the name is
/// never checked; SNI is not sent.
pub(super) const PEER_NAME: &str = "huddle-peer";

/// A fresh self-signed certificate and its key, made for one login session.
pub(super) struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &hex(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new ECDSA P-256 key and a self-signed certificate for it (rcgen).
    pub(super) fn generate() -> Result<Identity, String> {
        let err = |e: rcgen::Error| format!("cannot create a certificate: {e}");
        let mut params = rcgen::CertificateParams::new(vec![PEER_NAME.to_string()]).map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "huddle direct messages");
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Identity::from_parts(
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()),
        ))
    }

    /// The same certificate and key again (tests share one identity between ends).
    #[cfg(test)]
    pub(super) fn clone_for_tests(&self) -> Identity {
        Identity::from_parts(self.cert.clone(), self.key.clone_key())
    }

    fn from_parts(cert: CertificateDer<'static>, key: PrivatePkcs8KeyDer<'static>) -> Identity {
        let fingerprint = fingerprint(cert.as_ref());
        Identity {
            cert,
            key,
            fingerprint,
        }
    }

    /// SHA-256 of the certificate, as announced with `PEERADDR`.
    pub(super) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// What the pinning verifier saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PinCheck {
    Matches,
    Mismatch { seen: Fingerprint },
}

/// The dialer's policy: the responder's certificate must have exactly the fingerprint the
/// server reported (the [`Verifier`] around it checks that the handshake is signed with its
/// key). It records what it saw, so that a refusal can say why.
#[derive(Debug)]
pub(super) struct PinnedPeer {
    expected: Fingerprint,
    check: Mutex<Option<PinCheck>>,
}

impl PinnedPeer {
    pub(super) fn new(expected: Fingerprint) -> PinnedPeer {
        PinnedPeer {
            expected,
            check: Mutex::new(None),
        }
    }

    /// The fingerprint the peer must present.
    pub(super) fn expected(&self) -> Fingerprint {
        self.expected
    }

    /// The result of the fingerprint comparison, once the certificate arrived.
    pub(super) fn check(&self) -> Option<PinCheck> {
        *self.check.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Policy for PinnedPeer {
    fn check(&self, cert: &Presented<'_>) -> Result<(), rustls::Error> {
        let seen = cert.fingerprint();
        let check = if seen == self.expected {
            PinCheck::Matches
        } else {
            PinCheck::Mismatch { seen }
        };
        *self.check.lock().unwrap_or_else(PoisonError::into_inner) = Some(check);
        match check {
            PinCheck::Matches => Ok(()),
            PinCheck::Mismatch { .. } => Err(refused()),
        }
    }
}

/// The dialer's verifier.
pub(super) type PinnedVerifier = Verifier<PinnedPeer>;

/// The responder's verifier: a client certificate is mandatory and any certificate is
/// accepted in the handshake, but the client must sign the handshake with its key. Whose
/// certificate it is gets decided after `PEERHELLO`, against the server's directory.
fn any_client_cert() -> Arc<Verifier<AnyCert>> {
    Arc::new(Verifier::new(AnyCert))
}

/// The listener's configuration: our session certificate, a mandatory client certificate,
/// no session cache and no tickets.
pub(super) fn server_config(id: &Identity) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(any_client_cert())
        .with_single_cert(id.chain(), id.key())?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The dialer's configuration: `verifier` pins the responder, our session certificate is the
/// client certificate, resumption is off.
pub(super) fn client_config(
    id: &Identity,
    verifier: Arc<PinnedVerifier>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(id.chain(), id.key())?;
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// The fingerprint of the first certificate the peer presented.
pub(super) fn peer_fingerprint(conn: &rustls::CommonState) -> Option<Fingerprint> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint(c.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::ServerName;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use rustls::{
        CertificateError, ClientConnection, HandshakeKind, ServerConnection, SignatureScheme,
        SupportedProtocolVersion,
    };

    static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

    fn versions(tls12: bool) -> &'static [&'static SupportedProtocolVersion] {
        if tls12 {
            TLS12
        } else {
            TLS13
        }
    }

    /// A certified key presenting `cert`'s certificate but signing with `key_of`'s key.
    fn certified(cert: &Identity, key_of: &Identity) -> Arc<CertifiedKey> {
        let signer = provider()
            .key_provider
            .load_private_key(key_of.key())
            .unwrap();
        Arc::new(CertifiedKey::new(cert.chain(), signer))
    }

    #[derive(Debug)]
    struct Presents(Arc<CertifiedKey>);

    impl ResolvesServerCert for Presents {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    impl ResolvesClientCert for Presents {
        fn resolve(
            &self,
            _root_hint_subjects: &[&[u8]],
            _sigschemes: &[SignatureScheme],
        ) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    /// The real listener configuration, restricted to one protocol version.
    fn responder(id: &Identity, tls12: bool) -> ServerConnection {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(tls12))
            .unwrap()
            .with_client_cert_verifier(any_client_cert())
            .with_single_cert(id.chain(), id.key())
            .unwrap();
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// A responder that presents `cert` while signing with `key_of`'s key.
    fn impostor(cert: &Identity, key_of: &Identity, tls12: bool) -> ServerConnection {
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(tls12))
            .unwrap()
            .with_client_cert_verifier(any_client_cert())
            .with_cert_resolver(Arc::new(Presents(certified(cert, key_of))));
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    fn dialer(id: &Identity, verifier: Arc<PinnedVerifier>) -> ClientConnection {
        let config = client_config(id, verifier).unwrap();
        ClientConnection::new(config, ServerName::try_from(PEER_NAME).unwrap()).unwrap()
    }

    /// A dialer presenting `cert` while signing with `key_of`'s key (or no certificate).
    fn forging_dialer(
        expected: Fingerprint,
        presents: Option<(&Identity, &Identity)>,
    ) -> ClientConnection {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new(PinnedPeer::new(expected))));
        let config = match presents {
            Some((cert, key_of)) => {
                builder.with_client_cert_resolver(Arc::new(Presents(certified(cert, key_of))))
            }
            None => builder.with_no_client_auth(),
        };
        ClientConnection::new(Arc::new(config), ServerName::try_from(PEER_NAME).unwrap()).unwrap()
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        Done,
        ClientFailed(rustls::Error),
        ServerFailed(rustls::Error),
    }

    /// Moves records between the two ends until both finish or one fails.
    fn run(c: &mut ClientConnection, s: &mut ServerConnection) -> Outcome {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).unwrap();
                if let Err(e) = s.process_new_packets() {
                    return Outcome::ServerFailed(e);
                }
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).unwrap();
                if let Err(e) = c.process_new_packets() {
                    return Outcome::ClientFailed(e);
                }
            }
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
                return Outcome::Done;
            }
        }
        panic!("handshake did not finish");
    }

    fn ids() -> (Identity, Identity, Identity) {
        (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        )
    }

    #[test]
    fn identities_are_fresh_and_fingerprinted() {
        let (a, b, _) = ids();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), fingerprint(a.cert.as_ref()));
        assert!(
            !format!("{a:?}").contains("key"),
            "no key material in Debug"
        );
    }

    #[test]
    fn mutual_handshake_pins_the_responder_and_reveals_the_dialer() {
        let (alice, bob, _) = ids();
        for tls12 in [false, true] {
            let pin = Arc::new(Verifier::new(PinnedPeer::new(bob.fingerprint())));
            let mut c = dialer(&alice, pin.clone());
            let mut s = responder(&bob, tls12);
            assert_eq!(run(&mut c, &mut s), Outcome::Done, "tls12={tls12}");
            assert_eq!(pin.policy().check(), Some(PinCheck::Matches));
            assert_eq!(peer_fingerprint(&s), Some(alice.fingerprint()));
            assert_eq!(peer_fingerprint(&c), Some(bob.fingerprint()));
            assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
        }
    }

    #[test]
    fn another_certificate_is_refused_by_the_dialer() {
        let (alice, bob, mallory) = ids();
        for tls12 in [false, true] {
            let pin = Arc::new(Verifier::new(PinnedPeer::new(bob.fingerprint())));
            let mut c = dialer(&alice, pin.clone());
            let mut s = responder(&mallory, tls12);
            let out = run(&mut c, &mut s);
            assert_eq!(
                out,
                Outcome::ClientFailed(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure
                ))
            );
            assert_eq!(
                pin.policy().check(),
                Some(PinCheck::Mismatch {
                    seen: mallory.fingerprint()
                })
            );
            // The dialer never got to send application data.
            assert!(c.is_handshaking());
        }
    }

    #[test]
    fn replayed_responder_certificate_without_its_key_is_refused() {
        let (alice, bob, mallory) = ids();
        for tls12 in [false, true] {
            let pin = Arc::new(Verifier::new(PinnedPeer::new(bob.fingerprint())));
            let mut c = dialer(&alice, pin.clone());
            // Mallory replays bob's certificate but can only sign with her own key.
            let mut s = impostor(&bob, &mallory, tls12);
            let out = run(&mut c, &mut s);
            assert_eq!(pin.policy().check(), Some(PinCheck::Matches));
            assert_eq!(
                out,
                Outcome::ClientFailed(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                )),
                "tls12={tls12}"
            );
        }
    }

    #[test]
    fn replayed_client_certificate_without_its_key_is_refused() {
        let (alice, bob, mallory) = ids();
        for tls12 in [false, true] {
            // Mallory presents alice's certificate to bob, signing with her own key.
            let mut c = forging_dialer(bob.fingerprint(), Some((&alice, &mallory)));
            let mut s = responder(&bob, tls12);
            let out = run(&mut c, &mut s);
            assert_eq!(
                out,
                Outcome::ServerFailed(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                )),
                "tls12={tls12}"
            );
        }
    }

    #[test]
    fn client_certificate_is_mandatory() {
        let (_, bob, _) = ids();
        for tls12 in [false, true] {
            let mut c = forging_dialer(bob.fingerprint(), None);
            let mut s = responder(&bob, tls12);
            assert!(
                matches!(
                    run(&mut c, &mut s),
                    Outcome::ServerFailed(rustls::Error::NoCertificatesPresented)
                ),
                "tls12={tls12}"
            );
        }
    }

    #[test]
    fn no_resumption_on_either_end() {
        let (alice, bob, _) = ids();
        let real = server_config(&bob).unwrap();
        assert_eq!(real.send_tls13_tickets, 0);
        assert!(!real.session_storage.can_cache());
        // The same client configuration twice: the second handshake is a full one again.
        let config = client_config(
            &alice,
            Arc::new(Verifier::new(PinnedPeer::new(bob.fingerprint()))),
        )
        .unwrap();
        for _ in 0..2 {
            let mut c =
                ClientConnection::new(config.clone(), ServerName::try_from(PEER_NAME).unwrap())
                    .unwrap();
            let mut s = ServerConnection::new(real.clone()).unwrap();
            assert_eq!(run(&mut c, &mut s), Outcome::Done);
            assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
            assert_eq!(s.handshake_kind(), Some(HandshakeKind::Full));
        }
    }
}
