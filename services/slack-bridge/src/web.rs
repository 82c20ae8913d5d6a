//! A small Slack Web API client: the few methods the bridge calls, against a
//! configurable base URL (`https://slack.com/api`, or a local fake in tests).
//!
//! Slack answers HTTP 200 with `{"ok": false, "error": "…"}` for most failures;
//! rate limiting is HTTP 429 with `Retry-After` (seconds), which is honoured
//! (up to [`MAX_RATE_LIMIT_WAITS`] times per call).

use serde_json::{Value, json};
use std::time::Duration;

/// How many 429s one call waits out before giving up.
pub const MAX_RATE_LIMIT_WAITS: u32 = 5;
/// Longest `Retry-After` honoured; a longer one fails the call (it is retried later).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("Slack {method}: {error}")]
    Api { method: String, error: String },
    #[error("Slack {method} is rate limited for {retry_after:?}")]
    RateLimited { method: String, retry_after: Duration },
    #[error("Slack {method}: {reason}")]
    Transport { method: String, reason: String },
}

impl WebError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            WebError::Api { error, .. } => {
                matches!(error.as_str(), "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout")
            }
            WebError::RateLimited { .. } | WebError::Transport { .. } => true,
        }
    }
}

/// A message Slack stored: its channel and timestamp (the message id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

#[derive(Clone)]
pub struct SlackWeb {
    http: reqwest::Client,
    base: String,
    bot_token: String,
    app_token: String,
}

impl std::fmt::Debug for SlackWeb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWeb").field("base", &self.base).finish_non_exhaustive()
    }
}

impl SlackWeb {
    pub fn new(base: &str, bot_token: String, app_token: String) -> Result<Self, WebError> {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().map_err(|e| WebError::Transport {
            method: "client".into(),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), bot_token, app_token })
    }

    /// Calls `method` with a JSON body and `token`, waiting out 429s.
    async fn call(&self, method: &str, token: &str, body: &Value) -> Result<Value, WebError> {
        let url = format!("{}/{method}", self.base);
        let mut waits = 0;
        loop {
            let resp = self
                .http
                .post(&url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .map_err(|e| WebError::Transport { method: method.into(), reason: e.to_string() })?;
            if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(1));
                waits += 1;
                if waits > MAX_RATE_LIMIT_WAITS || retry_after > MAX_RETRY_AFTER {
                    return Err(WebError::RateLimited { method: method.into(), retry_after });
                }
                tracing::info!(
                    method,
                    retry_after_s = retry_after.as_secs(),
                    "Slack rate limited a call; waiting as asked."
                );
                tokio::time::sleep(retry_after).await;
                continue;
            }
            let status = resp.status();
            if !status.is_success() {
                return Err(WebError::Transport { method: method.into(), reason: format!("HTTP {status}") });
            }
            let v: Value = resp
                .json()
                .await
                .map_err(|e| WebError::Transport { method: method.into(), reason: format!("bad JSON: {e}") })?;
            if v.get("ok").and_then(Value::as_bool) != Some(true) {
                let error = v.get("error").and_then(Value::as_str).unwrap_or("unknown_error").to_string();
                return Err(WebError::Api { method: method.into(), error });
            }
            return Ok(v);
        }
    }

    /// `apps.connections.open`: a fresh Socket Mode URL (app-level token).
    pub async fn open_connection(&self) -> Result<String, WebError> {
        let v = self.call("apps.connections.open", &self.app_token, &json!({})).await?;
        v.get("url").and_then(Value::as_str).map(str::to_string).ok_or_else(|| WebError::Api {
            method: "apps.connections.open".into(),
            error: "the answer has no url".into(),
        })
    }

    /// `auth.test`: the bot's own user id and team.
    pub async fn auth_test(&self) -> Result<(String, String), WebError> {
        let v = self.call("auth.test", &self.bot_token, &json!({})).await?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok((s("user_id"), s("team_id")))
    }

    /// `chat.postMessage` into `channel`, in `thread_ts` when not empty.
    pub async fn post_message(&self, channel: &str, thread_ts: &str, text: &str) -> Result<Posted, WebError> {
        let mut body = json!({"channel": channel, "text": text, "mrkdwn": true, "unfurl_links": false});
        if !thread_ts.is_empty() {
            body["thread_ts"] = json!(thread_ts);
        }
        let v = self.call("chat.postMessage", &self.bot_token, &body).await;
        clawhive_telemetry::metrics::slack_post("post", if v.is_ok() { "ok" } else { "error" });
        let v = v?;
        Ok(Posted {
            channel: v.get("channel").and_then(Value::as_str).unwrap_or(channel).to_string(),
            ts: v.get("ts").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
    }

    /// `chat.update` of a message the bot posted.
    pub async fn update_message(&self, channel: &str, ts: &str, text: &str) -> Result<(), WebError> {
        let r = self.call("chat.update", &self.bot_token, &json!({"channel": channel, "ts": ts, "text": text})).await;
        clawhive_telemetry::metrics::slack_post("update", if r.is_ok() { "ok" } else { "error" });
        r.map(|_| ())
    }

    /// `chat.postEphemeral`: only `user` sees it.
    pub async fn post_ephemeral(&self, channel: &str, user: &str, thread_ts: &str, text: &str) -> Result<(), WebError> {
        let mut body = json!({"channel": channel, "user": user, "text": text});
        if !thread_ts.is_empty() {
            body["thread_ts"] = json!(thread_ts);
        }
        self.call("chat.postEphemeral", &self.bot_token, &body).await?;
        Ok(())
    }
}
