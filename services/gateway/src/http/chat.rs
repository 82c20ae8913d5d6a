//! `POST /v1/sessions/{id}/messages`: JSON by default, SSE with `Accept: text/event-stream`.

use super::extract::{ApiError, ApiJson, Authed};
use crate::chat::{ChatEvent, ChatFinal, ChatInput};
use crate::state::Gateway;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use clawhive_core::ClawError;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub text: String,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

pub fn final_json(f: &ChatFinal) -> serde_json::Value {
    serde_json::json!({
        "request_id": f.request_id,
        "session_id": f.session_id,
        "text": f.text,
        "usage": {"input_tokens": f.input_tokens, "output_tokens": f.output_tokens},
        "model": f.model,
    })
}

fn error_json(e: &ClawError) -> serde_json::Value {
    serde_json::json!({"code": e.code.as_str(), "message": e.message})
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

pub async fn post_message(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PostMessage>,
) -> Result<Response, ApiError> {
    let input = ChatInput {
        session_id,
        text: body.text,
        agent_id: body.agent_id.unwrap_or_default(),
        idempotency_key: body.idempotency_key,
        timeout_ms: body.timeout_ms,
        traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    let stream = gw.chat(&who, input).await?;
    if !wants_sse(&headers) {
        let f = stream.finish().await?;
        return Ok(axum::Json(final_json(&f)).into_response());
    }
    let events = futures::stream::unfold(stream, |mut s| async move {
        let event = match s.next().await? {
            Ok(ChatEvent::Delta(text)) => {
                Event::default().event("delta").data(serde_json::json!({"text": text}).to_string())
            }
            Ok(ChatEvent::Final(f)) => Event::default().event("final").data(final_json(&f).to_string()),
            Err(e) => Event::default().event("error").data(error_json(&e).to_string()),
        };
        Some((Ok::<_, Infallible>(event), s))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
