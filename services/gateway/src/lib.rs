//! The gateway: Clawhive's gRPC (tonic) and HTTP (axum) ingress.
//!
//! Module map:
//! - [`auth`]: `Authorization: Bearer <token>` → [`Principal`](clawhive_core::Principal), constant-time.
//! - [`cache`]: resolved tokens and sessions known writable, with TTLs and
//!   bus-broadcast invalidation.
//! - [`fanin`]: one subscription each to this instance's reply and delta subjects,
//!   routing by call id to the calls waiting here.
//! - [`chat`]: the turn shared by both APIs: validate, publish the `AgentRequest`,
//!   stream deltas, finish on the final reply or the deadline.
//! - [`sessions`]: list / get / reset, with the ownership rules.
//! - [`grpc`]: the `clawhive.v1.Assistant` service, health and reflection.
//! - [`admin`]: the `clawhive.v1.Admin` service (users, issued tokens), admins only,
//!   within their own tenant.
//! - [`schedules`]: the `clawhive.v1.Schedules` service (a user's own jobs; admins the tenant's).
//! - [`http`]: the JSON / SSE API, `/healthz`, `/readyz`.
//! - [`state`]: what both APIs share (config, auth, store, bus, fan-in).
//! - [`server`]: binding, serving and graceful shutdown.
//!
//! Invariants:
//! - nothing is published before the caller is authenticated and the input validated;
//! - a call is registered for its reply before its request is published, and
//!   unregistered when it ends for any reason (reply, deadline, client gone);
//! - another user's session answers exactly like a missing one (not found).

pub mod admin;
pub mod admin_pairing;
pub mod admin_vault;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod fanin;
pub mod grpc;
pub mod http;
pub mod schedules;
pub mod server;
pub mod sessions;
pub mod state;

pub use server::{Deps, Extras, GatewayError, GatewayHandle, run, run_observed, start, start_with};
