//! The NATS JetStream adapter of the [`Bus`] port (cluster mode).
//!
//! - [`topology`]: the three streams and their create-or-update.
//! - [`consumer`]: durable pull consumers, deliveries and their ackers.
//! - [`reader`]: stateless reads of a stream by start time (audit queries).
//! - [`headers`]: conversion between the port's header list and NATS headers.
//!
//! One [`NatsBus`] is one NATS connection. The client reconnects on its own,
//! forever, after the first successful connect; subscriptions and consumers
//! resume after a reconnect. The connection ends only with [`NatsBus::close`]
//! (or when every handle is dropped), and consumers then return `None`.

mod consumer;
mod headers;
mod reader;
mod topology;

use crate::port::{Bus, BusError, BusMessage, ConsumerSpec, Headers, PublishOutcome, Subscription};
use crate::subject::Subjects;
use crate::{Consumer, StreamKind};
use async_nats::connection::State;
use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use clawhive_core::config::{BusConfig, redact_url};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Initial connect attempts before [`NatsBus::connect`] gives up.
const CONNECT_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the round trips `subscribe` and `health` make.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// The JetStream adapter. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct NatsBus {
    shared: Arc<Shared>,
}

/// What the bus, its consumers and their ackers share.
struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
    replicas: usize,
    duplicate_window: Duration,
    /// The server URL with any password redacted, for messages.
    url: String,
    /// Set once the connection is closed for good (drained or dropped).
    closed: Arc<AtomicBool>,
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.shared.url)
            .field("namespace", &self.shared.subjects.namespace())
            .field("state", &self.shared.client.connection_state())
            .finish()
    }
}

impl NatsBus {
    /// Connects to `cfg.nats_url`, retrying the first connect a few times
    /// (a server that starts alongside us is fine); the error names the URL.
    pub async fn connect(cfg: &BusConfig) -> Result<NatsBus, BusError> {
        let url = redact_url(&cfg.nats_url);
        let closed = Arc::new(AtomicBool::new(false));
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        let client = loop {
            match options(&cfg.namespace, closed.clone()).connect(cfg.nats_url.as_str()).await {
                Ok(client) => break client,
                Err(e) if e.kind() == async_nats::ConnectErrorKind::ServerParse => {
                    return Err(BusError::Connect(format!("bad NATS URL {url}: {e}")));
                }
                // Credentials do not get better by trying again.
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::ConnectErrorKind::Authentication
                            | async_nats::ConnectErrorKind::AuthorizationViolation
                    ) =>
                {
                    return Err(BusError::Connect(format!("NATS at {url} refused our credentials: {e}")));
                }
                Err(e) if attempt >= CONNECT_ATTEMPTS => {
                    return Err(BusError::Connect(format!(
                        "cannot connect to NATS at {url} after {CONNECT_ATTEMPTS} attempts: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(url = %url, attempt, error = %e, "Cannot connect to NATS yet; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
            }
        };
        tracing::info!(url = %url, namespace = %cfg.namespace, "Connected to NATS.");
        let js = jetstream::new(client.clone());
        Ok(NatsBus {
            shared: Arc::new(Shared {
                client,
                js,
                subjects: Subjects::new(&cfg.namespace),
                replicas: cfg.stream_replicas,
                duplicate_window: Duration::from_millis(cfg.duplicate_window_ms),
                url,
                closed,
            }),
        })
    }

    pub fn subjects(&self) -> &Subjects {
        &self.shared.subjects
    }

    /// For a pod: connects and sets up the streams, retrying while NATS is down
    /// (instead of exiting), then reports health as readiness check `nats`.
    /// `None` when `shutdown` came first.
    pub async fn connect_observed(
        cfg: &BusConfig,
        shutdown: &tokio_util::sync::CancellationToken,
        readiness: &clawhive_telemetry::Readiness,
    ) -> Option<Arc<NatsBus>> {
        let connect = || async {
            let bus = NatsBus::connect(cfg).await?;
            bus.ensure_topology().await?;
            Ok::<_, BusError>(bus)
        };
        clawhive_telemetry::connect_observed("nats", shutdown, readiness, connect, |b: Arc<NatsBus>| async move {
            b.health().await
        })
        .await
    }

    /// Drains the connection: subscriptions and consumers end (`None`), later calls fail.
    pub async fn close(&self) -> Result<(), BusError> {
        self.shared.closed.store(true, Ordering::Release);
        self.shared
            .client
            .drain()
            .await
            .map_err(|e| BusError::Connect(format!("cannot drain {}: {e}", self.shared.url)))
    }
}

fn options(namespace: &str, closed: Arc<AtomicBool>) -> async_nats::ConnectOptions {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "clawhive".into());
    async_nats::ConnectOptions::new()
        .name(format!("{program} ({namespace})"))
        .connection_timeout(CONNECT_TIMEOUT)
        .event_callback(move |event| {
            let closed = closed.clone();
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connection (re)established."),
                    async_nats::Event::Closed => {
                        closed.store(true, Ordering::Release);
                        tracing::info!("NATS connection closed.");
                    }
                    async_nats::Event::Draining => tracing::debug!("NATS connection draining."),
                    other => tracing::warn!(event = %other, "NATS connection event."),
                }
            }
        })
}

#[async_trait]
impl Bus for NatsBus {
    async fn ensure_topology(&self) -> Result<(), BusError> {
        for kind in [StreamKind::Requests, StreamKind::Replies, StreamKind::Audit] {
            topology::ensure_stream(&self.shared, kind).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self, headers, payload), fields(bytes = payload.len()))]
    async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<PublishOutcome, BusError> {
        if msg_id.is_empty() {
            return Err(BusError::Publish(format!("durable publish to {subject} needs a message id")));
        }
        let mut map = headers::to_nats(&headers).map_err(BusError::Publish)?;
        let id = headers::value(msg_id).map_err(BusError::Publish)?;
        map.insert(async_nats::header::NATS_MESSAGE_ID, id);
        let publish_error = |e: jetstream::context::PublishError| {
            let reason = if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                "no stream captures this subject (is the topology set up?)".to_string()
            } else {
                e.to_string()
            };
            BusError::Publish(format!("{subject} (msg id {msg_id}): {reason}"))
        };
        let ack =
            self.shared.js.publish_with_headers(subject.to_string(), map, payload).await.map_err(publish_error)?;
        let ack = ack.await.map_err(publish_error)?;
        Ok(if ack.duplicate { PublishOutcome::Duplicate } else { PublishOutcome::Stored })
    }

    async fn publish_ephemeral(&self, subject: &str, headers: Headers, payload: Bytes) -> Result<(), BusError> {
        let map = headers::to_nats(&headers).map_err(BusError::Publish)?;
        self.shared
            .client
            .publish_with_headers(subject.to_string(), map, payload)
            .await
            .map_err(|e| BusError::Publish(format!("{subject}: {e}")))
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let subscriber = self
            .shared
            .client
            .subscribe(subject.to_string())
            .await
            .map_err(|e| BusError::Subscribe(format!("{subject}: {e}")))?;
        // A round trip, so the server has the interest before we return and
        // publishes from other connections made after this call reach us.
        // While disconnected the subscription is still good: the client
        // re-subscribes on reconnect, before anything else it sends.
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, self.shared.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(subject, error = %e, "Cannot confirm a subscription with the server."),
            Err(_) => tracing::warn!(subject, "The server did not confirm a subscription in time."),
        }
        Ok(subscriber
            .map(|m| BusMessage {
                subject: m.subject.to_string(),
                headers: headers::from_nats(m.headers.as_ref()),
                payload: m.payload,
            })
            .boxed())
    }

    async fn consume(&self, spec: ConsumerSpec) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(consumer::NatsConsumer::join(self.shared.clone(), spec).await?))
    }

    async fn read_stream(
        &self,
        kind: StreamKind,
        filter_subject: &str,
        start_unix_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::port::StoredMessage>, BusError> {
        reader::read_stream(&self.shared, kind, filter_subject, start_unix_ms, limit).await
    }

    async fn health(&self) -> Result<(), BusError> {
        let state = self.shared.client.connection_state();
        if state != State::Connected {
            return Err(BusError::Connect(format!("not connected to NATS at {} ({state})", self.shared.url)));
        }
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, self.shared.js.query_account()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BusError::Connect(format!("JetStream at {} is unavailable: {e}", self.shared.url))),
            Err(_) => Err(BusError::Connect(format!(
                "JetStream at {} did not answer in {ROUND_TRIP_TIMEOUT:?}",
                self.shared.url
            ))),
        }
    }
}
