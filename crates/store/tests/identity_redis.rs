//! The identity conformance suite against the Redis adapter (a real `redis-server` per test).

#[macro_use]
mod identity_conformance;

use clawhive_core::config::StoreConfig;
use clawhive_store::RedisStore;
use clawhive_tests::redis_server::RedisServer;
use identity_conformance::Fixture;
use std::sync::Arc;

/// Every key and value (strings and set members) in the server.
async fn dump(url: String) -> Vec<u8> {
    let mut con = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        out.extend_from_slice(key.as_bytes());
        out.push(b'\n');
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap()],
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            other => panic!("unexpected key type {other} of {key}"),
        };
        for v in values {
            out.extend_from_slice(&v);
            out.push(b'\n');
        }
    }
    out
}

async fn fresh() -> Fixture {
    let server = RedisServer::start().expect("redis-server starts");
    let cfg = StoreConfig { redis_url: server.url(), ..StoreConfig::default() };
    let store = RedisStore::connect(&cfg).await.expect("store connects");
    let url = server.url();
    Fixture { store: Arc::new(store), dump: Arc::new(move || Box::pin(dump(url.clone()))), guard: Box::new(server) }
}

identity_tests!(fresh);
