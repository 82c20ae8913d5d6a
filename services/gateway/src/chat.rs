//! One chat turn, shared by gRPC and HTTP: validate, register for the reply,
//! publish the `AgentRequest`, then stream deltas until the final reply or the
//! deadline.

use crate::fanin::{Incoming, Registration};
use crate::sessions::not_found;
use crate::state::{Gateway, store_error};
use clawhive_bus::PublishOutcome;
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, ClawError, ErrorCode, Principal, RequestId, SessionId, SessionKey};
use clawhive_proto::v1 as pb;
use clawhive_telemetry::TraceContext;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long past the turn's deadline we still wait for its reply (worker clock skew, transit).
const REPLY_SLACK: Duration = Duration::from_secs(2);

/// A chat call as both APIs receive it.
#[derive(Clone, Debug, Default)]
pub struct ChatInput {
    pub session_id: String,
    pub text: String,
    /// Empty: the configured default agent.
    pub agent_id: String,
    pub idempotency_key: Option<String>,
    /// 0 or `None`: the configured default.
    pub timeout_ms: Option<u64>,
    /// The caller's `traceparent`, continued when valid.
    pub traceparent: Option<String>,
}

/// The successful end of a turn.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatFinal {
    pub request_id: String,
    pub session_id: String,
    pub text: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub model: String,
}

impl From<ChatFinal> for pb::ChatFinal {
    fn from(f: ChatFinal) -> Self {
        pb::ChatFinal {
            request_id: f.request_id,
            session_id: f.session_id,
            text: f.text,
            usage: Some(pb::Usage { input_tokens: f.input_tokens, output_tokens: f.output_tokens }),
            model: f.model,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChatEvent {
    Delta(String),
    Final(ChatFinal),
}

/// The events of one turn: deltas, then one final or one error. Dropping it
/// unregisters the call.
pub struct ChatStream {
    rx: Option<mpsc::UnboundedReceiver<Incoming>>,
    _registration: Option<Registration>,
    /// An outcome known without waiting (an idempotent re-send of a committed turn).
    ready: Option<Result<ChatEvent, ClawError>>,
    wait_until: Instant,
    timeout_ms: u64,
    done: bool,
}

impl ChatStream {
    /// The next event; `None` after the final event or an error.
    pub async fn next(&mut self) -> Option<Result<ChatEvent, ClawError>> {
        if self.done {
            return None;
        }
        if let Some(ready) = self.ready.take() {
            self.done = true;
            return Some(ready);
        }
        let rx = self.rx.as_mut()?;
        loop {
            let incoming = tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(self.wait_until) => {
                    self.done = true;
                    return Some(Err(ClawError::deadline(format!("no reply within {} ms", self.timeout_ms))));
                }
            };
            match incoming {
                Some(Incoming::Delta(d)) if d.text.is_empty() => continue,
                Some(Incoming::Delta(d)) => return Some(Ok(ChatEvent::Delta(d.text))),
                Some(Incoming::Final(reply)) => {
                    self.done = true;
                    return Some(final_of(reply));
                }
                None => {
                    self.done = true;
                    return Some(Err(ClawError::unavailable("the gateway stopped waiting for the reply")));
                }
            }
        }
    }

    /// Skips deltas; the final or the error.
    pub async fn finish(mut self) -> Result<ChatFinal, ClawError> {
        while let Some(ev) = self.next().await {
            if let ChatEvent::Final(f) = ev? {
                return Ok(f);
            }
        }
        Err(ClawError::internal("the turn ended without a reply"))
    }
}

fn final_of(reply: pb::Reply) -> Result<ChatEvent, ClawError> {
    if let Some(err) = reply.error.as_ref() {
        return Err(ClawError::from(err));
    }
    let usage = reply.usage.unwrap_or_default();
    Ok(ChatEvent::Final(ChatFinal {
        request_id: reply.request_id,
        session_id: reply.session_id,
        text: reply.text,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        model: reply.model,
    }))
}

/// The request id of an idempotent call: the same key in the same session by
/// the same user is the same turn.
pub fn idempotent_request_id(who: &Principal, session: &SessionId, key: &str) -> String {
    let digest = Sha256::digest(format!("{}|{}|{}|{}", who.tenant, who.user, session, key).as_bytes());
    hex::encode(digest)[..32].to_string()
}

impl Gateway {
    fn agent_for(&self, who: &Principal, requested: &str) -> Result<AgentId, ClawError> {
        let name = if requested.is_empty() { self.cfg.gateway.default_agent.as_str() } else { requested };
        let agent = self
            .cfg
            .agent(name)
            .ok_or_else(|| ClawError::invalid(format!("agent {name:?} is not a configured agent")))?;
        if !agent.tenants.is_empty() && !agent.tenants.contains(&who.tenant) {
            return Err(ClawError::invalid(format!("agent {name:?} is not available to tenant {}", who.tenant)));
        }
        Ok(agent.id.clone())
    }

    /// Starts a turn. Errors here happen before anything is published (except
    /// an idempotency conflict, which is detected by publishing).
    pub async fn chat(&self, who: &Principal, input: ChatInput) -> Result<ChatStream, ClawError> {
        let span = tracing::info_span!("chat", tenant = %who.tenant, session = %input.session_id,
            request_id = tracing::field::Empty, otel.kind = "producer");
        // With trace export on, the span continues the caller's trace and its
        // own context is what the request carries to the worker.
        if let Some(caller) = input.traceparent.as_deref().and_then(TraceContext::parse) {
            clawhive_telemetry::otel::set_parent(&span, &caller);
        }
        use tracing::Instrument;
        self.chat_in_span(who, input).instrument(span).await
    }

    async fn chat_in_span(&self, who: &Principal, input: ChatInput) -> Result<ChatStream, ClawError> {
        let gw = &self.cfg.gateway;
        let session = SessionId::new(input.session_id.as_str())?;
        if clawhive_core::session::is_shared(&session) {
            return Err(ClawError::invalid("sessions named shared:… belong to Slack threads; choose another id"));
        }
        if input.text.trim().is_empty() {
            return Err(ClawError::invalid("text must not be empty"));
        }
        let chars = input.text.chars().count();
        if chars > gw.max_message_chars {
            return Err(ClawError::invalid(format!(
                "text is {chars} characters; the limit is {}",
                gw.max_message_chars
            )));
        }
        let agent = self.agent_for(who, &input.agent_id)?;
        let key = SessionKey::new(who.tenant.clone(), session.clone());
        if !self.sessions.writable(&key, &who.user) {
            let meta = self.store.ensure_session(&key, &who.user, &agent).await.map_err(store_error)?;
            if !meta.writable_by(who) {
                self.audit_session_access(who, &meta, false, "may not post into another user's session").await;
                return Err(not_found(session.as_str()));
            }
            self.sessions.remember_writable(&key, &who.user);
        }

        let request_id = match input.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => RequestId::new(idempotent_request_id(who, &session, k))?,
            None => RequestId::random(),
        };
        tracing::Span::current().record("request_id", request_id.as_str());
        let timeout_ms = input.timeout_ms.filter(|t| *t > 0).unwrap_or(gw.default_timeout_ms).min(gw.max_timeout_ms);
        let now = now_unix_ms();
        let call_id = uuid::Uuid::new_v4().simple().to_string();
        let mut req = pb::AgentRequest {
            request_id: request_id.to_string(),
            principal: Some(pb::Principal::from(who)),
            session_id: session.to_string(),
            agent_id: agent.to_string(),
            text: input.text,
            reply_route: Some(pb::ReplyRoute {
                target: Some(pb::reply_route::Target::Gateway(pb::GatewayRoute {
                    instance_id: self.instance_id.clone(),
                    call_id: call_id.clone(),
                })),
            }),
            deadline_unix_ms: now + timeout_ms as i64,
            created_unix_ms: now,
            stream_deltas: true,
            speaker: who.user.to_string(),
            signature: Vec::new(),
        };
        if let Some(signer) = &self.signer {
            signer.sign(&mut req);
        }
        let trace = clawhive_telemetry::otel::context_of(&tracing::Span::current()).unwrap_or_else(|| {
            input
                .traceparent
                .as_deref()
                .and_then(TraceContext::parse)
                .map(|t| t.child())
                .unwrap_or_else(TraceContext::new_root)
        });

        // Register before publishing: a fast worker may answer before publish returns.
        let (registration, rx) = self.fanin.register(&call_id);
        let wait_until = Instant::now() + Duration::from_millis(timeout_ms) + REPLY_SLACK;
        let outcome = self.envelopes.publish_request(&who.tenant, &agent, &req, Some(&trace)).await.map_err(|e| {
            tracing::warn!(error = %e, "Cannot publish a request.");
            ClawError::unavailable("the message bus is unavailable; try again shortly")
        })?;
        // The worker logs each turn at info ("turn committed"); one line per turn is enough.
        tracing::debug!(agent = %agent, trace_id = %trace.trace_id_hex(), timeout_ms, ?outcome, "Request published.");
        if outcome == PublishOutcome::Duplicate {
            drop(registration);
            let ready = match self.store.committed_turn(&key, &request_id).await.map_err(store_error)? {
                Some(stored) => match stored.error {
                    Some(e) => Err(e),
                    None => Ok(ChatEvent::Final(ChatFinal {
                        request_id: stored.request_id.to_string(),
                        session_id: session.to_string(),
                        text: stored.text,
                        input_tokens: stored.usage.input_tokens,
                        output_tokens: stored.usage.output_tokens,
                        model: stored.model,
                    })),
                },
                None => {
                    return Err(ClawError::new(
                        ErrorCode::Conflict,
                        "a request with this idempotency key is already running",
                    ));
                }
            };
            return Ok(ChatStream {
                rx: None,
                _registration: None,
                ready: Some(ready),
                wait_until,
                timeout_ms,
                done: false,
            });
        }
        Ok(ChatStream {
            rx: Some(rx),
            _registration: Some(registration),
            ready: None,
            wait_until,
            timeout_ms,
            done: false,
        })
    }
}
