//! The conformance suite against the in-process adapter.

#[macro_use]
mod conformance;

use clawhive_bus::{Bus, MemoryBus};
use clawhive_core::config::BusConfig;
use std::sync::Arc;

fn bus() -> MemoryBus {
    MemoryBus::new(&BusConfig { namespace: conformance::NS.into(), ..BusConfig::default() })
}

async fn setup() -> ((), Arc<dyn Bus>) {
    let bus = bus();
    bus.ensure_topology().await.expect("topology");
    ((), Arc::new(bus))
}

/// Clones share one bus, as replicas share one NATS.
async fn fresh(n: usize) -> ((), Vec<Arc<dyn Bus>>) {
    let bus = bus();
    ((), (0..n).map(|_| Arc::new(bus.clone()) as Arc<dyn Bus>).collect())
}

conformance_suite!(setup, fresh);
