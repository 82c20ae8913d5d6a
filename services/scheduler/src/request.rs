//! The `AgentRequest` a fire publishes: the job's prompt, as its owner, into
//! the job's session, answered on the job's delivery route.

use clawhive_core::Principal;
use clawhive_core::config::Config;
use clawhive_core::schedule::{Delivery, Job, fire_request_id};
use clawhive_core::signing::EnvelopeSigner;
use clawhive_proto::v1 as pb;

/// Where the reply of a job goes.
pub fn route(delivery: &Delivery) -> pb::ReplyRoute {
    let target = match delivery {
        Delivery::Session => pb::reply_route::Target::SessionOnly(pb::SessionOnly {}),
        // A DM is a conversation with the user; Slack accepts the user id as the channel.
        Delivery::SlackDm { team_id, user_id } => pb::reply_route::Target::Slack(pb::SlackRoute {
            team_id: team_id.clone(),
            channel_id: user_id.clone(),
            thread_ts: String::new(),
        }),
        Delivery::SlackChannel { team_id, channel_id, .. } => pb::reply_route::Target::Slack(pb::SlackRoute {
            team_id: team_id.clone(),
            channel_id: channel_id.clone(),
            thread_ts: String::new(),
        }),
    };
    pb::ReplyRoute { target: Some(target) }
}

/// The signed request of `job`'s fire at `slot_ms`, run as `owner` (re-resolved at fire time).
pub fn build(
    cfg: &Config,
    signer: Option<&EnvelopeSigner>,
    job: &Job,
    owner: &Principal,
    slot_ms: i64,
    now_ms: i64,
) -> pb::AgentRequest {
    let mut req = pb::AgentRequest {
        request_id: fire_request_id(&job.tenant, &job.id, slot_ms),
        principal: Some(pb::Principal::from(owner)),
        session_id: job.session_id(),
        agent_id: job.agent.to_string(),
        text: job.prompt.clone(),
        reply_route: Some(route(&job.delivery)),
        deadline_unix_ms: now_ms + cfg.scheduler.run_timeout_ms as i64,
        created_unix_ms: now_ms,
        stream_deltas: !matches!(job.delivery, Delivery::Session),
        speaker: owner.user.to_string(),
        signature: Vec::new(),
    };
    if let Some(s) = signer {
        s.sign(&mut req);
    }
    req
}
