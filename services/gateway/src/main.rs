//! `clawhive-gateway [--config FILE]`: the gateway as its own process.

use clawhive_telemetry::{Service, service_main};

const SERVICE: Service = Service { name: "clawhive-gateway", help: "", checks: &["nats", "redis"] };

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(SERVICE, clawhive_gateway::run_observed).await
}
