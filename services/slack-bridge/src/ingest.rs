//! One Slack event, from payload to a durably published `AgentRequest`.
//!
//! The caller acks the event (Socket Mode envelope, HTTP 200) only when this
//! returns `Ok`, i.e. after JetStream stored the request, or after deciding to
//! ignore it. Redeliveries (Slack retries, another socket) are dropped twice
//! over: a marker `team + event id` in the store (claimed `pending` first,
//! `done` after publishing, kept `slack.dedupe_ttl_secs`), and the request id
//! derived from the event id, which JetStream dedupes as `Nats-Msg-Id`.

use crate::bridge::{Bridge, THREAD_TTL, event_key, thread_key};
use crate::events::{Inbound, Kind, SlackMessage, classify};
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, Principal, TenantId};
use clawhive_proto::v1 as pb;
use clawhive_store::StoreError;
use serde_json::Value;
use std::time::Duration;

/// A first claim that is not finished within this long is taken to have died.
const PENDING_TTL: Duration = Duration::from_secs(30);
/// How long a duplicate waits for the first copy to finish before leaving it unacked.
const DUPLICATE_WAIT: Duration = Duration::from_millis(2000);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the bus is unavailable: {0}")]
    Bus(String),
    #[error("the same event is still being handled elsewhere")]
    InFlight,
    #[error("Slack: {0}")]
    Slack(#[from] crate::web::WebError),
}

/// What happened to an event (for logs and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Published,
    Duplicate,
    PairingCodeSent,
    Ignored(&'static str),
}

impl Bridge {
    /// Handles an `event_callback` body. `Ok` means: ack it.
    pub async fn handle_event(&self, body: &Value) -> Result<Outcome, IngestError> {
        let msg = match classify(body, &self.bot_user) {
            Inbound::Message(m) => m,
            Inbound::Ignore(why) => {
                tracing::debug!(reason = why, "Ignoring a Slack event.");
                return Ok(Outcome::Ignored(why));
            }
        };
        let Some(tenant) = self.cfg.slack.tenant_of(&msg.team).cloned() else {
            tracing::warn!(team = %msg.team, "Ignoring an event from a Slack workspace not in slack.teams.");
            return Ok(Outcome::Ignored("unknown workspace"));
        };
        if msg.kind == Kind::ThreadReply
            && self.deps.markers.get_marker(&thread_key(&msg.team, &msg.channel, &msg.thread_ts)).await?.is_none()
        {
            return Ok(Outcome::Ignored("a thread the bot is not in"));
        }
        let key = event_key(&msg.team, &msg.event_id);
        if let Some(state) = self.deps.markers.claim_marker(&key, "pending", PENDING_TTL).await? {
            return self.duplicate(&key, state, &msg).await;
        }
        match self.process(&tenant, &msg).await {
            Ok(outcome) => {
                let ttl = Duration::from_secs(self.cfg.slack.dedupe_ttl_secs);
                if let Err(e) = self.deps.markers.put_marker(&key, "done", ttl).await {
                    // The request is stored; JetStream's Nats-Msg-Id still drops a retry.
                    tracing::warn!(error = %e, event_id = %msg.event_id, "Cannot mark an event done.");
                }
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.deps.markers.remove_marker(&key).await;
                Err(e)
            }
        }
    }

    /// Another copy claimed the event: ack once it is done, else leave this copy unacked.
    async fn duplicate(&self, key: &str, mut state: String, msg: &SlackMessage) -> Result<Outcome, IngestError> {
        let until = tokio::time::Instant::now() + DUPLICATE_WAIT;
        while state == "pending" && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            state = self.deps.markers.get_marker(key).await?.unwrap_or_default();
        }
        if state == "pending" {
            return Err(IngestError::InFlight);
        }
        tracing::info!(team = %msg.team, event_id = %msg.event_id, "Dropping a redelivered Slack event.");
        Ok(Outcome::Duplicate)
    }

    async fn process(&self, tenant: &TenantId, msg: &SlackMessage) -> Result<Outcome, IngestError> {
        let external = format!("{}:{}", msg.team, msg.user);
        let who = match self.deps.identity.resolve_external("slack", &external).await? {
            Some(p) if &p.tenant == tenant => p,
            Some(p) => {
                tracing::warn!(team = %msg.team, tenant = %tenant, linked_tenant = %p.tenant,
                    "A Slack user is linked in another tenant than their workspace; refusing.");
                return Ok(Outcome::Ignored("linked in another tenant"));
            }
            None => return self.send_pairing_code(tenant, msg, &external).await,
        };
        if msg.kind == Kind::Mention {
            let thread = thread_key(&msg.team, &msg.channel, msg.reply_thread());
            self.deps.markers.put_marker(&thread, "1", THREAD_TTL).await?;
        }
        self.publish(tenant, &who, msg).await
    }

    async fn send_pairing_code(
        &self,
        tenant: &TenantId,
        msg: &SlackMessage,
        external: &str,
    ) -> Result<Outcome, IngestError> {
        let ttl = Duration::from_secs(self.cfg.slack.pairing_ttl_secs);
        let pairing = self.deps.pairings.create_pairing(tenant, "slack", external, &msg.user, ttl).await?;
        let minutes = ttl.as_secs().div_ceil(60);
        let text = format!(
            "Hi! I don't know you yet. Ask a Clawhive admin to approve your pairing code *{code}* \
             (`clawhive admin pairing approve {code}`, or `/clawhive pairing approve {code}`). \
             The code expires in {minutes} minutes.",
            code = pairing.code
        );
        match msg.kind {
            Kind::Dm => {
                self.web.post_message(&msg.channel, msg.reply_thread(), &text).await?;
            }
            Kind::Mention | Kind::ThreadReply => {
                self.web.post_ephemeral(&msg.channel, &msg.user, msg.reply_thread(), &text).await?;
            }
        }
        tracing::info!(team = %msg.team, tenant = %tenant, code = %pairing.code, "Sent a pairing code to an unknown Slack user.");
        Ok(Outcome::PairingCodeSent)
    }

    async fn publish(&self, tenant: &TenantId, who: &Principal, msg: &SlackMessage) -> Result<Outcome, IngestError> {
        let agent = AgentId::new(self.cfg.slack.agent_for(&msg.channel))
            .map_err(|e| IngestError::Bus(format!("bad agent binding: {e}")))?;
        let now = now_unix_ms();
        let route = pb::ReplyRoute {
            target: Some(pb::reply_route::Target::Slack(pb::SlackRoute {
                team_id: msg.team.clone(),
                channel_id: msg.channel.clone(),
                thread_ts: msg.reply_thread().to_string(),
            })),
        };
        let mut req = pb::AgentRequest {
            request_id: msg.request_id(),
            principal: Some(pb::Principal::from(who)),
            session_id: msg.session_id(),
            agent_id: agent.to_string(),
            text: msg.text.clone(),
            reply_route: Some(route.clone()),
            deadline_unix_ms: now + self.cfg.slack.timeout_ms as i64,
            created_unix_ms: now,
            stream_deltas: self.cfg.slack.stream_edit_interval_ms > 0,
            speaker: who.user.to_string(),
            signature: Vec::new(),
        };
        if let Some(signer) = &self.signer {
            signer.sign(&mut req);
        }
        if req.stream_deltas {
            self.streams.watch(&req.request_id, &route);
        }
        let trace = clawhive_telemetry::TraceContext::new_root();
        let outcome = self
            .envelopes
            .publish_request(tenant, &agent, &req, Some(&trace))
            .await
            .map_err(|e| IngestError::Bus(e.to_string()))?;
        tracing::info!(request_id = %req.request_id, tenant = %tenant, session = %req.session_id, ?outcome,
            trace_id = %trace.trace_id_hex(), "Slack request published.");
        Ok(Outcome::Published)
    }
}
