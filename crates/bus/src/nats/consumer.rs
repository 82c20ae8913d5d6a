//! Durable pull consumers.
//!
//! Each member pulls with one-shot pull requests for as many messages as its
//! owner can start right now ([`Consumer::next_up_to`]; one for
//! [`Consumer::next`]), and its owner keeps polling while it has room: a busy
//! member never sits on messages an idle one could take, `ack_wait` starts
//! when the work can, and nothing waits in a subscription that nobody polls (a
//! buffered message on an unpolled pull stream used to be dropped with its
//! stream on a missed heartbeat and came back only after `ack_wait`). Asking
//! for several at once saves a round trip per message when many are queued.
//!
//! The member outlives transient trouble: a failed or expired pull, or
//! a consumer deleted behind our back is logged, and the member re-binds
//! (create-or-update of the durable, re-creating the stream if it vanished)
//! with a growing pause. It ends only when the connection is closed.

use super::{Shared, headers, topology};
use crate::port::{Acker, BusError, BusMessage, Consumer, ConsumerSpec, Delivery};
use crate::spec::{validate, within};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// How long one pull request stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub(super) struct NatsConsumer {
    shared: Arc<Shared>,
    spec: ConsumerSpec,
    stream: String,
    /// `None` after trouble, until the next successful re-bind.
    consumer: Option<PullConsumer>,
    /// The pull request being served, and how many more messages it may bring.
    open: Option<(pull::Batch, usize)>,
    pause: Duration,
}

impl NatsConsumer {
    /// Creates or updates the durable and starts pulling. Errors here are the
    /// caller's to see (a bad spec, a missing stream that cannot be created).
    pub(super) async fn join(shared: Arc<Shared>, spec: ConsumerSpec) -> Result<NatsConsumer, BusError> {
        validate(&spec)?;
        let stream = shared.subjects.stream_name(spec.stream);
        // The server accepts any filter; one outside the stream would just never deliver.
        let captured = shared.subjects.stream_subjects(spec.stream);
        if !within(&spec.filter_subject, &captured) {
            return Err(BusError::Consume(format!(
                "consumer {}: filter {} is outside stream {stream}, which captures {captured}",
                spec.durable, spec.filter_subject
            )));
        }
        let mut consumer = NatsConsumer { shared, spec, stream, consumer: None, open: None, pause: MIN_PAUSE };
        consumer.consumer = Some(consumer.bind().await?);
        Ok(consumer)
    }

    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.spec.durable.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.spec.ack_wait,
            max_deliver: self.spec.max_deliver,
            max_ack_pending: self.spec.max_ack_pending,
            filter_subject: self.spec.filter_subject.clone(),
            ..Default::default()
        }
    }

    async fn bind(&self) -> Result<PullConsumer, BusError> {
        let js = &self.shared.js;
        match js.create_consumer_on_stream(self.config(), &self.stream).await {
            Ok(consumer) => Ok(consumer),
            Err(e) if stream_missing(&e) => {
                tracing::warn!(stream = %self.stream, "The stream is missing; creating it.");
                topology::ensure_stream(&self.shared, self.spec.stream).await?;
                js.create_consumer_on_stream(self.config(), &self.stream).await.map_err(|e| self.error(&e))
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    fn error(&self, e: &dyn std::fmt::Display) -> BusError {
        BusError::Consume(format!(
            "consumer {} on stream {} ({}) at {}: {e}",
            self.spec.durable, self.stream, self.spec.filter_subject, self.shared.url
        ))
    }

    /// Waits before the next re-bind, longer each time in a row.
    async fn back_off(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        self.next_up_to(1).await
    }

    async fn hand_back(&mut self) {
        self.nak_received().await;
    }

    async fn next_up_to(&mut self, ready: usize) -> Option<Result<Delivery, BusError>> {
        loop {
            if self.shared.is_closed() {
                self.consumer = None;
                self.open = None;
                return None;
            }
            if let Some((batch, left)) = self.open.as_mut() {
                match batch.next().await {
                    Some(Ok(message)) => {
                        self.pause = MIN_PAUSE;
                        *left -= 1;
                        if *left == 0 {
                            self.open = None;
                        }
                        return Some(Ok(delivery(message)));
                    }
                    Some(Err(e)) => {
                        self.open = None;
                        self.trouble(&e).await;
                    }
                    // The pull expired (or was filled): ask again.
                    None => self.open = None,
                }
                continue;
            }
            let Some(consumer) = self.consumer.as_ref() else {
                match self.bind().await {
                    Ok(consumer) => {
                        tracing::info!(consumer = %self.spec.durable, stream = %self.stream, "Consumer resumed.");
                        self.consumer = Some(consumer);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot re-bind the consumer yet; retrying.");
                        self.back_off().await;
                    }
                }
                continue;
            };
            let want = ready.max(1);
            // No idle heartbeats: async-nats 0.51's `Batch` answers a heartbeat with
            // `Pending` without re-arming its waker, so a pull open for longer than one
            // heartbeat stalls (messages already sent to it wait, then are dropped with
            // it) until its own timer ends it. The expiry bounds every pull instead, and
            // the connection's pings catch a dead server.
            let batch = consumer.batch().max_messages(want).expires(PULL_EXPIRES).messages().await;
            match batch {
                Ok(b) => self.open = Some((b, want)),
                Err(e) => self.trouble(&e).await,
            }
        }
    }
}

impl NatsConsumer {
    /// Naks what the open pull has already received (it would otherwise wait out `ack_wait`).
    async fn nak_received(&mut self) {
        use futures::FutureExt;
        let Some((mut batch, _)) = self.open.take() else { return };
        let mut handed_back = 0;
        while let Some(Some(Ok(message))) = batch.next().now_or_never() {
            if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %e, "Could not hand a delivery back; it returns after ack_wait.");
            }
            handed_back += 1;
        }
        if handed_back > 0 {
            tracing::info!(consumer = %self.spec.durable, handed_back, "Handed back deliveries not started.");
        }
    }

    /// Logs a failed pull (quietly while disconnected) and re-binds after a pause.
    async fn trouble(&mut self, e: &(dyn std::fmt::Display + Sync)) {
        if self.shared.client.connection_state() != async_nats::connection::State::Connected {
            tracing::debug!(consumer = %self.spec.durable, error = %e, "Consumer lost its pull while disconnected.");
        } else {
            tracing::warn!(consumer = %self.spec.durable, stream = %self.stream, error = %e, "Consumer trouble; re-binding.");
        }
        self.consumer = None;
        self.back_off().await;
    }
}

fn delivery(message: async_nats::jetstream::Message) -> Delivery {
    let attempt = match message.info() {
        Ok(info) => u64::try_from(info.delivered).unwrap_or(1).max(1),
        Err(e) => {
            tracing::warn!(subject = %message.subject, error = %e, "A delivery has no JetStream metadata; counting it as the first attempt.");
            1
        }
    };
    let (message, acker) = message.split();
    Delivery {
        message: BusMessage {
            subject: message.subject.to_string(),
            headers: headers::from_nats(message.headers.as_ref()),
            payload: message.payload,
        },
        attempt,
        acker: Arc::new(NatsAcker { inner: acker }),
    }
}

fn stream_missing(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    matches!(e.kind(), ConsumerErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Naks, terms and progress wait for the server's confirmation, so `Ok` means
/// the server has them. The final ack does not: it comes after the turn is
/// committed and answered, so a lost one only brings a redelivery, which finds
/// the committed turn and re-sends its reply (a confirmed ack would cost a
/// message and a wait per turn to prevent that rare repeat).
struct NatsAcker {
    inner: async_nats::jetstream::message::Acker,
}

impl NatsAcker {
    async fn send(&self, kind: AckKind) -> Result<(), BusError> {
        self.inner.double_ack_with(kind).await.map_err(|e| BusError::Ack(format!("{}: {e}", label(kind))))
    }
}

fn label(kind: AckKind) -> &'static str {
    match kind {
        AckKind::Ack => "ack",
        AckKind::Nak(_) => "nak",
        AckKind::Progress => "in-progress",
        AckKind::Next => "ack-next",
        AckKind::Term => "term",
    }
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.inner.ack().await.map_err(|e| BusError::Ack(format!("ack: {e}")))
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<(), BusError> {
        self.send(AckKind::Nak(delay)).await
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.send(AckKind::Progress).await
    }

    async fn term(&self) -> Result<(), BusError> {
        self.send(AckKind::Term).await
    }
}
