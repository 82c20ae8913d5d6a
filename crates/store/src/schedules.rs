//! The schedule port: scheduled jobs, the index of when each is due, and the
//! scheduler's leader lease. Implemented by both adapters; `tests/schedule_conformance`
//! checks both.
//!
//! Invariants the adapters keep:
//! - at most one leader at a time; each grant gets a larger fencing token than
//!   every grant before it (renewals by the same holder keep their token);
//! - every write of a job compares the revision it read (optimistic
//!   concurrency) and bumps it; a write with a fencing token also requires the
//!   token to be the current leader's, so a deposed leader cannot write;
//! - a job, its owner's and tenant's indexes and its due entry change together.

use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::schedule::{Job, JobId};
use clawhive_core::{TenantId, UserId};
use std::time::Duration;

/// The outcome of [`ScheduleStore::update_job`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written; the job as stored now (revision bumped).
    Updated(Box<Job>),
    /// The job changed since it was read; re-read and retry.
    Stale,
    /// The fencing token is not the current leader's: nothing was written.
    Fenced,
    /// The job no longer exists.
    Gone,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new job (its revision becomes 1). [`StoreError::Conflict`] if the
    /// id exists in the tenant; [`StoreError::Invalid`] if the owner already has
    /// `max_per_owner` jobs.
    async fn create_job(&self, job: &Job, max_per_owner: usize) -> Result<Job, StoreError>;

    async fn get_job(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Job>, StoreError>;

    /// The tenant's jobs (only `owner`'s when given), ordered by id.
    async fn list_jobs(&self, tenant: &TenantId, owner: Option<&UserId>) -> Result<Vec<Job>, StoreError>;

    /// Replaces the job if its stored revision is `job.revision` and, with
    /// `fence`, the leader's token is `fence`.
    async fn update_job(&self, job: &Job, fence: Option<u64>) -> Result<UpdateOutcome, StoreError>;

    /// Deletes a job; `false` if it did not exist.
    async fn delete_job(&self, tenant: &TenantId, id: &JobId) -> Result<bool, StoreError>;

    /// Up to `limit` jobs due at or before `now_ms` ([`Job::due_at`]), soonest first.
    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, JobId)>, StoreError>;

    /// Becomes (or stays) the scheduler leader for `ttl`: `Some(token)` if
    /// `holder` holds the lease now, `None` if someone else does.
    async fn acquire_leadership(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError>;

    /// Gives the lease up if `holder` still holds it with `token`.
    async fn release_leadership(&self, holder: &str, token: u64) -> Result<(), StoreError>;
}

/// The member naming a job in the due index.
pub(crate) fn due_member(tenant: &TenantId, id: &JobId) -> String {
    format!("{tenant}/{id}")
}

pub(crate) fn parse_due_member(member: &str) -> Option<(TenantId, JobId)> {
    let (t, j) = member.split_once('/')?;
    Some((TenantId::new(t).ok()?, JobId::new(j).ok()?))
}

/// Checks a leader holder name (it is stored next to the token).
pub(crate) fn check_holder(holder: &str) -> Result<(), StoreError> {
    if holder.is_empty() || holder.len() > 128 || holder.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::Invalid(format!("leader holder {holder:?} must be 1-128 visible characters")));
    }
    Ok(())
}
