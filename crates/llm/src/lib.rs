//! LLM provider clients behind one router.
//!
//! - `router`: [`LlmRouter`] picks the provider from a `provider/model`
//!   string, retries transient failures, falls back to the next model and
//!   enforces the caller's deadline. It never retries or falls back once a
//!   text delta has been handed to the caller.
//! - `provider`: one configured provider's HTTP client and API key; one attempt.
//! - `openai`, `anthropic`: each protocol's request body and stream decoder.
//! - `stream`, `sse`: the shared streaming path and a small SSE parser.
//! - `retry`: backoff with jitter and `Retry-After`.
//! - `error`: [`LlmError`] and its mapping to [`clawhive_core::ErrorCode`].
//!
//! API keys are read once, through the `env` function given to
//! [`LlmRouter::from_config`], and never logged; message contents are never
//! logged above debug level.

mod anthropic;
mod error;
mod openai;
mod provider;
mod retry;
mod router;
mod sse;
mod stream;
mod types;

pub use error::LlmError;
pub use router::LlmRouter;
pub use types::{ChatRequest, ChatResponse};
