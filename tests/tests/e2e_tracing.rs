//! One trace across the bus: an in-process OTLP/gRPC collector receives the
//! spans of the gateway (in this process) and of an agent-worker process, and
//! they form one trace: caller → gateway `chat` → worker `turn` → `llm.chat`
//! (with model and token counts) → gateway `reply`.

mod common;

use clawhive_proto::v1 as pb;
use clawhive_tests::procs::{ServiceProcess, binary};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One received span, flattened.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text(&a.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attrs: s.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_worker_llm_and_reply() {
    clawhive_telemetry::install_crypto_provider();
    // The collector, on a loopback port.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let stop = CancellationToken::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
    );

    // The gateway runs in this process and exports through this process's
    // subscriber; the worker is its own process and exports on its own.
    let telemetry = clawhive_core::config::TelemetryConfig { otlp_endpoint: endpoint.clone(), ..Default::default() };
    clawhive_telemetry::init_tracing(&telemetry, "clawhive-gateway");
    let cluster = common::Cluster::start(0).await;
    let bin = tokio::task::spawn_blocking(|| binary("clawhive-agent-worker", "clawhive-agent-worker"))
        .await
        .unwrap()
        .expect("worker binary");
    let worker = ServiceProcess::spawn(
        &bin,
        &["--config", cluster.config_path.to_str().unwrap()],
        &[
            ("FAKE_ANTHROPIC_KEY", "test-anthropic-key".to_string()),
            ("CLAWHIVE_TELEMETRY__OTLP_ENDPOINT", endpoint.clone()),
        ],
    )
    .expect("spawn worker");
    worker.wait_for_log("agent worker started", Duration::from_secs(30)).await.expect("worker ready");
    assert!(worker.log().contains("Exporting traces over OTLP."), "{}", worker.log());

    // One chat, continuing the caller's trace.
    let mut client = cluster.grpc().await;
    let mut req = common::authed(
        pb::ChatRequest {
            session_id: "traced".into(),
            text: "hello trace".into(),
            agent_id: String::new(),
            idempotency_key: String::new(),
            timeout_ms: 20_000,
        },
        common::ALICE,
    );
    req.metadata_mut().insert("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01").parse().unwrap());
    let mut stream = client.chat(req).await.expect("chat").into_inner();
    let mut fin = None;
    while let Some(ev) = stream.message().await.expect("stream") {
        if let Some(pb::chat_event::Event::Final(f)) = ev.event {
            fin = Some(f);
        }
    }
    let fin = fin.expect("a final reply");
    let usage = fin.usage.expect("token usage");
    assert!(fin.text.contains("hello trace"), "{fin:?}");

    // Wait for all four spans of the trace (the exporters batch every second).
    let end = Instant::now() + Duration::from_secs(30);
    let find = |spans: &[Span], service: &str, name: &str| {
        spans.iter().find(|s| s.trace_id == CALLER_TRACE && s.service == service && s.name == name).cloned()
    };
    let (chat, turn, llm_span, reply) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let found = (
            find(&spans, "clawhive-gateway", "chat"),
            find(&spans, "clawhive-agent-worker", "turn"),
            find(&spans, "clawhive-agent-worker", "llm.chat"),
            find(&spans, "clawhive-gateway", "reply"),
        );
        if let (Some(a), Some(b), Some(c), Some(d)) = found {
            break (a, b, c, d);
        }
        assert!(
            Instant::now() < end,
            "spans of trace {CALLER_TRACE} missing; received: {:#?}\nworker log:\n{}",
            spans.iter().map(|s| (&s.service, &s.name, &s.trace_id)).collect::<Vec<_>>(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The chain of parents: caller → chat → turn → llm.chat, and turn → reply.
    assert_eq!(chat.parent, CALLER_SPAN, "the gateway continues the caller's span");
    assert_eq!(turn.parent, chat.span_id, "the worker's turn is a child of the gateway's chat");
    assert_eq!(llm_span.parent, turn.span_id, "the LLM call is a child of the turn");
    assert_eq!(reply.parent, turn.span_id, "the reply's delivery is a child of the turn");
    assert_eq!(llm_span.attr("model"), Some("fake/echo-model"), "{llm_span:?}");
    assert_eq!(llm_span.attr("outcome"), Some("ok"), "{llm_span:?}");
    assert_eq!(llm_span.attr("input_tokens"), Some(usage.input_tokens.to_string().as_str()), "{llm_span:?}");
    assert_eq!(llm_span.attr("output_tokens"), Some(usage.output_tokens.to_string().as_str()), "{llm_span:?}");
    assert!(usage.output_tokens > 0);

    drop(worker);
    drop(cluster);
    stop.cancel();
}
