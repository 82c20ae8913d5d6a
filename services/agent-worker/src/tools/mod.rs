//! Built-in tools. Each tool is a file; the registry offers an agent only the
//! tools its config names, and the loop refuses any call outside that set.

mod current_time;
mod http_tool;
mod schedule;

use async_trait::async_trait;
use clawhive_core::chat::ToolSpec;
use clawhive_core::{AgentId, Principal};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use current_time::CurrentTime;
pub use http_tool::HttpTool;
pub use schedule::ScheduleTool;

/// What a tool returns to the model: text, or an error the model may read and recover from.
pub type ToolResult = Result<String, String>;

/// Who a tool runs for, and how it reaches named secrets. Built per call by the loop.
pub struct ToolContext<'a> {
    /// The verified caller; a tool acts only on this principal's data.
    pub principal: &'a Principal,
    pub agent: &'a AgentId,
    pub session_id: &'a str,
    pub request_id: &'a str,
    /// Resolves named secrets for the principal (policy-checked and audited).
    pub secrets: &'a (dyn SecretResolver + Sync),
}

/// Gives a tool a secret's value by name, for the calling principal only. The value must
/// never be returned to the model, logged or stored.
#[async_trait]
pub trait SecretResolver {
    async fn resolve(&self, name: &str) -> Result<Secret, String>;
}

/// A secret value; `Debug` never shows it.
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A resolver that has no secrets (tests, tools without secrets).
pub struct NoSecrets;

#[async_trait]
impl SecretResolver for NoSecrets {
    async fn resolve(&self, name: &str) -> Result<Secret, String> {
        Err(format!("secret {name} is not available"))
    }
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Runs with the raw JSON arguments the model produced.
    async fn call(&self, arguments: &str) -> ToolResult;
    /// Runs for a principal. Tools that touch user data or secrets override this;
    /// the default ignores the context.
    async fn call_as(&self, _ctx: &ToolContext<'_>, arguments: &str) -> ToolResult {
        self.call(arguments).await
    }
}

#[derive(Clone)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    pub fn builtin() -> Self {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        let t: Arc<dyn Tool> = Arc::new(CurrentTime);
        tools.insert(t.spec().name, t);
        Self { tools }
    }

    /// Adds the `schedule` tool, acting on the caller's jobs through `jobs`.
    pub fn add_schedule_tool(&mut self, jobs: clawhive_store::Jobs) {
        let t: Arc<dyn Tool> = Arc::new(ScheduleTool::new(jobs));
        self.tools.insert(t.spec().name, t);
    }

    /// Adds the configured `[[http_tools]]`; a name that clashes with a built-in is refused.
    pub fn add_http_tools(&mut self, tools: &[clawhive_core::http_tool::HttpToolConfig]) -> Result<(), String> {
        if tools.is_empty() {
            return Ok(());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| format!("http tools: {e}"))?;
        for cfg in tools {
            if self.tools.contains_key(&cfg.name) {
                return Err(format!("http_tools.{}: a built-in tool has that name", cfg.name));
            }
            self.tools.insert(cfg.name.clone(), Arc::new(HttpTool::new(cfg.clone(), client.clone())));
        }
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Specs of the tools in `allowed` that exist, in name order.
    pub fn specs_for(&self, allowed: &[String]) -> Vec<ToolSpec> {
        self.tools.iter().filter(|(n, _)| allowed.iter().any(|a| a == *n)).map(|(_, t)| t.spec()).collect()
    }
}
