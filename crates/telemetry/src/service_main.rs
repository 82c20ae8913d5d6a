//! The one `main` every service binary shares: arguments, config, telemetry,
//! the admin server, `run_observed`, exit code. A service's `main.rs` names
//! itself, its readiness checks and its run function, nothing else.

use crate::{Admin, Readiness, init_tracing, install_crypto_provider, load_config, shutdown};
use clawhive_core::config::Config;
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// What a service binary is.
pub struct Service {
    /// Binary name, used in messages, logs and metrics (`clawhive-gateway`).
    pub name: &'static str,
    /// Extra lines for `--help` (e.g. which env vars hold its secrets).
    pub help: &'static str,
    /// Readiness checks it reports (`nats`, `redis`, …).
    pub checks: &'static [&'static str],
}

/// `--config FILE` / `--config=FILE` / `-c FILE`; `None` = `$CLAWHIVE_CONFIG` or defaults.
/// `Ok(Err(()))` means help was printed.
fn config_path(
    service: &Service,
    args: impl IntoIterator<Item = String>,
) -> Result<Result<Option<PathBuf>, ()>, String> {
    let usage = format!("usage: {} [--config FILE]  (or CLAWHIVE_CONFIG; CLAWHIVE_* env overrides)", service.name);
    let mut args = args.into_iter();
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                path = Some(PathBuf::from(args.next().ok_or(format!("--config needs a path; {usage}"))?))
            }
            s if s.starts_with("--config=") => path = Some(PathBuf::from(&s["--config=".len()..])),
            "-h" | "--help" => {
                println!("{usage}");
                if !service.help.is_empty() {
                    println!("{}", service.help);
                }
                return Ok(Err(()));
            }
            other => return Err(format!("unexpected argument {other:?}; {usage}")),
        }
    }
    Ok(Ok(path))
}

/// Runs a service binary to completion: exit 2 for bad arguments or config, 1 when
/// `run` fails, 0 after a clean shutdown.
pub async fn service_main<F, Fut, E>(service: Service, run: F) -> ExitCode
where
    F: FnOnce(Config, CancellationToken, Readiness) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let name = service.name;
    let path = match config_path(&service, std::env::args().skip(1)) {
        Ok(Ok(p)) => p,
        Ok(Err(())) => return ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{name}: {reason}");
            return ExitCode::from(2);
        }
    };
    install_crypto_provider();
    let cfg = match load_config(path.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cfg.telemetry, name);
    let shutdown = shutdown::on_signal();
    let admin = match Admin::start(&cfg.telemetry, name, service.checks, &shutdown).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = run(cfg, shutdown, admin.readiness()).await;
    admin.stop().await;
    crate::flush_traces();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, service = name, "The service failed.");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Service = Service { name: "clawhive-test", help: "", checks: &[] };

    fn parse(args: &[&str]) -> Result<Result<Option<PathBuf>, ()>, String> {
        config_path(&S, args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(Ok(None)));
        assert_eq!(parse(&["--config", "a.toml"]), Ok(Ok(Some("a.toml".into()))));
        assert_eq!(parse(&["--config=b.toml"]), Ok(Ok(Some("b.toml".into()))));
        assert_eq!(parse(&["-c", "c.toml"]), Ok(Ok(Some("c.toml".into()))));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a path"));
        assert!(parse(&["--bogus"]).unwrap_err().contains("unexpected argument \"--bogus\""));
    }
}
