//! Redis key layout.
//!
//! ```text
//! <prefix>:{<tenant>:<session>}:meta                 hash: owner, agent, created/updated_unix_ms, message_count
//! <prefix>:{<tenant>:<session>}:history              list of JSON messages, oldest first
//! <prefix>:{<tenant>:<session>}:lease                string: the current fencing token (PX ttl)
//! <prefix>:{<tenant>:<session>}:fence                counter: the last token granted
//! <prefix>:{<tenant>:<session>}:turn:<request_id>    JSON StoredReply (EX turn_record_ttl_secs)
//! <prefix>:{<tenant>}:user:<user>:sessions           sorted set of session ids, score = updated ms
//! <prefix>:{<tenant>}:usage:<user>:<day>             counter: the user's tokens on day (YYYY-MM-DD UTC), EX 3 days
//! <prefix>:{<tenant>}:rate:<user>:<minute>           counter: turns started in a Unix minute, EX 120 s
//! <prefix>:{<tenant>}:policy                         hash: text, version, updated (the tenant's policy)
//! <prefix>:{<tenant>}:policy-version                 counter: the last policy version given out
//! <prefix>:{<tenant>}:usage-tenant:<day>             counter: the whole tenant's tokens on day, EX 3 days
//! ```
//!
//! All keys of one session share the hash tag `{tenant:session}`, so the Lua
//! scripts that touch several of them run in one Redis Cluster slot. The tag is
//! unambiguous because no id may contain `{` or `}` and tenant ids contain no
//! `:`; the prefix is checked for braces when the store is created.

use clawhive_core::{RequestId, SessionKey, TenantId, UserId};

/// Fields of the meta hash, in the order the scripts return them.
pub(crate) const META_FIELDS: [&str; 5] = ["owner", "agent", "created_unix_ms", "updated_unix_ms", "message_count"];

#[derive(Clone, Debug)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// `None` if `prefix` contains a brace, which would move the hash tag.
    pub(crate) fn new(prefix: &str) -> Option<KeyLayout> {
        (!prefix.contains(['{', '}'])).then(|| KeyLayout { prefix: prefix.to_string() })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn session(&self, key: &SessionKey) -> SessionKeys {
        SessionKeys { base: format!("{}:{{{}:{}}}", self.prefix, key.tenant, key.session) }
    }

    /// The sorted set indexing `user`'s sessions in `tenant`.
    pub(crate) fn user_sessions(&self, tenant: &TenantId, user: &UserId) -> String {
        format!("{}:{{{tenant}}}:user:{user}:sessions", self.prefix)
    }

    /// The counter of `user`'s tokens in `tenant` on `day`.
    pub(crate) fn usage(&self, tenant: &TenantId, user: &UserId, day: &str) -> String {
        format!("{}:{{{tenant}}}:usage:{user}:{day}", self.prefix)
    }

    /// The counter of `user`'s turns in one Unix minute.
    pub(crate) fn rate(&self, tenant: &TenantId, user: &UserId, minute: i64) -> String {
        format!("{}:{{{tenant}}}:rate:{user}:{minute}", self.prefix)
    }

    /// The tenant's policy document.
    pub(crate) fn policy(&self, tenant: &TenantId) -> String {
        format!("{}:{{{tenant}}}:policy", self.prefix)
    }

    pub(crate) fn policy_version(&self, tenant: &TenantId) -> String {
        format!("{}:{{{tenant}}}:policy-version", self.prefix)
    }

    /// The counter of the whole tenant's tokens on `day`.
    pub(crate) fn tenant_usage(&self, tenant: &TenantId, day: &str) -> String {
        format!("{}:{{{tenant}}}:usage-tenant:{day}", self.prefix)
    }
}

/// The keys of one session.
pub(crate) struct SessionKeys {
    base: String,
}

impl SessionKeys {
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.base)
    }

    pub(crate) fn history(&self) -> String {
        format!("{}:history", self.base)
    }

    pub(crate) fn lease(&self) -> String {
        format!("{}:lease", self.base)
    }

    pub(crate) fn fence(&self) -> String {
        format!("{}:fence", self.base)
    }

    pub(crate) fn turn(&self, request_id: &RequestId) -> String {
        format!("{}:turn:{request_id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::SessionId;

    #[test]
    fn keys_carry_the_session_hash_tag() {
        let layout = KeyLayout::new("ch").unwrap();
        let key = SessionKey::new(TenantId::new("acme").unwrap(), SessionId::new("dm:alice@x").unwrap());
        let s = layout.session(&key);
        assert_eq!(s.meta(), "ch:{acme:dm:alice@x}:meta");
        assert_eq!(s.history(), "ch:{acme:dm:alice@x}:history");
        assert_eq!(s.lease(), "ch:{acme:dm:alice@x}:lease");
        assert_eq!(s.fence(), "ch:{acme:dm:alice@x}:fence");
        assert_eq!(s.turn(&RequestId::new("r1").unwrap()), "ch:{acme:dm:alice@x}:turn:r1");
        let user = UserId::new("alice").unwrap();
        assert_eq!(layout.user_sessions(&key.tenant, &user), "ch:{acme}:user:alice:sessions");
        assert_eq!(layout.usage(&key.tenant, &user, "2026-01-02"), "ch:{acme}:usage:alice:2026-01-02");
    }

    #[test]
    fn braces_in_the_prefix_are_refused() {
        assert!(KeyLayout::new("a{b").is_none());
        assert!(KeyLayout::new("a}b").is_none());
        assert!(KeyLayout::new("prod:ch").is_some());
    }
}
