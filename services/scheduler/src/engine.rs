//! One scheduler replica: the leader lease, and what the leader does with due jobs.
//!
//! A fire of `(job, slot)` goes through three fenced steps:
//! 1. **claim**: one write, guarded by the leader's fencing token and the job's
//!    revision, records the slot as fired (`last_fired_slot_ms`), moves
//!    `next_run` on and marks the fire `pending`;
//! 2. **publish** the request with `Nats-Msg-Id` = [`fire_request_id`];
//! 3. **confirm**: clear `pending`.
//!
//! A leader that dies between 1 and 3 leaves `pending` behind; the next leader
//! publishes the same slot again under the same id, which JetStream drops if
//! the first publish got through. A deposed leader cannot claim (its token is
//! fenced), and no slot at or before `last_fired_slot_ms` is claimed again, so
//! each slot fires once across replicas and restarts.

use crate::clock::Clock;
use crate::{notify, owner, request};
use clawhive_bus::envelope::Envelopes;
use clawhive_bus::{Bus, PublishOutcome, Subjects};
use clawhive_core::config::Config;
use clawhive_core::schedule::{Due, Job, JobId, LastRun, PendingFire, RunOutcome, decide, rfc3339};
use clawhive_core::signing::EnvelopeSigner;
use clawhive_core::{Principal, TenantId};
use clawhive_store::{IdentityStore, ScheduleStore, SessionStore, StoreError, UpdateOutcome};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Jobs handled per tick at most; the rest wait for the next tick.
const BATCH: usize = 200;
/// Slack on top of the turn deadline before a missing reply counts as a failure.
const OUTCOME_SLACK_MS: i64 = 30_000;
/// Attempts of one read-modify-write against concurrent writers.
const CAS_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] clawhive_bus::BusError),
}

/// The adapters a scheduler runs on.
pub struct Deps {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn ScheduleStore>,
    /// Owners are re-resolved here at every fire.
    pub identity: Arc<dyn IdentityStore>,
    /// Notices to owners (a job paused by the failure guard) go into the job's session.
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
}

/// What this replica did, for tests and logs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Fires this replica published that JetStream stored.
    pub published: AtomicU64,
    /// Publishes JetStream dropped as already seen (a re-publish after a takeover).
    pub duplicates: AtomicU64,
    /// Slots recorded as missed (older than the grace window).
    pub missed: AtomicU64,
    /// Jobs paused by the failure guard.
    pub paused: AtomicU64,
}

pub struct Scheduler {
    pub(crate) cfg: Config,
    pub(crate) store: Arc<dyn ScheduleStore>,
    identity: Arc<dyn IdentityStore>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) envelopes: Envelopes,
    signer: Option<EnvelopeSigner>,
    clock: Arc<dyn Clock>,
    instance_id: String,
    stats: Stats,
    fence: Mutex<Option<u64>>,
    /// When the last tick reached the store (readiness).
    last_ok_ms: AtomicI64,
}

impl Scheduler {
    pub fn new(cfg: &Config, deps: Deps, instance_id: impl Into<String>) -> Result<Self, SchedulerError> {
        let signer = clawhive_core::signing::signer_from_config(&cfg.security).map_err(SchedulerError::Config)?;
        Ok(Self {
            cfg: cfg.clone(),
            store: deps.store,
            identity: deps.identity,
            sessions: deps.sessions,
            envelopes: Envelopes::new(deps.bus, Subjects::new(&cfg.bus.namespace)),
            signer,
            clock: deps.clock,
            instance_id: instance_id.into(),
            stats: Stats::default(),
            fence: Mutex::new(None),
            last_ok_ms: AtomicI64::new(0),
        })
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The fencing token while this replica leads.
    pub fn leader_token(&self) -> Option<u64> {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Ready while ticks reach the store.
    pub fn is_healthy(&self) -> bool {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        let bound = (self.cfg.scheduler.tick_ms * 3).max(self.cfg.scheduler.lease_ttl_ms) as i64;
        clawhive_core::time::now_unix_ms() - last <= bound
    }

    fn set_fence(&self, token: Option<u64>) {
        let mut f = self.fence.lock().unwrap_or_else(|e| e.into_inner());
        if *f != token {
            match token {
                Some(t) => tracing::info!(instance = %self.instance_id, token = t, "This replica leads the scheduler."),
                None if f.is_some() => tracing::info!(instance = %self.instance_id, "This replica no longer leads."),
                None => {}
            }
        }
        *f = token;
    }

    /// Takes or renews the leader lease; the fencing token while leading.
    pub async fn lead(&self) -> Result<Option<u64>, StoreError> {
        let ttl = Duration::from_millis(self.cfg.scheduler.lease_ttl_ms);
        let token = self.store.acquire_leadership(&self.instance_id, ttl).await;
        match token {
            Ok(t) => {
                self.last_ok_ms.store(clawhive_core::time::now_unix_ms(), Ordering::Relaxed);
                self.set_fence(t);
                Ok(t)
            }
            Err(e) => {
                self.set_fence(None);
                Err(e)
            }
        }
    }

    /// Gives the lease up (shutdown), so another replica takes over at once.
    pub async fn step_down(&self) {
        if let Some(token) = self.leader_token() {
            if let Err(e) = self.store.release_leadership(&self.instance_id, token).await {
                tracing::warn!(error = %e, "Cannot release the scheduler lease; it expires by itself.");
            }
            self.set_fence(None);
        }
    }

    /// One round: lead if possible, then handle every due job.
    pub async fn tick(&self) -> Result<(), StoreError> {
        let Some(fence) = self.lead().await? else { return Ok(()) };
        let now = self.clock.now_ms();
        for (tenant, id) in self.store.due_jobs(now, BATCH).await? {
            if let Err(e) = self.handle(fence, &tenant, &id, now).await {
                tracing::warn!(tenant = %tenant, job = %id, error = %e, "Cannot handle a due job; retrying next tick.");
            }
        }
        Ok(())
    }

    async fn handle(&self, fence: u64, tenant: &TenantId, id: &JobId, now: i64) -> Result<(), StoreError> {
        let Some(job) = self.store.get_job(tenant, id).await? else { return Ok(()) };
        if job.pending.is_some() {
            return self.finish_pending(fence, job, now).await;
        }
        if let Some(run) =
            job.last_run.as_ref().filter(|r| r.outcome == RunOutcome::Pending && r.deadline_unix_ms <= now)
        {
            let slot = run.slot_unix_ms;
            self.record_outcome(tenant, id, slot, Err("no reply before the run's deadline".into())).await?;
            return Ok(());
        }
        if job.enabled
            && job.next_run_unix_ms.is_some_and(|n| n <= now)
            && let Some((job, slot, owner)) = self.claim(fence, job, now).await?
        {
            self.publish(&job, &owner, slot, now).await?;
            self.confirm(fence, job).await?;
        }
        Ok(())
    }

    /// Step 1: decides about a due job and, if a slot is to fire, records it
    /// as fired under the fencing token. Returns the claimed job, its slot and
    /// its owner, or `None` (missed, owner gone, or fenced / changed meanwhile).
    pub async fn claim(&self, fence: u64, mut job: Job, now: i64) -> Result<Option<(Job, i64, Principal)>, StoreError> {
        let Some(next) = job.next_run_unix_ms else { return Ok(None) };
        let compiled = match job.compiled() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "A stored job has an invalid schedule; pausing it.");
                job.enabled = false;
                job.paused_reason = format!("invalid schedule: {e}");
                self.write(&job, fence).await?;
                return Ok(None);
            }
        };
        let grace = self.cfg.scheduler.grace_ms as i64;
        match decide(&compiled, next, now, grace) {
            Due::Missed { slot, next } => {
                tracing::info!(tenant = %job.tenant, job = %job.id, slot = %rfc3339(slot),
                    "A slot passed beyond the grace window while no scheduler ran; recorded as missed.");
                job.last_run = Some(LastRun {
                    slot_unix_ms: slot,
                    at_unix_ms: now,
                    outcome: RunOutcome::Missed,
                    detail: format!("the scheduler was down; more than {grace} ms late"),
                    deadline_unix_ms: 0,
                });
                job.next_run_unix_ms = next;
                job.last_fired_slot_ms = Some(job.last_fired_slot_ms.unwrap_or(slot).max(slot));
                if matches!(self.write(&job, fence).await?, UpdateOutcome::Updated(_)) {
                    self.stats.missed.fetch_add(1, Ordering::Relaxed);
                    clawhive_telemetry::metrics::scheduler_fire("missed");
                }
                Ok(None)
            }
            Due::Fire { slot, skipped, next } => {
                if job.last_fired_slot_ms.is_some_and(|f| f >= slot) {
                    // Fired before (an older copy of the job was due): only move on.
                    job.next_run_unix_ms = next;
                    self.write(&job, fence).await?;
                    return Ok(None);
                }
                let Some(owner) = owner::resolve(&*self.identity, &self.cfg, &job.tenant, &job.owner).await? else {
                    tracing::warn!(tenant = %job.tenant, job = %job.id, owner = %job.owner,
                        "The job's owner no longer exists; pausing the job.");
                    job.enabled = false;
                    job.paused_reason = format!("owner {} no longer exists", job.owner);
                    self.write(&job, fence).await?;
                    return Ok(None);
                };
                let deadline = now + self.cfg.scheduler.run_timeout_ms as i64 + OUTCOME_SLACK_MS;
                job.pending = Some(PendingFire { slot_unix_ms: slot, claimed_unix_ms: now, fence });
                job.last_fired_slot_ms = Some(slot);
                job.next_run_unix_ms = next;
                job.last_run = Some(LastRun {
                    slot_unix_ms: slot,
                    at_unix_ms: now,
                    outcome: RunOutcome::Pending,
                    detail: if skipped > 0 {
                        format!("catch-up fire; {skipped} earlier slot(s) skipped")
                    } else {
                        String::new()
                    },
                    deadline_unix_ms: deadline,
                });
                match self.write(&job, fence).await? {
                    UpdateOutcome::Updated(job) => Ok(Some((*job, slot, owner))),
                    other => {
                        tracing::info!(job = %job.id, ?other, "The claim of a slot did not stick; not firing it.");
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Step 2: publishes the fire of `slot`; JetStream drops it if the same slot was published before.
    pub async fn publish(
        &self,
        job: &Job,
        owner: &Principal,
        slot: i64,
        now: i64,
    ) -> Result<PublishOutcome, StoreError> {
        let req = request::build(&self.cfg, self.signer.as_ref(), job, owner, slot, now);
        let outcome = self.envelopes.publish_request(&job.tenant, &job.agent, &req, None).await.map_err(|e| {
            clawhive_telemetry::metrics::scheduler_fire("error");
            StoreError::Unavailable(format!("cannot publish the fire of job {}: {e}", job.id))
        })?;
        match outcome {
            PublishOutcome::Stored => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                clawhive_telemetry::metrics::scheduler_fire("published");
                tracing::info!(tenant = %job.tenant, job = %job.id, request_id = %req.request_id, slot = %rfc3339(slot), "Job fired.");
            }
            PublishOutcome::Duplicate => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                clawhive_telemetry::metrics::scheduler_fire("duplicate");
                tracing::info!(tenant = %job.tenant, job = %job.id, request_id = %req.request_id,
                    "The fire was published before (a takeover re-sent it); JetStream dropped the copy.");
            }
        }
        Ok(outcome)
    }

    /// Step 3: the fire is published; clear `pending`.
    pub async fn confirm(&self, fence: u64, mut job: Job) -> Result<(), StoreError> {
        job.pending = None;
        self.write(&job, fence).await?;
        Ok(())
    }

    /// A fire claimed by a leader that did not confirm it: publish it again
    /// (deduplicated) while JetStream still remembers the id, then confirm.
    async fn finish_pending(&self, fence: u64, job: Job, now: i64) -> Result<(), StoreError> {
        let Some(p) = job.pending.clone() else { return Ok(()) };
        let window = self.cfg.bus.duplicate_window_ms as i64;
        if now - p.claimed_unix_ms < window {
            match owner::resolve(&*self.identity, &self.cfg, &job.tenant, &job.owner).await? {
                Some(owner) => {
                    self.publish(&job, &owner, p.slot_unix_ms, now).await?;
                }
                None => tracing::warn!(job = %job.id, "The owner of a pending fire no longer exists; not firing."),
            }
        } else {
            // Beyond the duplicate window a re-publish could run the slot twice;
            // not sending is the safer failure (at most once).
            tracing::warn!(tenant = %job.tenant, job = %job.id, slot = %rfc3339(p.slot_unix_ms),
                "A fire claimed long ago was never confirmed; assuming it was published.");
        }
        self.confirm(fence, job).await
    }

    async fn write(&self, job: &Job, fence: u64) -> Result<UpdateOutcome, StoreError> {
        let out = self.store.update_job(job, Some(fence)).await?;
        if out == UpdateOutcome::Fenced {
            tracing::warn!(instance = %self.instance_id, "A write was fenced: another replica leads now.");
            self.set_fence(None);
        }
        Ok(out)
    }

    /// Records the outcome of the fire of `slot` (from its reply, or its
    /// deadline passing); after `max_consecutive_failures` failures in a row
    /// the job is paused and its owner told. A run overtaken by a newer fire
    /// still counts for the guard. Idempotent: a second report of the same
    /// slot (or an older one) changes nothing.
    pub async fn record_outcome(
        &self,
        tenant: &TenantId,
        id: &JobId,
        slot: i64,
        result: Result<(), String>,
    ) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(mut job) = self.store.get_job(tenant, id).await? else { return Ok(()) };
            if job.last_outcome_slot_ms.is_some_and(|s| s >= slot) {
                return Ok(());
            }
            let Some(run) = job.last_run.as_mut() else { return Ok(()) };
            let current = run.slot_unix_ms == slot && run.outcome == RunOutcome::Pending;
            if !current && run.slot_unix_ms <= slot {
                return Ok(());
            }
            job.last_outcome_slot_ms = Some(slot);
            let mut pause = false;
            match &result {
                Ok(()) => {
                    if current {
                        run.outcome = RunOutcome::Succeeded;
                    }
                    job.consecutive_failures = 0;
                }
                Err(detail) => {
                    if current {
                        run.outcome = RunOutcome::Failed;
                        run.detail = detail.clone();
                    }
                    job.consecutive_failures += 1;
                    if job.enabled && job.consecutive_failures >= self.cfg.scheduler.max_consecutive_failures {
                        job.enabled = false;
                        job.paused_reason = format!(
                            "paused after {} failed runs in a row; last error: {detail}",
                            job.consecutive_failures
                        );
                        pause = true;
                    }
                }
            }
            match self.store.update_job(&job, None).await? {
                UpdateOutcome::Updated(job) => {
                    tracing::info!(tenant = %tenant, job = %id, outcome = ?result.as_ref().map(|_| "succeeded"),
                        failures = job.consecutive_failures, "Job run finished.");
                    if pause {
                        self.stats.paused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tenant = %tenant, job = %id, failures = job.consecutive_failures,
                            "The job failed too often in a row; paused it.");
                        notify::paused(self, &job, slot).await;
                    }
                    return Ok(());
                }
                UpdateOutcome::Gone => return Ok(()),
                UpdateOutcome::Stale | UpdateOutcome::Fenced => continue,
            }
        }
        Err(StoreError::Conflict(format!("job {id} kept changing while its outcome was recorded")))
    }
}
