//! Certificate trust shared by every Huddle TLS client: SHA-256 fingerprints and one adapter
//! that turns a certificate policy into a rustls verifier.
//!
//! A [`Policy`] decides only whether the presented certificate is acceptable (pinned, trusted on
//! first use, signed by a CA, or any). The adapter adds what every verifier must do whatever
//! the policy: check the handshake signature with the provider's algorithms, so that a
//! certificate someone merely saw cannot be replayed without its key.
//!
//! Depends on rustls and ring only; no I/O.

use std::fmt::Debug;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as ring_provider, WebPkiSupportedAlgorithms};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// SHA-256 of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

/// The SHA-256 fingerprint of a DER-encoded certificate.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    out
}

/// Lowercase hex of any bytes (fingerprints are shown and exchanged this way).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The fingerprint of a DER-encoded certificate as 64 lowercase hex digits.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(&fingerprint(der))
}

/// The one crypto provider Huddle uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider::default_provider())
}

/// The error a policy returns for a certificate it refuses for its own reasons (a pin that
/// does not match, a changed certificate).
pub fn refused() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// A certificate the other side presented, with what rustls knows of the handshake.
#[derive(Debug)]
pub struct Presented<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    /// The name this client asked for; `None` when a server checks a client's certificate.
    pub server_name: Option<&'a ServerName<'a>>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

impl Presented<'_> {
    /// The end-entity certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(self.end_entity.as_ref())
    }
}

/// Decides whether a presented certificate is acceptable. The signature checks are not the
/// policy's business: [`Verifier`] does them.
pub trait Policy: Debug + Send + Sync {
    fn check(&self, cert: &Presented<'_>) -> Result<(), rustls::Error>;
}

/// Accepts any certificate (the handshake signature is still checked by [`Verifier`]). For
/// links whose identity is settled after the handshake, and for load tests on loopback.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyCert;

impl Policy for AnyCert {
    fn check(&self, _cert: &Presented<'_>) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// Accepts exactly one certificate, named by its fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct Pinned(pub Fingerprint);

impl Policy for Pinned {
    fn check(&self, cert: &Presented<'_>) -> Result<(), rustls::Error> {
        if cert.fingerprint() == self.0 {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

/// A rustls verifier made of a policy plus the handshake signature checks.
#[derive(Debug)]
pub struct Verifier<P> {
    policy: P,
    algs: WebPkiSupportedAlgorithms,
}

impl<P> Verifier<P> {
    pub fn new(policy: P) -> Verifier<P> {
        Verifier {
            policy,
            algs: ring_provider::default_provider().signature_verification_algorithms,
        }
    }

    /// The policy, for reading what it recorded during the handshake.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

/// The handshake-signature methods, the same in both verifier traits: checked with the
/// provider's algorithms whatever the policy decided about the certificate.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

impl<P: Policy> ServerCertVerifier for Verifier<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy
            .check(&Presented {
                end_entity,
                intermediates,
                server_name: Some(server_name),
                ocsp_response,
                now,
            })
            .map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl<P: Policy> ClientCertVerifier for Verifier<P> {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.policy
            .check(&Presented {
                end_entity,
                intermediates,
                server_name: None,
                ocsp_response: &[],
                now,
            })
            .map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pinned_accepts_only_its_certificate() {
        let cert = CertificateDer::from(b"certificate bytes".to_vec());
        let other = CertificateDer::from(b"other bytes".to_vec());
        let name = ServerName::try_from("huddle.local").expect("valid name");
        let pin = Pinned(fingerprint(cert.as_ref()));
        let presented = |end_entity| Presented {
            end_entity,
            intermediates: &[],
            server_name: Some(&name),
            ocsp_response: &[],
            now: UnixTime::now(),
        };
        assert!(pin.check(&presented(&cert)).is_ok());
        assert!(pin.check(&presented(&other)).is_err());
    }
}
