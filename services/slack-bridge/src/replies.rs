//! Final replies: one durable consumer per configured workspace
//! (`clawhive.reply.slack.<team>`), shared by every bridge replica, so each
//! reply is delivered by one of them and survives a replica's death.
//!
//! Posting is idempotent by request id: each posted piece is recorded in the
//! store before the next, and the whole reply before the ack. A redelivered
//! reply (a bridge killed after posting, before acking) skips what was
//! posted; a reply whose message was streamed replaces the streamed text.

use crate::bridge::{Bridge, POSTED_TTL, message_key, piece_key, posted_key};
use crate::mrkdwn::{split, to_mrkdwn};
use clawhive_bus::envelope::decode_reply;
use clawhive_bus::{ConsumerSpec, Delivery, StreamKind};
use clawhive_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] clawhive_store::StoreError),
    #[error(transparent)]
    Slack(#[from] crate::web::WebError),
}

/// The durable consumer of one workspace's replies.
pub fn consumer_spec(bridge: &Bridge, team: &str) -> ConsumerSpec {
    ConsumerSpec {
        stream: StreamKind::Replies,
        durable: format!("slack-bridge-{}", team.to_ascii_lowercase()),
        filter_subject: bridge.envelopes.subjects().slack_reply(team),
        ack_wait: Duration::from_secs(60),
        max_deliver: 20,
        max_ack_pending: 256,
    }
}

/// Joins each workspace's consumer and spawns its delivery loop.
pub async fn spawn(bridge: Arc<Bridge>, shutdown: CancellationToken) -> Result<(), clawhive_bus::BusError> {
    for team in bridge.cfg.slack.teams.clone() {
        let mut consumer = bridge.deps.bus.consume(consumer_spec(&bridge, &team.team_id)).await?;
        let (b, stop) = (bridge.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    n = consumer.next() => n,
                };
                match next {
                    Some(Ok(d)) => {
                        let b = b.clone();
                        tokio::spawn(async move { handle(&b, d).await });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, team = %team.team_id, "Reply consumer failed; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => break,
                }
            }
        });
    }
    Ok(())
}

async fn handle(bridge: &Bridge, d: Delivery) {
    let reply = match decode_reply(&d.message.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, subject = %d.message.subject, "Dropping a malformed reply.");
            let _ = d.acker.term().await;
            return;
        }
    };
    let result = deliver(bridge, &reply).await;
    let ack = match result {
        Ok(()) => d.acker.ack().await,
        Err(DeliverError::Slack(e)) if !e.is_transient() => {
            tracing::error!(error = %e, request_id = %reply.request_id, "Slack refused a reply; giving up on it.");
            d.acker.term().await
        }
        Err(e) => {
            tracing::warn!(error = %e, request_id = %reply.request_id, attempt = d.attempt, "Cannot post a reply yet; will retry.");
            d.acker.nak(Some(Duration::from_secs(2))).await
        }
    };
    if let Err(e) = ack {
        tracing::warn!(error = %e, request_id = %reply.request_id, "Acknowledging a reply failed; it may come again.");
    }
}

/// The text Slack shows for a reply.
fn text_of(reply: &pb::Reply) -> String {
    match &reply.error {
        Some(e) => format!(":warning: Sorry, I could not answer: {}", e.message),
        None if reply.text.trim().is_empty() => "(no answer)".to_string(),
        None => to_mrkdwn(&reply.text),
    }
}

/// Posts `reply` into its thread, at most once.
pub async fn deliver(bridge: &Bridge, reply: &pb::Reply) -> Result<(), DeliverError> {
    let Some(pb::reply_route::Target::Slack(route)) = reply.reply_route.as_ref().and_then(|r| r.target.clone()) else {
        tracing::warn!(request_id = %reply.request_id, "Dropping a reply without a Slack route.");
        return Ok(());
    };
    let markers = &bridge.deps.markers;
    let rid = &reply.request_id;
    if markers.get_marker(&posted_key(rid)).await?.is_some() {
        tracing::info!(request_id = %rid, "Reply already posted; not posting it again.");
        bridge.streams.finish(rid);
        return Ok(());
    }
    // Stop this replica's streamer and learn which message it posted, if any.
    let state = bridge.streams.finish(rid);
    let mut guard = match &state {
        Some(s) => Some(s.lock().await),
        None => None,
    };
    if let Some(g) = guard.as_mut() {
        g.finished = true;
    }
    let streamed = match guard.as_ref().and_then(|g| g.posted.clone()) {
        Some(p) => Some(p),
        None => markers
            .get_marker(&message_key(rid))
            .await?
            .and_then(|v| v.split_once(' ').map(|(c, t)| (c.to_string(), t.to_string()))),
    };
    let pieces = split(&text_of(reply), bridge.cfg.slack.max_message_chars);
    for (i, piece) in pieces.iter().enumerate() {
        let key = piece_key(rid, i);
        if markers.get_marker(&key).await?.is_some() {
            continue;
        }
        let ts = match (&streamed, i) {
            (Some((channel, ts)), 0) => {
                bridge.web.update_message(channel, ts, piece).await?;
                ts.clone()
            }
            _ => bridge.web.post_message(&route.channel_id, &route.thread_ts, piece).await?.ts,
        };
        markers.put_marker(&key, &ts, POSTED_TTL).await?;
    }
    markers.put_marker(&posted_key(rid), "done", POSTED_TTL).await?;
    tracing::info!(request_id = %rid, channel = %route.channel_id, pieces = pieces.len(), "Reply posted to Slack.");
    Ok(())
}
