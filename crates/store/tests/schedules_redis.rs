//! The schedule conformance suite against the Redis adapter (a real `redis-server` per test).

#[macro_use]
mod schedule_conformance;

use clawhive_core::config::StoreConfig;
use clawhive_store::RedisStore;
use clawhive_tests::redis_server::RedisServer;
use schedule_conformance::Fixture;
use std::sync::Arc;

async fn fresh() -> Fixture {
    let server = RedisServer::start().expect("redis-server starts");
    let cfg = StoreConfig { redis_url: server.url(), ..StoreConfig::default() };
    let store = RedisStore::connect(&cfg).await.expect("store connects");
    Fixture { store: Arc::new(store), guard: Box::new(server) }
}

schedule_tests!(fresh);
