//! Slack request signing (v0): `X-Slack-Signature: v0=<hex HMAC-SHA256 of
//! "v0:<timestamp>:<body>">` under the app's signing secret, with
//! `X-Slack-Request-Timestamp` within five minutes of now (replay window).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Requests older or newer than this are refused.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("X-Slack-Request-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("the request timestamp is more than five minutes from now")]
    Stale,
    #[error("X-Slack-Signature does not match the body")]
    Mismatch,
}

/// The `v0=…` signature of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a request's signature headers against `body` at time `now_secs`, in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let ts = timestamp.ok_or(SignatureError::Missing("X-Slack-Request-Timestamp"))?;
    let sig = signature.ok_or(SignatureError::Missing("X-Slack-Signature"))?;
    let when: i64 = ts.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now_secs - when).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let hex_sig = sig.strip_prefix("v0=").ok_or(SignatureError::Mismatch)?;
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_documentation_example_verifies() {
        // The example from Slack's "Verifying requests from Slack" guide.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = "1531420618";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(secret, ts, body), sig);
        assert_eq!(verify(secret, Some(ts), Some(sig), body, 1531420618 + 10), Ok(()));
    }

    #[test]
    fn bad_signatures_and_stale_timestamps_are_refused() {
        let secret = b"secret";
        let now = 1_700_000_000;
        let ts = now.to_string();
        let good = sign(secret, &ts, b"{}");
        assert_eq!(verify(secret, Some(&ts), Some(&good), b"{}", now), Ok(()));
        assert_eq!(verify(secret, Some(&ts), Some(&good), b"{ }", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", Some(&ts), Some(&good), b"{}", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, Some(&ts), Some("v0=zz"), b"{}", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, Some(&ts), Some(&good[3..]), b"{}", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, Some(&ts), Some(&good), b"{}", now + 301), Err(SignatureError::Stale));
        assert_eq!(verify(secret, Some(&ts), Some(&good), b"{}", now - 301), Err(SignatureError::Stale));
        assert_eq!(verify(secret, Some("soon"), Some(&good), b"{}", now), Err(SignatureError::BadTimestamp));
        assert!(matches!(verify(secret, None, Some(&good), b"{}", now), Err(SignatureError::Missing(_))));
        assert!(matches!(verify(secret, Some(&ts), None, b"{}", now), Err(SignatureError::Missing(_))));
    }
}
