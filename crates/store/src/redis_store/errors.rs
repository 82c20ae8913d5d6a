//! Mapping Redis failures onto [`StoreError`], without leaking the password.

use crate::port::StoreError;
use redis::RedisError;

/// Maps a Redis error of operation `op`: data of the wrong shape is `Corrupt`,
/// anything else (I/O, timeouts, server trouble) is `Unavailable`.
pub(super) fn failed(op: &'static str) -> impl FnOnce(RedisError) -> StoreError {
    move |e| {
        use redis::ErrorKind::{Parse, UnexpectedReturnType};
        if matches!(e.kind(), Parse | UnexpectedReturnType) || e.code() == Some("WRONGTYPE") {
            StoreError::Corrupt(format!("redis {op}: {e}"))
        } else {
            StoreError::Unavailable(format!("redis {op}: {e}"))
        }
    }
}

/// Removes the password of `url` from `message`, in case an error quoted it.
pub(super) fn scrub(message: String, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(auth, _)| auth.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "<redacted>"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_the_password() {
        let msg = scrub("auth failed for hunter2".into(), "redis://u:hunter2@h:1");
        assert_eq!(msg, "auth failed for <redacted>");
        assert_eq!(scrub("x".into(), "redis://h:1"), "x");
    }
}
