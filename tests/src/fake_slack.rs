//! A wire-level fake of Slack for tests: the Web API methods the bridge calls
//! (over HTTP, JSON) and Socket Mode (a WebSocket at the `ws://` URL that
//! `apps.connections.open` hands out).
//!
//! Tests drive it: send `events_api` envelopes on a chosen socket (the same
//! envelope again on another socket, to imitate a redelivery), send
//! `disconnect`, make a socket go silent (no pings, nothing), and script 429s
//! with `Retry-After`. It records acks, posted and edited messages, and how
//! many sockets were open at once.

mod events;
mod socket;
mod web;

pub use events::{dm, mention, thread_message};

use axum::Router;
use axum::routing::{any, post};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The bot as `auth.test` reports it.
pub const BOT_USER: &str = "UBOT";
pub const APP_TOKEN: &str = "xapp-test-app-token";
pub const BOT_TOKEN: &str = "xoxb-test-bot-token";

/// A message the bridge posted (`chat.postMessage` / `chat.postEphemeral`), with its latest text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub thread_ts: String,
    pub ts: String,
    pub text: String,
    /// `chat.postEphemeral`: shown to this user only.
    pub ephemeral_to: Option<String>,
    /// How many `chat.update`s changed it.
    pub edits: u32,
}

/// One Web API call as received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub at: Instant,
    /// 429 when it was rate limited.
    pub status: u16,
}

#[derive(Debug)]
pub(crate) struct SocketEntry {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::UnboundedSender<String>,
    pub(crate) open: bool,
    pub(crate) silent: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) posted: Vec<Posted>,
    pub(crate) calls: Vec<Call>,
    /// method → (429s still to answer, Retry-After seconds).
    pub(crate) rate_limits: HashMap<String, (u32, u64)>,
    pub(crate) sockets: Vec<SocketEntry>,
    pub(crate) acks: Vec<(u64, String)>,
    pub(crate) max_open: usize,
    pub(crate) connections_opened: u64,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) addr: SocketAddr,
    pub(crate) seq: Arc<AtomicU64>,
    pub(crate) ping_every: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_ts(&self) -> String {
        format!("1700000000.{:06}", self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A running fake; stops serving when dropped.
pub struct FakeSlack {
    shared: Shared,
    _stop: watch::Sender<bool>,
}

impl FakeSlack {
    /// Serves on `127.0.0.1:0`; healthy sockets get a ping every 200 ms.
    pub async fn start() -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Slack");
        let addr = listener.local_addr().expect("fake Slack address");
        let (stop, shutdown) = watch::channel(false);
        let shared = Shared {
            state: Arc::default(),
            addr,
            seq: Arc::default(),
            ping_every: Duration::from_millis(200),
            shutdown: shutdown.clone(),
        };
        let app = Router::new()
            .route("/api/{method}", post(web::method))
            .route("/socket", any(socket::upgrade))
            .with_state(shared.clone());
        let mut down = shutdown;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = down.wait_for(|s| *s).await;
                })
                .await;
        });
        FakeSlack { shared, _stop: stop }
    }

    /// The Web API base URL (`slack.api_base_url`).
    pub fn api_base_url(&self) -> String {
        format!("http://{}/api", self.shared.addr)
    }

    /// Answers the next `n` calls of `method` with 429 and `Retry-After: secs`.
    pub fn rate_limit(&self, method: &str, n: u32, secs: u64) {
        self.shared.lock().rate_limits.insert(method.to_string(), (n, secs));
    }

    /// Every Web API call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Every posted message, in order, with its latest text.
    pub fn posted(&self) -> Vec<Posted> {
        self.shared.lock().posted.clone()
    }

    /// Posted messages in `channel` (ephemeral ones included).
    pub fn posted_in(&self, channel: &str) -> Vec<Posted> {
        self.posted().into_iter().filter(|p| p.channel == channel).collect()
    }

    /// Waits until `pred` holds for the posted messages; returns them.
    pub async fn wait_posted(&self, timeout: Duration, pred: impl Fn(&[Posted]) -> bool) -> Vec<Posted> {
        let end = Instant::now() + timeout;
        loop {
            let posted = self.posted();
            if pred(&posted) {
                return posted;
            }
            if Instant::now() > end {
                panic!("fake Slack: condition not met within {timeout:?}; posted: {posted:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Ids of the sockets open now, oldest first.
    pub fn open_sockets(&self) -> Vec<u64> {
        self.shared.lock().sockets.iter().filter(|s| s.open).map(|s| s.id).collect()
    }

    /// The most sockets that were open at the same time.
    pub fn max_open_sockets(&self) -> usize {
        self.shared.lock().max_open
    }

    /// How many sockets were ever opened.
    pub fn connections_opened(&self) -> u64 {
        self.shared.lock().connections_opened
    }

    /// Waits until at least `n` sockets are open; their ids.
    pub async fn wait_sockets(&self, n: usize, timeout: Duration) -> Vec<u64> {
        let end = Instant::now() + timeout;
        loop {
            let open = self.open_sockets();
            if open.len() >= n {
                return open;
            }
            if Instant::now() > end {
                panic!("fake Slack: {} sockets open, wanted {n}, within {timeout:?}", open.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn send(&self, socket: u64, frame: Value) -> bool {
        let st = self.shared.lock();
        st.sockets.iter().find(|s| s.id == socket && s.open).is_some_and(|s| s.tx.send(frame.to_string()).is_ok())
    }

    /// Sends an `events_api` envelope with `payload` on `socket`; `false` if it is not open.
    pub fn send_event(&self, socket: u64, envelope_id: &str, payload: &Value) -> bool {
        let frame = serde_json::json!({
            "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
            "retry_attempt": 0, "retry_reason": "", "payload": payload,
        });
        self.send(socket, frame)
    }

    /// Sends a `slash_commands` envelope.
    pub fn send_command(&self, socket: u64, envelope_id: &str, payload: &Value) -> bool {
        let frame = serde_json::json!({"envelope_id": envelope_id, "type": "slash_commands", "payload": payload});
        self.send(socket, frame)
    }

    /// Sends `{"type": "disconnect", "reason": "refresh_requested"}`.
    pub fn send_disconnect(&self, socket: u64) -> bool {
        self.send(socket, serde_json::json!({"type": "disconnect", "reason": "refresh_requested"}))
    }

    /// Closes `socket` from Slack's side, without warning.
    pub fn close_socket(&self, socket: u64) {
        if let Some(s) = self.shared.lock().sockets.iter_mut().find(|s| s.id == socket) {
            // Replacing the sender drops the one the socket task reads from: it ends.
            s.tx = mpsc::unbounded_channel().0;
        }
    }

    /// From now on `socket` sends nothing (no pings) but stays connected.
    pub fn go_silent(&self, socket: u64) {
        if let Some(s) = self.shared.lock().sockets.iter_mut().find(|s| s.id == socket) {
            s.silent = true;
        }
    }

    /// Envelope ids acked, with the socket each ack came on.
    pub fn acks(&self) -> Vec<(u64, String)> {
        self.shared.lock().acks.clone()
    }

    /// Waits until `envelope_id` is acked; the socket it came on.
    pub async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> u64 {
        let end = Instant::now() + timeout;
        loop {
            if let Some((s, _)) = self.acks().into_iter().find(|(_, e)| e == envelope_id) {
                return s;
            }
            if Instant::now() > end {
                panic!("fake Slack: envelope {envelope_id} not acked within {timeout:?}; acks: {:?}", self.acks());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The payload of the ack of `envelope_id` is not kept; slash-command answers are.
    pub fn command_answers(&self) -> Vec<String> {
        self.shared.lock().acks.iter().filter_map(|(_, a)| a.strip_prefix("answer:").map(str::to_string)).collect()
    }
}
