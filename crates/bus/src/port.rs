//! The bus port. Services talk to this trait only, so the NATS adapter and an
//! in-process adapter are interchangeable.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::time::Duration;

/// Message headers, in order. `traceparent` and `Nats-Msg-Id` live here.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus connection failed: {0}")]
    Connect(String),
    #[error("bus publish failed: {0}")]
    Publish(String),
    #[error("bus subscribe failed: {0}")]
    Subscribe(String),
    #[error("bus consumer failed: {0}")]
    Consume(String),
    #[error("bus ack failed: {0}")]
    Ack(String),
    #[error("bus setup failed: {0}")]
    Setup(String),
    #[error("malformed envelope: {0}")]
    Decode(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    pub subject: String,
    pub headers: Headers,
    pub payload: Bytes,
}

impl BusMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    Stored,
    /// The message id was seen within the duplicate window; nothing was stored.
    Duplicate,
}

/// Which durable stream a consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Requests,
    Replies,
    Audit,
}

#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub stream: StreamKind,
    /// Durable name: members using the same name share the messages.
    pub durable: String,
    pub filter_subject: String,
    pub ack_wait: Duration,
    /// Deliveries before the message is given up (`-1` = unbounded).
    pub max_deliver: i64,
    /// Unacked messages the group may hold at once.
    pub max_ack_pending: i64,
}

pub type Subscription = BoxStream<'static, BusMessage>;

/// A message as stored in a stream, with when it was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub message: BusMessage,
    /// The stream's sequence number (increasing).
    pub seq: u64,
    pub stored_unix_ms: i64,
}

/// Acknowledgement handle of one delivery; cheap to share with a heartbeat task.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: never deliver again.
    async fn ack(&self) -> Result<(), BusError>;
    /// Hand back for redelivery, after `delay` if given.
    async fn nak(&self, delay: Option<Duration>) -> Result<(), BusError>;
    /// Still working: restart the ack-wait timer.
    async fn in_progress(&self) -> Result<(), BusError>;
    /// Give up: never deliver again, and do not count it as processed.
    async fn term(&self) -> Result<(), BusError>;
}

pub struct Delivery {
    pub message: BusMessage,
    /// 1 for the first delivery, 2 for the first redelivery, …
    pub attempt: u64,
    pub acker: std::sync::Arc<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("subject", &self.message.subject).field("attempt", &self.attempt).finish()
    }
}

/// A member of a durable consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; waits until one is available. `None` once the bus is closed.
    async fn next(&mut self) -> Option<Result<Delivery, BusError>>;

    /// [`Consumer::next`] for a caller that could start `ready` deliveries now:
    /// the consumer may ask the server for up to that many at once (one round
    /// trip for several) and hand them out over the following calls. Each call
    /// must again pass how many the caller can still start, counting the
    /// deliveries it has been handed since it last had none in hand.
    async fn next_up_to(&mut self, ready: usize) -> Option<Result<Delivery, BusError>> {
        let _ = ready;
        self.next().await
    }

    /// Before the caller stops taking deliveries: hands back (for immediate
    /// redelivery to another member) any that reached this member but were not
    /// taken yet, instead of leaving them to time out.
    async fn hand_back(&mut self) {}
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Creates or updates the streams. Idempotent; safe from every replica at start-up.
    async fn ensure_topology(&self) -> Result<(), BusError>;

    /// Stores `payload` in the stream that captures `subject`, deduplicated by `msg_id`.
    /// Live subscribers of `subject` also see it.
    async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PublishOutcome, BusError>;

    /// Fire-and-forget publish to live subscribers only (streaming deltas).
    async fn publish_ephemeral(&self, subject: &str, headers: Headers, payload: Bytes) -> Result<(), BusError>;

    /// A live subscription to `subject` (wildcards `*` and `>` allowed) from now on.
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Joins (creating if needed) the durable consumer group described by `spec`.
    async fn consume(&self, spec: ConsumerSpec) -> Result<Box<dyn Consumer>, BusError>;

    /// Reads, without any consumer state, up to `limit` messages of stream `kind` that
    /// match `filter_subject` and were stored at or after `start_unix_ms`, oldest first.
    /// For queries over a limits stream (the audit trail); not for work queues.
    async fn read_stream(
        &self,
        kind: StreamKind,
        filter_subject: &str,
        start_unix_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, BusError>;

    /// Whether the bus is reachable now (readiness).
    async fn health(&self) -> Result<(), BusError>;
}
