//! Config of HTTP tools: a tool the worker offers the model that calls one HTTP
//! endpoint for the principal, authenticated with a named secret resolved for
//! that principal (their own, else the tenant's). The model sees the response,
//! never the secret.
//!
//! ```toml
//! [[http_tools]]
//! name = "linkedin.profile"
//! description = "Reads the caller's LinkedIn profile."
//! url = "https://api.linkedin.example/v2/me"
//! secret = "linkedin-token"        # sent as `Authorization: Bearer <value>`
//! ```

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    /// Tool name the model calls and policy grants (`linkedin.*`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Endpoint; the model's arguments (a flat JSON object) become query parameters.
    pub url: String,
    /// Named secret sent as a bearer token; empty = no authentication.
    #[serde(default)]
    pub secret: String,
    /// Longest response passed to the model, in bytes (default 8 KiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Per-call timeout (default 10 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_response_bytes() -> usize {
    8 * 1024
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl HttpToolConfig {
    /// One-line reason when the entry is unusable.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(format!("http_tools: name {:?} must be 1-64 of A-Z a-z 0-9 . _ -", self.name));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("http_tools.{}: url must start with http:// or https://", self.name));
        }
        if self.max_response_bytes == 0 || self.timeout_ms == 0 {
            return Err(format!("http_tools.{}: max_response_bytes and timeout_ms must be positive", self.name));
        }
        Ok(())
    }
}
