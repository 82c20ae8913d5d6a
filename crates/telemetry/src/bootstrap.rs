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
/// filtered by `RUST_LOG` or the configured level.
pub fn init_tracing(cfg: &TelemetryConfig, service: &'static str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
        use std::io::IsTerminal;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let result = if cfg.log_format == "json" {
            builder.json().flatten_event(true).with_current_span(true).try_init()
        } else {
            builder.with_target(false).try_init()
        };
        if result.is_ok() {
            tracing::debug!(service, "tracing initialised");
        }
    });
}
