//! The identity conformance suite against the embedded adapter (a fresh redb
//! file per test).

#[macro_use]
mod identity_conformance;
mod conformance;

use clawhive_store::EmbeddedStore;
use conformance::TempDir;
use identity_conformance::Fixture;
use std::sync::Arc;

async fn fresh() -> Fixture {
    let dir = TempDir::new("identity-conformance");
    let path = dir.path().join("sessions.redb");
    let store = EmbeddedStore::open(&path).expect("store opens");
    Fixture {
        store: Arc::new(store),
        // The whole file: every committed write is in it.
        dump: Arc::new(move || {
            let path = path.clone();
            Box::pin(async move { std::fs::read(&path).expect("read the store file") })
        }),
        guard: Box::new(dir),
    }
}

identity_tests!(fresh);
