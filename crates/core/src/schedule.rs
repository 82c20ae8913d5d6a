//! Scheduled jobs: what a job is, when it runs, and what to do when the
//! scheduler finds it due.
//!
//! A job belongs to one principal (tenant + user) and fires a prompt at an
//! agent on a schedule: a 5-field cron expression in an IANA time zone
//! (evaluated with croner, so DST gaps and overlaps follow the zone's rules),
//! a fixed interval, or once at an instant. Every fire has a *slot*: the
//! scheduled instant in Unix milliseconds; `(job, slot)` is what the
//! scheduler fires at most once (its request id is [`fire_request_id`]).

use crate::ids::{AgentId, IdError, TenantId, UserId};
use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;

/// How many upcoming cron occurrences are inspected for the minimum-interval rule.
const CRON_GAP_SAMPLES: usize = 16;
/// Upper bound on a prompt.
pub const MAX_PROMPT_CHARS: usize = 8_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "invalid cron expression {expr:?}: {reason} (expected 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 7 * * 1-5\")"
    )]
    BadCron { expr: String, reason: String },
    #[error("unknown time zone {0:?}; use an IANA name such as Europe/Paris or America/New_York")]
    BadTimeZone(String),
    #[error("interval of {given_secs} s is below the minimum of {min_secs} s for this tenant")]
    TooFrequent { given_secs: u64, min_secs: u64 },
    #[error(
        "cron expression {expr:?} fires every {gap_secs} s at times, below the minimum of {min_secs} s for this tenant"
    )]
    CronTooFrequent { expr: String, gap_secs: u64, min_secs: u64 },
    #[error("the time {0} is in the past")]
    InPast(i64),
    #[error("cron expression {0:?} never fires")]
    NeverFires(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<ScheduleError> for crate::ClawError {
    fn from(e: ScheduleError) -> Self {
        crate::ClawError::invalid(e.to_string())
    }
}

/// A job id: `j` followed by hex, or any `[a-z0-9_-]{1,64}` given by a caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(IdError::Empty { kind: "job id" });
        }
        if value.len() > 64 {
            return Err(IdError::TooLong { kind: "job id", max: 64 });
        }
        if let Some(ch) =
            value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(IdError::BadChar { kind: "job id", ch, allowed: "a-z 0-9 _ -" });
        }
        Ok(Self(value))
    }

    /// A fresh random id.
    pub fn random() -> Self {
        let r = crate::RequestId::random();
        Self(format!("j{}", &r.as_str().replace('-', "")[..20]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a job runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// A 5-field cron expression evaluated in `timezone` (IANA; empty = the configured default).
    Cron {
        expr: String,
        #[serde(default)]
        timezone: String,
    },
    /// Every `interval_secs`, counted from the job's creation.
    Every { interval_secs: u64 },
    /// Once, at `at_unix_ms`.
    At { at_unix_ms: i64 },
}

/// A schedule that was checked and can compute its instants.
#[derive(Clone, Debug)]
pub enum Compiled {
    Cron { cron: Box<Cron>, tz: chrono_tz::Tz },
    Every { interval_ms: i64, anchor_ms: i64 },
    At { at_ms: i64 },
}

/// Parses a 5-field cron expression (nicknames such as `@daily` allowed).
pub fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let bad = |reason: String| ScheduleError::BadCron { expr: expr.to_string(), reason };
    if expr.trim().starts_with('@') {
        // Nicknames expand to 5 fields.
    } else if expr.split_whitespace().count() != 5 {
        return Err(bad(format!("it has {} fields", expr.split_whitespace().count())));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| bad(e.to_string()))
}

/// Parses an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<chrono_tz::Tz, ScheduleError> {
    name.parse::<chrono_tz::Tz>().map_err(|_| ScheduleError::BadTimeZone(name.to_string()))
}

fn to_ms<T: TimeZone>(t: &DateTime<T>) -> i64 {
    t.timestamp_millis()
}

impl Schedule {
    /// Checks the schedule and compiles it. `anchor_ms` is when an interval
    /// counts from (the job's creation); `min_interval_secs` is the tenant's
    /// minimum; `now_ms` rejects `at` times in the past.
    pub fn compile(&self, anchor_ms: i64, min_interval_secs: u64) -> Result<Compiled, ScheduleError> {
        match self {
            Schedule::Cron { expr, timezone } => {
                let tz = parse_tz(timezone)?;
                let cron = parse_cron(expr)?;
                Ok(Compiled::Cron { cron: Box::new(cron), tz })
            }
            Schedule::Every { interval_secs } => {
                if *interval_secs < min_interval_secs.max(1) {
                    return Err(ScheduleError::TooFrequent {
                        given_secs: *interval_secs,
                        min_secs: min_interval_secs.max(1),
                    });
                }
                if *interval_secs > 366 * 24 * 3600 {
                    return Err(ScheduleError::Invalid("interval_secs must be at most one year".into()));
                }
                Ok(Compiled::Every { interval_ms: *interval_secs as i64 * 1000, anchor_ms })
            }
            Schedule::At { at_unix_ms } => Ok(Compiled::At { at_ms: *at_unix_ms }),
        }
    }

    /// [`Schedule::compile`] plus the rules for a new or edited job: a cron
    /// expression must fire, and not more often than the minimum interval; an
    /// `at` time must be in the future.
    pub fn validate_new(&self, now_ms: i64, min_interval_secs: u64) -> Result<Compiled, ScheduleError> {
        let compiled = self.compile(now_ms, min_interval_secs)?;
        match (&compiled, self) {
            (Compiled::Cron { .. }, Schedule::Cron { expr, .. }) => {
                let mut prev = compiled.next_after(now_ms).ok_or_else(|| ScheduleError::NeverFires(expr.clone()))?;
                for _ in 0..CRON_GAP_SAMPLES {
                    let Some(next) = compiled.next_after(prev) else { break };
                    let gap_secs = ((next - prev) / 1000) as u64;
                    if gap_secs < min_interval_secs {
                        return Err(ScheduleError::CronTooFrequent {
                            expr: expr.clone(),
                            gap_secs,
                            min_secs: min_interval_secs,
                        });
                    }
                    prev = next;
                }
            }
            (Compiled::At { at_ms }, _) if *at_ms <= now_ms => return Err(ScheduleError::InPast(*at_ms)),
            _ => {}
        }
        Ok(compiled)
    }
}

impl Compiled {
    /// The first slot strictly after `after_ms`, if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Compiled::Cron { cron, tz } => {
                let after = tz.timestamp_millis_opt(after_ms).single()?;
                cron.find_next_occurrence(&after, false).ok().map(|t| to_ms(&t))
            }
            Compiled::Every { interval_ms, anchor_ms } => {
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms + interval_ms);
                }
                let k = (after_ms - anchor_ms) / interval_ms + 1;
                Some(anchor_ms + k * interval_ms)
            }
            Compiled::At { at_ms } => (*at_ms > after_ms).then_some(*at_ms),
        }
    }

    /// The latest slot at or before `now_ms` that is not before `from_ms`
    /// (`from_ms` itself being a slot), i.e. the slot a catch-up fires.
    pub fn latest_due(&self, from_ms: i64, now_ms: i64) -> i64 {
        if now_ms <= from_ms {
            return from_ms;
        }
        let latest = match self {
            Compiled::Cron { cron, tz } => tz
                .timestamp_millis_opt(now_ms)
                .single()
                .and_then(|now| cron.find_previous_occurrence(&now, true).ok())
                .map(|t| to_ms(&t)),
            Compiled::Every { interval_ms, anchor_ms } if now_ms >= *anchor_ms => {
                Some(anchor_ms + (now_ms - anchor_ms) / interval_ms * interval_ms)
            }
            _ => None,
        };
        latest.filter(|l| *l >= from_ms).unwrap_or(from_ms)
    }
}

/// What the scheduler does with a job whose slot `next_ms` has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Fire `slot` (the latest passed slot: one catch-up fire, however many were
    /// missed); `skipped` earlier slots are not fired. Then the job waits for `next`.
    Fire { slot: i64, skipped: u32, next: Option<i64> },
    /// The latest passed slot is older than the grace window: record it as missed.
    Missed { slot: i64, next: Option<i64> },
}

/// Decides about a job whose next slot `next_ms` is at or before `now_ms`.
pub fn decide(compiled: &Compiled, next_ms: i64, now_ms: i64, grace_ms: i64) -> Due {
    let slot = compiled.latest_due(next_ms, now_ms);
    let next = compiled.next_after(now_ms.max(slot));
    if now_ms - slot <= grace_ms {
        let mut skipped = 0u32;
        let mut s = next_ms;
        while s < slot && skipped < 10_000 {
            skipped += 1;
            match compiled.next_after(s) {
                Some(n) => s = n,
                None => break,
            }
        }
        Due::Fire { slot, skipped, next }
    } else {
        Due::Missed { slot, next }
    }
}

/// The request id (and `Nats-Msg-Id`) of the fire of `job` at `slot_ms`: the
/// same for every replica and every retry, so JetStream drops a double fire.
pub fn fire_request_id(tenant: &TenantId, job: &JobId, slot_ms: i64) -> String {
    format!("job:{tenant}:{job}:{slot_ms}")
}

/// Splits a [`fire_request_id`] back into its parts.
pub fn parse_fire_request_id(id: &str) -> Option<(TenantId, JobId, i64)> {
    let rest = id.strip_prefix("job:")?;
    let mut parts = rest.splitn(3, ':');
    let tenant = TenantId::new(parts.next()?).ok()?;
    let job = JobId::new(parts.next()?).ok()?;
    let slot = parts.next()?.parse().ok()?;
    Some((tenant, job, slot))
}

/// The session a job's turns run in.
pub fn job_session_id(job: &JobId) -> String {
    format!("job-{job}")
}

/// Where a job's replies go.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delivery {
    /// Kept in the job's session, for API clients.
    #[default]
    Session,
    /// A direct message to the owner's linked Slack user.
    SlackDm { team_id: String, user_id: String },
    /// A Slack channel; `user_id` is the owner's linked Slack user, who posts there.
    SlackChannel { team_id: String, channel_id: String, user_id: String },
}

impl Delivery {
    /// The owner's Slack identity this delivery relies on (`T…:U…`), if any.
    pub fn slack_identity(&self) -> Option<String> {
        match self {
            Delivery::Session => None,
            Delivery::SlackDm { team_id, user_id } | Delivery::SlackChannel { team_id, user_id, .. } => {
                Some(format!("{team_id}:{user_id}"))
            }
        }
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        let slack_id = |what: &str, v: &str| {
            if v.is_empty() || v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
                Err(ScheduleError::Invalid(format!("delivery {what} {v:?} must be 1-32 letters and digits")))
            } else {
                Ok(())
            }
        };
        match self {
            Delivery::Session => Ok(()),
            Delivery::SlackDm { team_id, user_id } => {
                slack_id("team_id", team_id)?;
                slack_id("user_id", user_id)
            }
            Delivery::SlackChannel { team_id, channel_id, user_id } => {
                slack_id("team_id", team_id)?;
                slack_id("channel_id", channel_id)?;
                slack_id("user_id", user_id)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Published; the reply has not come back yet.
    Pending,
    Succeeded,
    Failed,
    /// The slot passed while no scheduler ran, beyond the grace window.
    Missed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Pending => "pending",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Missed => "missed",
        }
    }
}

/// The last run of a job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    pub slot_unix_ms: i64,
    pub at_unix_ms: i64,
    pub outcome: RunOutcome,
    #[serde(default)]
    pub detail: String,
    /// While `Pending`: when to give up waiting for the reply and count a failure.
    #[serde(default)]
    pub deadline_unix_ms: i64,
}

/// A fire the leader claimed (with its fencing token) but has not confirmed
/// as published; a new leader re-publishes it under the same id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingFire {
    pub slot_unix_ms: i64,
    pub claimed_unix_ms: i64,
    pub fence: u64,
}

/// A scheduled job as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    pub owner: UserId,
    pub schedule: Schedule,
    pub prompt: String,
    pub agent: AgentId,
    #[serde(default)]
    pub delivery: Delivery,
    pub enabled: bool,
    /// Why the job was paused by the system (cost guard), if it was.
    #[serde(default)]
    pub paused_reason: String,
    /// When the job was created, or its schedule last changed: intervals count from here.
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    /// The next slot; `None` when the job will not fire again (an `at` job that ran).
    #[serde(default)]
    pub next_run_unix_ms: Option<i64>,
    #[serde(default)]
    pub last_run: Option<LastRun>,
    /// The newest slot ever fired: a slot at or before it never fires again.
    #[serde(default)]
    pub last_fired_slot_ms: Option<i64>,
    #[serde(default)]
    pub pending: Option<PendingFire>,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The newest slot whose outcome was counted (by the failure guard): an
    /// outcome for it or an older slot is not counted again.
    #[serde(default)]
    pub last_outcome_slot_ms: Option<i64>,
    /// Bumped by every write; writes compare it (optimistic concurrency).
    #[serde(default)]
    pub revision: u64,
}

impl Job {
    /// The compiled schedule (stored jobs were validated when written).
    pub fn compiled(&self) -> Result<Compiled, ScheduleError> {
        self.schedule.compile(self.created_unix_ms, 0)
    }

    /// Whether the scheduler should look at this job at all.
    pub fn is_active(&self) -> bool {
        self.enabled && self.next_run_unix_ms.is_some()
    }

    pub fn session_id(&self) -> String {
        job_session_id(&self.id)
    }

    /// When the scheduler must next look at this job: its next slot (if
    /// enabled), a claimed fire to finish, or a pending outcome's deadline;
    /// `None` when there is nothing to do.
    pub fn due_at(&self) -> Option<i64> {
        let next = self.next_run_unix_ms.filter(|_| self.enabled);
        let pending = self.pending.as_ref().map(|p| p.slot_unix_ms);
        let waiting = self.last_run.as_ref().filter(|r| r.outcome == RunOutcome::Pending).map(|r| r.deadline_unix_ms);
        [next, pending, waiting].into_iter().flatten().min()
    }
}

/// Checks a prompt: non-empty, bounded.
pub fn check_prompt(prompt: &str) -> Result<(), ScheduleError> {
    if prompt.trim().is_empty() {
        return Err(ScheduleError::Invalid("prompt must not be empty".into()));
    }
    let n = prompt.chars().count();
    if n > MAX_PROMPT_CHARS {
        return Err(ScheduleError::Invalid(format!("prompt is {n} characters; the limit is {MAX_PROMPT_CHARS}")));
    }
    Ok(())
}

/// Renders a Unix time in ms as RFC 3339 UTC, for messages.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map(|t| t.to_rfc3339()).unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
