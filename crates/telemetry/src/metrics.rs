//! Process-wide Prometheus metrics with bounded labels.
//!
//! One registry per process, created on first use; services record through the
//! small functions below and the admin server renders [`encode`] at `/metrics`.
//! Labels are bounded by construction: outcomes, decisions and error codes are
//! fixed vocabularies, models and tools come from the config and the tool
//! registry. Never pass user, session or request ids as label values.

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// Latency buckets in seconds: 5 ms … 5 min (turns and LLM calls span that range).
const LATENCY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

struct Metrics {
    registry: Registry,
    turn_seconds: Family<Labels, Histogram>,
    queue_wait_seconds: Family<Labels, Histogram>,
    in_flight: Gauge,
    llm_seconds: Family<Labels, Histogram>,
    llm_tokens: Family<Labels, Counter>,
    tool_calls: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    slack_acks: Family<Labels, Counter>,
    slack_posts: Family<Labels, Counter>,
    scheduler_fires: Family<Labels, Counter>,
    build_info: Family<Labels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("clawhive");
        let m = Metrics {
            turn_seconds: Family::new_with_constructor(latency_histogram),
            queue_wait_seconds: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            llm_seconds: Family::new_with_constructor(latency_histogram),
            llm_tokens: Family::default(),
            tool_calls: Family::default(),
            errors: Family::default(),
            slack_acks: Family::default(),
            slack_posts: Family::default(),
            scheduler_fires: Family::default(),
            build_info: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "turn_duration_seconds",
            "Agent turns from pickup to ack, by outcome",
            m.turn_seconds.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time a request waited on the bus before a worker picked it up (queue lag)",
            m.queue_wait_seconds.clone(),
        );
        registry.register("turns_in_flight", "Turns this worker is running now", m.in_flight.clone());
        registry.register("llm_request_duration_seconds", "LLM calls by model and outcome", m.llm_seconds.clone());
        registry.register("llm_tokens", "LLM tokens by model and kind (input, output)", m.llm_tokens.clone());
        registry.register("tool_calls", "Tool calls by tool and policy decision", m.tool_calls.clone());
        registry.register("errors", "Errors returned to callers, by service and error code", m.errors.clone());
        registry.register("slack_acks", "Slack envelopes acknowledged, by kind and outcome", m.slack_acks.clone());
        registry.register("slack_posts", "Slack messages posted or edited, by kind and outcome", m.slack_posts.clone());
        registry.register("scheduler_fires", "Scheduled jobs fired, by outcome", m.scheduler_fires.clone());
        registry.register("build_info", "Service name and version (always 1)", m.build_info.clone());
        Metrics { registry, ..m }
    })
}

/// Marks this process as `service` in `clawhive_build_info`.
pub fn register_service(service: &str) {
    metrics()
        .build_info
        .get_or_create(&vec![("service", service.to_string()), ("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
}

/// One agent turn finished; `outcome` is `ok` or an error code.
pub fn observe_turn(outcome: &str, elapsed: Duration) {
    metrics().turn_seconds.get_or_create(&vec![("outcome", bounded(outcome))]).observe(elapsed.as_secs_f64());
}

/// A request waited `waited` on the bus before pickup (attempt 1 only: redeliveries wait on purpose).
pub fn observe_queue_wait(waited: Duration) {
    metrics().queue_wait_seconds.get_or_create(&vec![("stream", "requests".into())]).observe(waited.as_secs_f64());
}

/// Adds `delta` (+1 on start, -1 on end) to the in-flight turn gauge.
pub fn add_in_flight(delta: i64) {
    metrics().in_flight.inc_by(delta);
}

/// One LLM call finished (`model` is the configured `provider/model`).
pub fn observe_llm(model: &str, outcome: &str, elapsed: Duration, input_tokens: u64, output_tokens: u64) {
    let m = metrics();
    m.llm_seconds
        .get_or_create(&vec![("model", model.to_string()), ("outcome", bounded(outcome))])
        .observe(elapsed.as_secs_f64());
    if input_tokens > 0 {
        m.llm_tokens.get_or_create(&vec![("model", model.to_string()), ("kind", "input".into())]).inc_by(input_tokens);
    }
    if output_tokens > 0 {
        m.llm_tokens
            .get_or_create(&vec![("model", model.to_string()), ("kind", "output".into())])
            .inc_by(output_tokens);
    }
}

/// A tool call was decided: `allow`, `deny`, or `error`.
pub fn tool_call(tool: &str, decision: &str) {
    metrics().tool_calls.get_or_create(&vec![("tool", tool.to_string()), ("decision", bounded(decision))]).inc();
}

/// An error with code `code` (the snake_case `ErrorCode`) went back to a caller of `service`.
pub fn error(service: &str, code: &str) {
    metrics().errors.get_or_create(&vec![("service", service.to_string()), ("code", bounded(code))]).inc();
}

/// The Slack bridge acknowledged an envelope (`kind`: events_api, slash_commands, interactive).
pub fn slack_ack(kind: &str, outcome: &str) {
    metrics().slack_acks.get_or_create(&vec![("kind", bounded(kind)), ("outcome", bounded(outcome))]).inc();
}

/// The Slack bridge posted (`kind`: post, update) a message.
pub fn slack_post(kind: &str, outcome: &str) {
    metrics().slack_posts.get_or_create(&vec![("kind", bounded(kind)), ("outcome", bounded(outcome))]).inc();
}

/// The scheduler fired a job (`outcome`: published, duplicate, error).
pub fn scheduler_fire(outcome: &str) {
    metrics().scheduler_fires.get_or_create(&vec![("outcome", bounded(outcome))]).inc();
}

/// The registry in the Prometheus/OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    if let Err(e) = text::encode(&mut out, &metrics().registry) {
        tracing::warn!(error = %e, "Cannot encode the metrics.");
    }
    out
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Caps free-text label values from fixed vocabularies, so a bug cannot blow up cardinality.
fn bounded(value: &str) -> String {
    let ok = value.len() <= 40 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok { value.to_string() } else { "other".to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        register_service("test");
        observe_turn("ok", Duration::from_millis(20));
        observe_queue_wait(Duration::from_millis(3));
        observe_llm("fake/echo-model", "ok", Duration::from_millis(10), 12, 5);
        tool_call("current_time", "allow");
        error("gateway", "not_found");
        error("gateway", "a label value with spaces and {braces}");
        slack_ack("events_api", "ok");
        slack_post("post", "ok");
        scheduler_fire("published");
        let text = encode();
        for needle in [
            "clawhive_turn_duration_seconds_bucket{le=\"0.025\",outcome=\"ok\"} 1",
            "clawhive_queue_wait_seconds_count",
            "clawhive_llm_request_duration_seconds_count{model=\"fake/echo-model\",outcome=\"ok\"} 1",
            "clawhive_llm_tokens_total{model=\"fake/echo-model\",kind=\"input\"} 12",
            "clawhive_llm_tokens_total{model=\"fake/echo-model\",kind=\"output\"} 5",
            "clawhive_tool_calls_total{tool=\"current_time\",decision=\"allow\"} 1",
            "clawhive_errors_total{service=\"gateway\",code=\"not_found\"} 1",
            "clawhive_errors_total{service=\"gateway\",code=\"other\"} 1",
            "clawhive_slack_acks_total{kind=\"events_api\",outcome=\"ok\"} 1",
            "clawhive_slack_posts_total{kind=\"post\",outcome=\"ok\"} 1",
            "clawhive_scheduler_fires_total{outcome=\"published\"} 1",
            "clawhive_build_info{service=\"test\"",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
