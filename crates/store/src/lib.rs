//! Session state: the [`SessionStore`] port and its adapters (Redis, embedded).
//!
//! Module map:
//! - [`port`]: the trait services depend on, and the records it stores.
//! - [`redis_store`]: the Redis adapter (cluster mode). Every key of one session
//!   carries the hash tag `{tenant:session}` so the Lua scripts that touch
//!   several of them stay in one Redis Cluster slot.
//! - [`embedded`]: the embedded adapter (single-machine mode, `clawhive up`):
//!   one redb file, leases in memory, fencing tokens persisted.
//! - [`identity`]: the [`IdentityStore`] port (users, issued API tokens stored
//!   as SHA-256 only, external identities), implemented by both adapters.
//! - [`jobs`]: the rules for managing jobs on a principal's behalf (ownership,
//!   validation), shared by every API.
//! - [`schedules`]: the [`ScheduleStore`] port (scheduled jobs, their due index,
//!   the scheduler's fenced leader lease), implemented by both adapters.
//! - [`secrets`]: the [`SecretStore`] port (sealed blobs) and the [`SecretVault`]
//!   that encrypts named secrets (ChaCha20-Poly1305) before any adapter sees them.
//!
//! - [`pairing`] / [`markers`]: pairing codes for unknown external users, and
//!   expiring markers that make ingresses idempotent (both adapters).
//!
//! Invariants the adapters keep (and the conformance tests check):
//! - at most one holder of a session's lease at a time; each grant gets a
//!   larger fencing token than the one before;
//! - a turn commits only while its lease's token is still current (a worker
//!   whose lease expired and was taken over cannot write);
//! - a turn commits at most once per request id; a second commit returns the
//!   reply stored by the first;
//! - a session's history, metadata and turn record change together or not at all.

pub mod embedded;
pub mod identity;
pub mod jobs;
pub mod markers;
pub mod pairing;
pub mod port;
pub mod redis_store;
pub mod schedules;
pub mod secrets;

pub use embedded::EmbeddedStore;
pub use identity::{IdentityStore, IssuedToken, ResolvedToken, TokenInfo, UserRecord};
pub use jobs::{JobEdit, Jobs, NewJob};
pub use markers::MarkerStore;
pub use pairing::{Pairing, PairingStore, approve_pairing};
pub use port::{
    BeginTurn, CommitOutcome, DailyUsage, Lease, PolicyDoc, SessionStore, StoreError, StoredReply, TurnRecord,
    TurnStart, TurnState,
};
pub use redis_store::RedisStore;
pub use schedules::{ScheduleStore, UpdateOutcome};
pub use secrets::{SecretInfo, SecretScope, SecretStore, SecretValue, SecretVault};
