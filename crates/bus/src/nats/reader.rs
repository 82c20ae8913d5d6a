//! Stateless reads of a stream by start time (audit queries), through a
//! short-lived ephemeral consumer that is deleted afterwards.

use super::Shared;
use crate::StreamKind;
use crate::port::{BusError, BusMessage, StoredMessage};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures::StreamExt;
use std::time::Duration;

/// Bound on one read's round trips.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn read_stream(
    shared: &Shared,
    kind: StreamKind,
    filter_subject: &str,
    start_unix_ms: i64,
    limit: usize,
) -> Result<Vec<StoredMessage>, BusError> {
    let stream = shared.subjects.stream_name(kind);
    let fail = |what: &str, e: &dyn std::fmt::Display| BusError::Consume(format!("reading {stream} ({what}): {e}"));
    if limit == 0 {
        return Ok(Vec::new());
    }
    let deliver_policy = if start_unix_ms <= 0 {
        DeliverPolicy::All
    } else {
        let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_unix_ms) * 1_000_000)
            .map_err(|e| fail("start time", &e))?;
        DeliverPolicy::ByStartTime { start_time }
    };
    let config = pull::Config {
        deliver_policy,
        ack_policy: AckPolicy::None,
        filter_subject: filter_subject.to_string(),
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        ..Default::default()
    };
    let mut consumer: PullConsumer =
        tokio::time::timeout(READ_TIMEOUT, shared.js.create_consumer_on_stream(config, &stream))
            .await
            .map_err(|_| fail("create consumer", &"timed out"))?
            .map_err(|e| fail("create consumer", &e))?;
    let info = consumer.info().await.map_err(|e| fail("consumer info", &e))?.clone();
    let want = usize::try_from(info.num_pending).unwrap_or(usize::MAX).min(limit);
    let mut out = Vec::with_capacity(want);
    if want > 0 {
        let mut batch =
            consumer.batch().max_messages(want).expires(READ_TIMEOUT).messages().await.map_err(|e| fail("pull", &e))?;
        while out.len() < want {
            match tokio::time::timeout(READ_TIMEOUT, batch.next()).await {
                Ok(Some(Ok(m))) => {
                    let meta = m.info().map_err(|e| fail("message info", &e))?;
                    let stored_unix_ms = (meta.published.unix_timestamp_nanos() / 1_000_000) as i64;
                    let seq = meta.stream_sequence;
                    out.push(StoredMessage {
                        message: BusMessage {
                            subject: m.subject.to_string(),
                            headers: super::headers::from_nats(m.headers.as_ref()),
                            payload: m.payload.clone(),
                        },
                        seq,
                        stored_unix_ms,
                    });
                }
                Ok(Some(Err(e))) => return Err(fail("pull", &e)),
                Ok(None) | Err(_) => break,
            }
        }
    }
    if let Err(e) = shared.js.delete_consumer_from_stream(&info.name, &stream).await {
        tracing::debug!(error = %e, "ephemeral reader not deleted; it expires on its own");
    }
    Ok(out)
}
