//! Subject and stream names. One place, so no service spells a subject by hand.

use crate::port::StreamKind;
use clawhive_core::{AgentId, TenantId};

/// Names for one namespace (`clawhive` by default; tests and side-by-side
/// installs use another to stay apart on a shared NATS).
#[derive(Clone, Debug)]
pub struct Subjects {
    ns: String,
}

impl Subjects {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { ns: namespace.into() }
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// `clawhive.req.<tenant>.<agent>`
    pub fn request(&self, tenant: &TenantId, agent: &AgentId) -> String {
        format!("{}.req.{}.{}", self.ns, tenant, agent)
    }

    /// Every request subject, for the workers' consumer.
    pub fn all_requests(&self) -> String {
        format!("{}.req.>", self.ns)
    }

    /// Final replies for one gateway instance: `clawhive.reply.gw.<instance>`.
    pub fn gateway_reply(&self, instance: &str) -> String {
        format!("{}.reply.gw.{}", self.ns, instance)
    }

    /// Streaming deltas for one gateway instance: `clawhive.delta.gw.<instance>`.
    pub fn gateway_delta(&self, instance: &str) -> String {
        format!("{}.delta.gw.{}", self.ns, instance)
    }

    /// Final replies for a Slack team: `clawhive.reply.slack.<team>`.
    pub fn slack_reply(&self, team: &str) -> String {
        format!("{}.reply.slack.{}", self.ns, team)
    }

    /// Streaming deltas for a Slack team.
    pub fn slack_delta(&self, team: &str) -> String {
        format!("{}.delta.slack.{}", self.ns, team)
    }

    /// Replies that are only kept in the session: `clawhive.reply.session.<tenant>`.
    pub fn session_reply(&self, tenant: &TenantId) -> String {
        format!("{}.reply.session.{}", self.ns, tenant)
    }

    /// Identity changes every gateway must hear (a token revoked, a user
    /// deleted; the payload names the tenant): `clawhive.control.identity`.
    /// Core NATS, not a stream: a gateway that misses one relies on its cache TTL.
    pub fn identity_changed(&self) -> String {
        format!("{}.control.identity", self.ns)
    }

    /// `clawhive.audit.<tenant>`
    pub fn audit(&self, tenant: &TenantId) -> String {
        format!("{}.audit.{}", self.ns, tenant)
    }

    /// The stream name: `CLAWHIVE_REQUESTS`, `CLAWHIVE_REPLIES`, `CLAWHIVE_AUDIT`.
    pub fn stream_name(&self, kind: StreamKind) -> String {
        let suffix = match kind {
            StreamKind::Requests => "REQUESTS",
            StreamKind::Replies => "REPLIES",
            StreamKind::Audit => "AUDIT",
        };
        format!("{}_{}", self.ns.to_ascii_uppercase(), suffix)
    }

    /// The subjects a stream captures.
    pub fn stream_subjects(&self, kind: StreamKind) -> String {
        match kind {
            StreamKind::Requests => format!("{}.req.>", self.ns),
            StreamKind::Replies => format!("{}.reply.>", self.ns),
            StreamKind::Audit => format!("{}.audit.>", self.ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let s = Subjects::new("clawhive");
        let t = TenantId::new("acme").unwrap();
        let a = AgentId::new("default").unwrap();
        assert_eq!(s.request(&t, &a), "clawhive.req.acme.default");
        assert_eq!(s.stream_name(StreamKind::Requests), "CLAWHIVE_REQUESTS");
        assert_eq!(s.gateway_reply("gw1"), "clawhive.reply.gw.gw1");
        assert_eq!(s.audit(&t), "clawhive.audit.acme");
    }
}
