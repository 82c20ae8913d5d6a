//! Embedded adapter of [`ScheduleStore`]: two more redb tables.
//!
//! ```text
//! schedule_jobs  (tenant, id)  -> JSON Job
//! schedule_meta  name          -> "fence": last leader token; "leader": "<token>:<holder>:<expires_ms>"
//! ```
//!
//! One process holds the file, so the due list is a scan of the jobs (a
//! single machine has few) and the leader lease, kept in the file with its
//! expiry, only ever changes hands within that process. Each operation is one
//! transaction, as in Redis each is one script.

use super::tables::{decode, encode};
use super::{EmbeddedStore, Inner};
use crate::port::StoreError;
use crate::schedules::{ScheduleStore, UpdateOutcome, check_holder};
use async_trait::async_trait;
use clawhive_core::schedule::{Job, JobId};
use clawhive_core::time::now_unix_ms;
use clawhive_core::{TenantId, UserId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::time::Duration;

const JOBS: TableDefinition<(&str, &str), &str> = TableDefinition::new("schedule_jobs");
const META: TableDefinition<&str, &str> = TableDefinition::new("schedule_meta");

/// Creates the schedule tables.
pub(super) fn init(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin schedule init"))?;
    txn.open_table(JOBS).map_err(inner.fail("create table schedule_jobs"))?;
    txn.open_table(META).map_err(inner.fail("create table schedule_meta"))?;
    txn.commit().map_err(inner.fail("commit schedule init"))
}

fn shown(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn all_jobs(inner: &Inner, tenant: Option<&TenantId>) -> Result<Vec<Job>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read jobs"))?;
    let jobs = txn.open_table(JOBS).map_err(inner.fail("open schedule_jobs"))?;
    let mut out = Vec::new();
    let iter = match tenant {
        Some(t) => jobs.range((t.as_str(), "")..).map_err(inner.fail("scan jobs"))?,
        None => jobs.iter().map_err(inner.fail("scan jobs"))?,
    };
    for row in iter {
        let (k, v) = row.map_err(inner.fail("read job"))?;
        let (t, id) = k.value();
        if tenant.is_some_and(|want| want.as_str() != t) {
            break;
        }
        out.push(decode::<Job>("schedule_jobs", shown(t, id), v.value())?);
    }
    Ok(out)
}

/// The current leader `(token, holder)` if its lease has not expired.
fn leader(
    meta: &impl ReadableTable<&'static str, &'static str>,
    inner: &Inner,
) -> Result<Option<(u64, String)>, StoreError> {
    let Some(v) = meta.get("leader").map_err(inner.fail("read leader"))? else { return Ok(None) };
    let v = v.value().to_string();
    let mut parts = v.splitn(3, ':');
    let (Some(token), Some(expires), Some(holder)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (Ok(token), Ok(expires)) = (token.parse::<u64>(), expires.parse::<i64>()) else { return Ok(None) };
    Ok((expires > now_unix_ms()).then(|| (token, holder.to_string())))
}

fn create_job(inner: &Inner, job: &Job, max: usize) -> Result<Job, StoreError> {
    let mut job = job.clone();
    job.revision = 1;
    let txn = inner.db.begin_write().map_err(inner.fail("begin create job"))?;
    {
        let mut jobs = txn.open_table(JOBS).map_err(inner.fail("open schedule_jobs"))?;
        let key = (job.tenant.as_str(), job.id.as_str());
        if jobs.get(key).map_err(inner.fail("read job"))?.is_some() {
            return Err(StoreError::Conflict(format!("job {} exists in tenant {}", job.id, job.tenant)));
        }
        let mut owned = 0;
        for row in jobs.range((key.0, "")..).map_err(inner.fail("scan jobs"))? {
            let (k, v) = row.map_err(inner.fail("read job"))?;
            let (t, id) = k.value();
            if t != key.0 {
                break;
            }
            let other: Job = decode("schedule_jobs", shown(t, id), v.value())?;
            owned += usize::from(other.owner == job.owner);
        }
        if owned >= max {
            return Err(StoreError::Invalid(format!("user {} already has {max} jobs, the limit", job.owner)));
        }
        let json = encode("schedule_jobs", shown(key.0, key.1), &job)?;
        jobs.insert(key, json.as_str()).map_err(inner.fail("write job"))?;
    }
    txn.commit().map_err(inner.fail("commit create job"))?;
    Ok(job)
}

fn update_job(inner: &Inner, job: &Job, fence: Option<u64>) -> Result<UpdateOutcome, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin update job"))?;
    let outcome = {
        let mut jobs = txn.open_table(JOBS).map_err(inner.fail("open schedule_jobs"))?;
        let meta = txn.open_table(META).map_err(inner.fail("open schedule_meta"))?;
        let key = (job.tenant.as_str(), job.id.as_str());
        let current = match jobs.get(key).map_err(inner.fail("read job"))? {
            Some(v) => decode::<Job>("schedule_jobs", shown(key.0, key.1), v.value())?,
            None => return Ok(UpdateOutcome::Gone),
        };
        if current.revision != job.revision {
            return Ok(UpdateOutcome::Stale);
        }
        if let Some(f) = fence
            && leader(&meta, inner)?.is_none_or(|(token, _)| token != f)
        {
            return Ok(UpdateOutcome::Fenced);
        }
        let mut next = job.clone();
        next.revision = job.revision + 1;
        let json = encode("schedule_jobs", shown(key.0, key.1), &next)?;
        jobs.insert(key, json.as_str()).map_err(inner.fail("write job"))?;
        UpdateOutcome::Updated(Box::new(next))
    };
    txn.commit().map_err(inner.fail("commit update job"))?;
    Ok(outcome)
}

fn delete_job(inner: &Inner, tenant: &TenantId, id: &JobId) -> Result<bool, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin delete job"))?;
    let existed = {
        let mut jobs = txn.open_table(JOBS).map_err(inner.fail("open schedule_jobs"))?;
        jobs.remove((tenant.as_str(), id.as_str())).map_err(inner.fail("delete job"))?.is_some()
    };
    txn.commit().map_err(inner.fail("commit delete job"))?;
    Ok(existed)
}

fn acquire(inner: &Inner, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin acquire leadership"))?;
    let token = {
        let mut meta = txn.open_table(META).map_err(inner.fail("open schedule_meta"))?;
        let expires = now_unix_ms() + ttl.as_millis() as i64;
        let token = match leader(&meta, inner)? {
            Some((token, h)) if h == holder => token,
            Some(_) => return Ok(None),
            None => {
                let last = match meta.get("fence").map_err(inner.fail("read fence"))? {
                    Some(v) => v.value().parse::<u64>().unwrap_or(0),
                    None => 0,
                };
                let token = last + 1;
                meta.insert("fence", token.to_string().as_str()).map_err(inner.fail("write fence"))?;
                token
            }
        };
        meta.insert("leader", format!("{token}:{expires}:{holder}").as_str()).map_err(inner.fail("write leader"))?;
        token
    };
    txn.commit().map_err(inner.fail("commit acquire leadership"))?;
    Ok(Some(token))
}

fn release(inner: &Inner, holder: &str, token: u64) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin release leadership"))?;
    {
        let mut meta = txn.open_table(META).map_err(inner.fail("open schedule_meta"))?;
        if leader(&meta, inner)?.is_some_and(|(t, h)| t == token && h == holder) {
            meta.remove("leader").map_err(inner.fail("delete leader"))?;
        }
    }
    txn.commit().map_err(inner.fail("commit release leadership"))
}

#[async_trait]
impl ScheduleStore for EmbeddedStore {
    async fn create_job(&self, job: &Job, max_per_owner: usize) -> Result<Job, StoreError> {
        let job = job.clone();
        self.run("create job", move |inner| create_job(inner, &job, max_per_owner)).await
    }

    async fn get_job(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Job>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.run("read job", move |inner| {
            let txn = inner.db.begin_read().map_err(inner.fail("begin read job"))?;
            let jobs = txn.open_table(JOBS).map_err(inner.fail("open schedule_jobs"))?;
            let got = jobs.get((tenant.as_str(), id.as_str())).map_err(inner.fail("read job"))?;
            got.map(|v| decode("schedule_jobs", shown(tenant.as_str(), id.as_str()), v.value())).transpose()
        })
        .await
    }

    async fn list_jobs(&self, tenant: &TenantId, owner: Option<&UserId>) -> Result<Vec<Job>, StoreError> {
        let (tenant, owner) = (tenant.clone(), owner.cloned());
        self.run("list jobs", move |inner| {
            let mut jobs = all_jobs(inner, Some(&tenant))?;
            jobs.retain(|j| owner.as_ref().is_none_or(|o| &j.owner == o));
            Ok(jobs)
        })
        .await
    }

    async fn update_job(&self, job: &Job, fence: Option<u64>) -> Result<UpdateOutcome, StoreError> {
        let job = job.clone();
        self.run("update job", move |inner| update_job(inner, &job, fence)).await
    }

    async fn delete_job(&self, tenant: &TenantId, id: &JobId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.run("delete job", move |inner| delete_job(inner, &tenant, &id)).await
    }

    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, JobId)>, StoreError> {
        self.run("list due jobs", move |inner| {
            let mut due: Vec<(i64, TenantId, JobId)> = all_jobs(inner, None)?
                .into_iter()
                .filter_map(|j| j.due_at().filter(|d| *d <= now_ms).map(|d| (d, j.tenant, j.id)))
                .collect();
            due.sort();
            Ok(due.into_iter().take(limit).map(|(_, t, j)| (t, j)).collect())
        })
        .await
    }

    async fn acquire_leadership(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        check_holder(holder)?;
        let holder = holder.to_string();
        self.run("acquire leadership", move |inner| acquire(inner, &holder, ttl)).await
    }

    async fn release_leadership(&self, holder: &str, token: u64) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.run("release leadership", move |inner| release(inner, &holder, token)).await
    }
}
