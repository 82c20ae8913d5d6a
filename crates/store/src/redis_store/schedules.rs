//! Redis adapter of [`ScheduleStore`].
//!
//! ```text
//! <prefix>:{sched}:job:<tenant>:<id>        JSON Job
//! <prefix>:{sched}:jobs:<tenant>            set of the tenant's job ids
//! <prefix>:{sched}:owner:<tenant>:<user>    set of the user's job ids
//! <prefix>:{sched}:due                      sorted set of <tenant>/<id>, score = Job::due_at
//! <prefix>:{sched}:leader                   string "<token>:<holder>" (PX lease ttl)
//! <prefix>:{sched}:fence                    counter: the last leader token granted
//! ```
//!
//! Every schedule key shares the hash tag `{sched}`, so one Lua script can
//! check the leader's fencing token, the job's revision and write the job and
//! its indexes atomically, even under Redis Cluster. Scheduling traffic is a
//! few writes per fire, so one slot is plenty.

use super::RedisStore;
use super::errors::failed;
use crate::port::StoreError;
use crate::schedules::{ScheduleStore, UpdateOutcome, check_holder, due_member, parse_due_member};
use async_trait::async_trait;
use clawhive_core::schedule::{Job, JobId};
use clawhive_core::{TenantId, UserId};
use redis::{Script, cmd};
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS: job, tenant set, owner set, due. ARGV: json, id, max, member, score ("" = not due).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
return 'ok'
"#,
    )
});

/// KEYS: job, due, leader. ARGV: json, expected revision, fence ("" = none), member, score ("" = not due).
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return 'gone' end
local ok, job = pcall(cjson.decode, cur)
if not ok then return 'corrupt' end
if tostring(job['revision'] or 0) ~= ARGV[2] then return 'stale' end
if ARGV[3] ~= '' then
  local leader = redis.call('GET', KEYS[3])
  if not leader or string.match(leader, '^(%d+):') ~= ARGV[3] then return 'fenced' end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
return 'ok'
"#,
    )
});

/// KEYS: job, tenant set, owner set, due. ARGV: id, member.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
return n
"#,
    )
});

/// KEYS: leader, fence. ARGV: holder, ttl_ms. Returns the token or false.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local token, holder = string.match(cur, '^(%d+):(.*)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"#,
    )
});

/// KEYS: leader. ARGV: "<token>:<holder>".
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

struct SchedKeys<'a>(&'a str);

impl SchedKeys<'_> {
    fn job(&self, tenant: &TenantId, id: &JobId) -> String {
        format!("{}:{{sched}}:job:{tenant}:{id}", self.0)
    }
    fn tenant(&self, tenant: &TenantId) -> String {
        format!("{}:{{sched}}:jobs:{tenant}", self.0)
    }
    fn owner(&self, tenant: &TenantId, user: &UserId) -> String {
        format!("{}:{{sched}}:owner:{tenant}:{user}", self.0)
    }
    fn due(&self) -> String {
        format!("{}:{{sched}}:due", self.0)
    }
    fn leader(&self) -> String {
        format!("{}:{{sched}}:leader", self.0)
    }
    fn fence(&self) -> String {
        format!("{}:{{sched}}:fence", self.0)
    }
}

fn score(job: &Job) -> String {
    job.due_at().map(|d| d.to_string()).unwrap_or_default()
}

fn encode(job: &Job) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Invalid(format!("cannot encode job {}: {e}", job.id)))
}

fn decode(key: &str, json: &str) -> Result<Job, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("redis key {key}: {e}")))
}

impl RedisStore {
    fn sched(&self) -> SchedKeys<'_> {
        SchedKeys(self.keys.prefix())
    }
}

#[async_trait]
impl ScheduleStore for RedisStore {
    async fn create_job(&self, job: &Job, max_per_owner: usize) -> Result<Job, StoreError> {
        let mut job = job.clone();
        job.revision = 1;
        let k = self.sched();
        let out: String = CREATE
            .key(k.job(&job.tenant, &job.id))
            .key(k.tenant(&job.tenant))
            .key(k.owner(&job.tenant, &job.owner))
            .key(k.due())
            .arg(encode(&job)?)
            .arg(job.id.as_str())
            .arg(max_per_owner)
            .arg(due_member(&job.tenant, &job.id))
            .arg(score(&job))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("create job"))?;
        match out.as_str() {
            "ok" => Ok(job),
            "exists" => Err(StoreError::Conflict(format!("job {} exists in tenant {}", job.id, job.tenant))),
            _ => Err(StoreError::Invalid(format!("user {} already has {max_per_owner} jobs, the limit", job.owner))),
        }
    }

    async fn get_job(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Job>, StoreError> {
        let key = self.sched().job(tenant, id);
        let json: Option<String> =
            cmd("GET").arg(&key).query_async(&mut self.con.clone()).await.map_err(failed("GET job"))?;
        json.map(|j| decode(&key, &j)).transpose()
    }

    async fn list_jobs(&self, tenant: &TenantId, owner: Option<&UserId>) -> Result<Vec<Job>, StoreError> {
        let k = self.sched();
        let set = match owner {
            Some(u) => k.owner(tenant, u),
            None => k.tenant(tenant),
        };
        let mut ids: Vec<String> =
            cmd("SMEMBERS").arg(&set).query_async(&mut self.con.clone()).await.map_err(failed("SMEMBERS jobs"))?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> =
            ids.iter().filter_map(|i| JobId::new(i.as_str()).ok()).map(|i| k.job(tenant, &i)).collect();
        let values: Vec<Option<String>> =
            cmd("MGET").arg(&keys).query_async(&mut self.con.clone()).await.map_err(failed("MGET jobs"))?;
        keys.iter().zip(values).filter_map(|(key, v)| v.map(|v| decode(key, &v))).collect()
    }

    async fn update_job(&self, job: &Job, fence: Option<u64>) -> Result<UpdateOutcome, StoreError> {
        let mut next = job.clone();
        next.revision = job.revision + 1;
        let k = self.sched();
        let out: String = UPDATE
            .key(k.job(&job.tenant, &job.id))
            .key(k.due())
            .key(k.leader())
            .arg(encode(&next)?)
            .arg(job.revision)
            .arg(fence.map(|f| f.to_string()).unwrap_or_default())
            .arg(due_member(&job.tenant, &job.id))
            .arg(score(&next))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("update job"))?;
        Ok(match out.as_str() {
            "ok" => UpdateOutcome::Updated(Box::new(next)),
            "stale" => UpdateOutcome::Stale,
            "fenced" => UpdateOutcome::Fenced,
            "gone" => UpdateOutcome::Gone,
            _ => return Err(StoreError::Corrupt(format!("redis key {}: not a job", k.job(&job.tenant, &job.id)))),
        })
    }

    async fn delete_job(&self, tenant: &TenantId, id: &JobId) -> Result<bool, StoreError> {
        let Some(job) = self.get_job(tenant, id).await? else { return Ok(false) };
        let k = self.sched();
        let n: i64 = DELETE
            .key(k.job(tenant, id))
            .key(k.tenant(tenant))
            .key(k.owner(tenant, &job.owner))
            .key(k.due())
            .arg(id.as_str())
            .arg(due_member(tenant, id))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("delete job"))?;
        Ok(n > 0)
    }

    async fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<(TenantId, JobId)>, StoreError> {
        let members: Vec<String> = cmd("ZRANGE")
            .arg(self.sched().due())
            .arg("-inf")
            .arg(now_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("ZRANGE due jobs"))?;
        Ok(members.iter().filter_map(|m| parse_due_member(m)).collect())
    }

    async fn acquire_leadership(&self, holder: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        check_holder(holder)?;
        let k = self.sched();
        ACQUIRE
            .key(k.leader())
            .key(k.fence())
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("acquire scheduler leadership"))
    }

    async fn release_leadership(&self, holder: &str, token: u64) -> Result<(), StoreError> {
        let _: i64 = RELEASE
            .key(self.sched().leader())
            .arg(format!("{token}:{holder}"))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("release scheduler leadership"))?;
        Ok(())
    }
}
