//! The message bus: subject names, stream topology, the [`Bus`] port and its
//! NATS JetStream and in-process adapters, and typed helpers that put protobuf envelopes on it.
//!
//! Module map:
//! - [`subject`]: every subject and stream name (`clawhive.req.<tenant>.<agent>`, …).
//! - [`port`]: the [`Bus`] trait services depend on; adapters implement it.
//! - [`nats`]: the JetStream adapter (cluster mode).
//! - [`memory`]: the in-process adapter (single machine, `clawhive up`), same semantics.
//! - [`envelope`]: encode/decode of `AgentRequest`, `Reply`, `ReplyDelta` plus trace headers.
//!
//! Invariants the adapters keep (and the conformance tests check):
//! - a durable publish returns only after the stream stored the message;
//!   a message id already seen within the duplicate window is dropped, not stored twice;
//! - each message of a consumer group goes to one member at a time, and comes
//!   back after `ack_wait` unless acked, heartbeated (`in_progress`) or terminated;
//! - after `max_deliver` deliveries a message is not delivered again;
//! - a live subscription sees durable and ephemeral publishes made after it started.

pub mod envelope;
pub mod memory;
pub mod nats;
pub mod port;
mod spec;
pub mod subject;

pub use memory::MemoryBus;
pub use port::{
    Acker, Bus, BusError, BusMessage, Consumer, ConsumerSpec, Delivery, Headers, PublishOutcome, StoredMessage,
    StreamKind, Subscription,
};
pub use subject::Subjects;
