//! The store operations as synchronous redb transactions; [`super::EmbeddedStore`]
//! runs them on the blocking pool. Each operation is one transaction, and the
//! write transactions of one database run one at a time, which is what makes a
//! check and the write it guards atomic (as the Lua scripts do in Redis).

use super::Inner;
use super::tables::{
    Expiry, FENCE, HISTORY, META, POLICIES, POLICY_VERSIONS, RATE, TURNS, TurnEntry, USAGE, USER_SESSIONS, decode,
    encode,
};
use crate::port::{CommitOutcome, DailyUsage, Lease, StoreError, StoredReply};
use clawhive_core::chat::Message;
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, RequestId, SessionId, SessionKey, SessionMeta, TenantId, UserId};
use redb::{ReadableDatabase, ReadableTable, Table};
use std::time::Duration;

/// A turn to commit, its JSON already encoded.
pub(super) struct EncodedTurn {
    pub(super) request_id: RequestId,
    pub(super) user: UserId,
    pub(super) agent: AgentId,
    pub(super) messages: Vec<String>,
    pub(super) reply: StoredReply,
}

fn k(key: &SessionKey) -> (&str, &str) {
    (key.tenant.as_str(), key.session.as_str())
}

/// Creates the tables and drops expired turn records.
pub(super) fn init(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin init"))?;
    txn.open_table(META).map_err(inner.fail("create table meta"))?;
    txn.open_table(HISTORY).map_err(inner.fail("create table history"))?;
    txn.open_table(USER_SESSIONS).map_err(inner.fail("create table user_sessions"))?;
    {
        // A new fencing epoch for this run, above every token granted before
        // (older files kept one token per session here; they are folded in).
        let mut fence = txn.open_table(FENCE).map_err(inner.fail("create table fence"))?;
        let mut last = 0u64;
        for entry in fence.iter().map_err(inner.fail("read fence"))? {
            let (_, token) = entry.map_err(inner.fail("read fence"))?;
            last = last.max(token.value());
        }
        let epoch = (last >> 32).checked_add(1).ok_or_else(|| StoreError::Corrupt("fence epoch overflow".into()))?;
        let base = epoch.checked_shl(32).filter(|b| b >> 32 == epoch).ok_or_else(|| {
            StoreError::Corrupt(format!("{}: fence epoch {epoch} is out of range", inner.path.display()))
        })?;
        fence.retain(|_, _| false).map_err(inner.fail("fold old fences"))?;
        fence.insert(("", ""), base).map_err(inner.fail("write fence epoch"))?;
        inner.fence.store(base, std::sync::atomic::Ordering::SeqCst);
    }
    txn.open_table(POLICIES).map_err(inner.fail("create table policies"))?;
    txn.open_table(POLICY_VERSIONS).map_err(inner.fail("create table policy_versions"))?;
    {
        // Rate counters only matter for the current minute.
        let mut rate = txn.open_table(RATE).map_err(inner.fail("create table rate"))?;
        let this_minute = now_unix_ms() / 60_000;
        rate.retain(|(_, _, minute), _| minute >= this_minute - 1).map_err(inner.fail("purge old rate counters"))?;
    }
    {
        let mut usage = txn.open_table(USAGE).map_err(inner.fail("create table usage"))?;
        // Days are YYYY-MM-DD, so they compare as strings; keep the last few only.
        let oldest_kept = clawhive_core::time::utc_day(now_unix_ms() - USAGE_KEEP_MS);
        usage.retain(|(_, _, day), _| day >= oldest_kept.as_str()).map_err(inner.fail("purge old usage"))?;
    }
    {
        let mut turns = txn.open_table(TURNS).map_err(inner.fail("create table turns"))?;
        let now = now_unix_ms();
        // Entries that do not decode are kept, to be reported as corrupt when read.
        turns
            .retain(|_, json| serde_json::from_str::<Expiry>(json).map_or(true, |e| e.expires_unix_ms > now))
            .map_err(inner.fail("purge expired turns"))?;
    }
    txn.commit().map_err(inner.fail("commit init"))
}

pub(super) fn try_acquire_lease(inner: &Inner, key: &SessionKey, holder: &str, ttl: Duration) -> Option<Lease> {
    // Leases live in memory (they die with the process); tokens come from this
    // run's counter above its persisted epoch, so nothing is written here.
    let mut leases = inner.leases.lock();
    if leases.is_held(key) {
        return None;
    }
    let token = inner.fence.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    leases.grant(key, token, ttl);
    Some(Lease { key: key.clone(), holder: holder.to_string(), token })
}

/// Commits `txn` without waiting for the disk (redb's `Durability::None`): a later
/// durable commit, the flusher or closing the store persists it. Stays durable if redb refuses.
fn not_durable(inner: &Inner, txn: &mut redb::WriteTransaction) {
    match txn.set_durability(redb::Durability::None) {
        Ok(()) => inner.dirty.store(true, std::sync::atomic::Ordering::Release),
        Err(e) => tracing::debug!(error = %e, "Keeping a durable commit."),
    }
}

/// A session write: not durable under group commit (`flush_every` > 0), else durable.
fn session_write(inner: &Inner, txn: &mut redb::WriteTransaction) {
    if !inner.flush_every.is_zero() {
        not_durable(inner, txn);
    }
}

fn read_meta(
    table: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    inner: &Inner,
    key: &SessionKey,
) -> Result<Option<SessionMeta>, StoreError> {
    let guard = table.get(k(key)).map_err(inner.fail("read meta"))?;
    guard.map(|g| decode("meta", key, g.value())).transpose()
}

fn write_meta(
    table: &mut Table<'_, (&'static str, &'static str), &'static str>,
    inner: &Inner,
    meta: &SessionMeta,
) -> Result<(), StoreError> {
    let json = encode("meta", &meta.key, meta)?;
    table.insert(k(&meta.key), json.as_str()).map_err(inner.fail("write meta"))?;
    Ok(())
}

fn index(
    table: &mut Table<'_, (&'static str, &'static str, &'static str), i64>,
    inner: &Inner,
    meta: &SessionMeta,
) -> Result<(), StoreError> {
    let key = (meta.key.tenant.as_str(), meta.owner.as_str(), meta.key.session.as_str());
    table.insert(key, meta.updated_unix_ms).map_err(inner.fail("write user_sessions"))?;
    Ok(())
}

pub(super) fn ensure_session(
    inner: &Inner,
    key: &SessionKey,
    owner: &UserId,
    agent: &AgentId,
) -> Result<SessionMeta, StoreError> {
    if let Some(meta) = session_meta(inner, key)? {
        return Ok(meta);
    }
    let mut txn = inner.db.begin_write().map_err(inner.fail("begin ensure session"))?;
    session_write(inner, &mut txn);
    let meta = {
        let mut metas = txn.open_table(META).map_err(inner.fail("open meta"))?;
        if let Some(meta) = read_meta(&metas, inner, key)? {
            // Another creator won between our read and our write transaction.
            return Ok(meta);
        }
        let now = now_unix_ms();
        let meta = SessionMeta {
            key: key.clone(),
            owner: owner.clone(),
            agent: agent.clone(),
            created_unix_ms: now,
            updated_unix_ms: now,
            message_count: 0,
        };
        write_meta(&mut metas, inner, &meta)?;
        index(&mut txn.open_table(USER_SESSIONS).map_err(inner.fail("open user_sessions"))?, inner, &meta)?;
        meta
    };
    txn.commit().map_err(inner.fail("commit ensure session"))?;
    Ok(meta)
}

pub(super) fn session_meta(inner: &Inner, key: &SessionKey) -> Result<Option<SessionMeta>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    read_meta(&txn.open_table(META).map_err(inner.fail("open meta"))?, inner, key)
}

pub(super) fn history(inner: &Inner, key: &SessionKey, limit: usize) -> Result<Vec<Message>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let table = txn.open_table(HISTORY).map_err(inner.fail("open history"))?;
    let (t, s) = k(key);
    let mut newest_first = Vec::new();
    for entry in table.range((t, s, 0)..=(t, s, u64::MAX)).map_err(inner.fail("read history"))?.rev().take(limit) {
        let (seq, json) = entry.map_err(inner.fail("read history"))?;
        let seq = seq.value().2;
        newest_first.push(decode::<Message>("history", format_args!("{key}#{seq}"), json.value())?);
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// The stored reply of `request_id`, unless absent or expired.
fn read_turn(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static str>,
    inner: &Inner,
    key: &SessionKey,
    request_id: &RequestId,
) -> Result<Option<StoredReply>, StoreError> {
    let (t, s) = k(key);
    let Some(guard) = table.get((t, s, request_id.as_str())).map_err(inner.fail("read turn"))? else {
        return Ok(None);
    };
    let entry: TurnEntry = decode("turns", format_args!("{key}#{request_id}"), guard.value())?;
    Ok((entry.expires_unix_ms > now_unix_ms()).then_some(entry.reply))
}

pub(super) fn committed_turn(
    inner: &Inner,
    key: &SessionKey,
    request_id: &RequestId,
) -> Result<Option<StoredReply>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    read_turn(&txn.open_table(TURNS).map_err(inner.fail("open turns"))?, inner, key, request_id)
}

pub(super) fn commit_turn(inner: &Inner, lease: &Lease, turn: &EncodedTurn) -> Result<CommitOutcome, StoreError> {
    let key = &lease.key;
    let (t, s) = k(key);
    let mut txn = inner.db.begin_write().map_err(inner.fail("begin commit turn"))?;
    session_write(inner, &mut txn);
    // Checked under the write lock: a rival cannot be granted the lease (which
    // needs the write lock too) until this transaction is over.
    if !inner.leases.lock().is_current(lease) {
        tracing::debug!(session = %key, token = lease.token, "Commit refused: the lease was taken over.");
        return Ok(CommitOutcome::Fenced);
    }
    {
        let mut turns = txn.open_table(TURNS).map_err(inner.fail("open turns"))?;
        if let Some(reply) = read_turn(&turns, inner, key, &turn.request_id)? {
            return Ok(CommitOutcome::AlreadyCommitted(reply));
        }
        let mut metas = txn.open_table(META).map_err(inner.fail("open meta"))?;
        let now = now_unix_ms();
        let mut meta = read_meta(&metas, inner, key)?.unwrap_or_else(|| SessionMeta {
            key: key.clone(),
            owner: turn.user.clone(),
            agent: turn.agent.clone(),
            created_unix_ms: now,
            updated_unix_ms: now,
            message_count: 0,
        });

        let mut history = txn.open_table(HISTORY).map_err(inner.fail("open history"))?;
        // O(log n): only the last entry is read to find the next sequence number.
        let last = match history.range((t, s, 0)..=(t, s, u64::MAX)).map_err(inner.fail("read history"))?.next_back() {
            Some(entry) => Some(entry.map_err(inner.fail("read history"))?.0.value().2),
            None => None,
        };
        let mut seq = last.map_or(0, |last| last.saturating_add(1));
        for json in &turn.messages {
            history.insert((t, s, seq), json.as_str()).map_err(inner.fail("append history"))?;
            seq = seq.saturating_add(1);
        }

        let reply_id = format_args!("{key}#{}", turn.request_id).to_string();
        let ttl_ms = i64::try_from(inner.turn_ttl.as_millis()).unwrap_or(i64::MAX);
        let entry = TurnEntry { reply: turn.reply.clone(), expires_unix_ms: now.saturating_add(ttl_ms) };
        let json = encode("turns", &reply_id, &entry)?;
        turns.insert((t, s, turn.request_id.as_str()), json.as_str()).map_err(inner.fail("write turn"))?;

        // Clocks may disagree (and go back); updated_unix_ms never does.
        meta.updated_unix_ms = meta.updated_unix_ms.max(now);
        let added = u32::try_from(turn.messages.len()).unwrap_or(u32::MAX);
        meta.message_count = meta.message_count.saturating_add(added);
        write_meta(&mut metas, inner, &meta)?;
        index(&mut txn.open_table(USER_SESSIONS).map_err(inner.fail("open user_sessions"))?, inner, &meta)?;
    }
    txn.commit().map_err(inner.fail("commit turn"))?;
    Ok(CommitOutcome::Committed)
}

pub(super) fn list_sessions(inner: &Inner, tenant: &TenantId, owner: &UserId) -> Result<Vec<SessionMeta>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let index = txn.open_table(USER_SESSIONS).map_err(inner.fail("open user_sessions"))?;
    let metas = txn.open_table(META).map_err(inner.fail("open meta"))?;
    let (t, u) = (tenant.as_str(), owner.as_str());
    let mut sessions = Vec::new();
    for entry in index.range((t, u, "")..).map_err(inner.fail("read user_sessions"))? {
        let (entry, _) = entry.map_err(inner.fail("read user_sessions"))?;
        let (et, eu, session) = entry.value();
        if (et, eu) != (t, u) {
            break;
        }
        let key = match SessionId::new(session) {
            Ok(id) => SessionKey::new(tenant.clone(), id),
            Err(e) => {
                tracing::warn!(tenant = t, user = u, session, error = %e, "Skipping an invalid session id in the index.");
                continue;
            }
        };
        if let Some(meta) = read_meta(&metas, inner, &key)?
            && meta.owner == *owner
        {
            sessions.push(meta);
        }
    }
    sessions.sort_by_key(|m| std::cmp::Reverse(m.updated_unix_ms));
    Ok(sessions)
}

pub(super) fn reset_session(inner: &Inner, key: &SessionKey) -> Result<bool, StoreError> {
    let (t, s) = k(key);
    let txn = inner.db.begin_write().map_err(inner.fail("begin reset session"))?;
    let existed = {
        let mut history = txn.open_table(HISTORY).map_err(inner.fail("open history"))?;
        history.retain_in((t, s, 0)..=(t, s, u64::MAX), |_, _| false).map_err(inner.fail("clear history"))?;
        let mut metas = txn.open_table(META).map_err(inner.fail("open meta"))?;
        match read_meta(&metas, inner, key)? {
            Some(mut meta) => {
                meta.message_count = 0;
                write_meta(&mut metas, inner, &meta)?;
                true
            }
            None => false,
        }
    };
    txn.commit().map_err(inner.fail("commit reset session"))?;
    Ok(existed)
}

pub(super) fn health(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    txn.open_table(META).map_err(inner.fail("open meta"))?;
    Ok(())
}

/// How long a day's usage is kept (like the Redis counters' expiry).
const USAGE_KEEP_MS: i64 = 3 * 24 * 3600 * 1000;

/// The tenant-wide counter's user field: empty, which no user id can be.
const TENANT_TOTAL: &str = "";

pub(super) fn add_usage(
    inner: &Inner,
    tenant: &TenantId,
    user: &UserId,
    day: &str,
    tokens: u64,
) -> Result<DailyUsage, StoreError> {
    let mut txn = inner.db.begin_write().map_err(inner.fail("begin add usage"))?;
    // Counted right after a durable commit: the next commit (or closing the file)
    // persists it; a crash in between under-counts, like a failed add.
    not_durable(inner, &mut txn);
    let totals = {
        let mut usage = txn.open_table(USAGE).map_err(inner.fail("open usage"))?;
        let mut bump = |who: &str| -> Result<u64, StoreError> {
            let key = (tenant.as_str(), who, day);
            let old = usage.get(key).map_err(inner.fail("read usage"))?.map(|g| g.value()).unwrap_or(0);
            let total = old.saturating_add(tokens);
            usage.insert(key, total).map_err(inner.fail("write usage"))?;
            Ok(total)
        };
        DailyUsage { user: bump(user.as_str())?, tenant: bump(TENANT_TOTAL)? }
    };
    txn.commit().map_err(inner.fail("commit add usage"))?;
    Ok(totals)
}

pub(super) fn usage(inner: &Inner, tenant: &TenantId, user: &UserId, day: &str) -> Result<DailyUsage, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read usage"))?;
    let usage = txn.open_table(USAGE).map_err(inner.fail("open usage"))?;
    let get = |who: &str| -> Result<u64, StoreError> {
        Ok(usage.get((tenant.as_str(), who, day)).map_err(inner.fail("read usage"))?.map(|g| g.value()).unwrap_or(0))
    };
    Ok(DailyUsage { user: get(user.as_str())?, tenant: get(TENANT_TOTAL)? })
}

pub(super) fn count_turn(inner: &Inner, tenant: &TenantId, user: &UserId, minute: i64) -> Result<u64, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin count turn"))?;
    let count = {
        let mut rate = txn.open_table(RATE).map_err(inner.fail("open rate"))?;
        // Drop this user's older minutes, so the table stays small between restarts.
        let old: Vec<i64> = rate
            .range((tenant.as_str(), user.as_str(), i64::MIN)..(tenant.as_str(), user.as_str(), minute))
            .map_err(inner.fail("scan rate"))?
            .filter_map(|e| e.ok().map(|(k, _)| k.value().2))
            .collect();
        for m in old {
            rate.remove((tenant.as_str(), user.as_str(), m)).map_err(inner.fail("purge rate"))?;
        }
        let key = (tenant.as_str(), user.as_str(), minute);
        let count = rate.get(key).map_err(inner.fail("read rate"))?.map(|g| g.value()).unwrap_or(0) + 1;
        rate.insert(key, count).map_err(inner.fail("write rate"))?;
        count
    };
    txn.commit().map_err(inner.fail("commit count turn"))?;
    Ok(count)
}

pub(super) fn policy_doc(inner: &Inner, tenant: &TenantId) -> Result<Option<crate::port::PolicyDoc>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read policy"))?;
    let table = txn.open_table(POLICIES).map_err(inner.fail("open policies"))?;
    match table.get(tenant.as_str()).map_err(inner.fail("read policy"))? {
        Some(g) => Ok(Some(decode("policies", tenant.as_str(), g.value())?)),
        None => Ok(None),
    }
}

pub(super) fn put_policy_doc(inner: &Inner, tenant: &TenantId, text: &str) -> Result<u64, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin write policy"))?;
    let version = {
        let mut versions = txn.open_table(POLICY_VERSIONS).map_err(inner.fail("open policy_versions"))?;
        let version =
            versions.get(tenant.as_str()).map_err(inner.fail("read policy version"))?.map(|g| g.value()).unwrap_or(0)
                + 1;
        versions.insert(tenant.as_str(), version).map_err(inner.fail("write policy version"))?;
        let doc = crate::port::PolicyDoc { text: text.to_string(), version, updated_unix_ms: now_unix_ms() };
        let json = encode("policies", tenant.as_str(), &doc)?;
        let mut table = txn.open_table(POLICIES).map_err(inner.fail("open policies"))?;
        table.insert(tenant.as_str(), json.as_str()).map_err(inner.fail("write policy"))?;
        version
    };
    txn.commit().map_err(inner.fail("commit write policy"))?;
    Ok(version)
}

pub(super) fn delete_policy_doc(inner: &Inner, tenant: &TenantId) -> Result<bool, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin delete policy"))?;
    let existed = {
        let mut table = txn.open_table(POLICIES).map_err(inner.fail("open policies"))?;
        table.remove(tenant.as_str()).map_err(inner.fail("delete policy"))?.is_some()
    };
    txn.commit().map_err(inner.fail("commit delete policy"))?;
    Ok(existed)
}
