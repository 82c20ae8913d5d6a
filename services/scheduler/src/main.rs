//! `clawhive-scheduler [--config FILE]`: a scheduler replica as its own process.

use clawhive_telemetry::{Service, service_main};

const SERVICE: Service = Service { name: "clawhive-scheduler", help: "", checks: &["nats", "redis"] };

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(SERVICE, clawhive_scheduler::run_observed).await
}
