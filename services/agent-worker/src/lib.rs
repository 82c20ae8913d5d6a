//! The agent worker: stateless, any number of replicas.
//!
//! - [`worker`]: pulls from the shared `workers` consumer and runs turns
//!   concurrently up to `worker.concurrency`; drains on shutdown.
//! - [`turn`]: one delivery from decode to ack.
//! - [`agent_loop`]: the LLM ↔ tool loop of one turn.
//! - [`keepalive`]: in-progress heartbeats to JetStream and lease renewal.
//! - [`policy`]: the policy (reloaded on change), per-call checks and the audit trail.
//! - [`secrets`]: named secrets resolved for a tool, policy-checked and audited.
//! - [`tools`]: built-in tools and the registry the loop offers to the model.
//!
//! Invariants:
//! - a request is acked only after its turn is committed to the store and its
//!   final reply is durably published (or it was terminally rejected);
//! - a turn runs only under its session's lease; its commit is fenced by the
//!   lease token, so a worker that lost its lease writes nothing;
//! - a redelivered request whose turn is committed re-sends the stored reply
//!   and never calls the LLM again.

pub mod agent_loop;
pub mod keepalive;
pub mod policy;
pub mod secrets;
pub mod tools;
pub mod turn;
pub mod worker;

pub use worker::{Deps, Extras, WorkerError, WorkerHandle, run, run_observed, start, start_with};
