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
            Some(meta) if meta.readable_by(who) => Ok((key, meta)),
            _ => Err(not_found(session_id)),
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
