//! Socket Mode: `apps.connections.open` → WebSocket → `hello`, then envelopes.
//!
//! Each of `slack.socket_connections` slots keeps one socket open. Rules:
//! - an envelope is acked (`{"envelope_id": …}`) only after the bridge handled
//!   it ([`Bridge::handle_event`] returns once the request is in JetStream);
//! - `disconnect` (refresh, warning) → open the replacement first, then close
//!   the old socket, so no event falls between them;
//! - a socket that receives nothing at all (no envelope, no ping) for
//!   `slack.socket_idle_timeout_ms` is replaced the same way;
//! - failed opens back off exponentially up to `slack.reconnect_max_ms`;
//! - at most `slack.max_socket_connections` sockets are open at once (a
//!   semaphore; when none is free, a silent socket is closed before its
//!   replacement opens).

use crate::bridge::Bridge;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replaced socket is still read (events in flight) before it is closed.
const RETIRE_GRACE: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// State shared by the slots.
pub struct Sockets {
    bridge: Arc<Bridge>,
    permits: Arc<Semaphore>,
    open: AtomicUsize,
    seq: AtomicU64,
}

impl Sockets {
    pub fn new(bridge: Arc<Bridge>) -> Arc<Self> {
        let cap = bridge.cfg.slack.max_socket_connections.max(1);
        Arc::new(Self {
            bridge,
            permits: Arc::new(Semaphore::new(cap)),
            open: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
        })
    }

    /// Sockets open now (past `hello`).
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Starts the slots.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        for slot in 0..self.bridge.cfg.slack.socket_connections {
            let (me, stop) = (self.clone(), shutdown.clone());
            tokio::spawn(async move { me.slot(slot, stop).await });
        }
    }

    async fn slot(self: Arc<Self>, slot: usize, shutdown: CancellationToken) {
        let cfg = &self.bridge.cfg.slack;
        let initial = Duration::from_millis(cfg.reconnect_initial_ms);
        let max = Duration::from_millis(cfg.reconnect_max_ms);
        let idle = Duration::from_millis(cfg.socket_idle_timeout_ms);
        let mut backoff = initial;
        let mut current: Option<Conn> = None;
        let mut next: Option<BoxFuture<'static, Result<Conn, String>>> = None;
        loop {
            if current.is_none() && next.is_none() {
                next = Some(Box::pin(self.clone().open(Duration::ZERO)));
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Some(c) = current.take() {
                        c.close();
                    }
                    break;
                }
                res = async { next.as_mut().expect("guarded").await }, if next.is_some() => {
                    next = None;
                    match res {
                        Ok(new) => {
                            if let Some(old) = current.take() {
                                tracing::info!(slot, old = old.id, new = new.id, "Socket replaced; retiring the old one.");
                                self.retire(old);
                            }
                            current = Some(new);
                            backoff = initial;
                        }
                        Err(e) => {
                            tracing::warn!(slot, error = %e, retry_in_ms = backoff.as_millis() as u64, "Cannot open a Socket Mode connection.");
                            next = Some(Box::pin(self.clone().open(backoff)));
                            backoff = (backoff * 2).min(max);
                        }
                    }
                }
                ev = async { current.as_mut().expect("guarded").next_event(idle).await }, if current.is_some() => {
                    let conn = current.as_mut().expect("guarded");
                    match ev {
                        Event::Text(text) => {
                            if self.on_text(conn, &text) && next.is_none() {
                                tracing::info!(slot, socket = conn.id, "Slack asked to reconnect; opening the replacement first.");
                                conn.replacing = true;
                                next = Some(Box::pin(self.clone().open(Duration::ZERO)));
                            }
                        }
                        Event::Idle => {
                            tracing::warn!(slot, socket = conn.id, idle_ms = idle.as_millis() as u64, "Socket silent for too long; replacing it.");
                            conn.replacing = true;
                            if self.permits.available_permits() == 0 {
                                // No spare connection allowed: close first.
                                if let Some(c) = current.take() {
                                    c.close();
                                }
                            }
                            if next.is_none() {
                                next = Some(Box::pin(self.clone().open(Duration::ZERO)));
                            }
                        }
                        Event::Closed => {
                            let lived = conn.opened.elapsed();
                            tracing::info!(slot, socket = conn.id, "Socket closed.");
                            current = None;
                            if next.is_none() {
                                let delay = if lived > Duration::from_secs(10) { Duration::ZERO } else { backoff };
                                backoff = (backoff * 2).min(max);
                                next = Some(Box::pin(self.clone().open(delay)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Keeps reading a replaced socket for [`RETIRE_GRACE`] (frames already on
    /// their way are handled and acked), then closes it.
    fn retire(self: &Arc<Self>, mut old: Conn) {
        let me = self.clone();
        tokio::spawn(async move {
            let until = Instant::now() + RETIRE_GRACE;
            loop {
                match tokio::time::timeout_at(until, old.rx.recv()).await {
                    Ok(Some(Frame::Text(t))) => {
                        me.on_text(&old, &t);
                    }
                    Ok(Some(Frame::Activity)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            tracing::info!(socket = old.id, "Closing a replaced socket.");
            old.close();
        });
    }

    /// Handles one text frame; `true` when Slack asks us to reconnect.
    fn on_text(&self, conn: &Conn, text: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            tracing::warn!(socket = conn.id, "Ignoring a Socket Mode frame that is not JSON.");
            return false;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "disconnect" {
            return true;
        }
        let Some(envelope_id) = v.get("envelope_id").and_then(Value::as_str).map(str::to_string) else {
            return false;
        };
        let payload = v.get("payload").cloned().unwrap_or(Value::Null);
        let (bridge, tx, socket) = (self.bridge.clone(), conn.tx.clone(), conn.id);
        let kind = kind.to_string();
        tokio::spawn(async move {
            let ack = match kind.as_str() {
                "events_api" => match bridge.handle_event(&payload).await {
                    Ok(outcome) => {
                        tracing::debug!(socket, envelope_id, ?outcome, "Event handled.");
                        clawhive_telemetry::metrics::slack_ack("events_api", "acked");
                        Some(json!({"envelope_id": envelope_id}))
                    }
                    Err(e) => {
                        tracing::warn!(socket, envelope_id, error = %e, "Cannot handle an event now; leaving it unacked for Slack to retry.");
                        clawhive_telemetry::metrics::slack_ack("events_api", "unacked");
                        None
                    }
                },
                "slash_commands" => {
                    let text = bridge.handle_command(&payload).await;
                    clawhive_telemetry::metrics::slack_ack("slash_commands", "acked");
                    Some(json!({"envelope_id": envelope_id, "payload": {"response_type": "ephemeral", "text": text}}))
                }
                _ => Some(json!({"envelope_id": envelope_id})),
            };
            if let Some(ack) = ack
                && tx.send(Message::Text(ack.to_string().into())).is_err()
            {
                tracing::info!(socket, "The socket closed before its ack was sent; Slack will redeliver.");
            }
        });
        false
    }

    /// Opens a socket after `delay`: a permit, a URL, the WebSocket, `hello`.
    async fn open(self: Arc<Self>, delay: Duration) -> Result<Conn, String> {
        tokio::time::sleep(delay).await;
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let url = self.bridge.web.open_connection().await.map_err(|e| e.to_string())?;
        let ws = tokio::time::timeout(OPEN_TIMEOUT, dial(&url))
            .await
            .map_err(|_| format!("no WebSocket within {OPEN_TIMEOUT:?}"))??;
        let id = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut conn = Conn::start(id, ws, permit, self.clone());
        let hello = tokio::time::timeout(OPEN_TIMEOUT, async {
            loop {
                match conn.rx.recv().await {
                    Some(Frame::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        if v.get("type").and_then(Value::as_str) == Some("hello") {
                            return Ok(());
                        }
                    }
                    Some(Frame::Activity) => {}
                    None => return Err("the socket closed before hello".to_string()),
                }
            }
        })
        .await;
        match hello {
            Ok(Ok(())) => {
                self.open.fetch_add(1, Ordering::SeqCst);
                conn.counted = true;
                conn.last_seen = Instant::now();
                tracing::info!(socket = id, open = self.open_count(), "Socket Mode connection ready.");
                Ok(conn)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no hello within {OPEN_TIMEOUT:?}")),
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// TCP (+ TLS for `wss://`, verified by the platform's roots) + the WebSocket handshake.
async fn dial(url: &str) -> Result<Ws, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad socket URL: {e}"))?;
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        other => return Err(format!("socket URL scheme {other:?} is not ws or wss")),
    };
    let host = uri.host().ok_or("socket URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if secure {
        use rustls_platform_verifier::ConfigVerifierExt;
        let cfg = rustls::ClientConfig::with_platform_verifier().map_err(|e| format!("TLS setup: {e}"))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS name {host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(url, io).await.map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(ws)
}

enum Frame {
    Text(String),
    /// Any other frame (ping, pong, binary): the socket is alive.
    Activity,
}

enum Event {
    Text(String),
    Idle,
    Closed,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Frame>,
    reader: tokio::task::JoinHandle<()>,
    last_seen: Instant,
    opened: Instant,
    /// A replacement is on its way: stop the idle watchdog for this one.
    replacing: bool,
    counted: bool,
    sockets: Arc<Sockets>,
}

impl Conn {
    fn start(id: u64, ws: Ws, permit: OwnedSemaphorePermit, sockets: Arc<Sockets>) -> Conn {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut out) = mpsc::unbounded_channel::<Message>();
        let (frames, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out.recv().await {
                let close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            let _permit = permit; // held while the socket is open
            while let Some(Ok(m)) = stream.next().await {
                let frame = match m {
                    Message::Text(t) => Frame::Text(t.to_string()),
                    Message::Close(_) => break,
                    _ => Frame::Activity,
                };
                if frames.send(frame).is_err() {
                    break;
                }
            }
        });
        Conn {
            id,
            tx,
            rx,
            reader,
            last_seen: Instant::now(),
            opened: Instant::now(),
            replacing: false,
            counted: false,
            sockets,
        }
    }

    async fn next_event(&mut self, idle: Duration) -> Event {
        loop {
            let frame = if self.replacing {
                self.rx.recv().await
            } else {
                match tokio::time::timeout_at(self.last_seen + idle, self.rx.recv()).await {
                    Ok(f) => f,
                    Err(_) => return Event::Idle,
                }
            };
            self.last_seen = Instant::now();
            match frame {
                Some(Frame::Text(t)) => return Event::Text(t),
                Some(Frame::Activity) => continue,
                None => return Event::Closed,
            }
        }
    }

    /// Sends a close frame and gives the socket 2 s to finish closing.
    fn close(self) {
        let _ = self.tx.send(Message::Close(None));
        let reader = self.reader.abort_handle();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            reader.abort();
        });
        drop(self);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.counted {
            self.sockets.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
