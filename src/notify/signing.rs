//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): every webhook carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per active secret so
//! a receiver keeps verifying while secrets rotate. Secrets are written `whsec_<base64 key>`.
//!
//! Pure: time and ids come in as arguments.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header names of the spec.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Prefix of a secret in its textual form.
pub const SECRET_PREFIX: &str = "whsec_";

/// A bad secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw); got one without the prefix")]
    Prefix,
    #[error("the part after `whsec_` is not base64: {0}")]
    Base64(String),
    #[error("the secret's key is {0} bytes; use 24 to 64 random bytes")]
    Length(usize),
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Secret({} bytes)", self.key.len())
    }
}

impl Secret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| SecretError::Base64(e.to_string()))?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret { key })
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        )
    }
}

/// The three headers of a signed message: one signature per secret (rotation).
pub fn headers(
    secrets: &[Secret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let sigs: Vec<String> = secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect();
    [
        (HEADER_ID, id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, sigs.join(" ")),
    ]
}

/// Why a receiver refuses a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("webhook-timestamp is {0} s away from now (tolerance {1} s)")]
    Timestamp(i64, i64),
    #[error("no webhook-signature matches")]
    Signature,
}

/// What a receiver does (used by driftwatch's tests and by users' receivers written from
/// the docs): accept when any `v1` signature matches any secret and the timestamp is within
/// `tolerance_s` of `now_s`. Comparison is constant-time.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: i64,
    signature_header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(VerifyError::Timestamp(now_s - timestamp, tolerance_s));
    }
    for secret in secrets {
        let expected = secret.sign(id, timestamp, body);
        for given in signature_header.split(' ') {
            if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                return Ok(());
            }
        }
    }
    Err(VerifyError::Signature)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference vector (also in svix's libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(s.sign(ID, TS, BODY), SIG);
        assert_eq!(verify(&[s], ID, TS, SIG, BODY, TS + 10, 300), Ok(()));
    }

    #[test]
    fn rotation_signs_with_every_secret_and_verifies_with_either() {
        let old = Secret::parse(SECRET).unwrap();
        let new = Secret::parse("whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQga2V5ISEh").unwrap();
        let h = headers(&[new.clone(), old.clone()], ID, TS, BODY);
        assert_eq!(h[0], (HEADER_ID, ID.to_string()));
        assert_eq!(h[1], (HEADER_TIMESTAMP, TS.to_string()));
        let sigs: Vec<&str> = h[2].1.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[1], SIG);
        // A receiver that only knows the old secret, and one that only knows the new one.
        assert!(verify(&[old], ID, TS, &h[2].1, BODY, TS, 300).is_ok());
        assert!(verify(&[new], ID, TS, &h[2].1, BODY, TS, 300).is_ok());
    }

    #[test]
    fn tampering_stale_timestamps_and_bad_secrets_are_refused() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                ID,
                TS,
                SIG,
                br#"{"test": 2432232315}"#,
                TS,
                300
            ),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                "msg_other",
                TS,
                SIG,
                BODY,
                TS,
                300
            ),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify(&[s], ID, TS, SIG, BODY, TS + 301, 300),
            Err(VerifyError::Timestamp(301, 300))
        );
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert!(matches!(
            Secret::parse("whsec_!!!"),
            Err(SecretError::Base64(_))
        ));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
        assert_eq!(
            format!("{:?}", Secret::parse(SECRET).unwrap()),
            "Secret(24 bytes)"
        );
    }
}
