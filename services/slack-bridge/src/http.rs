//! Events API over HTTP: `POST /slack/events`.
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
    Router::new().route("/slack/events", post(events)).with_state(app)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"message": message}}))).into_response()
}

async fn events(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let now = clawhive_core::time::now_unix_ms() / 1000;
    if let Err(e) = verify(&app.secret, h("x-slack-request-timestamp"), h("x-slack-signature"), &body, now) {
        tracing::warn!(reason = %e, "Refusing an Events API request with a bad signature.");
        return error(StatusCode::UNAUTHORIZED, &e.to_string());
    }
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
