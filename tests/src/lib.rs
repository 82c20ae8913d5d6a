//! Test harness shared by the crate tests, the end-to-end suite and the benchmarks.
//!
//! - [`servers`]: starts real `nats-server -js` and `redis-server` as child
//!   processes on free loopback ports, and stops them on `Drop`.
//! - [`fake_llm`]: a local HTTP server that speaks the OpenAI chat-completions
//!   and Anthropic Messages protocols (streaming SSE and tool calls included),
//!   scripted by words in the prompt so that separate worker processes see
//!   the same behaviour.
//! - [`procs`]: builds and spawns the service binaries as child processes.

pub mod fake_llm;
pub mod servers;
pub mod procs;
