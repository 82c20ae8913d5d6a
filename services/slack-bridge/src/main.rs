//! `clawhive-slack-bridge [--config FILE]`: a Slack bridge replica as its own process.

use clawhive_telemetry::{Service, service_main};

const SERVICE: Service = Service {
    name: "clawhive-slack-bridge",
    help: "Slack secrets come from the variables named by slack.app_token_env, slack.bot_token_env\nand slack.signing_secret_env (SLACK_APP_TOKEN, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET).",
    checks: &["nats", "redis", "slack"],
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(SERVICE, clawhive_slack_bridge::run_observed).await
}
