//! Streaming: the replica that published a request watches its deltas
//! (core NATS, best effort), posts the text so far once, then edits that
//! message at most every `slack.stream_edit_interval_ms`. The final reply
//! (from the durable stream, on whichever replica) replaces the text of the
//! streamed message, found through a marker in the store.

use crate::bridge::{Bridge, POSTED_TTL, message_key};
use clawhive_bus::envelope::decode_delta;
use clawhive_proto::v1 as pb;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The Slack message a reply streams into.
#[derive(Debug, Default)]
pub struct MessageState {
    /// `channel ts` once posted.
    pub posted: Option<(String, String)>,
    /// The final reply took over; the streamer must not touch the message again.
    pub finished: bool,
}

struct Entry {
    route: pb::SlackRoute,
    text: String,
    dirty: bool,
    started: Instant,
    state: Arc<tokio::sync::Mutex<MessageState>>,
}

/// Requests this replica streams, by request id.
#[derive(Clone, Default)]
pub struct Streams {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

impl Streams {
    /// Starts watching deltas of `request_id`.
    pub fn watch(&self, request_id: &str, route: &pb::ReplyRoute) {
        let Some(pb::reply_route::Target::Slack(slack)) = route.target.clone() else { return };
        let entry =
            Entry { route: slack, text: String::new(), dirty: false, started: Instant::now(), state: Arc::default() };
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).insert(request_id.to_string(), entry);
    }

    fn push(&self, delta: &pb::ReplyDelta) {
        if let Some(e) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&delta.request_id) {
            e.text.push_str(&delta.text);
            e.dirty = !e.text.trim().is_empty();
        }
    }

    /// Stops streaming `request_id`; the message state, if this replica streamed it.
    pub fn finish(&self, request_id: &str) -> Option<Arc<tokio::sync::Mutex<MessageState>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).remove(request_id).map(|e| e.state)
    }

    /// Dirty entries to flush, and drops entries older than `max_age`.
    fn take_dirty(
        &self,
        max_age: Duration,
    ) -> Vec<(String, pb::SlackRoute, String, Arc<tokio::sync::Mutex<MessageState>>)> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.started.elapsed() < max_age);
        map.iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(id, e)| {
                e.dirty = false;
                (id.clone(), e.route.clone(), e.text.clone(), e.state.clone())
            })
            .collect()
    }
}

/// Subscribes to every configured team's delta subject and flushes at the configured rate.
pub async fn spawn(bridge: Arc<Bridge>, shutdown: CancellationToken) -> Result<(), clawhive_bus::BusError> {
    let interval = Duration::from_millis(bridge.cfg.slack.stream_edit_interval_ms);
    if interval.is_zero() {
        return Ok(());
    }
    let mut subs = Vec::new();
    for team in &bridge.cfg.slack.teams {
        subs.push(bridge.deps.bus.subscribe(&bridge.envelopes.subjects().slack_delta(&team.team_id)).await?);
    }
    let mut deltas = futures::stream::select_all(subs);
    let max_age = Duration::from_millis(bridge.cfg.slack.timeout_ms) + Duration::from_secs(30);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                m = deltas.next() => match m {
                    Some(m) => match decode_delta(&m.payload) {
                        Ok(d) => bridge.streams.push(&d),
                        Err(e) => tracing::debug!(error = %e, "Dropping a malformed delta."),
                    },
                    None => break,
                },
                _ = tick.tick() => {
                    for (id, route, text, state) in bridge.streams.take_dirty(max_age) {
                        let b = bridge.clone();
                        tokio::spawn(async move { flush(&b, &id, &route, &text, &state).await });
                    }
                }
            }
        }
    });
    Ok(())
}

async fn flush(
    bridge: &Bridge,
    request_id: &str,
    route: &pb::SlackRoute,
    text: &str,
    state: &tokio::sync::Mutex<MessageState>,
) {
    let mut st = state.lock().await;
    if st.finished {
        return;
    }
    let max = bridge.cfg.slack.max_message_chars;
    let shown: String = crate::mrkdwn::to_mrkdwn(text).chars().take(max.saturating_sub(2)).collect();
    let shown = format!("{shown} …");
    let result = match &st.posted {
        Some((channel, ts)) => bridge.web.update_message(channel, ts, &shown).await,
        None => match bridge.web.post_message(&route.channel_id, &route.thread_ts, &shown).await {
            Ok(p) => {
                let value = format!("{} {}", p.channel, p.ts);
                if let Err(e) = bridge.deps.markers.put_marker(&message_key(request_id), &value, POSTED_TTL).await {
                    tracing::warn!(error = %e, request_id, "Cannot record a streamed message.");
                }
                st.posted = Some((p.channel, p.ts));
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, request_id, "A streaming update failed; the final reply will follow.");
    }
}
