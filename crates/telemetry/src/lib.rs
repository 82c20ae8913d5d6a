//! Start-up plumbing every Clawhive binary shares.
//!
//! - [`bootstrap`]: config from file + `CLAWHIVE_*` env (fail fast), the rustls
//!   crypto provider, the tracing subscriber.
//! - [`trace_context`]: W3C `traceparent` values carried in NATS headers so one
//!   trace spans ingress → worker → LLM → egress.
//! - [`shutdown`]: SIGTERM/SIGINT → one root `CancellationToken`.

pub mod bootstrap;
pub mod shutdown;
pub mod trace_context;

pub use bootstrap::{init_tracing, install_crypto_provider, load_config};
pub use trace_context::TraceContext;
