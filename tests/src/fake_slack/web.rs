//! The Web API methods.

use super::{APP_TOKEN, BOT_TOKEN, BOT_USER, Call, Posted, Shared};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Instant;

fn fail(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

pub(crate) async fn method(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = Instant::now();
    {
        let mut st = shared.lock();
        if let Some((left, secs)) = st.rate_limits.get_mut(&method)
            && *left > 0
        {
            *left -= 1;
            let secs = *secs;
            st.calls.push(Call { method: method.clone(), at: now, status: 429 });
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "rate limited")
                .into_response();
        }
        st.calls.push(Call { method: method.clone(), at: now, status: 200 });
    }
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let want = if method == "apps.connections.open" { APP_TOKEN } else { BOT_TOKEN };
    if token != Some(want) {
        return fail("invalid_auth");
    }
    let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match method.as_str() {
        "apps.connections.open" => {
            Json(json!({"ok": true, "url": format!("ws://{}/socket?ticket={}", shared.addr, shared.next_ts())}))
                .into_response()
        }
        "auth.test" => {
            Json(json!({"ok": true, "user_id": BOT_USER, "team_id": "T1", "bot_id": "BBOT"})).into_response()
        }
        "chat.postMessage" | "chat.postEphemeral" => {
            let (channel, text) = (s("channel"), s("text"));
            if channel.is_empty() || text.is_empty() {
                return fail(if channel.is_empty() { "channel_not_found" } else { "no_text" });
            }
            let ts = shared.next_ts();
            let ephemeral_to = (method == "chat.postEphemeral").then(|| s("user"));
            shared.lock().posted.push(Posted {
                channel: channel.clone(),
                thread_ts: s("thread_ts"),
                ts: ts.clone(),
                text,
                ephemeral_to,
                edits: 0,
            });
            Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
        }
        "chat.update" => {
            let (channel, ts, text) = (s("channel"), s("ts"), s("text"));
            let mut st = shared.lock();
            match st.posted.iter_mut().find(|p| p.channel == channel && p.ts == ts) {
                Some(p) => {
                    p.text = text;
                    p.edits += 1;
                    Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
                }
                None => fail("message_not_found"),
            }
        }
        "conversations.info" | "conversations.members" | "users.info" => Json(json!({"ok": true})).into_response(),
        _ => fail("unknown_method"),
    }
}
