//! Telling a job's owner that the failure guard paused it: a message in the
//! job's session (where API clients read its replies) and a reply on the job's
//! route (a Slack DM or channel, delivered by the bridge).

use crate::engine::Scheduler;
use crate::request;
use clawhive_core::chat::Message;
use clawhive_core::schedule::Job;
use clawhive_core::{RequestId, SessionId, SessionKey};
use clawhive_proto::v1 as pb;
use clawhive_store::{CommitOutcome, StoredReply, TurnRecord};
use std::time::Duration;

/// The notice's text.
pub fn paused_text(job: &Job) -> String {
    format!(
        "Your scheduled job {} was paused: {}. Resume it with `clawhive schedule resume {}` once the cause is fixed.",
        job.id, job.paused_reason, job.id
    )
}

/// Best effort: a failure is logged, the job stays paused either way.
pub async fn paused(s: &Scheduler, job: &Job, slot: i64) {
    let text = paused_text(job);
    let Ok(request_id) = RequestId::new(format!("jobpaused:{}:{}:{slot}", job.tenant, job.id)) else { return };
    let now = clawhive_core::time::now_unix_ms();
    if let Ok(session) = SessionId::new(job.session_id()) {
        let key = SessionKey::new(job.tenant.clone(), session);
        if let Err(e) = commit_notice(s, job, &key, &request_id, &text).await {
            tracing::warn!(job = %job.id, error = %e, "Cannot write the pause notice into the job's session.");
        }
    }
    let reply = pb::Reply {
        request_id: request_id.to_string(),
        session_id: job.session_id(),
        reply_route: Some(request::route(&job.delivery)),
        text,
        error: None,
        usage: None,
        model: String::new(),
        completed_unix_ms: now,
        tenant_id: job.tenant.to_string(),
    };
    if let Err(e) = s.envelopes.publish_reply(&job.tenant, &reply, None).await {
        tracing::warn!(job = %job.id, error = %e, "Cannot publish the pause notice.");
    }
}

async fn commit_notice(
    s: &Scheduler,
    job: &Job,
    key: &SessionKey,
    request_id: &RequestId,
    text: &str,
) -> Result<(), clawhive_store::StoreError> {
    let holder = format!("scheduler-{}", s.instance_id());
    let ttl = Duration::from_secs(10);
    let mut lease = None;
    for _ in 0..50 {
        lease = s.sessions.try_acquire_lease(key, &holder, ttl).await?;
        if lease.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(lease) = lease else {
        return Err(clawhive_store::StoreError::Conflict("the job's session stayed busy".into()));
    };
    let now = clawhive_core::time::now_unix_ms();
    let mut msg = Message::assistant(text);
    msg.request_id = Some(request_id.to_string());
    msg.created_unix_ms = now;
    let turn = TurnRecord {
        request_id: request_id.clone(),
        user: job.owner.clone(),
        agent: job.agent.clone(),
        messages: vec![msg],
        reply: StoredReply {
            request_id: request_id.clone(),
            text: text.to_string(),
            error: None,
            usage: Default::default(),
            model: String::new(),
            completed_unix_ms: now,
        },
    };
    let out = s.sessions.commit_turn(&lease, &turn).await;
    let _ = s.sessions.release_lease(&lease).await;
    match out? {
        CommitOutcome::Fenced => Err(clawhive_store::StoreError::Conflict("the session lease was lost".into())),
        _ => Ok(()),
    }
}
