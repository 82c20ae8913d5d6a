//! Backoff between attempts: exponential with jitter, or what the provider's
//! `Retry-After` asks for.

use std::time::Duration;

/// No single wait grows past this, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before retry number `retry` (0-based): a random point in the upper
/// half of `initial * 2^retry`, so that many workers retrying together spread out.
pub fn backoff(initial: Duration, retry: u32) -> Duration {
    let base = initial.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX)).min(MAX_BACKOFF);
    let half = base / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

/// Parses a `Retry-After` value given in seconds (the HTTP-date form is rare
/// from LLM APIs and is ignored, which falls back to our own backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX_BACKOFF.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let initial = Duration::from_millis(100);
        for retry in 0..5 {
            let full = initial * 2u32.pow(retry);
            let got = backoff(initial, retry);
            assert!(got >= full / 2 && got <= full, "retry {retry}: {got:?}");
        }
        assert!(backoff(initial, 40) <= MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn retry_after() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("3600"), Some(MAX_BACKOFF));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
