//! The conformance suite against the JetStream adapter and a real
//! `nats-server -js`, one server per test.

#[macro_use]
mod conformance;

use clawhive_bus::Bus;
use clawhive_bus::nats::NatsBus;
use clawhive_core::config::BusConfig;
use clawhive_tests::nats_server::NatsServer;
use std::sync::Arc;

fn config(server: &NatsServer) -> BusConfig {
    BusConfig { nats_url: server.url(), namespace: conformance::NS.into(), ..BusConfig::default() }
}

async fn setup() -> (NatsServer, Arc<dyn Bus>) {
    let server = NatsServer::start().expect("nats-server starts");
    let bus = NatsBus::connect(&config(&server)).await.expect("bus connects");
    bus.ensure_topology().await.expect("topology");
    (server, Arc::new(bus))
}

/// Separate connections to one server, as replicas have.
async fn fresh(n: usize) -> (NatsServer, Vec<Arc<dyn Bus>>) {
    let server = NatsServer::start().expect("nats-server starts");
    let mut buses: Vec<Arc<dyn Bus>> = Vec::new();
    for _ in 0..n {
        buses.push(Arc::new(NatsBus::connect(&config(&server)).await.expect("bus connects")));
    }
    (server, buses)
}

conformance_suite!(setup, fresh);
