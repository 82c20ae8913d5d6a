//! The redb tables, and encoding records into them.
//!
//! ```text
//! meta          (tenant, session)              -> JSON SessionMeta
//! history       (tenant, session, seq)         -> JSON Message, seq increasing, oldest first
//! turns         (tenant, session, request_id)  -> JSON TurnEntry (reply + expiry)
//! user_sessions (tenant, user, session)        -> updated_unix_ms
//! fence         ("", "")                         -> this run's fencing epoch (tokens of
//!                                                 a run are epoch << 32 + a counter)
//! usage         (tenant, user, day)            -> tokens used on day (YYYY-MM-DD UTC); user "" = tenant
//! policies      tenant                         -> JSON PolicyDoc (the tenant's own policy)
//! policy_versions tenant                       -> the last policy version given out
//! rate          (tenant, user, minute)         -> turns started in that Unix minute
//! ```
//!
//! Keys are tuples, compared field by field, so no separator can make two
//! sessions' keys collide.

use crate::port::{StoreError, StoredReply};
use redb::TableDefinition;

pub(super) const META: TableDefinition<(&str, &str), &str> = TableDefinition::new("meta");
pub(super) const HISTORY: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("history");
pub(super) const TURNS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("turns");
pub(super) const USER_SESSIONS: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("user_sessions");
pub(super) const FENCE: TableDefinition<(&str, &str), u64> = TableDefinition::new("fence");
/// tenant -> JSON PolicyDoc; ("", tenant) keeps the last version given out.
pub(super) const POLICIES: TableDefinition<&str, &str> = TableDefinition::new("policies");
pub(super) const POLICY_VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("policy_versions");
pub(super) const RATE: TableDefinition<(&str, &str, i64), u64> = TableDefinition::new("rate");
pub(super) const USAGE: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("usage");

/// A committed turn's reply, kept until `expires_unix_ms`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct TurnEntry {
    pub(super) reply: StoredReply,
    pub(super) expires_unix_ms: i64,
}

/// Just the expiry of a [`TurnEntry`], for purging without decoding the reply.
#[derive(serde::Deserialize)]
pub(super) struct Expiry {
    pub(super) expires_unix_ms: i64,
}

/// Decodes JSON read from `table` at `key`; bad data is `Corrupt` naming both.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    table: &str,
    key: impl std::fmt::Display,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(table, key, e))
}

pub(super) fn encode<T: serde::Serialize>(
    table: &str,
    key: impl std::fmt::Display,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(table, key, format!("cannot encode: {e}")))
}

pub(super) fn corrupt(table: &str, key: impl std::fmt::Display, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("embedded store table {table}, key {key}: {reason}"))
}
