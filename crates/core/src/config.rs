//! The configuration model shared by every service.
//!
//! Sources, later wins: built-in defaults → one TOML file → `CLAWHIVE_*`
//! environment variables. An env variable names a path with `__` between
//! levels: `CLAWHIVE_BUS__NATS_URL=nats://…` sets `bus.nats_url`. Its value is
//! read as a TOML value when it parses as one (numbers, booleans, arrays) and
//! as a string otherwise.
//!
//! Secrets never live in the file: API keys and keys are named by the
//! environment variable (`api_key_env`, `envelope_key_env`, `secrets_key_env`) or
//! a mounted file. Users and API tokens live in the identity store, not here.
//! [`Config::validate`] fails fast with a one-line reason.

use crate::ids::{AgentId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::scheduler_config::SchedulerConfig;

pub use crate::slack_config::{SlackChannel, SlackConfig, SlackTeam};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file is not valid TOML: {0}")]
    Parse(String),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub bus: BusConfig,
    pub store: StoreConfig,
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    pub llm: LlmConfig,
    pub agents: Vec<AgentConfig>,
    /// Tools that call an HTTP endpoint with a named secret (see [`crate::http_tool`]).
    pub http_tools: Vec<crate::http_tool::HttpToolConfig>,
    pub telemetry: TelemetryConfig,
    pub security: SecurityConfig,
    pub scheduler: SchedulerConfig,
    pub slack: SlackConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bus: BusConfig::default(),
            store: StoreConfig::default(),
            gateway: GatewayConfig::default(),
            worker: WorkerConfig::default(),
            llm: LlmConfig::default(),
            agents: vec![AgentConfig::default()],
            http_tools: Vec::new(),
            telemetry: TelemetryConfig::default(),
            security: SecurityConfig::default(),
            scheduler: SchedulerConfig::default(),
            slack: SlackConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub nats_url: String,
    /// Replicas for JetStream streams (3 in a production NATS cluster).
    pub stream_replicas: usize,
    /// Deliveries of one request before the worker gives up with a terminal error.
    pub max_attempts: i64,
    /// How long a worker may hold a request without an ack or a heartbeat.
    pub ack_wait_ms: u64,
    /// Window in which JetStream drops a request id it has already seen.
    pub duplicate_window_ms: u64,
    /// Prefix of subjects and stream names, to run several isolated systems on one NATS.
    pub namespace: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            stream_replicas: 1,
            max_attempts: 4,
            ack_wait_ms: 30_000,
            duplicate_window_ms: 120_000,
            namespace: "clawhive".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub redis_url: String,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Messages loaded as history for a turn (the newest N).
    pub history_limit: usize,
    /// How long a committed turn's reply is kept for idempotent re-sends.
    pub turn_record_ttl_secs: u64,
    /// `clawhive up`'s embedded store: turns commit at once and reach the disk
    /// (one fsync for all of them) within this many ms, like Redis'
    /// `appendfsync everysec`; a crash loses at most that window. 0: every turn
    /// waits for its own fsync.
    pub embedded_flush_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "ch".into(),
            history_limit: 200,
            turn_record_ttl_secs: 7 * 24 * 3600,
            embedded_flush_ms: 100,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub grpc_addr: String,
    pub http_addr: String,
    pub max_body_bytes: usize,
    pub max_message_chars: usize,
    /// Turn deadline when the client names none.
    pub default_timeout_ms: u64,
    /// Upper bound on a client-requested deadline.
    pub max_timeout_ms: u64,
    /// Timeout of non-streaming HTTP calls (list, get, reset).
    pub request_timeout_ms: u64,
    /// Agent used when a request names none.
    pub default_agent: String,
    /// How long a resolved API token is remembered (0: ask the identity store on
    /// every call). Revocations through the Admin API take effect at once on
    /// every gateway that hears the bus broadcast; this bounds it otherwise.
    pub auth_cache_ms: u64,
    /// How long a session seen writable by a user skips the gateway's
    /// ownership lookup (0: never); the worker checks ownership on every turn.
    pub session_cache_ms: u64,
    /// Removed: static tokens. Users and API tokens live in the identity store;
    /// a file that still has `[[gateway.tokens]]` is refused with a pointer to the Admin API.
    #[serde(default, skip_serializing)]
    pub tokens: Option<serde::de::IgnoredAny>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            max_message_chars: 32_000,
            default_timeout_ms: 120_000,
            max_timeout_ms: 600_000,
            request_timeout_ms: 10_000,
            default_agent: "default".into(),
            auth_cache_ms: 5_000,
            session_cache_ms: 300_000,
            tokens: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Turns one worker runs at once.
    pub concurrency: usize,
    /// LLM ↔ tool round trips per turn.
    pub max_steps: u32,
    pub lease_ttl_ms: u64,
    /// How long a turn waits for another turn of its session to finish.
    pub lease_wait_ms: u64,
    /// Grace period for in-flight turns on shutdown; the rest are handed back.
    pub drain_timeout_ms: u64,
    /// Streaming: the first piece of a reply goes out at once, later pieces at
    /// most this often (what arrives meanwhile is sent as one delta); 0 sends
    /// every piece as the model streams it.
    pub delta_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_steps: 8,
            lease_ttl_ms: 30_000,
            lease_wait_ms: 20_000,
            drain_timeout_ms: 20_000,
            delta_interval_ms: 50,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI chat completions (OpenRouter, OpenAI, vLLM, Ollama, …).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    /// Environment variable holding the API key; empty for keyless local servers.
    #[serde(default)]
    pub api_key_env: String,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff")]
    pub initial_backoff_ms: u64,
    /// Upper bound on one HTTP attempt (the request deadline bounds the total).
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_ms: u64,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    250
}
fn default_attempt_timeout() -> u64 {
    120_000
}

impl ProviderConfig {
    pub fn new(kind: ProviderKind, base_url: &str, api_key_env: &str) -> Self {
        Self {
            kind,
            base_url: base_url.into(),
            api_key_env: api_key_env.into(),
            max_retries: default_retries(),
            initial_backoff_ms: default_backoff(),
            attempt_timeout_ms: default_attempt_timeout(),
            max_tokens: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Providers by the name used as the first segment of a model string.
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        let mut providers = BTreeMap::new();
        providers.insert(
            "openrouter".into(),
            ProviderConfig::new(ProviderKind::Openai, "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        );
        providers.insert(
            "openai".into(),
            ProviderConfig::new(ProviderKind::Openai, "https://api.openai.com/v1", "OPENAI_API_KEY"),
        );
        providers.insert(
            "anthropic".into(),
            ProviderConfig::new(ProviderKind::Anthropic, "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        );
        Self { providers }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub id: AgentId,
    /// `provider/model`, split at the first slash.
    pub model: String,
    /// Tried in order when the primary model fails with a transient error.
    pub fallbacks: Vec<String>,
    pub system_prompt: String,
    /// Built-in tools this agent may offer.
    pub tools: Vec<String>,
    pub max_steps: Option<u32>,
    /// Tenants that may use this agent; empty means all.
    pub tenants: Vec<TenantId>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            id: AgentId::new("default").expect("valid"),
            model: "openrouter/arcee-ai/trinity-mini:free".into(),
            fallbacks: Vec::new(),
            system_prompt: "You are Clawhive, a helpful assistant for a team. Be concise.".into(),
            tools: vec!["current_time".into()],
            max_steps: None,
            tenants: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: String,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// Where the admin HTTP server (`/healthz`, `/readyz`, `/metrics`) listens,
    /// e.g. `0.0.0.0:9090` in a pod; empty = no admin server.
    pub admin_addr: String,
    /// OTLP/gRPC collector endpoint (`http://otel-collector:4317`); empty = no trace export.
    pub otlp_endpoint: String,
    /// Fraction of new traces sampled (0.0–1.0); a caller's sampled flag is honoured.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_level: "info".into(),
            admin_addr: String::new(),
            otlp_endpoint: String::new(),
            trace_sample_ratio: 1.0,
        }
    }
}

/// Keys and policy. Key material only ever comes from the environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Env var holding the key that signs principals on bus envelopes (shared by all services).
    /// When the variable is unset, envelopes are not signed and workers accept unsigned ones
    /// only if `require_signed_envelopes` is false.
    pub envelope_key_env: String,
    /// Or a file holding the key (a mounted Kubernetes Secret); used when the env var is unset.
    pub envelope_key_file: String,
    /// Reject requests whose principal signature is missing or wrong.
    pub require_signed_envelopes: bool,
    /// Policy document (TOML); empty = the built-in default (every user may use every
    /// configured agent and the agent's tools).
    pub policy_file: String,
    /// Env var holding the 32-byte key (hex or base64) that encrypts named secrets at rest.
    /// Unset: secrets cannot be stored or resolved (tools that need one report it).
    pub secrets_key_env: String,
    /// Or a file holding that key (a mounted Kubernetes Secret).
    pub secrets_key_file: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            envelope_key_env: "CLAWHIVE_ENVELOPE_KEY".into(),
            envelope_key_file: String::new(),
            require_signed_envelopes: false,
            policy_file: String::new(),
            secrets_key_env: "CLAWHIVE_SECRETS_KEY".into(),
            secrets_key_file: String::new(),
        }
    }
}

/// Splits `provider/model` at the first slash.
pub fn split_model(model: &str) -> Result<(&str, &str), ConfigError> {
    match model.split_once('/') {
        Some((p, m)) if !p.is_empty() && !m.is_empty() => Ok((p, m)),
        _ => Err(ConfigError::Invalid(format!(
            "model {model:?} must be written provider/model, e.g. openrouter/arcee-ai/trinity-mini:free"
        ))),
    }
}

impl Config {
    /// Builds the effective config from an optional TOML document and environment pairs.
    pub fn from_sources<I>(file: Option<&str>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut doc: toml::Table = match file {
            Some(text) => text.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?,
            None => toml::Table::new(),
        };
        let mut env: Vec<_> = env.into_iter().filter(|(k, _)| k.starts_with("CLAWHIVE_")).collect();
        env.sort();
        for (var, value) in env {
            // Only variables naming a config section are overrides; the rest
            // (CLAWHIVE_CONFIG, CLAWHIVE_TOKEN, CLAWHIVE_MODEL, …) belong to the CLI.
            let section = var["CLAWHIVE_".len()..].split("__").next().unwrap_or("").to_ascii_lowercase();
            if !SECTIONS.contains(&section.as_str()) || !var.contains("__") {
                continue;
            }
            apply_env(&mut doc, &var, &value)?;
        }
        fill_builtin_providers(&mut doc);
        let mut cfg: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string().trim().replace('\n', " ")))?;
        // Built-in providers stay available when the file adds its own.
        for (name, provider) in LlmConfig::default().providers {
            cfg.llm.providers.entry(name).or_insert(provider);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules; the error is one line naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.bus.max_attempts < 1 {
            return bad("bus.max_attempts must be at least 1".into());
        }
        if self.bus.ack_wait_ms < 1000 {
            return bad("bus.ack_wait_ms must be at least 1000".into());
        }
        if self.bus.namespace.is_empty()
            || !self.bus.namespace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return bad("bus.namespace must be non-empty [a-z0-9_]".into());
        }
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency must be at least 1".into());
        }
        if self.worker.max_steps == 0 {
            return bad("worker.max_steps must be at least 1".into());
        }
        if self.gateway.max_body_bytes < 256 {
            return bad("gateway.max_body_bytes must be at least 256".into());
        }
        if self.agents.is_empty() {
            return bad("at least one [[agents]] entry is required".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.agents {
            if !seen.insert(a.id.as_str()) {
                return bad(format!("agent {} is defined twice", a.id));
            }
            for m in std::iter::once(&a.model).chain(&a.fallbacks) {
                let (provider, _) = split_model(m)?;
                if !self.llm.providers.contains_key(provider) {
                    return bad(format!(
                        "agent {}: model {m:?} names provider {provider:?}, which is not in [llm.providers]",
                        a.id
                    ));
                }
            }
        }
        if !self.agents.iter().any(|a| a.id.as_str() == self.gateway.default_agent) {
            return bad(format!("gateway.default_agent {:?} is not a configured agent", self.gateway.default_agent));
        }
        if self.gateway.tokens.is_some() {
            return bad("gateway.tokens is no longer supported: users and API tokens live in the identity store; \
                create them with `clawhive admin` (the first admin signs in with CLAWHIVE_BOOTSTRAP_ADMIN_TOKEN)"
                .into());
        }
        for (name, p) in &self.llm.providers {
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return bad(format!("llm.providers.{name}.base_url must start with http:// or https://"));
            }
        }
        let mut tool_names = std::collections::BTreeSet::new();
        for t in &self.http_tools {
            t.validate().map_err(ConfigError::Invalid)?;
            if !tool_names.insert(t.name.as_str()) {
                return bad(format!("http_tools: {} is defined twice", t.name));
            }
        }
        let agent_ids: Vec<&str> = self.agents.iter().map(|a| a.id.as_str()).collect();
        self.slack.validate(&agent_ids).map_err(ConfigError::Invalid)?;
        self.scheduler.validate()?;
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            return bad("telemetry.log_format must be text or json".into());
        }
        if !self.telemetry.admin_addr.is_empty() && self.telemetry.admin_addr.parse::<std::net::SocketAddr>().is_err() {
            return bad(format!(
                "telemetry.admin_addr {:?} must be host:port with an IP address, e.g. 0.0.0.0:9090",
                self.telemetry.admin_addr
            ));
        }
        let otlp = &self.telemetry.otlp_endpoint;
        if !(otlp.is_empty() || otlp.starts_with("http://") || otlp.starts_with("https://")) {
            return bad(format!("telemetry.otlp_endpoint {otlp:?} must start with http:// or https://"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return bad("telemetry.trace_sample_ratio must be between 0.0 and 1.0".into());
        }
        Ok(())
    }

    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id.as_str() == id)
    }

    /// The config as TOML with anything secret-looking redacted, for `config check`.
    pub fn redacted_toml(&self) -> String {
        let mut cfg = self.clone();
        cfg.bus.nats_url = redact_url(&cfg.bus.nats_url);
        cfg.store.redis_url = redact_url(&cfg.store.redis_url);
        toml::to_string_pretty(&cfg).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Hides the password part of `scheme://user:pass@host`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.rsplit_once('@')
    {
        let user = auth.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.to_string()
}

/// A built-in provider that the file or env only partly sets (say just
/// `CLAWHIVE_LLM__PROVIDERS__OPENROUTER__BASE_URL`) keeps its other defaults.
fn fill_builtin_providers(doc: &mut toml::Table) {
    let Some(toml::Value::Table(providers)) = doc.get_mut("llm").and_then(|l| l.get_mut("providers")) else {
        return;
    };
    for (name, builtin) in LlmConfig::default().providers {
        if let (Some(toml::Value::Table(given)), Ok(toml::Value::Table(defaults))) =
            (providers.get_mut(&name), toml::Value::try_from(&builtin))
        {
            for (k, v) in defaults {
                given.entry(k).or_insert(v);
            }
        }
    }
}

/// Top-level config sections that `CLAWHIVE_<SECTION>__…` variables may set.
const SECTIONS: &[&str] = &["bus", "store", "gateway", "worker", "llm", "telemetry", "security", "scheduler", "slack"];

fn apply_env(doc: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var["CLAWHIVE_".len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Env { var: var.into(), reason: "empty path segment".into() });
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut table = doc;
    for seg in &path[..path.len() - 1] {
        let entry = table.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Env { var: var.into(), reason: format!("{seg} is not a table") });
            }
        };
    }
    let leaf = path.last().expect("non-empty").clone();
    // Strings that look like other TOML types stay strings when the file says string.
    let value = match (table.get(&leaf), parsed) {
        (Some(toml::Value::String(_)), v) if !v.is_str() => toml::Value::String(value.to_string()),
        (_, v) => v,
    };
    table.insert(leaf, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::from_sources(None, Vec::new()).unwrap();
    }

    #[test]
    fn env_overrides_file() {
        let file = "[bus]\nnats_url = \"nats://file:4222\"\n[worker]\nconcurrency = 2\n";
        let cfg = Config::from_sources(
            Some(file),
            env(&[
                ("CLAWHIVE_BUS__NATS_URL", "nats://env:4222"),
                ("CLAWHIVE_WORKER__CONCURRENCY", "7"),
                ("OTHER", "x"),
                ("CLAWHIVE_TOKEN", "t"),
                ("CLAWHIVE_MODEL", "a/b"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.bus.nats_url, "nats://env:4222");
        assert_eq!(cfg.worker.concurrency, 7);
    }

    #[test]
    fn env_can_set_nested_provider() {
        let cfg = Config::from_sources(
            None,
            env(&[
                ("CLAWHIVE_LLM__PROVIDERS__LOCAL__KIND", "openai"),
                ("CLAWHIVE_LLM__PROVIDERS__LOCAL__BASE_URL", "http://127.0.0.1:1/v1"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.llm.providers["local"].base_url, "http://127.0.0.1:1/v1");
    }

    #[test]
    fn errors_are_one_line_and_name_the_field() {
        let e = Config::from_sources(Some("[worker]\nconcurrency = 0\n"), Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "invalid config: worker.concurrency must be at least 1");
        let e = Config::from_sources(Some("[bus]\nnats_urll = \"x\"\n"), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("nats_urll"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = Config::from_sources(
            Some("[[agents]]\nid = \"a\"\nmodel = \"nope\"\n[gateway]\ndefault_agent=\"a\""),
            Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("provider/model"), "{e}");
        let e = Config::from_sources(Some("[bus\n"), Vec::new()).unwrap_err();
        assert!(matches!(e, ConfigError::Parse(_)));
    }

    #[test]
    fn a_builtin_provider_keeps_its_defaults_when_partly_overridden() {
        let cfg = Config::from_sources(
            None,
            env(&[("CLAWHIVE_LLM__PROVIDERS__OPENROUTER__BASE_URL", "http://127.0.0.1:1/v1")]),
        )
        .unwrap();
        let p = &cfg.llm.providers["openrouter"];
        assert_eq!(
            (p.kind, p.base_url.as_str(), p.api_key_env.as_str()),
            (ProviderKind::Openai, "http://127.0.0.1:1/v1", "OPENROUTER_API_KEY")
        );
    }

    #[test]
    fn telemetry_addresses_are_checked() {
        let cfg = Config::from_sources(
            None,
            env(&[
                ("CLAWHIVE_TELEMETRY__ADMIN_ADDR", "0.0.0.0:9090"),
                ("CLAWHIVE_TELEMETRY__OTLP_ENDPOINT", "http://otel:4317"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.telemetry.admin_addr, "0.0.0.0:9090");
        assert_eq!(cfg.telemetry.otlp_endpoint, "http://otel:4317");
        let e = Config::from_sources(None, env(&[("CLAWHIVE_TELEMETRY__ADMIN_ADDR", "localhost")])).unwrap_err();
        assert!(e.to_string().contains("telemetry.admin_addr"), "{e}");
        let e = Config::from_sources(None, env(&[("CLAWHIVE_TELEMETRY__OTLP_ENDPOINT", "otel:4317")])).unwrap_err();
        assert!(e.to_string().contains("telemetry.otlp_endpoint"), "{e}");
        let e = Config::from_sources(None, env(&[("CLAWHIVE_TELEMETRY__TRACE_SAMPLE_RATIO", "2.0")])).unwrap_err();
        assert!(e.to_string().contains("trace_sample_ratio"), "{e}");
    }

    #[test]
    fn model_split_at_first_slash() {
        assert_eq!(
            split_model("openrouter/arcee-ai/trinity-mini:free").unwrap(),
            ("openrouter", "arcee-ai/trinity-mini:free")
        );
        assert!(split_model("gpt-4o").is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(redact_url("redis://u:p@h:1"), "redis://u:<redacted>@h:1");
        assert_eq!(redact_url("nats://h:1"), "nats://h:1");
    }
}
