//! `GET /v1/sessions`, `GET /v1/sessions/{id}`, `POST /v1/sessions/{id}/reset`.
//! Bounded by `gateway.request_timeout_ms`.

use super::extract::{ApiError, Authed};
use crate::state::Gateway;
use axum::Json;
use axum::extract::{Path, State};
use clawhive_core::ClawError;
use clawhive_proto::v1 as pb;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

async fn bounded<T>(gw: &Gateway, fut: impl Future<Output = Result<T, ClawError>>) -> Result<T, ApiError> {
    let ms = gw.cfg.gateway.request_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(ms), fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ClawError::deadline(format!("the request took longer than {ms} ms")).into()),
    }
}

fn summary_json(s: &pb::SessionSummary) -> Value {
    json!({
        "session_id": s.session_id,
        "agent_id": s.agent_id,
        "created_unix_ms": s.created_unix_ms,
        "updated_unix_ms": s.updated_unix_ms,
        "message_count": s.message_count,
    })
}

fn message_json(m: &pb::HistoryMessage) -> Value {
    json!({
        "role": m.role,
        "content": m.content,
        "speaker": m.speaker,
        "request_id": m.request_id,
        "created_unix_ms": m.created_unix_ms,
        "tool_name": m.tool_name,
    })
}

pub async fn list(State(gw): State<Arc<Gateway>>, Authed(who): Authed) -> Result<Json<Value>, ApiError> {
    let r = bounded(&gw, gw.list_sessions(&who)).await?;
    Ok(Json(json!({"sessions": r.sessions.iter().map(summary_json).collect::<Vec<_>>()})))
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = bounded(&gw, gw.get_session(&who, &id)).await?;
    Ok(Json(json!({
        "session": r.session.as_ref().map(summary_json),
        "messages": r.messages.iter().map(message_json).collect::<Vec<_>>(),
    })))
}

pub async fn reset(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let existed = bounded(&gw, gw.reset_session(&who, &id)).await?;
    Ok(Json(json!({"existed": existed})))
}
