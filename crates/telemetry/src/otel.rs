//! OpenTelemetry traces over OTLP/gRPC, joined across the bus.
//!
//! When `telemetry.otlp_endpoint` is set, [`tracer_layer`] turns `tracing`
//! spans into OTel spans and batches them to the collector. The bus carries a
//! W3C `traceparent` ([`TraceContext`]); a hop makes its span a child of the
//! received context with [`set_parent`] and publishes its own span's context
//! ([`context_of`]), so one trace runs ingress → worker → LLM → reply.
//! Without an endpoint these functions are no-ops and the ids still travel.

use crate::TraceContext;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use std::sync::OnceLock;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How often finished spans are sent; short, so a pod's last spans leave before it stops.
const EXPORT_INTERVAL: Duration = Duration::from_millis(1000);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Builds the OTLP exporter and the tracer provider for `service` (call inside a tokio runtime).
pub fn tracer_layer<S>(
    endpoint: &str,
    service: &str,
    sample_ratio: f64,
) -> Result<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(EXPORT_INTERVAL).build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio))))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build())
        .build();
    let tracer = provider.tracer(service.to_string());
    let _ = PROVIDER.set(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends the spans still buffered and stops the exporter; call before the process exits.
pub fn flush_traces() {
    if let Some(p) = PROVIDER.get() {
        if let Err(e) = p.force_flush() {
            tracing::debug!(error = %e, "Cannot flush the last spans.");
        }
        let _ = p.shutdown();
    }
}

/// Makes `span` a child of `parent` (a context received from the bus or a caller).
/// Call right after creating the span, before it is entered.
pub fn set_parent(span: &tracing::Span, parent: &TraceContext) {
    let flags = if parent.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let remote = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(parent.trace_id),
        opentelemetry::trace::SpanId::from_bytes(parent.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    // Without the OTel layer (no endpoint configured) there is nothing to link.
    let _ = span.set_parent(cx);
}

/// The OTel context of `span` as a `traceparent` to publish, when traces are exported.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    PROVIDER.get()?;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    Some(TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    })
}
