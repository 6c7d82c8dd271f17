//! Slack request signatures: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the
//! app's signing secret, within ±5 minutes of now, compared in constant time.
//! <https://api.slack.com/authentication/verifying-requests-from-slack>

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from our clock, either way.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp")]
    MissingTimestamp,
    #[error("X-Slack-Request-Timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than five minutes from now")]
    Stale,
    #[error("missing or malformed X-Slack-Signature")]
    MissingSignature,
    #[error("signature does not match")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `X-Slack-Signature` value Slack would send.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// The Unix seconds of an `X-Slack-Request-Timestamp` header.
pub fn timestamp_of(header: &str) -> Result<i64, SignatureError> {
    header.trim().parse().map_err(|_| SignatureError::BadTimestamp)
}

/// Checks a request as Slack signs it; `now` is Unix seconds.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    let ts = timestamp_of(timestamp)?;
    // `abs_diff`: a timestamp near i64::MIN or MAX must not overflow the subtraction.
    if now.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let given = signature
        .and_then(|s| s.strip_prefix("v0="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::MissingSignature)?;
    mac(secret, timestamp, body).verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example from Slack's documentation.
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const TS: &str = "1531420618";

    #[test]
    fn matches_slacks_documented_example() {
        assert_eq!(sign(SECRET, TS, BODY), "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        let sig = sign(SECRET, TS, BODY);
        assert_eq!(verify(SECRET, Some(TS), Some(&sig), BODY, 1531420618 + 10), Ok(()));
    }

    #[test]
    fn refuses_forged_stale_future_and_malformed() {
        let sig = sign(SECRET, TS, BODY);
        let now = 1531420618;
        assert_eq!(verify(b"other", Some(TS), Some(&sig), BODY, now), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, Some(TS), Some(&sig), b"tampered", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, Some(TS), Some(&sig), BODY, now + 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, Some(TS), Some(&sig), BODY, now - 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, Some("soon"), Some(&sig), BODY, now), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(SECRET, None, Some(&sig), BODY, now), Err(SignatureError::MissingTimestamp));
        assert_eq!(verify(SECRET, Some(TS), None, BODY, now), Err(SignatureError::MissingSignature));
        assert_eq!(verify(SECRET, Some(TS), Some("v1=00"), BODY, now), Err(SignatureError::MissingSignature));
        assert_eq!(verify(SECRET, Some(TS), Some("v0=zz"), BODY, now), Err(SignatureError::MissingSignature));
    }
}
