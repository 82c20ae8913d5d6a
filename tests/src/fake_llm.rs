//! A wire-level fake of the OpenAI chat-completions and Anthropic Messages
//! APIs, for tests and local runs (`fake-llm --port N`).
//!
//! Behaviour is scripted by the text of the request's last message, so every
//! process that talks to one fake sees the same script:
//!
//! | last message | answer |
//! |---|---|
//! | a tool result | `tool said: <result>` |
//! | `#tool:<name>:<json args>` (args to end of line) | a tool call, arguments streamed in fragments |
//! | `#fail:<status>:<n>:<key>` | HTTP `<status>` for the first `n` requests with this key (429 adds `Retry-After: 0`) |
//! | `#hang` | nothing, until the fake is dropped |
//! | `#slow:<ms>` | waits before the first byte, then answers as usual |
//! | `#cut` | the first half of the answer, then the body ends (no finish marker) |
//! | anything else | `echo[N]: <text>`, N = user messages in the request |
//!
//! Both protocols stream (SSE, word by word) when the body says `stream: true`
//! and answer with one JSON document otherwise. Usage is ≈ chars / 4. Bad JSON
//! or a missing `model`/`messages` (and, for Anthropic, `max_tokens`) gets a 400.

mod anthropic;
mod openai;
mod script;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One chat request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `openai` or `anthropic`.
    pub protocol: &'static str,
    /// The `model` field; empty when the body had none.
    pub model: String,
    /// The body as JSON; a JSON string holding the raw text when it was not JSON.
    pub body: Value,
    /// `Authorization` (OpenAI) or `x-api-key` (Anthropic), as sent.
    pub auth: Option<String>,
    /// Every request header, lower-case names.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<HashMap<String, u32>>,
    seq: AtomicU64,
}

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

/// A running fake; it stops serving when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeLlm {
    /// Starts serving on `127.0.0.1:0`.
    pub async fn start() -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake LLM to 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the fake LLM");
        let shared = Arc::new(Shared::default());
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(run(listener, App { shared: shared.clone(), shutdown: rx }));
        FakeLlm { addr, shared, shutdown }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for an OpenAI-kind provider: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for an Anthropic-kind provider: `http://127.0.0.1:PORT`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Chat requests received so far, both protocols, failed ones included.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().expect("fake LLM request log poisoned").len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().expect("fake LLM request log poisoned").clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        // Stops accepting, ends hanging and sleeping handlers, closes idle connections.
        let _ = self.shutdown.send(true);
    }
}

/// Serves the fake on `listener` until the returned future is dropped or fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let (_never, rx) = watch::channel(false);
    run_until(listener, App { shared: Arc::default(), shutdown: rx }).await
}

async fn run(listener: TcpListener, app: App) {
    if let Err(e) = run_until(listener, app).await {
        tracing::warn!(error = %e, "The fake LLM server stopped.");
    }
}

async fn run_until(listener: TcpListener, app: App) -> std::io::Result<()> {
    let mut stop = app.shutdown.clone();
    let router = Router::new()
        .route("/v1/chat/completions", post(openai_handler))
        .route("/v1/messages", post(anthropic_handler))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

#[derive(Clone, Copy)]
enum Protocol {
    OpenAi,
    Anthropic,
}

async fn openai_handler(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    handle(app, Protocol::OpenAi, headers, body).await
}

async fn anthropic_handler(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    handle(app, Protocol::Anthropic, headers, body).await
}

async fn handle(app: App, protocol: Protocol, headers: HeaderMap, body: Bytes) -> Response {
    let json = serde_json::from_slice::<Value>(&body);
    record(&app.shared, protocol, &headers, &body, json.as_ref().ok());
    let json = match json {
        Ok(v) => v,
        Err(e) => return error(protocol, 400, &format!("invalid JSON body: {e}")),
    };
    let parsed = match protocol {
        Protocol::OpenAi => openai::parse(&json),
        Protocol::Anthropic => anthropic::parse(&json),
    };
    let prompt = match parsed {
        Ok(p) => p,
        Err(msg) => return error(protocol, 400, &msg),
    };
    let mut shutdown = app.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stopped| *stopped).await;
    };
    let (answer, cut) = match script::plan(&prompt, &app.shared.failures) {
        script::Plan::Fail { status, message } => return error(protocol, status, &message),
        script::Plan::Hang => {
            stopped.await;
            return error(protocol, 503, "the fake LLM shut down");
        }
        script::Plan::Answer { delay, answer, cut } => {
            if let Some(delay) = delay {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped => return error(protocol, 503, "the fake LLM shut down"),
                }
            }
            (answer, cut)
        }
    };
    let seq = app.shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    if !prompt.stream {
        let mut doc = match protocol {
            Protocol::OpenAi => openai::completion(&prompt, &answer, seq),
            Protocol::Anthropic => anthropic::message(&prompt, &answer, seq),
        }
        .to_string();
        if cut {
            let half = (0..=doc.len() / 2).rev().find(|&i| doc.is_char_boundary(i)).unwrap_or(0);
            doc.truncate(half);
        }
        return ([(header::CONTENT_TYPE, "application/json")], doc).into_response();
    }
    let mut events = match protocol {
        Protocol::OpenAi => {
            let include_usage = json.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
            openai::stream_events(&prompt, &answer, seq, include_usage)
        }
        Protocol::Anthropic => anthropic::stream_events(&prompt, &answer, seq),
    };
    if cut {
        events.truncate(events.len() / 2);
    }
    sse(events)
}

fn record(shared: &Shared, protocol: Protocol, headers: &HeaderMap, raw: &[u8], json: Option<&Value>) {
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (protocol, auth) = match protocol {
        Protocol::OpenAi => ("openai", header_value("authorization")),
        Protocol::Anthropic => ("anthropic", header_value("x-api-key")),
    };
    let request = RecordedRequest {
        protocol,
        model: json.and_then(|j| j.get("model")).and_then(Value::as_str).unwrap_or("").to_string(),
        body: json.cloned().unwrap_or_else(|| Value::String(String::from_utf8_lossy(raw).into_owned())),
        auth,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
    };
    shared.requests.lock().expect("fake LLM request log poisoned").push(request);
}

fn error(protocol: Protocol, status: u16, message: &str) -> Response {
    let body = match protocol {
        Protocol::OpenAi => openai::error_body(status, message),
        Protocol::Anthropic => anthropic::error_body(status, message),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    resp
}

/// An event-stream response sending each event as its own body chunk.
fn sse(events: Vec<String>) -> Response {
    let chunks = futures::stream::iter(events.into_iter().map(|e| Ok::<_, Infallible>(Bytes::from(e))));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(chunks))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn post(addr: SocketAddr, path: &str, body: &str) -> tokio::net::TcpStream {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: fake\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        conn
    }

    #[tokio::test]
    async fn dropping_the_fake_ends_hanging_requests_and_stops_serving() {
        let fake = FakeLlm::start().await;
        let addr = fake.addr();
        let mut hanging =
            post(addr, "/v1/chat/completions", r##"{"model":"m","messages":[{"role":"user","content":"#hang"}]}"##)
                .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fake.request_count(), 1);
        drop(fake);
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), hanging.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the fake still accepts connections");
    }

    #[tokio::test]
    async fn bad_requests_get_400_and_are_counted() {
        let fake = FakeLlm::start().await;
        for (path, body) in [
            ("/v1/chat/completions", "{not json"),
            ("/v1/chat/completions", r#"{"messages":[]}"#),
            ("/v1/messages", r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
        ] {
            let mut answer = String::new();
            post(fake.addr(), path, body).await.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 400"), "{path} {body}: {answer}");
        }
        assert_eq!(fake.request_count(), 3);
        assert_eq!(fake.requests()[2].protocol, "anthropic");
    }
}
