//! Markers: small expiring key → value records that make ingresses idempotent
//! across replicas and restarts (a Slack event seen, a reply posted, the
//! Slack message a streamed reply lives in).

use crate::port::StoreError;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait MarkerStore: Send + Sync + 'static {
    /// Sets `key` to `value` for `ttl` unless it is set: `None` when this call
    /// set it, else the value already there (`SET NX PX`).
    async fn claim_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<Option<String>, StoreError>;

    /// Sets `key` to `value` for `ttl`, replacing any value.
    async fn put_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// The unexpired value of `key`.
    async fn get_marker(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Removes `key`; a no-op if it is not set.
    async fn remove_marker(&self, key: &str) -> Result<(), StoreError>;
}

/// Keys are 1-512 printable ASCII characters without spaces or braces; the TTL is positive.
pub(crate) fn check_marker(key: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 512 || !key.chars().all(|c| c.is_ascii_graphic() && c != '{' && c != '}') {
        return Err(StoreError::Invalid(format!(
            "marker key {key:?} must be 1-512 printable characters without spaces or braces"
        )));
    }
    if ttl.is_some_and(|t| t.as_millis() == 0) {
        return Err(StoreError::Invalid(format!("marker {key}: the lifetime must be at least 1 ms")));
    }
    Ok(())
}
