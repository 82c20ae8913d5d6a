//! Start-up and observability plumbing every Clawhive binary shares.
//!
//! - [`bootstrap`]: config from file + `CLAWHIVE_*` env (fail fast), the rustls
//!   crypto provider, the tracing subscriber (text or JSON logs, OTLP export).
//! - [`otel`]: OTLP/gRPC trace export and joining spans to a `traceparent`.
//! - [`trace_context`]: W3C `traceparent` values carried in NATS headers so one
//!   trace spans ingress → worker → LLM → egress.
//! - [`metrics`]: the process's Prometheus registry and the functions services
//!   record through (bounded labels only).
//! - [`readiness`]: the `/readyz` contract (NATS, Redis, draining).
//! - [`admin`]: the admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
//! - [`service_main`]: the shared `main` of every service binary.
//! - [`shutdown`]: SIGTERM/SIGINT → one root `CancellationToken`.

pub mod admin;
pub mod bootstrap;
pub mod metrics;
pub mod otel;
pub mod readiness;
pub mod service_main;
pub mod shutdown;
pub mod trace_context;

pub use admin::{Admin, AdminError};
pub use bootstrap::{init_tracing, install_crypto_provider, load_config};
pub use otel::flush_traces;
pub use readiness::{Readiness, connect_observed, connect_with_retry};
pub use service_main::{Service, service_main};
pub use trace_context::TraceContext;
