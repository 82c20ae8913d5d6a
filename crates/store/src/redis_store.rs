//! Redis adapter of [`SessionStore`].
//!
//! - [`keys`]: the key layout; every key of a session carries `{tenant:session}`.
//! - [`scripts`]: the Lua scripts that make lease grants, fenced commits and
//!   session creation atomic.
//! - [`codec`]: decoding replies into records; bad data is `Corrupt` naming its key.
//! - [`errors`]: Redis failures as `StoreError`s, passwords scrubbed.
//!
//! The per-user session index (`{tenant}` tag, another slot) is updated with a
//! separate, idempotent `ZADD GT` after the script that changed the session, so
//! it may briefly lag; a redelivered commit repairs it. Needs Redis 6.2 or newer.

mod codec;
mod errors;
mod identity;
mod keys;
mod pairing;
mod schedules;
mod scripts;
mod secrets;

use crate::port::DailyUsage;
use crate::port::{
    BeginTurn, CommitOutcome, Lease, SessionStore, StoreError, StoredReply, TurnRecord, TurnStart, TurnState, check_day,
};
use async_trait::async_trait;
use clawhive_core::chat::Message;
use clawhive_core::config::{StoreConfig, redact_url};
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, RequestId, SessionId, SessionKey, SessionMeta, TenantId, UserId};
use errors::{failed, scrub};
use keys::{KeyLayout, META_FIELDS};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, cmd};
use scripts::{Scripts, millis};
use std::sync::Arc;
use std::time::Duration;

/// Bound on [`RedisStore::connect`], retries included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one command; a script that runs longer is a Redis in trouble.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a day's usage counter is kept.
const USAGE_TTL_SECS: u64 = 3 * 24 * 3600;

/// Sessions, leases and turn records in Redis, over one auto-reconnecting
/// multiplexed connection. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    keys: KeyLayout,
    scripts: Arc<Scripts>,
    turn_ttl_secs: u64,
    /// The URL with its password redacted, for errors and `Debug`.
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.url).field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `cfg.redis_url`; fails (within ~10 s) if Redis does not answer.
    pub async fn connect(cfg: &StoreConfig) -> Result<RedisStore, StoreError> {
        let url = redact_url(&cfg.redis_url);
        let fail = |reason: String| {
            StoreError::Unavailable(scrub(format!("cannot connect to Redis at {url}: {reason}"), &cfg.redis_url))
        };
        let keys = KeyLayout::new(&cfg.key_prefix).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "store.key_prefix {:?} must not contain '{{' or '}}': it would move the Redis Cluster hash tag",
                cfg.key_prefix
            ))
        })?;
        // TCP_NODELAY: the multiplexed connection writes small commands back to back
        // (concurrent turns, pipelined reads); Nagle would hold them for the peer's ACK.
        let info = cfg
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| fail(format!("invalid URL: {e}")))?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(|e| fail(format!("invalid URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let con = tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        Ok(RedisStore {
            con,
            keys,
            scripts: Arc::new(Scripts::new()),
            turn_ttl_secs: cfg.turn_record_ttl_secs.max(1),
            url,
        })
    }

    /// The commit script; with `release`, a commit (or a duplicate) also ends the lease.
    async fn commit(&self, lease: &Lease, turn: &TurnRecord, release: bool) -> Result<CommitOutcome, StoreError> {
        let k = self.keys.session(&lease.key);
        let turn_key = k.turn(&turn.request_id);
        let encode = |what: &str, e: serde_json::Error| codec::corrupt(&turn_key, format!("cannot encode {what}: {e}"));
        let reply = serde_json::to_string(&turn.reply).map_err(|e| encode("the reply", e))?;
        let messages = turn
            .messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| encode("a message", e))?;
        let mut call = self.scripts.commit.key(k.lease());
        call.key(&turn_key).key(k.history()).key(k.meta());
        call.arg(lease.token)
            .arg(reply)
            .arg(self.turn_ttl_secs)
            .arg(turn.user.as_str())
            .arg(turn.agent.as_str())
            .arg(now_unix_ms())
            .arg(if release { "1" } else { "0" })
            .arg(messages);
        let result: Vec<String> = call.invoke_async(&mut self.con.clone()).await.map_err(failed("commit turn"))?;
        let result: Vec<&str> = result.iter().map(String::as_str).collect();
        let (outcome, owner, updated) = match result.as_slice() {
            ["fenced"] => {
                tracing::debug!(session = %lease.key, token = lease.token, "Commit refused: the lease was taken over.");
                return Ok(CommitOutcome::Fenced);
            }
            ["dup", reply, owner, updated] => {
                (CommitOutcome::AlreadyCommitted(codec::reply(&turn_key, reply)?), *owner, *updated)
            }
            ["ok", owner, updated] => (CommitOutcome::Committed, *owner, *updated),
            ["corrupt", reason] => return Err(StoreError::Corrupt((*reason).to_string())),
            other => return Err(codec::corrupt(&turn_key, format!("unexpected commit script reply {other:?}"))),
        };
        let updated =
            updated.parse().map_err(|e| codec::corrupt(&k.meta(), format!("updated_unix_ms {updated:?}: {e}")))?;
        // The turn is durable now. The index only orders the owner's session list (the
        // session was indexed when it was created), so its update goes out on its own,
        // off the turn's path; a failure must not turn the commit into an error the
        // caller would retry, and the next commit repairs it.
        let mut index = Box::pin(self.index(&lease.key.tenant, owner, &lease.key.session, updated));
        // Polled once here, the command is queued on the connection ahead of anything
        // this store sends later (a list right after the commit sees it); the reply is
        // awaited on its own.
        let session = lease.key.clone();
        let warn = move |e: StoreError| {
            tracing::warn!(%session, error = %e, "Turn committed but the session index was not updated.");
        };
        match std::future::poll_fn(|cx| std::task::Poll::Ready(index.as_mut().poll(cx))).await {
            std::task::Poll::Ready(Err(e)) => warn(e),
            std::task::Poll::Ready(Ok(())) => {}
            std::task::Poll::Pending => {
                tokio::spawn(async move {
                    if let Err(e) = index.await {
                        warn(e);
                    }
                });
            }
        }
        Ok(outcome)
    }

    /// Adds (or moves up) `session` in `owner`'s index; never lowers its score.
    /// The returned future owns what it needs, so it can run on its own.
    fn index(
        &self,
        tenant: &TenantId,
        owner: &str,
        session: &SessionId,
        updated_ms: i64,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let zadd = UserId::new(owner).ok().map(|owner| {
            let mut zadd = cmd("ZADD");
            zadd.arg(self.keys.user_sessions(tenant, &owner)).arg("GT").arg(updated_ms).arg(session.as_str());
            zadd
        });
        let mut con = self.con.clone();
        async move {
            // No valid owner: the meta vanished between the script and now, or is corrupt; nothing to index.
            let Some(zadd) = zadd else { return Ok(()) };
            zadd.exec_async(&mut con).await.map_err(failed("ZADD session index"))
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn try_acquire_lease(
        &self,
        key: &SessionKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let k = self.keys.session(key);
        let token: Option<u64> = self
            .scripts
            .acquire
            .key(k.lease())
            .key(k.fence())
            .arg(millis(ttl))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("acquire lease"))?;
        Ok(token.map(|token| Lease { key: key.clone(), holder: holder.to_string(), token }))
    }

    async fn begin_turn(&self, begin: &BeginTurn<'_>) -> Result<Option<TurnStart>, StoreError> {
        let k = self.keys.session(begin.key);
        let (meta_key, history_key, turn_key) = (k.meta(), k.history(), k.turn(begin.request_id));
        // Lua's GET of a missing key is `false`, which Redis returns as nil.
        type Reply = Option<(u64, Option<String>, Vec<Option<String>>, Vec<String>)>;
        let reply: Reply = self
            .scripts
            .begin
            .key(k.lease())
            .key(k.fence())
            .key(&turn_key)
            .key(&meta_key)
            .key(&history_key)
            .arg(millis(begin.ttl))
            .arg(begin.history_limit)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("begin turn"))?;
        let Some((token, committed, fields, entries)) = reply else { return Ok(None) };
        let lease = Lease { key: begin.key.clone(), holder: begin.holder.to_string(), token };
        let read = || -> Result<_, StoreError> {
            let committed = committed.map(|json| codec::reply(&turn_key, &json)).transpose()?;
            let meta = codec::meta(begin.key, &meta_key, fields)?;
            let history = codec::history(&history_key, &entries)?;
            Ok((committed, meta, history))
        };
        let state = match read() {
            Ok((committed, Some(meta), history)) => Ok(TurnState { committed, meta, history }),
            // A session nobody created yet (the ingress usually has): create it now.
            Ok((committed, None, history)) => self
                .ensure_session(begin.key, begin.owner, begin.agent)
                .await
                .map(|meta| TurnState { committed, meta, history }),
            Err(e) => Err(e),
        };
        Ok(Some(TurnStart { lease, state }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let k = self.keys.session(&lease.key);
        let renewed: i64 = self
            .scripts
            .renew
            .key(k.lease())
            .arg(lease.token)
            .arg(millis(ttl))
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("renew lease"))?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let k = self.keys.session(&lease.key);
        self.scripts
            .release
            .key(k.lease())
            .arg(lease.token)
            .invoke_async::<i64>(&mut self.con.clone())
            .await
            .map(drop)
            .map_err(failed("release lease"))
    }

    async fn ensure_session(
        &self,
        key: &SessionKey,
        owner: &UserId,
        agent: &AgentId,
    ) -> Result<SessionMeta, StoreError> {
        let meta_key = self.keys.session(key).meta();
        let mut fields: Vec<Option<String>> = self
            .scripts
            .ensure
            .key(&meta_key)
            .arg(owner.as_str())
            .arg(agent.as_str())
            .arg(now_unix_ms())
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("ensure session"))?;
        let created = fields.pop().flatten().as_deref() == Some("1");
        let meta = codec::meta(key, &meta_key, fields)?
            .ok_or_else(|| codec::corrupt(&meta_key, "missing right after creation"))?;
        // Every turn ensures its session (gateway and worker); only a new one needs
        // indexing now, an existing one is indexed by its commits.
        if created {
            self.index(&key.tenant, meta.owner.as_str(), &key.session, meta.updated_unix_ms).await?;
        }
        Ok(meta)
    }

    async fn session_meta(&self, key: &SessionKey) -> Result<Option<SessionMeta>, StoreError> {
        let meta_key = self.keys.session(key).meta();
        let fields: Vec<Option<String>> = cmd("HMGET")
            .arg(&meta_key)
            .arg(&META_FIELDS)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HMGET meta"))?;
        codec::meta(key, &meta_key, fields)
    }

    async fn history(&self, key: &SessionKey, limit: usize) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            // LRANGE -0 -1 would be the whole list.
            return Ok(Vec::new());
        }
        let history_key = self.keys.session(key).history();
        let start = -i64::try_from(limit).unwrap_or(i64::MAX);
        let entries: Vec<String> = cmd("LRANGE")
            .arg(&history_key)
            .arg(start)
            .arg(-1)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("LRANGE history"))?;
        codec::history(&history_key, &entries)
    }

    async fn committed_turn(
        &self,
        key: &SessionKey,
        request_id: &RequestId,
    ) -> Result<Option<StoredReply>, StoreError> {
        let turn_key = self.keys.session(key).turn(request_id);
        let json: Option<String> =
            cmd("GET").arg(&turn_key).query_async(&mut self.con.clone()).await.map_err(failed("GET turn record"))?;
        json.map(|json| codec::reply(&turn_key, &json)).transpose()
    }

    async fn commit_turn(&self, lease: &Lease, turn: &TurnRecord) -> Result<CommitOutcome, StoreError> {
        self.commit(lease, turn, false).await
    }

    async fn finish_turn(&self, lease: &Lease, turn: &TurnRecord) -> Result<CommitOutcome, StoreError> {
        self.commit(lease, turn, true).await
    }

    async fn list_sessions(&self, tenant: &TenantId, owner: &UserId) -> Result<Vec<SessionMeta>, StoreError> {
        let index_key = self.keys.user_sessions(tenant, owner);
        let ids: Vec<String> = cmd("ZREVRANGE")
            .arg(&index_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("ZREVRANGE session index"))?;
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            match SessionId::new(id.as_str()) {
                Ok(session) => keys.push(SessionKey::new(tenant.clone(), session)),
                Err(e) => {
                    tracing::warn!(key = %index_key, id, error = %e, "Skipping an invalid session id in the index.")
                }
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HMGET").arg(self.keys.session(key).meta()).arg(&META_FIELDS);
        }
        let all: Vec<Vec<Option<String>>> =
            pipe.query_async(&mut self.con.clone()).await.map_err(failed("HMGET metas"))?;
        let mut sessions = Vec::with_capacity(keys.len());
        for (key, fields) in keys.iter().zip(all) {
            if let Some(meta) = codec::meta(key, &self.keys.session(key).meta(), fields)?
                && meta.owner == *owner
            {
                sessions.push(meta);
            }
        }
        // The index score can lag the meta if an index update failed after a commit.
        sessions.sort_by_key(|m| std::cmp::Reverse(m.updated_unix_ms));
        Ok(sessions)
    }

    async fn reset_session(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let k = self.keys.session(key);
        let existed: i64 = self
            .scripts
            .reset
            .key(k.meta())
            .key(k.history())
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("reset session"))?;
        Ok(existed == 1)
    }

    async fn add_usage(
        &self,
        tenant: &TenantId,
        user: &UserId,
        day: &str,
        tokens: u64,
    ) -> Result<DailyUsage, StoreError> {
        check_day(day)?;
        let (user_key, tenant_key) = (self.keys.usage(tenant, user, day), self.keys.tenant_usage(tenant, day));
        let tokens =
            i64::try_from(tokens).map_err(|_| StoreError::Invalid(format!("token count {tokens} too large")))?;
        // Both keys share the tenant's hash tag, so the script works on a cluster too.
        let (user_total, tenant_total): (i64, i64) = self
            .scripts
            .add_usage
            .key(&user_key)
            .key(&tenant_key)
            .arg(tokens)
            .arg(USAGE_TTL_SECS)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("INCRBY usage"))?;
        Ok(DailyUsage { user: user_total.max(0) as u64, tenant: tenant_total.max(0) as u64 })
    }

    async fn usage(&self, tenant: &TenantId, user: &UserId, day: &str) -> Result<DailyUsage, StoreError> {
        check_day(day)?;
        let (user_key, tenant_key) = (self.keys.usage(tenant, user, day), self.keys.tenant_usage(tenant, day));
        let (u, t): (Option<i64>, Option<i64>) = cmd("MGET")
            .arg(&user_key)
            .arg(&tenant_key)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("MGET usage"))?;
        Ok(DailyUsage { user: u.unwrap_or(0).max(0) as u64, tenant: t.unwrap_or(0).max(0) as u64 })
    }

    async fn count_turn(&self, tenant: &TenantId, user: &UserId, minute: i64) -> Result<u64, StoreError> {
        let key = self.keys.rate(tenant, user, minute);
        let (count,): (i64,) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(120)
            .ignore()
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("INCR rate"))?;
        Ok(count.max(0) as u64)
    }

    async fn policy_doc(&self, tenant: &TenantId) -> Result<Option<crate::port::PolicyDoc>, StoreError> {
        let key = self.keys.policy(tenant);
        let (text, version, updated): (Option<String>, Option<u64>, Option<i64>) = cmd("HMGET")
            .arg(&key)
            .arg("text")
            .arg("version")
            .arg("updated")
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HMGET policy"))?;
        Ok(text.map(|text| crate::port::PolicyDoc {
            text,
            version: version.unwrap_or(0),
            updated_unix_ms: updated.unwrap_or(0),
        }))
    }

    async fn put_policy_doc(&self, tenant: &TenantId, text: &str) -> Result<u64, StoreError> {
        if text.len() > crate::port::MAX_POLICY_BYTES {
            return Err(StoreError::Invalid(format!("a policy is at most {} bytes", crate::port::MAX_POLICY_BYTES)));
        }
        let (key, counter) = (self.keys.policy(tenant), self.keys.policy_version(tenant));
        // One script, so text and version always change together.
        let script = redis::Script::new(
            "local v = redis.call('INCR', KEYS[2]) \
             redis.call('HSET', KEYS[1], 'text', ARGV[1], 'updated', ARGV[2], 'version', v) return v",
        );
        let version: u64 = script
            .key(&key)
            .key(&counter)
            .arg(text)
            .arg(clawhive_core::time::now_unix_ms())
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(failed("put policy"))?;
        Ok(version)
    }

    async fn delete_policy_doc(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let n: i64 = cmd("DEL")
            .arg(self.keys.policy(tenant))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("DEL policy"))?;
        Ok(n == 1)
    }

    async fn health(&self) -> Result<(), StoreError> {
        let (ping, mut con) = (cmd("PING"), self.con.clone());
        match tokio::time::timeout(HEALTH_TIMEOUT, ping.query_async::<String>(&mut con)).await {
            Ok(Ok(pong)) if pong == "PONG" => Ok(()),
            Ok(Ok(other)) => {
                Err(StoreError::Unavailable(format!("Redis at {} answered PING with {other:?}", self.url)))
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("Redis at {} failed PING: {e}", self.url))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis at {} did not answer PING within {HEALTH_TIMEOUT:?}",
                self.url
            ))),
        }
    }
}
