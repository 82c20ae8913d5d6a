//! The conformance suite against the embedded adapter (a fresh redb file in its
//! own temporary directory per test, removed afterwards).

#[macro_use]
mod conformance;

use clawhive_store::EmbeddedStore;
use conformance::{Fixture, TempDir};
use std::sync::Arc;
use std::time::Duration;

async fn fresh() -> Fixture {
    let dir = TempDir::new("store-conformance");
    // A subdirectory that does not exist yet: open creates it. Group commit on, as
    // `clawhive up` runs it (store.embedded_flush_ms).
    let path = dir.path().join("state").join("sessions.redb");
    let store =
        EmbeddedStore::open_with(&path, Duration::from_secs(3600), Duration::from_millis(100)).expect("store opens");
    Fixture { store: Arc::new(store), guard: Box::new(dir) }
}

conformance_tests!(fresh);
