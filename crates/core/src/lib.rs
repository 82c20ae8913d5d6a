//! Clawhive's domain: identifiers, principals, sessions, chat messages, the
//! error taxonomy and the configuration model.
//!
//! This crate does no I/O. Everything here is plain data and rules that every
//! service and adapter shares:
//!
//! - [`ids`]: validated identifiers; tenant and agent ids are safe NATS subject tokens.
//! - [`principal`]: who is asking (tenant, user, roles, groups).
//! - [`session`]: session keys and metadata; who may read a session.
//! - [`chat`]: messages, tool calls and tool specs as stored and sent to LLMs.
//! - [`error`]: one error-code enum mapped once to HTTP, gRPC and bus decisions.
//! - [`config`]: the configuration model, defaults, env overrides and validation.
//! - [`signing`]: HMAC signatures over bus envelopes, so forged principals are rejected.
//! - [`policy`]: grants of agents, tools and secrets; default deny for tools.
//! - [`schedule`]: scheduled jobs, their cron/interval/once schedules and the catch-up rule.
//! - [`scheduler_config`]: the `[scheduler]` config section.
//! - [`http_tool`]: config of HTTP tools that call an endpoint with a named secret.
//! - [`token`]: hashing and constant-time comparison of API tokens.

pub mod chat;
pub mod config;
pub mod error;
pub mod http_tool;
pub mod ids;
pub mod policy;
pub mod principal;
pub mod schedule;
pub mod scheduler_config;
pub mod session;
pub mod signing;
pub mod slack_config;
pub mod time;
pub mod token;

pub use error::{ClawError, ErrorCode};
pub use ids::{AgentId, IdError, RequestId, SessionId, TenantId, UserId};
pub use principal::Principal;
pub use session::{SessionKey, SessionMeta};
