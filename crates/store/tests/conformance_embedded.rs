//! The conformance suite against the embedded adapter (a fresh redb file in its
//! own temporary directory per test, removed afterwards).

#[macro_use]
mod conformance;

use clawhive_store::EmbeddedStore;
use conformance::{Fixture, TempDir};
use std::sync::Arc;

async fn fresh() -> Fixture {
    let dir = TempDir::new("store-conformance");
    // A subdirectory that does not exist yet: open creates it.
    let store = EmbeddedStore::open(&dir.path().join("state").join("sessions.redb")).expect("store opens");
    Fixture { store: Arc::new(store), guard: Box::new(dir) }
}

conformance_tests!(fresh);
