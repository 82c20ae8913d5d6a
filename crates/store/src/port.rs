//! The store port.

use async_trait::async_trait;
use clawhive_core::chat::{Message, Usage};
use clawhive_core::{AgentId, ClawError, RequestId, SessionKey, SessionMeta, TenantId, UserId};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The record to create exists already.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record to act on does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller's input cannot be stored.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// A granted session lease. `token` is the fencing token: strictly increasing
/// per session across all grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub key: SessionKey,
    pub holder: String,
    pub token: u64,
}

/// A tenant's policy document as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyDoc {
    pub text: String,
    /// Increases with every replacement (never reused, also across deletes).
    pub version: u64,
    pub updated_unix_ms: i64,
}

/// Longest policy document accepted.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// The outcome of a turn, kept so a redelivered request re-sends it instead of
/// calling the LLM again.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredReply {
    pub request_id: RequestId,
    pub text: String,
    #[serde(default)]
    pub error: Option<ClawError>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub model: String,
    pub completed_unix_ms: i64,
}

/// Everything one turn writes: the messages it adds to the history and its reply.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnRecord {
    pub request_id: RequestId,
    /// The user the turn ran for; becomes the owner if the session is new.
    pub user: UserId,
    pub agent: AgentId,
    /// User message, assistant tool calls, tool results, final assistant message.
    pub messages: Vec<Message>,
    pub reply: StoredReply,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CommitOutcome {
    Committed,
    /// The request id was committed before; here is its reply.
    AlreadyCommitted(StoredReply),
    /// The lease is no longer ours: nothing was written.
    Fenced,
}

/// What [`SessionStore::begin_turn`] is asked for.
#[derive(Clone, Copy, Debug)]
pub struct BeginTurn<'a> {
    pub key: &'a SessionKey,
    /// Who takes the lease (a worker instance id).
    pub holder: &'a str,
    pub ttl: Duration,
    pub request_id: &'a RequestId,
    /// The owner and agent of the session if this turn creates it.
    pub owner: &'a UserId,
    pub agent: &'a AgentId,
    pub history_limit: usize,
}

/// A lease just taken, and what the turn starts from (read under it).
#[derive(Debug)]
pub struct TurnStart {
    pub lease: Lease,
    /// A failed read leaves the lease held: the caller releases it.
    pub state: Result<TurnState, StoreError>,
}

/// The session as a turn finds it.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnState {
    /// The reply already committed for this request id (a redelivery), if any.
    pub committed: Option<StoredReply>,
    pub meta: SessionMeta,
    /// The newest messages, oldest first.
    pub history: Vec<Message>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Grants the lease if nobody holds it; `None` if somebody does.
    async fn try_acquire_lease(
        &self,
        key: &SessionKey,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError>;

    /// Takes the lease like [`SessionStore::try_acquire_lease`] and, if it was
    /// free, reads what a turn starts from, as of the moment the lease was
    /// taken: the committed reply of `request_id` (a redelivery), the session's
    /// metadata (created for `owner` and `agent` if missing, as
    /// [`SessionStore::ensure_session`]) and its newest `history_limit`
    /// messages. Stores that can do this in one round trip override it.
    async fn begin_turn(&self, begin: &BeginTurn<'_>) -> Result<Option<TurnStart>, StoreError> {
        let Some(lease) = self.try_acquire_lease(begin.key, begin.holder, begin.ttl).await? else {
            return Ok(None);
        };
        let (committed, meta, history) = tokio::join!(
            self.committed_turn(begin.key, begin.request_id),
            self.ensure_session(begin.key, begin.owner, begin.agent),
            self.history(begin.key, begin.history_limit),
        );
        let state = match (committed, meta, history) {
            (Ok(committed), Ok(meta), Ok(history)) => Ok(TurnState { committed, meta, history }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        Ok(Some(TurnStart { lease, state }))
    }

    /// Extends a lease we still hold; `false` if it expired or was taken over.
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases a lease we hold; a no-op if it is no longer ours.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Returns the session's metadata, creating it with `owner` and `agent` if it
    /// does not exist yet (atomically: of two racing creators, one wins).
    async fn ensure_session(
        &self,
        key: &SessionKey,
        owner: &UserId,
        agent: &AgentId,
    ) -> Result<SessionMeta, StoreError>;

    async fn session_meta(&self, key: &SessionKey) -> Result<Option<SessionMeta>, StoreError>;

    /// The newest `limit` messages, oldest first.
    async fn history(&self, key: &SessionKey, limit: usize) -> Result<Vec<Message>, StoreError>;

    /// The reply of a turn already committed for `request_id`, if any.
    async fn committed_turn(&self, key: &SessionKey, request_id: &RequestId)
    -> Result<Option<StoredReply>, StoreError>;

    /// Appends the turn's messages, stores its reply and updates the metadata,
    /// atomically, if `lease` is still current and the request id is new.
    async fn commit_turn(&self, lease: &Lease, turn: &TurnRecord) -> Result<CommitOutcome, StoreError>;

    /// [`SessionStore::commit_turn`], then the lease ends unless the commit was
    /// fenced (in one round trip where the store can): the next turn of the
    /// session never waits for a lease whose turn is already committed.
    async fn finish_turn(&self, lease: &Lease, turn: &TurnRecord) -> Result<CommitOutcome, StoreError> {
        let outcome = self.commit_turn(lease, turn).await?;
        if outcome != CommitOutcome::Fenced {
            self.release_lease(lease).await?;
        }
        Ok(outcome)
    }

    /// Sessions owned by `owner` in `tenant`, most recently updated first.
    async fn list_sessions(&self, tenant: &TenantId, owner: &UserId) -> Result<Vec<SessionMeta>, StoreError>;

    /// Clears the session's history (ownership stays). `false` if it did not exist.
    async fn reset_session(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// Adds `tokens` to `user`'s and to the tenant's token usage on `day` (`YYYY-MM-DD`, UTC),
    /// atomically, and returns the new totals. Usage is kept for a few days only.
    async fn add_usage(
        &self,
        tenant: &TenantId,
        user: &UserId,
        day: &str,
        tokens: u64,
    ) -> Result<DailyUsage, StoreError>;

    /// `user`'s and the tenant's token usage on `day` (`YYYY-MM-DD`, UTC); 0 if none recorded.
    async fn usage(&self, tenant: &TenantId, user: &UserId, day: &str) -> Result<DailyUsage, StoreError>;

    /// Counts one more turn started by `user` in `tenant` in the minute `minute`
    /// (Unix minutes) and returns the count so far in that minute (rate limits).
    async fn count_turn(&self, tenant: &TenantId, user: &UserId, minute: i64) -> Result<u64, StoreError>;

    /// The tenant's own policy document (edited through the Admin API), if it has one.
    async fn policy_doc(&self, tenant: &TenantId) -> Result<Option<PolicyDoc>, StoreError>;

    /// Replaces the tenant's policy document; returns its new version (1, 2, …).
    /// The caller validates the text first.
    async fn put_policy_doc(&self, tenant: &TenantId, text: &str) -> Result<u64, StoreError>;

    /// Drops the tenant's policy document (the deployment's policy applies again).
    async fn delete_policy_doc(&self, tenant: &TenantId) -> Result<bool, StoreError>;

    /// Whether the store is reachable now (readiness).
    async fn health(&self) -> Result<(), StoreError>;
}

/// Tokens counted on one day: by one user, and by the whole tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DailyUsage {
    pub user: u64,
    pub tenant: u64,
}

/// Checks that `day` looks like `YYYY-MM-DD` (digits and dashes only), so it is safe in keys.
pub fn check_day(day: &str) -> Result<(), StoreError> {
    let b = day.as_bytes();
    let ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if ok { Ok(()) } else { Err(StoreError::Invalid(format!("usage day {day:?} is not YYYY-MM-DD"))) }
}
