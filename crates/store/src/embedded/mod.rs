//! Embedded adapter of [`SessionStore`] (single-machine mode, `clawhive up`):
//! one redb file, no server.
//!
//! - [`tables`]: the table layout and record encoding.
//! - [`ops`]: each operation as one redb transaction.
//! - [`leases`]: leases, kept in memory.
//! - [`errors`]: redb failures as `StoreError`s naming the file.
//!
//! Same guarantees as the Redis adapter: redb write transactions are
//! serialized and atomic, so each check-then-write the Lua scripts do is one
//! write transaction here. Leases live in memory because a lease must not
//! outlive the process holding the file (redb locks it, so there is only one);
//! the fencing counter is persisted per session, so tokens keep growing across
//! restarts. Lock order: the redb write lock first, then the lease table.

mod errors;
mod identity;
mod leases;
mod ops;
mod pairing;
mod schedules;
mod secrets;
mod tables;

use crate::port::{
    BeginTurn, CommitOutcome, DailyUsage, Lease, SessionStore, StoreError, StoredReply, TurnRecord, TurnStart,
    TurnState, check_day,
};
use async_trait::async_trait;
use clawhive_core::chat::Message;
use clawhive_core::{AgentId, RequestId, SessionKey, SessionMeta, TenantId, UserId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a committed turn's reply is kept unless set otherwise (the default of
/// `store.turn_record_ttl_secs`).
const DEFAULT_TURN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Sessions, leases and turn records in one redb file. Cheap to clone; the
/// file is closed when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    leases: leases::Leases,
    turn_ttl: Duration,
    path: PathBuf,
    /// Zero: every turn's commit waits for the disk. Otherwise turns commit at
    /// once and reach the disk (one fsync for all of them) within this long.
    flush_every: Duration,
    /// Commits made since the last durable one.
    dirty: std::sync::atomic::AtomicBool,
    /// The last fencing token granted (starts at this run's epoch, see `ops::init`).
    fence: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// Makes the commits so far durable (one fsync), if any were not.
    fn flush(&self) -> Result<(), StoreError> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        // An empty commit with the default (immediate) durability persists the
        // non-durable commits before it.
        let txn = self.db.begin_write().map_err(self.fail("begin flush"))?;
        txn.commit().map_err(self.fail("commit flush")).inspect_err(|_| {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "The embedded store could not persist its last commits on close.");
        }
    }
}

impl Inner {
    /// Maps a redb error of operation `op` (see [`errors::failed`]).
    fn fail<E: Into<redb::Error>>(&self, op: &'static str) -> impl FnOnce(E) -> StoreError + use<'_, E> {
        errors::failed(&self.path, op)
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates, with its parent directories) the store file at `path`.
    /// The file's integrity is checked on open. Fails, naming the path, if the
    /// file is damaged or is already open (redb locks it), here or in another
    /// process. Blocks while it reads the file.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_turn_ttl(path, DEFAULT_TURN_TTL)
    }

    /// [`EmbeddedStore::open`], keeping committed turns' replies for `turn_ttl`
    /// (`store.turn_record_ttl_secs`, at least 1 s).
    pub fn open_with_turn_ttl(path: &Path, turn_ttl: Duration) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(path, turn_ttl, Duration::ZERO)
    }

    /// [`EmbeddedStore::open_with_turn_ttl`], with group commit: turns commit
    /// without waiting for the disk, and a background thread makes them durable
    /// (one fsync for all) within `flush_every` (`store.embedded_flush_ms`), like
    /// Redis' `appendfsync everysec`. A crash of the machine or the process loses
    /// at most the turns of that window; closing the store persists everything.
    /// Zero: every turn's commit waits for the disk.
    pub fn open_with(path: &Path, turn_ttl: Duration, flush_every: Duration) -> Result<EmbeddedStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create directory {} for embedded store {}: {e}",
                    parent.display(),
                    path.display()
                ))
            })?;
        }
        // A plain open may panic on a file damaged outside redb; the integrity
        // check turns that into an error. Any remaining panic is caught too.
        let opened =
            std::panic::catch_unwind(|| redb::Database::builder().set_check_integrity_on_open(true).create(path))
                .map_err(|_| {
                    StoreError::Corrupt(format!(
                        "cannot open embedded store {}: the file is damaged or is not a Clawhive store",
                        path.display()
                    ))
                })?;
        let db = opened.map_err(|e| errors::open_failed(path, e))?;
        let inner = Inner {
            db,
            leases: leases::Leases::default(),
            turn_ttl: turn_ttl.max(Duration::from_secs(1)),
            path: path.to_path_buf(),
            flush_every,
            dirty: std::sync::atomic::AtomicBool::new(false),
            fence: std::sync::atomic::AtomicU64::new(0),
        };
        ops::init(&inner)?;
        identity::init(&inner)?;
        schedules::init(&inner)?;
        pairing::init(&inner)?;
        secrets::init(&inner)?;
        let inner = Arc::new(inner);
        if !flush_every.is_zero() {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("store-flush".into())
                .spawn(move || flush_loop(weak, flush_every))
                .map_err(|e| StoreError::Unavailable(format!("cannot start the embedded store's flusher: {e}")))?;
        }
        Ok(EmbeddedStore { inner })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the blocking pool (redb is synchronous).
    async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || op(&inner)).await.map_err(|e| {
            StoreError::Unavailable(format!("embedded store {}: {what} did not finish: {e}", self.inner.path.display()))
        })?
    }
}

/// Persists the non-durable commits every `every`, until the store is closed.
fn flush_loop(store: std::sync::Weak<Inner>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(inner) = store.upgrade() else { return };
        if let Err(e) = inner.flush() {
            tracing::error!(error = %e, "The embedded store could not persist recent commits; retrying.");
        }
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn try_acquire_lease(
        &self,
        key: &SessionKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        Ok(ops::try_acquire_lease(&self.inner, key, holder, ttl))
    }

    async fn begin_turn(&self, begin: &BeginTurn<'_>) -> Result<Option<TurnStart>, StoreError> {
        let Some(lease) = ops::try_acquire_lease(&self.inner, begin.key, begin.holder, begin.ttl) else {
            return Ok(None);
        };
        let key = begin.key.clone();
        let (request_id, owner, agent, limit) =
            (begin.request_id.clone(), begin.owner.clone(), begin.agent.clone(), begin.history_limit);
        // One trip to the blocking pool for the reads.
        let state = self
            .run("begin turn", move |inner| {
                Ok(TurnState {
                    committed: ops::committed_turn(inner, &key, &request_id)?,
                    meta: ops::ensure_session(inner, &key, &owner, &agent)?,
                    history: ops::history(inner, &key, limit)?,
                })
            })
            .await;
        Ok(Some(TurnStart { lease, state }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        // In memory only; nobody holds the lease table's lock across I/O.
        Ok(self.inner.leases.lock().renew(lease, ttl))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.leases.lock().remove(&lease.key, lease.token);
        Ok(())
    }

    async fn ensure_session(
        &self,
        key: &SessionKey,
        owner: &UserId,
        agent: &AgentId,
    ) -> Result<SessionMeta, StoreError> {
        let (key, owner, agent) = (key.clone(), owner.clone(), agent.clone());
        self.run("ensure session", move |inner| ops::ensure_session(inner, &key, &owner, &agent)).await
    }

    async fn session_meta(&self, key: &SessionKey) -> Result<Option<SessionMeta>, StoreError> {
        let key = key.clone();
        self.run("read meta", move |inner| ops::session_meta(inner, &key)).await
    }

    async fn history(&self, key: &SessionKey, limit: usize) -> Result<Vec<Message>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = key.clone();
        self.run("read history", move |inner| ops::history(inner, &key, limit)).await
    }

    async fn committed_turn(
        &self,
        key: &SessionKey,
        request_id: &RequestId,
    ) -> Result<Option<StoredReply>, StoreError> {
        let (key, request_id) = (key.clone(), request_id.clone());
        self.run("read turn", move |inner| ops::committed_turn(inner, &key, &request_id)).await
    }

    async fn commit_turn(&self, lease: &Lease, turn: &TurnRecord) -> Result<CommitOutcome, StoreError> {
        let messages = turn
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| tables::encode("history", format_args!("{}#new{i}", lease.key), m))
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = ops::EncodedTurn {
            request_id: turn.request_id.clone(),
            user: turn.user.clone(),
            agent: turn.agent.clone(),
            messages,
            reply: turn.reply.clone(),
        };
        let lease = lease.clone();
        self.run("commit turn", move |inner| ops::commit_turn(inner, &lease, &encoded)).await
    }

    async fn list_sessions(&self, tenant: &TenantId, owner: &UserId) -> Result<Vec<SessionMeta>, StoreError> {
        let (tenant, owner) = (tenant.clone(), owner.clone());
        self.run("list sessions", move |inner| ops::list_sessions(inner, &tenant, &owner)).await
    }

    async fn reset_session(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run("reset session", move |inner| ops::reset_session(inner, &key)).await
    }

    async fn add_usage(
        &self,
        tenant: &TenantId,
        user: &UserId,
        day: &str,
        tokens: u64,
    ) -> Result<DailyUsage, StoreError> {
        check_day(day)?;
        let (tenant, user, day) = (tenant.clone(), user.clone(), day.to_string());
        self.run("add usage", move |inner| ops::add_usage(inner, &tenant, &user, &day, tokens)).await
    }

    async fn usage(&self, tenant: &TenantId, user: &UserId, day: &str) -> Result<DailyUsage, StoreError> {
        check_day(day)?;
        let (tenant, user, day) = (tenant.clone(), user.clone(), day.to_string());
        self.run("read usage", move |inner| ops::usage(inner, &tenant, &user, &day)).await
    }

    async fn count_turn(&self, tenant: &TenantId, user: &UserId, minute: i64) -> Result<u64, StoreError> {
        let (tenant, user) = (tenant.clone(), user.clone());
        self.run("count turn", move |inner| ops::count_turn(inner, &tenant, &user, minute)).await
    }

    async fn policy_doc(&self, tenant: &TenantId) -> Result<Option<crate::port::PolicyDoc>, StoreError> {
        let tenant = tenant.clone();
        self.run("read policy", move |inner| ops::policy_doc(inner, &tenant)).await
    }

    async fn put_policy_doc(&self, tenant: &TenantId, text: &str) -> Result<u64, StoreError> {
        if text.len() > crate::port::MAX_POLICY_BYTES {
            return Err(StoreError::Invalid(format!("a policy is at most {} bytes", crate::port::MAX_POLICY_BYTES)));
        }
        let (tenant, text) = (tenant.clone(), text.to_string());
        self.run("write policy", move |inner| ops::put_policy_doc(inner, &tenant, &text)).await
    }

    async fn delete_policy_doc(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let tenant = tenant.clone();
        self.run("delete policy", move |inner| ops::delete_policy_doc(inner, &tenant)).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.run("health check", ops::health).await
    }
}
