//! `clawhive-gateway [--config <path>]`: the gateway as its own process.

use clawhive_telemetry::{init_tracing, install_crypto_provider, load_config, shutdown};
use std::path::PathBuf;
use std::process::ExitCode;

fn config_path() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = Some(PathBuf::from(args.next().ok_or("--config needs a path")?)),
            s if s.starts_with("--config=") => path = Some(PathBuf::from(&s["--config=".len()..])),
            "-h" | "--help" => {
                println!("usage: clawhive-gateway [--config <path>]  (default: $CLAWHIVE_CONFIG)");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}; usage: clawhive-gateway [--config <path>]")),
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
            eprintln!("clawhive-gateway: {reason}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cfg.telemetry, "clawhive-gateway");
    let shutdown = shutdown::on_signal();
    let admin =
        match clawhive_telemetry::Admin::start(&cfg.telemetry, "clawhive-gateway", &["nats", "redis"], &shutdown).await
        {
            Ok(a) => a,
            Err(e) => {
                eprintln!("clawhive-gateway: {e}");
                return ExitCode::from(2);
            }
        };
    let result = clawhive_gateway::run_observed(cfg, shutdown, admin.readiness()).await;
    admin.stop().await;
    clawhive_telemetry::flush_traces();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "The gateway failed.");
            eprintln!("clawhive-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
