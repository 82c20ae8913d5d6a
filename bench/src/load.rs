//! Load generators: closed loop with N conversations (sequential = 1) and open
//! loop at a fixed arrival rate. Every turn is timed from the moment it was due
//! to the final reply, so a slow server cannot hide queueing (no coordinated omission).

use crate::target::TOKEN;
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::assistant_client::AssistantClient;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    Grpc,
    Http,
}

/// One client connection set; cheap to clone.
#[derive(Clone)]
pub enum Client {
    Grpc(Vec<AssistantClient<Channel>>),
    Http(reqwest::Client, String),
}

impl Client {
    pub async fn connect(api: Api, grpc: SocketAddr, http: SocketAddr, connections: usize) -> anyhow::Result<Client> {
        Ok(match api {
            Api::Grpc => {
                let mut clients = Vec::new();
                for _ in 0..connections.max(1) {
                    let ch = Channel::from_shared(format!("http://{grpc}"))?.tcp_nodelay(true).connect().await?;
                    clients.push(AssistantClient::new(ch));
                }
                Client::Grpc(clients)
            }
            Api::Http => {
                let client = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(4096)
                    .timeout(Duration::from_secs(120))
                    .build()?;
                Client::Http(client, format!("http://{http}"))
            }
        })
    }

    /// One turn; its request id, or a short reason.
    pub async fn turn(&self, lane: usize, session: &str, text: &str) -> Result<String, String> {
        match self {
            Client::Grpc(clients) => {
                let mut client = clients[lane % clients.len()].clone();
                let req = pb::ChatRequest { session_id: session.into(), text: text.into(), ..Default::default() };
                let mut req = tonic::Request::new(req);
                req.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().map_err(|_| "bad token")?);
                let mut stream =
                    client.chat(req).await.map_err(|s| format!("grpc {:?}: {}", s.code(), s.message()))?.into_inner();
                let mut fin = None;
                while let Some(ev) =
                    stream.message().await.map_err(|s| format!("grpc {:?}: {}", s.code(), s.message()))?
                {
                    if let Some(pb::chat_event::Event::Final(f)) = ev.event {
                        fin = Some(f);
                    }
                }
                match fin {
                    Some(f) if !f.text.is_empty() => Ok(f.request_id),
                    Some(_) => Err("empty final reply".into()),
                    None => Err("stream ended without a final event".into()),
                }
            }
            Client::Http(client, base) => {
                let resp = client
                    .post(format!("{base}/v1/sessions/{session}/messages"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({ "text": text }))
                    .send()
                    .await
                    .map_err(|e| format!("http: {e}"))?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.map_err(|e| format!("http {status}: {e}"))?;
                if !status.is_success() {
                    return Err(format!("http {status}: {body}"));
                }
                match body.get("text").and_then(|t| t.as_str()) {
                    Some(t) if !t.is_empty() => {
                        Ok(body.get("request_id").and_then(|r| r.as_str()).unwrap_or_default().to_string())
                    }
                    _ => Err(format!("http {status}: no reply text in {body}")),
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Load {
    Sequential,
    Concurrency { conversations: usize },
    OpenLoop { rate_per_s: f64 },
}

impl Load {
    pub fn label(&self) -> String {
        match self {
            Load::Sequential => "sequential".into(),
            Load::Concurrency { conversations } => format!("concurrency {conversations}"),
            Load::OpenLoop { rate_per_s } => format!("open-loop {rate_per_s}/s"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bounds {
    pub turns: Option<u64>,
    pub duration: Option<Duration>,
    /// A conversation moves to a fresh session after this many turns (bounds the history size).
    pub turns_per_session: u64,
    /// Open loop: turns in flight beyond this are not sent and count as errors.
    pub max_in_flight: u64,
}

#[derive(Default)]
pub struct Outcome {
    /// Latency of each successful turn, microseconds.
    pub latencies_us: Vec<u64>,
    /// The request id of each successful turn (same order).
    pub request_ids: Vec<String>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        self.request_ids.extend(other.request_ids);
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
    }

    fn record(&mut self, started: Instant, r: Result<String, String>) {
        match r {
            Ok(request_id) => {
                self.latencies_us.push(started.elapsed().as_micros() as u64);
                self.request_ids.push(request_id);
            }
            Err(e) => {
                self.errors += 1;
                if self.error_samples.len() < 5 {
                    self.error_samples.push(e);
                }
            }
        }
    }
}

/// Runs `load` until the turn budget or the deadline is spent. `prefix` keeps session ids of separate phases apart.
pub async fn run(client: &Client, load: Load, b: &Bounds, prefix: &str) -> Outcome {
    let start = Instant::now();
    let deadline = b.duration.map(|d| start + d);
    let budget = b.turns.unwrap_or(u64::MAX);
    let mut out = match load {
        Load::Sequential => closed(client, 1, budget, deadline, b.turns_per_session, prefix).await,
        Load::Concurrency { conversations } => {
            closed(client, conversations, budget, deadline, b.turns_per_session, prefix).await
        }
        Load::OpenLoop { rate_per_s } => open(client, rate_per_s, budget, deadline, b, prefix).await,
    };
    out.elapsed = start.elapsed();
    out
}

async fn closed(
    client: &Client,
    conversations: usize,
    budget: u64,
    deadline: Option<Instant>,
    turns_per_session: u64,
    prefix: &str,
) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for lane in 0..conversations.max(1) {
        let client = client.clone();
        let issued = issued.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut n = 0u64;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) || issued.fetch_add(1, Ordering::Relaxed) >= budget {
                    break;
                }
                let session = format!("{prefix}-c{lane}-{}", n / turns_per_session.max(1));
                let text = format!("turn {n} of conversation {lane}");
                let t = Instant::now();
                let r = client.turn(lane, &session, &text).await;
                out.record(t, r);
                n += 1;
            }
            out
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        match t.await {
            Ok(o) => out.merge(o),
            Err(e) => out.record(Instant::now(), Err(format!("load task failed: {e}"))),
        }
    }
    out
}

async fn open(client: &Client, rate: f64, budget: u64, deadline: Option<Instant>, b: &Bounds, prefix: &str) -> Outcome {
    const SESSIONS: u64 = 1024;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Outcome::default();
    let mut i = 0u64;
    while i < budget {
        let due = start + interval.mul_f64(i as f64);
        if deadline.is_some_and(|d| due >= d) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        while let Some(done) = tasks.try_join_next() {
            if let Ok(o) = done {
                out.merge(o);
            }
        }
        if in_flight.load(Ordering::Relaxed) >= b.max_in_flight {
            out.record(due, Err(format!("more than {} turns in flight; turn not sent", b.max_in_flight)));
            i += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let client = client.clone();
        let in_flight = in_flight.clone();
        let session_n = i % SESSIONS;
        let session = format!("{prefix}-o{session_n}-{}", i / SESSIONS / b.turns_per_session.max(1));
        tasks.spawn(async move {
            let mut o = Outcome::default();
            let r = client.turn(session_n as usize, &session, &format!("open-loop turn {i}")).await;
            o.record(due, r);
            in_flight.fetch_sub(1, Ordering::Relaxed);
            o
        });
        i += 1;
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => out.merge(o),
            Err(e) => out.record(Instant::now(), Err(format!("load task failed: {e}"))),
        }
    }
    out
}

/// Round trips straight to the fake LLM (one streamed completion each), microseconds:
/// what the LLM side costs in this process, to set against the turn latency.
pub async fn fake_llm_rtt(base_url: &str, n: usize) -> Vec<u64> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("reqwest client");
    let body = serde_json::json!({
        "model": "echo-model", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "You are a benchmark agent."}, {"role": "user", "content": "turn 1 of conversation 0"}]
    });
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let ok = match client.post(format!("{base_url}/chat/completions")).json(&body).send().await {
            Ok(r) => r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            out.push(t.elapsed().as_micros() as u64);
        }
    }
    out
}
