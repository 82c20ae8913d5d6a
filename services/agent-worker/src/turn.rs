//! One delivery, from decode to ack.
//!
//! Order matters: lease (with the session read under it, one store round trip)
//! → committed-turn check → loop → fenced commit, which also ends the lease →
//! durable reply → ack. A crash anywhere before the ack leaves the request to
//! be redelivered; the committed-turn record makes that retry re-send the
//! stored reply instead of running the turn again.

use crate::agent_loop::{LoopInput, run_loop};
use crate::keepalive::Keepalive;
use crate::policy::TurnGuard;
use crate::worker::Ctx;
use clawhive_bus::Delivery;
use clawhive_bus::envelope::{decode_request, trace_of};
use clawhive_core::chat::Message;
use clawhive_core::{AgentId, ClawError, ErrorCode, Principal, RequestId, SessionId, SessionKey};
use clawhive_proto::v1 as pb;
use clawhive_store::{BeginTurn, CommitOutcome, Lease, StoredReply, TurnRecord, TurnStart, TurnState};
use clawhive_telemetry::TraceContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What to tell the bus about a delivery.
#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    Ack,
    Nak(Duration),
    Term,
}

pub(crate) async fn handle(ctx: Arc<Ctx>, delivery: Delivery, hard_stop: tokio_util::sync::CancellationToken) {
    let acker = delivery.acker.clone();
    let started = Instant::now();
    clawhive_telemetry::metrics::add_in_flight(1);
    let disposition = tokio::select! {
        d = process(&ctx, &delivery) => d,
        _ = hard_stop.cancelled() => {
            tracing::warn!("drain timed out; handing the request back");
            Disposition::Nak(Duration::ZERO)
        }
    };
    clawhive_telemetry::metrics::add_in_flight(-1);
    let outcome = match disposition {
        Disposition::Ack => "ack",
        Disposition::Nak(_) => "nak",
        Disposition::Term => "term",
    };
    clawhive_telemetry::metrics::observe_turn(outcome, started.elapsed());
    let result = match disposition {
        Disposition::Ack => acker.ack().await,
        Disposition::Nak(d) => acker.nak(if d.is_zero() { None } else { Some(d) }).await,
        Disposition::Term => acker.term().await,
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "acknowledging the request failed; it may be redelivered");
    }
}

/// A validated request.
struct Turn {
    raw: pb::AgentRequest,
    principal: Principal,
    key: SessionKey,
    agent: AgentId,
    request_id: RequestId,
    deadline: Instant,
    trace: TraceContext,
}

async fn process(ctx: &Ctx, delivery: &Delivery) -> Disposition {
    let raw = match decode_request(&delivery.message.payload) {
        Ok(r) => r,
        Err(e) => {
            // No route can be trusted in a message we cannot read; drop it loudly.
            tracing::error!(error = %e, subject = %delivery.message.subject, "malformed request on the bus; terminated");
            return Disposition::Term;
        }
    };
    if let Err(reason) = check_signature(ctx, &raw) {
        // A forged or altered identity: run nothing, answer nobody, keep a loud record.
        tracing::error!(request_id = %raw.request_id, subject = %delivery.message.subject, %reason,
            "request rejected: envelope signature check failed; terminated");
        return Disposition::Term;
    }
    if delivery.attempt == 1 && raw.created_unix_ms > 0 {
        let waited = clawhive_core::time::now_unix_ms().saturating_sub(raw.created_unix_ms);
        clawhive_telemetry::metrics::observe_queue_wait(Duration::from_millis(waited.max(0) as u64));
    }
    let parent = trace_of(&delivery.message);
    let trace = parent.map(|t| t.child()).unwrap_or_else(TraceContext::new_root);
    let span = tracing::info_span!("turn", request_id = %raw.request_id, session = %raw.session_id,
        tenant = raw.principal.as_ref().map(|p| p.tenant_id.as_str()).unwrap_or(""), attempt = delivery.attempt,
        trace_id = %trace.trace_id_hex(), otel.kind = "consumer");
    // With trace export on, this span joins the ingress's trace and its own
    // context is what the replies carry on.
    if let Some(p) = &parent {
        clawhive_telemetry::otel::set_parent(&span, p);
    }
    let trace = clawhive_telemetry::otel::context_of(&span).unwrap_or(trace);
    let turn = match validate(raw, trace) {
        Ok(t) => t,
        Err(bad) => {
            let (raw, err) = *bad;
            tracing::warn!(parent: &span, error = %err, "invalid request; replying with an error");
            return reply_error_only(ctx, &raw, &err, trace).await;
        }
    };
    use tracing::Instrument;
    run_turn(ctx, delivery, turn).instrument(span).await
}

/// With a key configured, a wrong signature is always rejected; a missing one
/// only while `security.require_signed_envelopes` is on (to allow rolling out keys).
fn check_signature(ctx: &Ctx, raw: &pb::AgentRequest) -> Result<(), clawhive_core::signing::SignatureError> {
    use clawhive_core::signing::SignatureError;
    match (&ctx.signer, ctx.config.security.require_signed_envelopes) {
        (Some(signer), require) => match signer.verify(raw) {
            Err(SignatureError::Missing) if !require => Ok(()),
            other => other,
        },
        (None, true) => Err(SignatureError::Missing),
        (None, false) => Ok(()),
    }
}

fn validate(raw: pb::AgentRequest, trace: TraceContext) -> Result<Turn, Box<(pb::AgentRequest, ClawError)>> {
    let parsed = (|| -> Result<_, ClawError> {
        let principal = raw
            .principal
            .as_ref()
            .ok_or_else(|| ClawError::new(ErrorCode::Unauthenticated, "request carries no principal"))
            .and_then(|p| Principal::try_from(p).map_err(ClawError::from))?;
        let session = SessionId::new(raw.session_id.clone())?;
        let agent = AgentId::new(raw.agent_id.clone())?;
        let request_id = RequestId::new(raw.request_id.clone())?;
        if raw.text.trim().is_empty() {
            return Err(ClawError::invalid("message text is empty"));
        }
        Ok((principal, session, agent, request_id))
    })();
    match parsed {
        Ok((principal, session, agent, request_id)) => {
            let remaining_ms = raw.deadline_unix_ms.saturating_sub(clawhive_core::time::now_unix_ms());
            let deadline = Instant::now() + Duration::from_millis(remaining_ms.max(0) as u64);
            let key = SessionKey::new(principal.tenant.clone(), session);
            Ok(Turn { raw, principal, key, agent, request_id, deadline, trace })
        }
        Err(e) => Err(Box::new((raw, e))),
    }
}

async fn run_turn(ctx: &Ctx, delivery: &Delivery, turn: Turn) -> Disposition {
    let cfg = &ctx.config;
    if delivery.attempt > cfg.bus.max_attempts as u64 {
        let err = ClawError::unavailable(format!("gave up after {} attempts", cfg.bus.max_attempts));
        tracing::error!(error = %err, "request exhausted its attempts");
        return reply_error_only(ctx, &turn.raw, &err, turn.trace).await;
    }
    if Instant::now() >= turn.deadline {
        return reply_error_only(
            ctx,
            &turn.raw,
            &ClawError::deadline("the request's deadline passed before a worker took it"),
            turn.trace,
        )
        .await;
    }
    let Some(agent_cfg) = cfg.agent(turn.agent.as_str()).cloned() else {
        return reply_error_only(
            ctx,
            &turn.raw,
            &ClawError::invalid(format!("unknown agent {}", turn.agent)),
            turn.trace,
        )
        .await;
    };
    if !agent_cfg.tenants.is_empty() && !agent_cfg.tenants.contains(&turn.principal.tenant) {
        let err = ClawError::new(
            ErrorCode::PermissionDenied,
            format!("agent {} is not available to this tenant", turn.agent),
        );
        return reply_error_only(ctx, &turn.raw, &err, turn.trace).await;
    }
    // The tenant's own policy (Admin API), if any, replaces the deployment's.
    if let Err(e) = ctx.policy.refresh_tenant(ctx.store.as_ref(), &turn.principal.tenant).await {
        tracing::warn!(error = %e, "store unavailable");
        return Disposition::Nak(Duration::from_secs(1));
    }
    // Policy: may this principal use this agent? Audited; denied means no LLM call.
    let guard = TurnGuard::new(&ctx.policy, Some(&ctx.envelopes), &turn.principal, &agent_cfg, &turn.raw);
    let access = guard.agent_decision();
    if !access.allowed {
        guard.audit_agent_access(&access).await;
        if let Err(err) = guard.agent_verdict(&access) {
            return reply_error_only(ctx, &turn.raw, &err, turn.trace).await;
        }
    }
    if let Err(err) = guard.check_rate(ctx.store.as_ref(), delivery.attempt <= 1).await {
        if err.code.is_transient() {
            tracing::warn!(error = %err, "store unavailable");
            return Disposition::Nak(Duration::from_secs(1));
        }
        return reply_error_only(ctx, &turn.raw, &err, turn.trace).await;
    }

    // The allowed access's audit record (a durable publish) goes out alongside
    // the whole turn, off its path; the turn is acked only after it was stored.
    let ((), disposition) =
        tokio::join!(guard.audit_agent_access(&access), run_session_turn(ctx, delivery, &turn, &agent_cfg));
    disposition
}

/// Takes the session's lease (turns of one session never run concurrently),
/// runs the turn under it and ends the lease.
async fn run_session_turn(
    ctx: &Ctx,
    delivery: &Delivery,
    turn: &Turn,
    agent_cfg: &clawhive_core::config::AgentConfig,
) -> Disposition {
    let cfg = &ctx.config;
    let TurnStart { lease, state } = match begin(ctx, delivery, turn).await {
        Ok(Some(s)) => s,
        Ok(None) => return Disposition::Nak(Duration::from_millis(500)),
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable while taking the lease");
            return Disposition::Nak(Duration::from_secs(1));
        }
    };
    let keepalive = Keepalive::start(
        delivery.acker.clone(),
        ctx.store.clone(),
        lease.clone(),
        Duration::from_millis(cfg.bus.ack_wait_ms),
        Duration::from_millis(cfg.worker.lease_ttl_ms),
    );
    let (disposition, lease_ended) = match state {
        Ok(state) => run_leased(ctx, delivery, turn, agent_cfg, &lease, &keepalive, state).await,
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable");
            (Disposition::Nak(Duration::from_secs(1)), false)
        }
    };
    drop(keepalive);
    if !lease_ended && let Err(e) = ctx.store.release_lease(&lease).await {
        tracing::warn!(error = %e, "releasing the lease failed; it will expire");
    }
    disposition
}

/// Waits (heartbeating) until the session's lease is free, takes it and reads
/// the session under it, in one store round trip per attempt.
async fn begin(ctx: &Ctx, delivery: &Delivery, turn: &Turn) -> Result<Option<TurnStart>, clawhive_store::StoreError> {
    let begin = BeginTurn {
        key: &turn.key,
        holder: &ctx.instance_id,
        ttl: Duration::from_millis(ctx.config.worker.lease_ttl_ms),
        request_id: &turn.request_id,
        owner: &turn.principal.user,
        agent: &turn.agent,
        history_limit: ctx.config.store.history_limit,
    };
    let give_up = (Instant::now() + Duration::from_millis(ctx.config.worker.lease_wait_ms)).min(turn.deadline);
    let mut last_beat = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(start) = ctx.store.begin_turn(&begin).await? {
            return Ok(Some(start));
        }
        if Instant::now() >= give_up {
            tracing::info!("session busy; handing the request back for later");
            return Ok(None);
        }
        if last_beat.elapsed() > Duration::from_millis(ctx.config.bus.ack_wait_ms / 3) {
            let _ = delivery.acker.in_progress().await;
            last_beat = Instant::now();
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

async fn run_leased(
    ctx: &Ctx,
    delivery: &Delivery,
    turn: &Turn,
    agent_cfg: &clawhive_core::config::AgentConfig,
    lease: &Lease,
    keepalive: &Keepalive,
    state: TurnState,
) -> (Disposition, bool) {
    let kept = |d: Disposition| (d, false);
    let store = &ctx.store;
    let TurnState { committed, meta, history } = state;
    // A redelivery of a turn already committed: re-send, never re-run.
    if let Some(stored) = committed {
        tracing::info!("turn already committed; re-sending the stored reply");
        return kept(publish_stored(ctx, turn, &stored).await);
    }
    if !meta.writable_by(&turn.principal) {
        // Defence in depth: the ingress checks too. Same answer as an unknown session.
        tracing::warn!(owner = %meta.owner, user = %turn.principal.user, "request for another user's session refused");
        let err = ClawError::not_found(format!("session {} not found", turn.key.session));
        return kept(reply_error_only(ctx, &turn.raw, &err, turn.trace).await);
    }

    let mut user_message = Message::user(turn.raw.text.clone());
    user_message.request_id = Some(turn.request_id.to_string());
    user_message.created_unix_ms = turn.raw.created_unix_ms;
    if !turn.raw.speaker.is_empty() {
        user_message.speaker = Some(turn.raw.speaker.clone());
    }

    let deltas = crate::worker::DeltaForwarder::start(ctx, &turn.raw, turn.trace);
    let on_delta = |text: &str| deltas.push(text);
    let max_steps = agent_cfg.max_steps.unwrap_or(ctx.config.worker.max_steps);
    let guard = TurnGuard::new(&ctx.policy, Some(&ctx.envelopes), &turn.principal, agent_cfg, &turn.raw);
    // Budgets are checked before the LLM call: an exhausted budget means no call at all.
    if let Err(err) = guard.check_budget(store.as_ref()).await {
        deltas.finish().await;
        if err.code.is_transient() {
            tracing::warn!(error = %err, "store unavailable");
            return kept(Disposition::Nak(Duration::from_secs(1)));
        }
        return kept(reply_error_only(ctx, &turn.raw, &err, turn.trace).await);
    }
    let outcome = run_loop(
        &ctx.llm,
        &ctx.tools,
        LoopInput {
            agent: agent_cfg,
            history,
            user_message: user_message.clone(),
            max_steps,
            deadline: turn.deadline,
            request_id: turn.request_id.as_str(),
            session_id: turn.key.session.as_str(),
            guard: &guard,
            secrets: &crate::secrets::TurnSecrets { guard: &guard, vault: ctx.secrets.as_ref() },
        },
        &on_delta,
    )
    .await;
    deltas.finish().await;

    let now = clawhive_core::time::now_unix_ms();
    let mut llm_us = 0u128;
    let record = match outcome {
        Ok(out) => {
            llm_us = out.llm_elapsed.as_micros();
            let mut messages = Vec::with_capacity(out.messages.len() + 1);
            messages.push(user_message);
            messages.extend(out.messages);
            TurnRecord {
                request_id: turn.request_id.clone(),
                user: turn.principal.user.clone(),
                agent: turn.agent.clone(),
                messages,
                reply: StoredReply {
                    request_id: turn.request_id.clone(),
                    text: out.text,
                    error: None,
                    usage: out.usage,
                    model: out.model,
                    completed_unix_ms: now,
                },
            }
        }
        Err(err) => {
            let attempts_left = delivery.attempt < ctx.config.bus.max_attempts as u64;
            if err.code.is_transient() && attempts_left && Instant::now() < turn.deadline {
                tracing::warn!(error = %err, "turn failed transiently; handing it back for a retry");
                return kept(Disposition::Nak(Duration::from_millis(500 * delivery.attempt)));
            }
            tracing::warn!(error = %err, "turn failed; replying with the error");
            clawhive_telemetry::metrics::error("agent-worker", err.code.as_str());
            // The error is the turn's outcome: record it so a redelivery answers the same.
            TurnRecord {
                request_id: turn.request_id.clone(),
                user: turn.principal.user.clone(),
                agent: turn.agent.clone(),
                messages: Vec::new(),
                reply: StoredReply {
                    request_id: turn.request_id.clone(),
                    text: String::new(),
                    error: Some(err),
                    usage: Default::default(),
                    model: String::new(),
                    completed_unix_ms: now,
                },
            }
        }
    };
    if keepalive.lease_lost() {
        tracing::warn!("lease lost during the turn; another worker owns the session now");
    }
    // The commit ends the lease too: the session's next turn can start while this
    // reply is on its way (a failed publish is retried by redelivery, which finds
    // the committed reply).
    match store.finish_turn(lease, &record).await {
        Ok(CommitOutcome::Committed) => {
            tracing::info!(model = %record.reply.model, input_tokens = record.reply.usage.input_tokens,
                output_tokens = record.reply.usage.output_tokens, failed = record.reply.error.is_some(),
                llm_us = llm_us as u64, "turn committed");
            // Usage and the reply are independent: neither waits for the other.
            let ((), disposition) =
                tokio::join!(count_usage(ctx, turn, &record.reply), publish_stored(ctx, turn, &record.reply));
            (disposition, true)
        }
        Ok(CommitOutcome::AlreadyCommitted(stored)) => (publish_stored(ctx, turn, &stored).await, true),
        Ok(CommitOutcome::Fenced) => {
            tracing::warn!("commit fenced: the lease was taken over; handing the request back");
            (Disposition::Nak(Duration::from_millis(200)), true)
        }
        Err(e) => {
            tracing::warn!(error = %e, "commit failed; handing the request back");
            kept(Disposition::Nak(Duration::from_secs(1)))
        }
    }
}

/// Adds the turn's reported tokens to the user's and tenant's daily usage (budgets).
/// Runs once per committed turn; a failure under-counts and is logged.
async fn count_usage(ctx: &Ctx, turn: &Turn, reply: &StoredReply) {
    let tokens = u64::from(reply.usage.input_tokens) + u64::from(reply.usage.output_tokens);
    if tokens == 0 {
        return;
    }
    let day = clawhive_core::time::utc_day(clawhive_core::time::now_unix_ms());
    if let Err(e) = ctx.store.add_usage(&turn.principal.tenant, &turn.principal.user, &day, tokens).await {
        tracing::warn!(error = %e, tokens, "token usage not recorded; budgets under-count this turn");
    }
}

fn reply_for(raw: &pb::AgentRequest, stored: &StoredReply) -> pb::Reply {
    pb::Reply {
        request_id: raw.request_id.clone(),
        session_id: raw.session_id.clone(),
        reply_route: raw.reply_route.clone(),
        text: stored.text.clone(),
        error: stored.error.as_ref().map(pb::Error::from),
        usage: Some(pb::Usage { input_tokens: stored.usage.input_tokens, output_tokens: stored.usage.output_tokens }),
        model: stored.model.clone(),
        completed_unix_ms: stored.completed_unix_ms,
        tenant_id: raw.principal.as_ref().map(|p| p.tenant_id.clone()).unwrap_or_default(),
    }
}

async fn publish_stored(ctx: &Ctx, turn: &Turn, stored: &StoredReply) -> Disposition {
    let reply = reply_for(&turn.raw, stored);
    match ctx.envelopes.publish_reply(&turn.principal.tenant, &reply, Some(&turn.trace)).await {
        Ok(_) => Disposition::Ack,
        Err(e) => {
            // Committed but not delivered: the redelivery re-sends the stored reply.
            tracing::warn!(error = %e, "publishing the reply failed; will retry");
            Disposition::Nak(Duration::from_secs(1))
        }
    }
}

/// Replies with an error without touching the session (nothing to commit).
async fn reply_error_only(ctx: &Ctx, raw: &pb::AgentRequest, err: &ClawError, trace: TraceContext) -> Disposition {
    clawhive_telemetry::metrics::error("agent-worker", err.code.as_str());
    let tenant = raw.principal.as_ref().and_then(|p| clawhive_core::TenantId::new(p.tenant_id.clone()).ok());
    let Some(tenant) = tenant else {
        tracing::error!(error = %err, "request without a valid tenant; cannot route an error reply; terminated");
        return Disposition::Term;
    };
    let reply = pb::Reply {
        request_id: raw.request_id.clone(),
        session_id: raw.session_id.clone(),
        reply_route: raw.reply_route.clone(),
        error: Some(pb::Error::from(err)),
        completed_unix_ms: clawhive_core::time::now_unix_ms(),
        tenant_id: tenant.to_string(),
        ..Default::default()
    };
    match ctx.envelopes.publish_reply(&tenant, &reply, Some(&trace)).await {
        Ok(_) => Disposition::Ack,
        Err(e) => {
            tracing::warn!(error = %e, "publishing the error reply failed; will retry");
            Disposition::Nak(Duration::from_secs(1))
        }
    }
}
