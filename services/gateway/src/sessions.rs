//! List / get / reset, shared by both APIs. Another user's session answers
//! exactly like a missing one.

use crate::state::{Gateway, store_error};
use clawhive_core::chat::Message;
use clawhive_core::{ClawError, Principal, SessionId, SessionKey, SessionMeta};
use clawhive_proto::v1 as pb;

pub fn summary(meta: &SessionMeta) -> pb::SessionSummary {
    pb::SessionSummary {
        session_id: meta.key.session.to_string(),
        agent_id: meta.agent.to_string(),
        created_unix_ms: meta.created_unix_ms,
        updated_unix_ms: meta.updated_unix_ms,
        message_count: meta.message_count,
    }
}

pub fn history_message(m: &Message) -> pb::HistoryMessage {
    pb::HistoryMessage {
        role: m.role.as_str().to_string(),
        content: m.content.clone(),
        speaker: m.speaker.clone().unwrap_or_default(),
        request_id: m.request_id.clone().unwrap_or_default(),
        created_unix_ms: m.created_unix_ms,
        tool_name: m.tool_name.clone().unwrap_or_default(),
    }
}

pub fn not_found(session: &str) -> ClawError {
    ClawError::not_found(format!("session {session} not found"))
}

impl Gateway {
    pub async fn list_sessions(&self, who: &Principal) -> Result<pb::ListSessionsResponse, ClawError> {
        let metas = self.store.list_sessions(&who.tenant, &who.user).await.map_err(store_error)?;
        Ok(pb::ListSessionsResponse { sessions: metas.iter().map(summary).collect() })
    }

    /// The session's metadata if `who` may read it; not found otherwise.
    async fn readable(&self, who: &Principal, session_id: &str) -> Result<(SessionKey, SessionMeta), ClawError> {
        let session = SessionId::new(session_id)?;
        let key = SessionKey::new(who.tenant.clone(), session);
        match self.store.session_meta(&key).await.map_err(store_error)? {
            Some(meta) if meta.readable_by(who) => {
                if meta.owner != who.user {
                    self.audit_session_access(who, &meta, true, "tenant admin reads another user's session").await;
                }
                Ok((key, meta))
            }
            Some(meta) => {
                self.audit_session_access(who, &meta, false, "not the session's owner or a tenant admin").await;
                Err(not_found(session_id))
            }
            None => Err(not_found(session_id)),
        }
    }

    /// Audits an access decision on a session that exists but is not the caller's own
    /// (denials, and admins reading others' sessions). Publishing failures are logged only.
    pub(crate) async fn audit_session_access(&self, who: &Principal, meta: &SessionMeta, allowed: bool, reason: &str) {
        if !allowed {
            tracing::warn!(user = %who.user, owner = %meta.owner, session = %meta.key.session, "Session access denied.");
        }
        let record = pb::AuditRecord {
            tenant_id: who.tenant.to_string(),
            user_id: who.user.to_string(),
            agent_id: meta.agent.to_string(),
            request_id: format!("gw-{}", uuid::Uuid::new_v4().simple()),
            session_id: meta.key.session.to_string(),
            kind: "session_access".into(),
            tool: String::new(),
            allowed,
            reason: reason.into(),
            arguments_sha256: String::new(),
            at_unix_ms: clawhive_core::time::now_unix_ms(),
        };
        if let Err(e) = self.envelopes.publish_audit(&who.tenant, 0, &record).await {
            tracing::error!(error = %e, "Audit record not published.");
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %who.tenant, session = %session_id))]
    pub async fn get_session(&self, who: &Principal, session_id: &str) -> Result<pb::GetSessionResponse, ClawError> {
        let (key, meta) = self.readable(who, session_id).await?;
        let history = self.store.history(&key, self.cfg.store.history_limit).await.map_err(store_error)?;
        Ok(pb::GetSessionResponse {
            session: Some(summary(&meta)),
            messages: history.iter().map(history_message).collect(),
        })
    }

    #[tracing::instrument(skip_all, fields(tenant = %who.tenant, session = %session_id))]
    pub async fn reset_session(&self, who: &Principal, session_id: &str) -> Result<bool, ClawError> {
        let (key, _) = self.readable(who, session_id).await?;
        let existed = self.store.reset_session(&key).await.map_err(store_error)?;
        tracing::info!(existed, "Session reset.");
        Ok(existed)
    }
}
