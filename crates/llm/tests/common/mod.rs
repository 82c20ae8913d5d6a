//! Helpers shared by the integration tests: a router wired to a [`FakeLlm`].
#![allow(dead_code)]

use clawhive_core::chat::{Message, ToolSpec};
use clawhive_core::config::{LlmConfig, ProviderConfig, ProviderKind};
use clawhive_llm::{ChatRequest, ChatResponse, LlmError, LlmRouter};
use clawhive_tests::fake_llm::FakeLlm;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const OPENAI: &str = "oa/gpt-test";
pub const ANTHROPIC: &str = "an/claude-test";

/// Providers `oa` (OpenAI, key `OA_KEY`), `an` (Anthropic, key `AN_KEY`),
/// `local` (OpenAI, keyless) and `nokey` (OpenAI, key variable unset), all on `fake`.
pub fn config(fake: &FakeLlm) -> LlmConfig {
    let mut cfg = LlmConfig { providers: Default::default() };
    let mut add = |name: &str, kind, base: String, key: &str| {
        let mut p = ProviderConfig::new(kind, &base, key);
        p.initial_backoff_ms = 10;
        p.max_retries = 3;
        p.attempt_timeout_ms = 10_000;
        cfg.providers.insert(name.into(), p);
    };
    add("oa", ProviderKind::Openai, fake.openai_base_url(), "OA_KEY");
    add("an", ProviderKind::Anthropic, fake.anthropic_base_url(), "AN_KEY");
    add("local", ProviderKind::Openai, fake.openai_base_url(), "");
    add("nokey", ProviderKind::Openai, fake.openai_base_url(), "NOKEY_API_KEY");
    cfg
}

pub fn env(name: &str) -> Option<String> {
    match name {
        "OA_KEY" => Some("sk-oa".into()),
        "AN_KEY" => Some("sk-an".into()),
        _ => None,
    }
}

pub fn router(cfg: &LlmConfig) -> LlmRouter {
    LlmRouter::from_config(cfg, &env).expect("router builds")
}

pub fn user(text: &str) -> ChatRequest {
    ChatRequest { messages: vec![Message::user(text)], ..Default::default() }
}

pub fn clock_tool() -> ToolSpec {
    ToolSpec {
        name: "clock".into(),
        description: "Tells the time.".into(),
        parameters: serde_json::json!({ "type": "object", "properties": { "tz": { "type": "string" } } }),
    }
}

pub struct Outcome {
    pub result: Result<ChatResponse, LlmError>,
    pub deltas: Vec<String>,
    pub elapsed: Duration,
}

pub async fn chat(router: &LlmRouter, models: &[&str], req: &ChatRequest, timeout: Duration) -> Outcome {
    let models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
    let deltas = Mutex::new(Vec::new());
    let on_delta = |d: &str| deltas.lock().unwrap().push(d.to_string());
    let started = Instant::now();
    let result = router.chat(&models, req, started + timeout, &on_delta).await;
    Outcome { result, deltas: deltas.into_inner().unwrap(), elapsed: started.elapsed() }
}

/// The part of a model string after the provider.
pub fn wire_model(model: &str) -> &str {
    model.split_once('/').unwrap().1
}

/// Defines `mod $name { openai, anthropic }` tests calling `$name(model)`.
#[macro_export]
macro_rules! both_protocols {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn openai() {
                super::$name(super::common::OPENAI).await
            }
            #[tokio::test]
            async fn anthropic() {
                super::$name(super::common::ANTHROPIC).await
            }
        }
    )*};
}
