//! One configured provider: its HTTP client, its key, and one HTTP attempt.

use crate::anthropic::{self, AnthropicDecoder};
use crate::error::LlmError;
use crate::openai::{self, OpenAiDecoder};
use crate::retry::parse_retry_after;
use crate::stream::{self, Decoder};
use crate::types::{ChatRequest, ChatResponse};
use clawhive_core::config::{ProviderConfig, ProviderKind};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// How much of an error body we read, and how much of it we keep.
const ERROR_BODY_READ: usize = 8 * 1024;
const ERROR_BODY_KEEP: usize = 300;

/// An API key; never printed.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    kind: ProviderKind,
    base_url: String,
    api_key_env: String,
    api_key: Option<ApiKey>,
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub attempt_timeout: Duration,
    max_tokens: Option<u32>,
    http: reqwest::Client,
}

impl Provider {
    pub fn new(name: &str, cfg: &ProviderConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("clawhive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Client { provider: name.into(), reason: e.to_string() })?;
        let api_key = if cfg.api_key_env.is_empty() {
            None
        } else {
            env(&cfg.api_key_env).filter(|k| !k.trim().is_empty()).map(|k| ApiKey(k.trim().to_string()))
        };
        Ok(Self {
            name: name.into(),
            kind: cfg.kind,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            api_key_env: cfg.api_key_env.clone(),
            api_key,
            max_retries: cfg.max_retries,
            initial_backoff: Duration::from_millis(cfg.initial_backoff_ms),
            attempt_timeout: Duration::from_millis(cfg.attempt_timeout_ms.max(1)),
            max_tokens: cfg.max_tokens,
            http,
        })
    }

    /// One HTTP request, streamed to the end. No retries, no deadline: the router owns both.
    pub async fn attempt(
        &self,
        model: &str,
        req: &ChatRequest,
        emit: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let key = match (&self.api_key, self.api_key_env.is_empty()) {
            (Some(k), _) => Some(k.0.as_str()),
            (None, true) => None,
            (None, false) => {
                return Err(LlmError::MissingApiKey { provider: self.name.clone(), env_var: self.api_key_env.clone() });
            }
        };
        let (builder, decoder): (_, Box<dyn Decoder>) = match self.kind {
            ProviderKind::Openai => {
                let body = openai::request_json(model, req, self.max_tokens)?;
                let mut b = self
                    .http
                    .post(format!("{}/chat/completions", self.base_url))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body);
                if let Some(k) = key {
                    b = b.bearer_auth(k);
                }
                (b, Box::new(OpenAiDecoder::default()))
            }
            ProviderKind::Anthropic => {
                let body = anthropic::request_body(model, req, self.max_tokens)?;
                let mut b = self
                    .http
                    .post(format!("{}/v1/messages", self.base_url))
                    .header("anthropic-version", anthropic::API_VERSION)
                    .json(&body);
                if let Some(k) = key {
                    b = b.header("x-api-key", k);
                }
                (b, Box::new(AnthropicDecoder::default()))
            }
        };
        let resp = builder.header(ACCEPT, "text/event-stream").send().await.map_err(LlmError::transport)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
            let body = error_excerpt(resp).await;
            return Err(LlmError::Status { status: status.as_u16(), body, retry_after });
        }
        let content_type =
            resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if !content_type.is_empty() && !content_type.starts_with("text/event-stream") {
            let body = error_excerpt(resp).await;
            return Err(LlmError::Protocol(format!("expected an event stream, got {content_type}: {body}")));
        }
        stream::decode(resp, decoder, emit).await
    }
}

/// A short, single-line excerpt of an error body: the JSON `error.message`
/// when there is one, else the start of the raw text.
async fn error_excerpt(mut resp: reqwest::Response) -> String {
    let mut raw = Vec::new();
    while raw.len() < ERROR_BODY_READ {
        match resp.chunk().await {
            Ok(Some(c)) => raw.extend_from_slice(&c),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string));
    let text = message.unwrap_or_else(|| text.into_owned());
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(ERROR_BODY_KEEP) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None if line.is_empty() => "(empty body)".into(),
        None => line,
    }
}
