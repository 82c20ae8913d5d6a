//! Config loading and process-wide set-up.

use clawhive_core::config::{Config, ConfigError, TelemetryConfig};
use std::path::{Path, PathBuf};
use std::sync::Once;

#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// Loads the effective config: defaults → the file (`path`, else
/// `$CLAWHIVE_CONFIG`, else none) → `CLAWHIVE_*` environment variables.
pub fn load_config(path: Option<&Path>) -> Result<Config, LoadError> {
    let path: Option<PathBuf> =
        path.map(Path::to_path_buf).or_else(|| std::env::var_os("CLAWHIVE_CONFIG").map(PathBuf::from));
    let text = match &path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| LoadError(format!("cannot read config file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    Config::from_sources(text.as_deref(), std::env::vars()).map_err(|e: ConfigError| match &path {
        Some(p) => LoadError(format!("{}: {e}", p.display())),
        None => LoadError(e.to_string()),
    })
}

/// Installs ring as the process-wide rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the global tracing subscriber once: text or JSON lines on stderr,
/// filtered by `RUST_LOG` or the configured level, plus OTLP trace export when
/// `telemetry.otlp_endpoint` is set (call inside the tokio runtime; a bad
/// endpoint is logged and the service runs on without export).
pub fn init_tracing(cfg: &TelemetryConfig, service: &'static str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use std::io::IsTerminal;
        use tracing_subscriber::EnvFilter;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
        let json = cfg.log_format == "json";
        let text_layer = (!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
        });
        let json_layer = json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                // The current span carries the turn's ids; the list of every
                // enclosing span would double each line for nothing.
                .with_span_list(false)
                .with_writer(std::io::stderr)
        });
        let (otel_layer, otel_error) = if cfg.otlp_endpoint.is_empty() {
            (None, None)
        } else {
            match crate::otel::tracer_layer(&cfg.otlp_endpoint, service, cfg.trace_sample_ratio) {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(e)),
            }
        };
        let result =
            tracing_subscriber::registry().with(otel_layer).with(filter).with(text_layer).with(json_layer).try_init();
        if result.is_ok() {
            crate::metrics::register_service(service);
            tracing::debug!(service, "tracing initialised");
            if let Some(e) = otel_error {
                tracing::warn!(error = %e, "Traces will not be exported.");
            } else if !cfg.otlp_endpoint.is_empty() {
                tracing::info!(service, endpoint = %cfg.otlp_endpoint, "Exporting traces over OTLP.");
            }
        }
    });
}
