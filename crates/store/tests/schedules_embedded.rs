//! The schedule conformance suite against the embedded adapter (a fresh redb file per test).

#[macro_use]
mod schedule_conformance;
mod conformance;

use clawhive_store::EmbeddedStore;
use conformance::TempDir;
use schedule_conformance::Fixture;
use std::sync::Arc;

async fn fresh() -> Fixture {
    let dir = TempDir::new("schedule-conformance");
    let store = EmbeddedStore::open(&dir.path().join("sessions.redb")).expect("store opens");
    Fixture { store: Arc::new(store), guard: Box::new(dir) }
}

schedule_tests!(fresh);
