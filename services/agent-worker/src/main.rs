//! `clawhive-agent-worker [--config FILE]`: an agent worker replica as its own process.

use clawhive_telemetry::{Service, service_main};

const SERVICE: Service = Service { name: "clawhive-agent-worker", help: "", checks: &["nats", "redis"] };

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(SERVICE, clawhive_agent_worker::run_observed).await
}
