//! Test harness shared by the crate tests, the end-to-end suite and the benchmarks.
//!
//! - [`nats_server`]: starts a real `nats-server -js` (2.10 or newer) as a child
//!   process on a free loopback port and stops it on `Drop`.
//! - [`redis_server`]: the same for `redis-server`.
//! - [`fake_llm`]: a local HTTP server that speaks the OpenAI chat-completions
//!   and Anthropic Messages protocols (streaming SSE and tool calls included),
//!   scripted by directives in the prompt so that separate worker processes see
//!   the same behaviour.
//! - [`fake_slack`]: a local Slack: Web API methods over HTTP and a Socket Mode
//!   WebSocket (`ws://`), driven by the test (events, redeliveries, disconnects,
//!   silent sockets, 429s) and recording acks and posted messages.
//! - [`procs`]: builds and spawns the service binaries as child processes.

pub mod fake_llm;
pub mod fake_slack;
pub mod nats_server;
pub mod procs;
pub mod redis_server;
pub mod scratch;
