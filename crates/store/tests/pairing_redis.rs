//! The pairing and marker conformance suite against the Redis adapter.

#[macro_use]
mod pairing_conformance;

use clawhive_core::config::StoreConfig;
use clawhive_store::RedisStore;
use clawhive_tests::redis_server::RedisServer;
use pairing_conformance::Fixture;
use std::sync::Arc;

async fn fresh() -> Fixture {
    let server = RedisServer::start().expect("redis-server starts");
    let cfg = StoreConfig { redis_url: server.url(), ..StoreConfig::default() };
    let store = Arc::new(RedisStore::connect(&cfg).await.expect("store connects"));
    Fixture { pairings: store.clone(), markers: store.clone(), identity: store, guard: Box::new(server) }
}

pairing_tests!(fresh);
