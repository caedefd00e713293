//! SASL PLAIN payloads (RFC 4616) and the IRC `AUTHENTICATE` chunking.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;

/// Size of one `AUTHENTICATE` chunk of base64 text.
pub const CHUNK_LEN: usize = 400;

/// The three fields of a PLAIN payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: String,
    pub authcid: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    NotBase64,
    /// Not `authzid NUL authcid NUL password`.
    Malformed,
    NotUtf8,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::NotBase64 => write!(f, "SASL payload is not valid base64"),
            SaslError::Malformed => write!(f, "SASL PLAIN payload is malformed"),
            SaslError::NotUtf8 => write!(f, "SASL PLAIN payload is not UTF-8"),
        }
    }
}

impl std::error::Error for SaslError {}

/// base64(`authzid \0 authcid \0 password`) with an empty authzid.
pub fn encode_plain(account: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{account}\0{password}"))
}

/// Decodes a complete (reassembled) PLAIN payload.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, SaslError> {
    let raw = STANDARD.decode(b64).map_err(|_| SaslError::NotBase64)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(z), Some(c), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::NotUtf8);
    Ok(PlainCredentials {
        authzid: s(z)?,
        authcid: s(c)?,
        password: s(p)?,
    })
}

/// Splits base64 text into `AUTHENTICATE` arguments: 400-byte chunks, then `+` when the last
/// chunk was exactly 400 bytes (or the payload was empty).
pub fn chunks(b64: &str) -> Vec<String> {
    let mut out: Vec<String> = b64
        .as_bytes()
        .chunks(CHUNK_LEN)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    if out.last().is_none_or(|c| c.len() == CHUNK_LEN) {
        out.push("+".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = encode_plain("alice", "correct horse");
        let c = decode_plain(&b).unwrap();
        assert_eq!(c.authzid, "");
        assert_eq!(c.authcid, "alice");
        assert_eq!(c.password, "correct horse");
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_plain("!!!"), Err(SaslError::NotBase64));
        assert_eq!(
            decode_plain(&STANDARD.encode("alice")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            decode_plain(&STANDARD.encode("a\0b\0c\0d")),
            Err(SaslError::Malformed)
        );
    }

    #[test]
    fn chunking() {
        assert_eq!(chunks("abc"), vec!["abc"]);
        assert_eq!(chunks(""), vec!["+"]);
        let exact = "a".repeat(400);
        assert_eq!(chunks(&exact), vec![exact.clone(), "+".to_string()]);
        let long = "b".repeat(401);
        assert_eq!(chunks(&long).len(), 2);
    }
}
