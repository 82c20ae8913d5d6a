//! The `clawhive.v1.Schedules` gRPC service and the proto ↔ domain
//! conversions of jobs (shared with the HTTP API). The rules (ownership,
//! validation) live in [`clawhive_store::Jobs`]; a job id of another user or
//! tenant is `NotFound`.

use crate::grpc::{authenticate, status_of};
use crate::state::Gateway;
use clawhive_core::schedule::{Delivery, Job, Schedule};
use clawhive_core::{ClawError, Principal};
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::schedules_server::Schedules;
use clawhive_store::{JobEdit, Jobs, NewJob};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SchedulesService {
    gw: Arc<Gateway>,
}

impl SchedulesService {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    async fn caller<T>(&self, req: &Request<T>) -> Result<(Principal, &Jobs), Status> {
        let who = authenticate(&self.gw, req).await?;
        Ok((who, jobs_of(&self.gw).map_err(|e| status_of(&e))?))
    }
}

/// The job rules, if this gateway has a schedule store.
pub fn jobs_of(gw: &Gateway) -> Result<&Jobs, ClawError> {
    gw.jobs.as_ref().ok_or_else(|| ClawError::unavailable("scheduling is not enabled on this gateway"))
}

pub fn schedule_from_pb(s: Option<pb::JobSchedule>) -> Result<Option<Schedule>, ClawError> {
    use pb::job_schedule::Kind;
    Ok(match s.and_then(|s| s.kind) {
        None => None,
        Some(Kind::Cron(c)) => Some(Schedule::Cron { expr: c.expr, timezone: c.timezone }),
        Some(Kind::Every(e)) => Some(Schedule::Every { interval_secs: e.interval_secs }),
        Some(Kind::At(a)) => Some(Schedule::At { at_unix_ms: a.at_unix_ms }),
    })
}

fn schedule_pb(s: &Schedule) -> pb::JobSchedule {
    use pb::job_schedule::Kind;
    let kind = match s {
        Schedule::Cron { expr, timezone } => {
            Kind::Cron(pb::CronSchedule { expr: expr.clone(), timezone: timezone.clone() })
        }
        Schedule::Every { interval_secs } => Kind::Every(pb::EverySchedule { interval_secs: *interval_secs }),
        Schedule::At { at_unix_ms } => Kind::At(pb::AtSchedule { at_unix_ms: *at_unix_ms }),
    };
    pb::JobSchedule { kind: Some(kind) }
}

pub fn delivery_from_pb(d: Option<pb::JobDelivery>) -> Option<Delivery> {
    use pb::job_delivery::Target;
    Some(match d?.target? {
        Target::Session(_) => Delivery::Session,
        Target::SlackDm(d) => Delivery::SlackDm { team_id: d.team_id, user_id: d.user_id },
        Target::SlackChannel(c) => {
            Delivery::SlackChannel { team_id: c.team_id, channel_id: c.channel_id, user_id: c.user_id }
        }
    })
}

fn delivery_pb(d: &Delivery) -> pb::JobDelivery {
    use pb::job_delivery::Target;
    let target = match d.clone() {
        Delivery::Session => Target::Session(pb::SessionDelivery {}),
        Delivery::SlackDm { team_id, user_id } => Target::SlackDm(pb::SlackDmDelivery { team_id, user_id }),
        Delivery::SlackChannel { team_id, channel_id, user_id } => {
            Target::SlackChannel(pb::SlackChannelDelivery { team_id, channel_id, user_id })
        }
    };
    pb::JobDelivery { target: Some(target) }
}

pub fn job_pb(j: &Job) -> pb::Job {
    pb::Job {
        job_id: j.id.to_string(),
        tenant_id: j.tenant.to_string(),
        owner_id: j.owner.to_string(),
        schedule: Some(schedule_pb(&j.schedule)),
        prompt: j.prompt.clone(),
        agent_id: j.agent.to_string(),
        delivery: Some(delivery_pb(&j.delivery)),
        enabled: j.enabled,
        paused_reason: j.paused_reason.clone(),
        next_run_unix_ms: j.next_run_unix_ms.unwrap_or(0),
        last_run: j.last_run.as_ref().map(|r| pb::JobRun {
            slot_unix_ms: r.slot_unix_ms,
            at_unix_ms: r.at_unix_ms,
            outcome: r.outcome.as_str().to_string(),
            detail: r.detail.clone(),
        }),
        consecutive_failures: j.consecutive_failures,
        session_id: j.session_id(),
        created_unix_ms: j.created_unix_ms,
    }
}

fn empty_none(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl Schedules for SchedulesService {
    async fn create_job(&self, req: Request<pb::CreateJobRequest>) -> Result<Response<pb::Job>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let r = req.into_inner();
        let new = NewJob {
            schedule: schedule_from_pb(r.schedule).map_err(|e| status_of(&e))?,
            prompt: r.prompt,
            agent_id: r.agent_id,
            delivery: delivery_from_pb(r.delivery),
            paused: r.paused,
        };
        let job = jobs.create(&who, new).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(job_pb(&job)))
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let list = jobs.list(&who, req.get_ref().all_users).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::ListJobsResponse { jobs: list.iter().map(job_pb).collect() }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let job = jobs.get(&who, &req.get_ref().job_id).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(job_pb(&job)))
    }

    async fn update_job(&self, req: Request<pb::UpdateJobRequest>) -> Result<Response<pb::Job>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let r = req.into_inner();
        let edit = JobEdit {
            schedule: schedule_from_pb(r.schedule).map_err(|e| status_of(&e))?,
            prompt: empty_none(r.prompt),
            agent_id: empty_none(r.agent_id),
            delivery: delivery_from_pb(r.delivery),
        };
        let job = jobs.update(&who, &r.job_id, edit).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(job_pb(&job)))
    }

    async fn delete_job(&self, req: Request<pb::DeleteJobRequest>) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        jobs.delete(&who, &req.get_ref().job_id).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    async fn pause_job(&self, req: Request<pb::PauseJobRequest>) -> Result<Response<pb::Job>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let job = jobs.pause(&who, &req.get_ref().job_id).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(job_pb(&job)))
    }

    async fn resume_job(&self, req: Request<pb::ResumeJobRequest>) -> Result<Response<pb::Job>, Status> {
        let (who, jobs) = self.caller(&req).await?;
        let job = jobs.resume(&who, &req.get_ref().job_id).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(job_pb(&job)))
    }
}
