//! Managing scheduled jobs on behalf of a principal: the rules every API
//! (gRPC, HTTP, the CLI through them, the agent's `schedule` tool) shares.
//!
//! - a user sees and changes only their own jobs; an admin every job of their
//!   tenant; any other job id is "not found", never "forbidden", so ids of
//!   other users and tenants leak nothing;
//! - schedules are checked (cron syntax, time zone, the tenant's minimum
//!   interval, `at` in the future), prompts bounded, agents must exist for the tenant;
//! - a Slack delivery needs the owner's Slack identity linked to the owner.

use crate::identity::IdentityStore;
use crate::port::StoreError;
use crate::schedules::{ScheduleStore, UpdateOutcome};
use clawhive_core::config::Config;
use clawhive_core::schedule::{Delivery, Job, JobId, Schedule, check_prompt};
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, ClawError, ErrorCode, Principal};
use std::sync::Arc;

/// Attempts of a read-modify-write that keeps meeting concurrent writes.
const CAS_ATTEMPTS: usize = 8;

/// A job to create, as the APIs receive it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub prompt: String,
    /// Empty: the default agent.
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub delivery: Option<Delivery>,
    #[serde(default)]
    pub paused: bool,
}

/// Changes to a job; `None` keeps the field.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEdit {
    pub schedule: Option<Schedule>,
    pub prompt: Option<String>,
    pub agent_id: Option<String>,
    pub delivery: Option<Delivery>,
}

/// The job rules over a [`ScheduleStore`].
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn ScheduleStore>,
    identity: Arc<dyn IdentityStore>,
    cfg: Arc<Config>,
}

pub(crate) fn store_err(e: StoreError) -> ClawError {
    match e {
        StoreError::Unavailable(m) => {
            tracing::warn!(error = %m, "The schedule store is unavailable.");
            ClawError::unavailable("the schedule store is unavailable; try again shortly")
        }
        StoreError::Corrupt(m) => {
            tracing::error!(error = %m, "Stored job data is corrupt.");
            ClawError::internal("stored job data is corrupt")
        }
        StoreError::Conflict(m) => ClawError::new(ErrorCode::Conflict, m),
        StoreError::NotFound(m) => ClawError::not_found(m),
        StoreError::Invalid(m) => ClawError::invalid(m),
    }
}

fn not_found(id: &str) -> ClawError {
    ClawError::not_found(format!("job {id:?} not found"))
}

impl Jobs {
    pub fn new(store: Arc<dyn ScheduleStore>, identity: Arc<dyn IdentityStore>, cfg: Arc<Config>) -> Self {
        Self { store, identity, cfg }
    }

    pub fn store(&self) -> &Arc<dyn ScheduleStore> {
        &self.store
    }

    fn agent(&self, who: &Principal, requested: &str) -> Result<AgentId, ClawError> {
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

    /// Fills the default time zone in and checks the schedule for `who`'s tenant.
    fn schedule(&self, who: &Principal, schedule: Schedule, now: i64) -> Result<Schedule, ClawError> {
        let schedule = match schedule {
            Schedule::Cron { expr, timezone } if timezone.is_empty() => {
                Schedule::Cron { expr, timezone: self.cfg.scheduler.default_timezone.clone() }
            }
            s => s,
        };
        schedule.validate_new(now, self.cfg.scheduler.min_interval_for(who.tenant.as_str()))?;
        Ok(schedule)
    }

    /// Checks that a Slack delivery goes through the owner's own linked Slack identity.
    async fn delivery(&self, who: &Principal, delivery: Delivery) -> Result<Delivery, ClawError> {
        delivery.validate()?;
        if let Some(external) = delivery.slack_identity() {
            let linked = self.identity.resolve_external("slack", &external).await.map_err(store_err)?;
            if !linked.is_some_and(|p| p.tenant == who.tenant && p.user == who.user) {
                return Err(ClawError::invalid(format!(
                    "Slack user {external} is not linked to user {}; link it first (clawhive admin link-identity)",
                    who.user
                )));
            }
        }
        Ok(delivery)
    }

    /// Creates a job owned by `who`.
    pub async fn create(&self, who: &Principal, new: NewJob) -> Result<Job, ClawError> {
        let now = now_unix_ms();
        let schedule = new.schedule.ok_or_else(|| ClawError::invalid("schedule is required"))?;
        let schedule = self.schedule(who, schedule, now)?;
        check_prompt(&new.prompt)?;
        let agent = self.agent(who, &new.agent_id)?;
        let delivery = self.delivery(who, new.delivery.unwrap_or_default()).await?;
        let mut job = Job {
            id: JobId::random(),
            tenant: who.tenant.clone(),
            owner: who.user.clone(),
            schedule,
            prompt: new.prompt,
            agent,
            delivery,
            enabled: !new.paused,
            paused_reason: String::new(),
            created_unix_ms: now,
            updated_unix_ms: now,
            next_run_unix_ms: None,
            last_run: None,
            last_fired_slot_ms: None,
            pending: None,
            consecutive_failures: 0,
            last_outcome_slot_ms: None,
            revision: 0,
        };
        job.next_run_unix_ms = job.compiled()?.next_after(now);
        let job = self.store.create_job(&job, self.cfg.scheduler.max_jobs_per_user).await.map_err(store_err)?;
        tracing::info!(tenant = %job.tenant, owner = %job.owner, job = %job.id, "Job created.");
        Ok(job)
    }

    /// `who`'s jobs; with `all_users`, the tenant's (admins only).
    pub async fn list(&self, who: &Principal, all_users: bool) -> Result<Vec<Job>, ClawError> {
        if all_users && !who.is_admin() {
            return Err(ClawError::new(ErrorCode::PermissionDenied, "listing every user's jobs needs the admin role"));
        }
        let owner = (!all_users).then_some(&who.user);
        self.store.list_jobs(&who.tenant, owner).await.map_err(store_err)
    }

    /// A job `who` may see.
    pub async fn get(&self, who: &Principal, id: &str) -> Result<Job, ClawError> {
        let job_id = JobId::new(id).map_err(|_| not_found(id))?;
        match self.store.get_job(&who.tenant, &job_id).await.map_err(store_err)? {
            Some(job) if job.owner == who.user || who.is_admin() => Ok(job),
            _ => Err(not_found(id)),
        }
    }

    /// Read-modify-write of a job `who` may change, retried on concurrent writes.
    async fn modify(
        &self,
        who: &Principal,
        id: &str,
        change: impl Fn(&mut Job) -> Result<(), ClawError>,
    ) -> Result<Job, ClawError> {
        for _ in 0..CAS_ATTEMPTS {
            let mut job = self.get(who, id).await?;
            change(&mut job)?;
            job.updated_unix_ms = now_unix_ms();
            match self.store.update_job(&job, None).await.map_err(store_err)? {
                UpdateOutcome::Updated(job) => return Ok(*job),
                UpdateOutcome::Gone => return Err(not_found(id)),
                UpdateOutcome::Stale | UpdateOutcome::Fenced => continue,
            }
        }
        Err(ClawError::new(ErrorCode::Conflict, format!("job {id:?} keeps changing; try again")))
    }

    pub async fn update(&self, who: &Principal, id: &str, edit: JobEdit) -> Result<Job, ClawError> {
        let now = now_unix_ms();
        let schedule = edit.schedule.map(|s| self.schedule(who, s, now)).transpose()?;
        if let Some(p) = &edit.prompt {
            check_prompt(p)?;
        }
        let agent = edit.agent_id.as_deref().map(|a| self.agent(who, a)).transpose()?;
        let delivery = match edit.delivery {
            Some(d) => Some(self.delivery(who, d).await?),
            None => None,
        };
        self.modify(who, id, |job| {
            if let Some(s) = &schedule {
                job.schedule = s.clone();
                // The new schedule counts from now; the fired-slot fence stays.
                job.created_unix_ms = now;
                job.next_run_unix_ms = job.compiled()?.next_after(now);
            }
            if let Some(p) = &edit.prompt {
                job.prompt = p.clone();
            }
            if let Some(a) = &agent {
                job.agent = a.clone();
            }
            if let Some(d) = &delivery {
                job.delivery = d.clone();
            }
            Ok(())
        })
        .await
    }

    pub async fn pause(&self, who: &Principal, id: &str) -> Result<Job, ClawError> {
        self.modify(who, id, |job| {
            job.enabled = false;
            Ok(())
        })
        .await
    }

    /// Resumes a job: it waits for its next slot after now (no catch-up for the paused time).
    pub async fn resume(&self, who: &Principal, id: &str) -> Result<Job, ClawError> {
        let now = now_unix_ms();
        self.modify(who, id, |job| {
            job.enabled = true;
            job.paused_reason.clear();
            job.consecutive_failures = 0;
            let after = now.max(job.last_fired_slot_ms.unwrap_or(i64::MIN));
            job.next_run_unix_ms = job.compiled()?.next_after(after);
            Ok(())
        })
        .await
    }

    pub async fn delete(&self, who: &Principal, id: &str) -> Result<(), ClawError> {
        let job = self.get(who, id).await?;
        if !self.store.delete_job(&job.tenant, &job.id).await.map_err(store_err)? {
            return Err(not_found(id));
        }
        tracing::info!(tenant = %job.tenant, job = %job.id, "Job deleted.");
        Ok(())
    }
}
