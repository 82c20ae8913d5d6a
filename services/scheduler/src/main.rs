//! `clawhive-scheduler [--config <path>]`: a scheduler replica as its own process.

use clawhive_telemetry::{init_tracing, install_crypto_provider, load_config, shutdown};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: clawhive-scheduler [--config <path>]  (default: $CLAWHIVE_CONFIG)";

fn config_path() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = Some(PathBuf::from(args.next().ok_or("--config needs a path")?)),
            s if s.starts_with("--config=") => path = Some(PathBuf::from(&s["--config=".len()..])),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}; {USAGE}")),
        }
    }
    Ok(path)
}

#[tokio::main]
async fn main() -> ExitCode {
    install_crypto_provider();
    let cfg = match config_path().and_then(|p| load_config(p.as_deref()).map_err(|e| e.to_string())) {
        Ok(cfg) => cfg,
        Err(reason) => {
            eprintln!("clawhive-scheduler: {reason}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cfg.telemetry, "clawhive-scheduler");
    let shutdown = shutdown::on_signal();
    let admin =
        match clawhive_telemetry::Admin::start(&cfg.telemetry, "clawhive-scheduler", &["nats", "redis"], &shutdown)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                eprintln!("clawhive-scheduler: {e}");
                return ExitCode::from(2);
            }
        };
    let result = clawhive_scheduler::run_observed(cfg, shutdown, admin.readiness()).await;
    admin.stop().await;
    clawhive_telemetry::flush_traces();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "The scheduler failed.");
            eprintln!("clawhive-scheduler: {e}");
            ExitCode::FAILURE
        }
    }
}
