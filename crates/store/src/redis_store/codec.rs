//! Decoding what Redis returns into domain records. Anything that does not
//! decode is [`StoreError::Corrupt`] naming the key it came from.

use crate::port::{StoreError, StoredReply};
use clawhive_core::chat::Message;
use clawhive_core::{AgentId, SessionKey, SessionMeta, UserId};
use std::str::FromStr;

/// Builds the meta from the fields of its hash in `META_FIELDS` order.
/// `Ok(None)` if the hash does not exist (every field missing).
pub(crate) fn meta(
    key: &SessionKey,
    redis_key: &str,
    fields: Vec<Option<String>>,
) -> Result<Option<SessionMeta>, StoreError> {
    if fields.iter().all(Option::is_none) {
        return Ok(None);
    }
    let [owner, agent, created, updated, count]: [Option<String>; 5] = fields
        .try_into()
        .map_err(|f: Vec<_>| corrupt(redis_key, format!("expected 5 meta fields, got {}", f.len())))?;
    let owner = field(redis_key, "owner", owner)?;
    let agent = field(redis_key, "agent", agent)?;
    Ok(Some(SessionMeta {
        key: key.clone(),
        owner: UserId::new(owner).map_err(|e| corrupt(redis_key, format!("owner: {e}")))?,
        agent: AgentId::new(agent).map_err(|e| corrupt(redis_key, format!("agent: {e}")))?,
        created_unix_ms: number(redis_key, "created_unix_ms", created)?,
        updated_unix_ms: number(redis_key, "updated_unix_ms", updated)?,
        message_count: number(redis_key, "message_count", count)?,
    }))
}

pub(crate) fn message(redis_key: &str, index: usize, json: &str) -> Result<Message, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(redis_key, format!("entry {index} is not a message: {e}")))
}

/// The entries of a history list, oldest first.
pub(crate) fn history(redis_key: &str, entries: &[String]) -> Result<Vec<Message>, StoreError> {
    entries.iter().enumerate().map(|(i, json)| message(redis_key, i, json)).collect()
}

pub(crate) fn reply(redis_key: &str, json: &str) -> Result<StoredReply, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(redis_key, format!("not a stored reply: {e}")))
}

pub(crate) fn corrupt(redis_key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{redis_key}: {reason}"))
}

fn field(redis_key: &str, name: &str, value: Option<String>) -> Result<String, StoreError> {
    value.ok_or_else(|| corrupt(redis_key, format!("{name} is missing")))
}

fn number<T: FromStr>(redis_key: &str, name: &str, value: Option<String>) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let value = field(redis_key, name, value)?;
    value.parse().map_err(|e| corrupt(redis_key, format!("{name} {value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::{SessionId, TenantId};

    fn key() -> SessionKey {
        SessionKey::new(TenantId::new("acme").unwrap(), SessionId::new("s1").unwrap())
    }

    fn fields(v: [Option<&str>; 5]) -> Vec<Option<String>> {
        v.iter().map(|f| f.map(str::to_string)).collect()
    }

    #[test]
    fn decodes_a_complete_meta() {
        let m = meta(&key(), "k", fields([Some("alice"), Some("default"), Some("1"), Some("2"), Some("3")]))
            .unwrap()
            .unwrap();
        assert_eq!(m.owner.as_str(), "alice");
        assert_eq!((m.created_unix_ms, m.updated_unix_ms, m.message_count), (1, 2, 3));
    }

    #[test]
    fn absent_meta_is_none_and_partial_meta_is_corrupt() {
        assert_eq!(meta(&key(), "k", fields([None; 5])).unwrap(), None);
        let e = meta(&key(), "ch:k", fields([None, Some("a"), Some("1"), Some("2"), Some("3")])).unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("ch:k") && m.contains("owner")), "{e}");
        let e = meta(&key(), "k", fields([Some("u"), Some("a"), Some("x"), Some("2"), Some("3")])).unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("created_unix_ms")), "{e}");
    }

    #[test]
    fn bad_json_names_the_key() {
        let e = message("ch:{acme:s1}:history", 4, "{nope").unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("ch:{acme:s1}:history") && m.contains("entry 4")),
            "{e}"
        );
    }
}
