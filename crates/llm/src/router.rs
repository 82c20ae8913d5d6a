//! Model selection, retries, fallback and the deadline.
//!
//! Invariants: no attempt runs past the caller's deadline; once a delta has
//! reached the caller, nothing is retried or sent to another model (the caller
//! would see the answer twice); retries back off exponentially with jitter and
//! honour `Retry-After`.

use crate::error::LlmError;
use crate::provider::Provider;
use crate::retry::backoff;
use crate::types::{ChatRequest, ChatResponse};
use clawhive_core::config::{LlmConfig, split_model};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

/// Routes `provider/model` strings to provider clients. Cheap to clone.
#[derive(Clone)]
pub struct LlmRouter {
    providers: Arc<BTreeMap<String, Provider>>,
}

impl std::fmt::Debug for LlmRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmRouter").field("providers", &self.providers.keys().collect::<Vec<_>>()).finish()
    }
}

impl LlmRouter {
    /// Builds one client per configured provider. `env` looks up API keys
    /// (tests pass a closure; binaries pass `std::env::var`). A missing key is
    /// reported when the provider is used, so an unused provider cannot break start-up.
    pub fn from_config(cfg: &LlmConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, LlmError> {
        // reqwest is built without a default crypto provider; https needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let providers = cfg
            .providers
            .iter()
            .map(|(name, p)| Ok((name.clone(), Provider::new(name, p, env)?)))
            .collect::<Result<BTreeMap<_, _>, LlmError>>()?;
        Ok(Self { providers: Arc::new(providers) })
    }

    /// Tries `models` in order (`provider/model`, split at the first slash),
    /// streaming text deltas to `on_delta` as they arrive.
    ///
    /// Each model is retried on 429/5xx/transport errors; the next model is
    /// tried when retries are exhausted or the provider's API key is missing,
    /// unless a delta was already emitted. When `deadline` passes, the
    /// in-flight request is dropped and [`LlmError::DeadlineExceeded`] returned.
    pub async fn chat(
        &self,
        models: &[String],
        req: &ChatRequest,
        deadline: Instant,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let emitted = AtomicBool::new(false);
        let emit = |text: &str| {
            emitted.store(true, Ordering::Relaxed);
            on_delta(text);
        };
        let mut last_err = LlmError::InvalidRequest("no model to ask".into());
        for (i, model) in models.iter().enumerate() {
            let (provider_name, model_id) = split_model(model).map_err(|_| LlmError::InvalidModel(model.clone()))?;
            let provider = self
                .providers
                .get(provider_name)
                .ok_or_else(|| LlmError::UnknownProvider { provider: provider_name.into(), model: model.clone() })?;
            let span = tracing::info_span!("llm.chat", model = %model, provider = provider_name,
                input_tokens = tracing::field::Empty, output_tokens = tracing::field::Empty,
                outcome = tracing::field::Empty, otel.kind = "client");
            let started = Instant::now();
            let result = {
                use tracing::Instrument;
                try_model(provider, model_id, req, deadline, &emit, &emitted).instrument(span.clone()).await
            };
            record(&span, model, &result, started.elapsed());
            match result {
                Ok(mut resp) => {
                    resp.model = model.clone();
                    tracing::debug!(
                        model,
                        input_tokens = resp.usage.input_tokens,
                        output_tokens = resp.usage.output_tokens,
                        finish_reason = resp.finish_reason,
                        "Model answered."
                    );
                    return Ok(resp);
                }
                Err(e) if emitted.load(Ordering::Relaxed) || !e.allows_fallback() => return Err(e),
                Err(e) => {
                    if let Some(next) = models.get(i + 1) {
                        tracing::warn!(model, next, error = %e, "Model failed; falling back to the next one.");
                    }
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }
}

/// Puts the model's answer (tokens, outcome) on its span and in the metrics.
fn record(span: &tracing::Span, model: &str, result: &Result<ChatResponse, LlmError>, elapsed: std::time::Duration) {
    let (outcome, input, output) = match result {
        Ok(r) => ("ok", r.usage.input_tokens as u64, r.usage.output_tokens as u64),
        Err(e) => (e.code().as_str(), 0, 0),
    };
    span.record("outcome", outcome);
    if result.is_ok() {
        span.record("input_tokens", input);
        span.record("output_tokens", output);
    }
    clawhive_telemetry::metrics::observe_llm(model, outcome, elapsed, input, output);
}

/// One model with retries. Returns the last error once retrying stops.
async fn try_model(
    provider: &Provider,
    model_id: &str,
    req: &ChatRequest,
    deadline: Instant,
    emit: &(dyn Fn(&str) + Send + Sync),
    emitted: &AtomicBool,
) -> Result<ChatResponse, LlmError> {
    let mut retry = 0;
    loop {
        let started = Instant::now();
        if started >= deadline {
            return Err(LlmError::DeadlineExceeded);
        }
        let attempt_deadline = deadline.min(started + provider.attempt_timeout);
        let err = match tokio::time::timeout_at(attempt_deadline, provider.attempt(model_id, req, emit)).await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) => e,
            Err(_) if attempt_deadline == deadline => return Err(LlmError::DeadlineExceeded),
            Err(_) => LlmError::Transport(format!(
                "no complete answer within the attempt timeout of {} ms",
                provider.attempt_timeout.as_millis()
            )),
        };
        if emitted.load(Ordering::Relaxed) || !err.is_retryable() || retry >= provider.max_retries {
            return Err(err);
        }
        let wait = err.retry_after().unwrap_or_else(|| backoff(provider.initial_backoff, retry));
        if Instant::now() + wait >= deadline {
            tracing::debug!(provider = provider.name, model = model_id, error = %err, "No time left to retry before the deadline.");
            return Err(err);
        }
        retry += 1;
        tracing::info!(provider = provider.name, model = model_id, retry, wait_ms = wait.as_millis() as u64, error = %err,
            "LLM call failed; retrying.");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send_sync_clone<T: Send + Sync + Clone>() {}
    fn is_send<T: Send>(_: T) {}

    /// The agent worker spawns calls onto the runtime; this fails to compile if that breaks.
    #[allow(dead_code)]
    fn chat_future_is_send(
        r: &LlmRouter,
        models: &[String],
        req: &ChatRequest,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) {
        is_send_sync_clone::<LlmRouter>();
        is_send(r.chat(models, req, Instant::now(), on_delta));
    }

    #[tokio::test]
    async fn an_empty_model_list_or_a_past_deadline_fails_fast() {
        let router = LlmRouter::from_config(&LlmConfig::default(), &|_| Some("key".into())).unwrap();
        let req = ChatRequest::default();
        let err = router.chat(&[], &req, Instant::now(), &|_| {}).await.unwrap_err();
        assert!(matches!(err, LlmError::InvalidRequest(_)), "{err}");
        let models = ["openrouter/some/model".to_string()];
        let err = router.chat(&models, &req, Instant::now(), &|_| {}).await.unwrap_err();
        assert!(matches!(err, LlmError::DeadlineExceeded), "{err}");
    }
}
