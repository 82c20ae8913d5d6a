//! `clawhive-slack-bridge`: config, telemetry, `run`, wait.

use std::path::PathBuf;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config_path = args.next().map(PathBuf::from),
            "--help" | "-h" => {
                println!(
                    "usage: clawhive-slack-bridge [--config FILE]  (or CLAWHIVE_CONFIG; CLAWHIVE_* env overrides)"
                );
                println!("Slack secrets come from the variables named by slack.app_token_env, slack.bot_token_env");
                println!("and slack.signing_secret_env (SLACK_APP_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET).");
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("clawhive-slack-bridge: unknown argument {other:?}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    clawhive_telemetry::install_crypto_provider();
    let cfg = match clawhive_telemetry::load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clawhive-slack-bridge: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    clawhive_telemetry::init_tracing(&cfg.telemetry, "clawhive-slack-bridge");
    let shutdown = clawhive_telemetry::shutdown::on_signal();
    let checks = ["nats", "redis", "slack"];
    let admin =
        match clawhive_telemetry::Admin::start(&cfg.telemetry, "clawhive-slack-bridge", &checks, &shutdown).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("clawhive-slack-bridge: {e}");
                return std::process::ExitCode::from(2);
            }
        };
    let result = clawhive_slack_bridge::run_observed(cfg, shutdown, admin.readiness()).await;
    admin.stop().await;
    clawhive_telemetry::flush_traces();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawhive-slack-bridge: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
