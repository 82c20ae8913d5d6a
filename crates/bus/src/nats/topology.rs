//! The three streams. Create-or-update, so every replica can run it at start-up
//! and a changed setting (replicas, duplicate window) reaches an existing stream.

use super::Shared;
use crate::port::{BusError, StreamKind};
use crate::subject::Subjects;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Finals wait for an ingress that may be restarting; a day is plenty.
const REPLIES_MAX_AGE: Duration = DAY;
const AUDIT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Attempts when replicas race each other creating the same stream.
const ATTEMPTS: usize = 3;

pub(super) fn stream_config(
    subjects: &Subjects,
    kind: StreamKind,
    replicas: usize,
    duplicate_window: Duration,
) -> Config {
    let (retention, max_age) = match kind {
        // A work queue removes a request once a worker acks it.
        StreamKind::Requests => (RetentionPolicy::WorkQueue, Duration::ZERO),
        StreamKind::Replies => (RetentionPolicy::Limits, REPLIES_MAX_AGE),
        StreamKind::Audit => (RetentionPolicy::Limits, AUDIT_MAX_AGE),
    };
    // JetStream rejects a duplicate window longer than the stream's max age.
    let duplicate_window = if max_age.is_zero() { duplicate_window } else { duplicate_window.min(max_age) };
    Config {
        name: subjects.stream_name(kind),
        subjects: vec![subjects.stream_subjects(kind)],
        retention,
        storage: StorageType::File,
        max_age,
        duplicate_window,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

/// Creates the stream, or updates it to the wanted config.
pub(super) async fn ensure_stream(shared: &Shared, kind: StreamKind) -> Result<(), BusError> {
    let config = stream_config(&shared.subjects, kind, shared.replicas, shared.duplicate_window);
    let mut attempt = 1;
    loop {
        match shared.js.create_or_update_stream(config.clone()).await {
            Ok(info) => {
                tracing::debug!(stream = %info.config.name, messages = info.state.messages, "Stream is ready.");
                return Ok(());
            }
            // Another replica created it between our update and our create; update again.
            Err(e)
                if attempt < ATTEMPTS
                    && matches!(e.kind(), CreateStreamErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
            {
                attempt += 1;
            }
            Err(e) => {
                return Err(BusError::Setup(format!(
                    "stream {} ({}) on {}: {e}",
                    config.name,
                    config.subjects.join(", "),
                    shared.url
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_the_design() {
        let s = Subjects::new("clawhive");
        let req = stream_config(&s, StreamKind::Requests, 3, Duration::from_secs(120));
        assert_eq!(req.name, "CLAWHIVE_REQUESTS");
        assert_eq!(req.subjects, vec!["clawhive.req.>".to_string()]);
        assert_eq!(req.retention, RetentionPolicy::WorkQueue);
        assert_eq!(req.num_replicas, 3);
        assert_eq!(req.duplicate_window, Duration::from_secs(120));
        let replies = stream_config(&s, StreamKind::Replies, 1, Duration::from_secs(120));
        assert_eq!(replies.retention, RetentionPolicy::Limits);
        assert_eq!(replies.max_age, DAY);
        let audit = stream_config(&s, StreamKind::Audit, 0, Duration::from_secs(120));
        assert_eq!(audit.max_age, AUDIT_MAX_AGE);
        assert_eq!(audit.num_replicas, 1);
        // The window never exceeds the max age.
        let long = stream_config(&s, StreamKind::Replies, 1, 2 * DAY);
        assert_eq!(long.duplicate_window, DAY);
    }
}
