//! Events API over HTTP: `POST /slack/events`, and `POST /slack/commands`
//! for the `/clawhive` slash command when Socket Mode is off.
//!
//! Every request's `X-Slack-Signature` is checked (v0 HMAC over timestamp and
//! raw body, timestamp within five minutes) before anything else: a bad or
//! stale one gets 401 and nothing is published. `url_verification` echoes the
//! challenge. Events are handled within Slack's 3 s: 200 once the request is
//! in JetStream (or the event is ignored / a duplicate), 503 otherwise so
//! Slack retries.

use crate::bridge::Bridge;
use crate::signature::verify;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Slack waits 3 s for the answer; keep a margin.
const HANDLE_BUDGET: Duration = Duration::from_millis(2500);

#[derive(Clone)]
struct App {
    bridge: Arc<Bridge>,
    secret: Arc<Vec<u8>>,
}

pub fn router(bridge: Arc<Bridge>, signing_secret: &str) -> Router {
    let app = App { bridge, secret: Arc::new(signing_secret.as_bytes().to_vec()) };
    Router::new().route("/slack/events", post(events)).route("/slack/commands", post(commands)).with_state(app)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"message": message}}))).into_response()
}

/// Checks the request's signature; the 401 to answer when it is bad.
fn check(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<(), Box<Response>> {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let now = clawhive_core::time::now_unix_ms() / 1000;
    verify(&app.secret, h("x-slack-request-timestamp"), h("x-slack-signature"), body, now).map_err(|e| {
        tracing::warn!(reason = %e, "Refusing a Slack request with a bad signature.");
        Box::new(error(StatusCode::UNAUTHORIZED, &e.to_string()))
    })
}

/// A slash command (form-encoded): answered in the response, shown to the caller only.
async fn commands(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = check(&app, &headers, &body) {
        return *r;
    }
    let Ok(form) = serde_urlencoded::from_bytes::<std::collections::HashMap<String, String>>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not a form");
    };
    let payload = serde_json::to_value(form).unwrap_or(Value::Null);
    match tokio::time::timeout(HANDLE_BUDGET, app.bridge.handle_command(&payload)).await {
        Ok(text) => axum::Json(json!({"response_type": "ephemeral", "text": text})).into_response(),
        Err(_) => {
            axum::Json(json!({"response_type": "ephemeral", "text": "Clawhive is busy; try again."})).into_response()
        }
    }
}

async fn events(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = check(&app, &headers, &body) {
        return *r;
    }
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    match v.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = v.get("challenge").and_then(Value::as_str).unwrap_or_default();
            axum::Json(json!({"challenge": challenge})).into_response()
        }
        Some("event_callback") => match tokio::time::timeout(HANDLE_BUDGET, app.bridge.handle_event(&v)).await {
            Ok(Ok(outcome)) => {
                tracing::debug!(?outcome, retry = h("x-slack-retry-num").unwrap_or("0"), "Event handled.");
                StatusCode::OK.into_response()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot handle an event now; Slack will retry.");
                error(StatusCode::SERVICE_UNAVAILABLE, "try again")
            }
            Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "took too long; try again"),
        },
        _ => StatusCode::OK.into_response(),
    }
}
