//! The in-process adapter of the [`Bus`] port (single machine, `clawhive up`).
//!
//! - [`pattern`]: NATS subject wildcards (`*`, `>`) and subject syntax.
//! - [`stream`]: a stream's stored messages and its duplicate window.
//! - [`group`]: a durable consumer group's cursor and unacked deliveries.
//! - [`consumer`]: group members and their ackers.
//!
//! Same semantics as the JetStream adapter, checked by the shared conformance
//! suite (`crates/bus/tests/conformance`): three streams set up by
//! `ensure_topology` (requests = work queue, replies and audit = limits, kept
//! in memory and bounded), dedupe by message id, groups whose members share
//! messages one at a time with ack wait, nak delay, heartbeats, term,
//! `max_deliver` and `max_ack_pending`. Nothing survives the process.
//!
//! Known differences: a durable publish reaches live subscribers only when it
//! was stored (NATS also hands duplicates and publishes no stream captures to
//! core subscribers); a request given up after `max_deliver` leaves the work
//! queue (JetStream keeps it, undeliverable to that group).

mod consumer;
mod group;
mod pattern;
mod stream;

use crate::port::{
    Bus, BusError, BusMessage, Consumer, ConsumerSpec, Headers, PublishOutcome, StreamKind, Subscription,
};
use crate::spec::{validate, within};
use crate::subject::Subjects;
use async_trait::async_trait;
use bytes::Bytes;
use clawhive_core::config::BusConfig;
use futures::StreamExt;
use group::Group;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stream::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages a live subscription buffers before it counts as slow and loses
/// messages (the NATS client's default subscription capacity).
const SUBSCRIPTION_CAPACITY: usize = 65_536;
/// The header JetStream dedupes by; consumers see it, as on NATS.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";
const KINDS: [StreamKind; 3] = [StreamKind::Requests, StreamKind::Replies, StreamKind::Audit];

/// The in-process bus. Cheap to clone; clones share the same streams.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    subjects: Subjects,
    duplicate_window: Duration,
    state: Mutex<State>,
}

pub(super) struct State {
    /// By [`stream_index`]; `None` until `ensure_topology` (or a consumer) creates it.
    streams: [Option<Stream>; 3],
    subscribers: Vec<Subscriber>,
    closed: bool,
}

struct Subscriber {
    pattern: String,
    tx: mpsc::Sender<BusMessage>,
}

pub(super) fn stream_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Requests => 0,
        StreamKind::Replies => 1,
        StreamKind::Audit => 2,
    }
}

impl Inner {
    /// Held only for short, non-async sections.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn stream(&mut self, inner: &Inner, kind: StreamKind) -> &mut Stream {
        self.streams[stream_index(kind)]
            .get_or_insert_with(|| Stream::new(&inner.subjects, kind, inner.duplicate_window))
    }

    /// Hands `message` to every live subscription whose pattern matches.
    fn fan_out(&mut self, message: &BusMessage) {
        self.subscribers.retain(|s| !s.tx.is_closed());
        for s in &self.subscribers {
            if !pattern::matches(&s.pattern, &message.subject) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(message.clone()) {
                tracing::warn!(subject = %message.subject, pattern = %s.pattern, "A slow subscriber lost a message.");
            }
        }
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").field("namespace", &self.inner.subjects.namespace()).finish()
    }
}

impl MemoryBus {
    /// A new, empty bus using `cfg.namespace` and `cfg.duplicate_window_ms`.
    pub fn new(cfg: &BusConfig) -> MemoryBus {
        MemoryBus {
            inner: Arc::new(Inner {
                subjects: Subjects::new(&cfg.namespace),
                duplicate_window: Duration::from_millis(cfg.duplicate_window_ms),
                state: Mutex::new(State { streams: [None, None, None], subscribers: Vec::new(), closed: false }),
            }),
        }
    }

    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// Closes the bus: subscriptions and consumers end (`None`), later calls fail.
    pub fn close(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.subscribers.clear();
        for stream in state.streams.iter().flatten() {
            for group in stream.groups.values() {
                group.notify.notify_waiters();
            }
        }
    }

    fn closed_error(&self) -> String {
        format!("the in-process bus ({}) is closed", self.inner.subjects.namespace())
    }
}

fn check_headers(headers: &Headers) -> Result<(), String> {
    for (name, value) in headers {
        if name.contains(|c: char| !c.is_ascii_graphic() || c == ':') {
            return Err(format!("bad header name {name:?}"));
        }
        if value.contains(['\r', '\n']) {
            return Err(format!("bad header value {value:?}"));
        }
    }
    Ok(())
}

/// Headers as a consumer or subscriber sees them: sorted by name (values of
/// one name keep their order), as the NATS adapter returns them.
fn sorted(mut headers: Headers) -> Headers {
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ensure_topology(&self) -> Result<(), BusError> {
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Setup(self.closed_error()));
        }
        for kind in KINDS {
            state.stream(&self.inner, kind);
        }
        Ok(())
    }

    async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PublishOutcome, BusError> {
        let error = |reason: &str| BusError::Publish(format!("{subject} (msg id {msg_id}): {reason}"));
        if msg_id.is_empty() {
            return Err(BusError::Publish(format!("durable publish to {subject} needs a message id")));
        }
        if !pattern::valid_publish_subject(subject) {
            return Err(error("not a valid subject to publish to"));
        }
        check_headers(&headers).map_err(|e| error(&e))?;
        check_headers(&vec![(MSG_ID_HEADER.into(), msg_id.into())]).map_err(|e| error(&e))?;
        let mut headers = headers;
        headers.push((MSG_ID_HEADER.to_string(), msg_id.to_string()));
        let message = BusMessage { subject: subject.to_string(), headers: sorted(headers), payload };

        let mut state = self.inner.lock();
        if state.closed {
            return Err(error(&self.closed_error()));
        }
        let Some(stream) = state.streams.iter_mut().flatten().find(|s| pattern::matches(&s.captures, subject)) else {
            return Err(error("no stream captures this subject (is the topology set up?)"));
        };
        if !stream.store(msg_id, message.clone(), Instant::now())? {
            return Ok(PublishOutcome::Duplicate);
        }
        for group in stream.groups.values() {
            if pattern::matches(&group.spec.filter_subject, subject) {
                group.notify.notify_waiters();
            }
        }
        state.fan_out(&message);
        Ok(PublishOutcome::Stored)
    }

    async fn publish_ephemeral(&self, subject: &str, headers: Headers, payload: Bytes) -> Result<(), BusError> {
        if !pattern::valid_publish_subject(subject) {
            return Err(BusError::Publish(format!("{subject}: not a valid subject to publish to")));
        }
        check_headers(&headers).map_err(|e| BusError::Publish(format!("{subject}: {e}")))?;
        let message = BusMessage { subject: subject.to_string(), headers: sorted(headers), payload };
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Publish(format!("{subject}: {}", self.closed_error())));
        }
        state.fan_out(&message);
        Ok(())
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        if !pattern::valid_subscribe_subject(subject) {
            return Err(BusError::Subscribe(format!("{subject}: not a valid subject or pattern")));
        }
        let (tx, mut rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Subscribe(format!("{subject}: {}", self.closed_error())));
        }
        state.subscribers.push(Subscriber { pattern: subject.to_string(), tx });
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn consume(&self, spec: ConsumerSpec) -> Result<Box<dyn Consumer>, BusError> {
        validate(&spec)?;
        let captured = self.inner.subjects.stream_subjects(spec.stream);
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Consume(format!("consumer {}: {}", spec.durable, self.closed_error())));
        }
        // Like the NATS adapter, joining creates a missing stream.
        let stream = state.stream(&self.inner, spec.stream);
        if !within(&spec.filter_subject, &captured) {
            return Err(BusError::Consume(format!(
                "consumer {}: filter {} is outside stream {}, which captures {captured}",
                spec.durable, spec.filter_subject, stream.name
            )));
        }
        if stream.work_queue
            && let Some(other) = stream.groups.values().find(|g| {
                g.spec.durable != spec.durable && pattern::overlaps(&g.spec.filter_subject, &spec.filter_subject)
            })
        {
            return Err(BusError::Consume(format!(
                "consumer {}: filter {} overlaps consumer {} ({}) on work-queue stream {}",
                spec.durable, spec.filter_subject, other.spec.durable, other.spec.filter_subject, stream.name
            )));
        }
        // Create or update: a changed setting reaches the existing group.
        let group = stream.groups.entry(spec.durable.clone()).or_insert_with(|| Group::new(spec.clone()));
        group.spec = spec.clone();
        let notify = group.notify.clone();
        drop(state);
        Ok(Box::new(consumer::MemoryConsumer { inner: self.inner.clone(), spec, notify }))
    }

    async fn read_stream(
        &self,
        kind: StreamKind,
        filter_subject: &str,
        start_unix_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::port::StoredMessage>, BusError> {
        if !pattern::valid_subscribe_subject(filter_subject) {
            return Err(BusError::Consume(format!("{filter_subject}: not a valid subject or pattern")));
        }
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Consume(self.closed_error()));
        }
        let stream = state.stream(&self.inner, kind);
        Ok(stream
            .messages
            .iter()
            .filter(|(_, m)| m.at_unix_ms >= start_unix_ms && pattern::matches(filter_subject, &m.message.subject))
            .take(limit)
            .map(|(seq, m)| crate::port::StoredMessage {
                message: m.message.clone(),
                seq: *seq,
                stored_unix_ms: m.at_unix_ms,
            })
            .collect())
    }

    async fn health(&self) -> Result<(), BusError> {
        if self.inner.lock().closed {
            return Err(BusError::Connect(self.closed_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::Bus;

    fn bus() -> MemoryBus {
        MemoryBus::new(&BusConfig { namespace: "ns".into(), ..BusConfig::default() })
    }

    fn spec() -> ConsumerSpec {
        ConsumerSpec {
            stream: StreamKind::Requests,
            durable: "w".into(),
            filter_subject: "ns.req.>".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            max_ack_pending: -1,
        }
    }

    #[tokio::test]
    async fn publishing_needs_the_topology_but_joining_creates_the_stream() {
        let bus = bus();
        let err = bus.publish_durable("ns.req.a.b", "1", vec![], Bytes::new()).await.unwrap_err();
        assert!(matches!(&err, BusError::Publish(m) if m.contains("no stream")), "{err}");
        let _c = bus.consume(spec()).await.unwrap();
        assert_eq!(bus.publish_durable("ns.req.a.b", "1", vec![], Bytes::new()).await.unwrap(), PublishOutcome::Stored);
    }

    #[tokio::test]
    async fn closing_ends_consumers_and_subscriptions() {
        let bus = bus();
        bus.ensure_topology().await.unwrap();
        let mut c = bus.consume(spec()).await.unwrap();
        let mut sub = bus.subscribe("ns.>").await.unwrap();
        let waiting = tokio::spawn(async move { c.next().await.map(|r| r.map(|d| d.attempt)) });
        tokio::task::yield_now().await;
        bus.close();
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(ended.is_none(), "{ended:?}");
        assert!(tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().is_none());
        assert!(bus.health().await.is_err());
        assert!(bus.publish_ephemeral("ns.delta.x", vec![], Bytes::new()).await.is_err());
    }

    #[tokio::test]
    async fn a_dropped_subscription_is_forgotten() {
        let bus = bus();
        drop(bus.subscribe("ns.>").await.unwrap());
        bus.publish_ephemeral("ns.delta.x", vec![], Bytes::new()).await.unwrap();
        assert!(bus.inner.lock().subscribers.is_empty());
    }

    #[tokio::test]
    async fn headers_are_sorted_like_the_nats_adapter_returns_them() {
        let bus = bus();
        let mut sub = bus.subscribe("ns.delta.>").await.unwrap();
        let headers = vec![("x-b".into(), "1".into()), ("x-a".into(), "2".into()), ("x-b".into(), "3".into())];
        bus.publish_ephemeral("ns.delta.x", headers, Bytes::new()).await.unwrap();
        let got = sub.next().await.unwrap();
        let want: Headers = vec![("x-a".into(), "2".into()), ("x-b".into(), "1".into()), ("x-b".into(), "3".into())];
        assert_eq!(got.headers, want);
    }
}
