//! Built-in tools. Each tool is a file; the registry offers an agent only the
//! tools its config names, and the loop refuses any call outside that set.

mod current_time;

use async_trait::async_trait;
use clawhive_core::chat::ToolSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use current_time::CurrentTime;

/// What a tool returns to the model: text, or an error the model may read and recover from.
pub type ToolResult = Result<String, String>;

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Runs with the raw JSON arguments the model produced.
    async fn call(&self, arguments: &str) -> ToolResult;
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
