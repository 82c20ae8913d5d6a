//! Outcomes of fires: every replica reads the replies stream through one
//! durable consumer, picks out replies to fires (their request ids say job and
//! slot) and records each job's last run; failures feed the failure guard.

use crate::engine::Scheduler;
use clawhive_bus::envelope::decode_reply;
use clawhive_bus::{Bus, ConsumerSpec, StreamKind};
use clawhive_core::schedule::parse_fire_request_id;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The durable consumer all scheduler replicas share.
pub const CONSUMER: &str = "scheduler-outcomes";

pub async fn run(
    s: Arc<Scheduler>,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
) -> Result<(), clawhive_bus::BusError> {
    let spec = ConsumerSpec {
        stream: StreamKind::Replies,
        durable: CONSUMER.into(),
        filter_subject: format!("{}.reply.>", s.cfg.bus.namespace),
        ack_wait: Duration::from_secs(30),
        max_deliver: 5,
        max_ack_pending: 1_000,
    };
    let mut consumer = bus.consume(spec).await?;
    loop {
        let next = tokio::select! {
            n = consumer.next() => n,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let delivery = match next {
            None => return Ok(()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Cannot read replies; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Some(Ok(d)) => d,
        };
        let ack = match decode_reply(&delivery.message.payload) {
            Ok(reply) => match parse_fire_request_id(&reply.request_id) {
                Some((tenant, job, slot)) => {
                    let result = match reply.error.as_ref() {
                        Some(e) => Err(clawhive_core::ClawError::from(e).message),
                        None => Ok(()),
                    };
                    match s.record_outcome(&tenant, &job, slot, result).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(job = %job, error = %e, "Cannot record a job's outcome; retrying.");
                            false
                        }
                    }
                }
                None => true,
            },
            Err(e) => {
                tracing::debug!(error = %e, "Skipping an unreadable reply.");
                true
            }
        };
        let acked =
            if ack { delivery.acker.ack().await } else { delivery.acker.nak(Some(Duration::from_secs(1))).await };
        if let Err(e) = acked {
            tracing::debug!(error = %e, "Cannot acknowledge a reply.");
        }
    }
}
