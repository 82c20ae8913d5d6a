//! The pairing and marker conformance suite against the embedded adapter.

#[macro_use]
mod pairing_conformance;
mod conformance;

use clawhive_store::EmbeddedStore;
use conformance::TempDir;
use pairing_conformance::Fixture;
use std::sync::Arc;

async fn fresh() -> Fixture {
    let dir = TempDir::new("pairing-conformance");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("sessions.redb")).expect("store opens"));
    Fixture { pairings: store.clone(), markers: store.clone(), identity: store, guard: Box::new(dir) }
}

pairing_tests!(fresh);
