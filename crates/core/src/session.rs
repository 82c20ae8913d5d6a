//! Sessions: a conversation's key and metadata, and who may read it.

use crate::ids::{AgentId, SessionId, TenantId, UserId};
use crate::principal::Principal;

/// A session is addressed by its tenant and id; ids never cross tenants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SessionKey {
    pub tenant: TenantId,
    pub session: SessionId,
}

impl SessionKey {
    pub fn new(tenant: TenantId, session: SessionId) -> Self {
        Self { tenant, session }
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.session)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionMeta {
    pub key: SessionKey,
    /// The user who started the session; only they (and tenant admins) read it.
    pub owner: UserId,
    pub agent: AgentId,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub message_count: u32,
}

impl SessionMeta {
    /// Whether `who` may read, continue or reset this session.
    pub fn readable_by(&self, who: &Principal) -> bool {
        who.tenant == self.key.tenant && (who.user == self.owner || who.is_admin())
    }

    /// Whether `who` may post into the session (admins read but do not speak for others).
    /// A shared session (a Slack thread, see [`SHARED_PREFIX`]) takes turns from
    /// every user of its tenant, each turn tagged with its speaker; the ingress
    /// that names such a session decides who is in the conversation.
    pub fn writable_by(&self, who: &Principal) -> bool {
        who.tenant == self.key.tenant && (who.user == self.owner || is_shared(&self.key.session))
    }
}

/// Session ids starting with this are shared by the members of a conversation
/// (a Slack thread) rather than owned by one user. Only ingresses create them;
/// the gateway refuses them from API clients.
pub const SHARED_PREFIX: &str = "shared:";

/// Whether `session` is a shared conversation's session.
pub fn is_shared(session: &SessionId) -> bool {
    session.as_str().starts_with(SHARED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str, u: &str, admin: bool) -> Principal {
        let mut p = Principal::new(TenantId::new(t).unwrap(), UserId::new(u).unwrap());
        if admin {
            p.roles.push("admin".into());
        }
        p
    }

    #[test]
    fn only_owner_and_same_tenant_admin_read() {
        let meta = SessionMeta {
            key: SessionKey::new(TenantId::new("acme").unwrap(), SessionId::new("s1").unwrap()),
            owner: UserId::new("alice").unwrap(),
            agent: AgentId::new("default").unwrap(),
            created_unix_ms: 0,
            updated_unix_ms: 0,
            message_count: 0,
        };
        assert!(meta.readable_by(&p("acme", "alice", false)));
        assert!(!meta.readable_by(&p("acme", "bob", false)));
        assert!(meta.readable_by(&p("acme", "root", true)));
        assert!(!meta.readable_by(&p("other", "alice", true)));
        assert!(!meta.writable_by(&p("acme", "root", true)));
        assert!(!meta.writable_by(&p("acme", "bob", false)));
        let shared = SessionMeta {
            key: SessionKey::new(TenantId::new("acme").unwrap(), SessionId::new("shared:slack:T1:C1:1-2").unwrap()),
            ..meta
        };
        assert!(shared.writable_by(&p("acme", "bob", false)));
        assert!(!shared.writable_by(&p("other", "bob", false)));
        assert!(!shared.readable_by(&p("acme", "bob", false)));
    }
}
