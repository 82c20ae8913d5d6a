//! Redis-only behaviour of the Redis adapter, against a real `redis-server` (one
//! per test, from the harness): the key layout, TTLs, corrupt data and connection
//! failures. The port's semantics are in the conformance suite (`conformance_redis.rs`).

use clawhive_core::chat::{Message, Usage};
use clawhive_core::config::StoreConfig;
use clawhive_core::{AgentId, RequestId, SessionId, SessionKey, TenantId, UserId};
use clawhive_store::{CommitOutcome, Lease, RedisStore, SessionStore, StoreError, StoredReply, TurnRecord};
use clawhive_tests::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_millis(200);
/// Comfortably past `SHORT`, so the lease has expired.
const PAST_SHORT: Duration = Duration::from_millis(500);

struct Env {
    store: RedisStore,
    raw: MultiplexedConnection,
    // Last, so the server outlives the connections.
    _server: RedisServer,
}

impl Env {
    async fn start() -> Env {
        Env::with_prefix("ch").await
    }

    async fn with_prefix(prefix: &str) -> Env {
        let server = RedisServer::start().expect("redis-server starts");
        let cfg = StoreConfig { redis_url: server.url(), key_prefix: prefix.into(), ..StoreConfig::default() };
        let store = RedisStore::connect(&cfg).await.expect("store connects");
        let raw = redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        Env { store, raw, _server: server }
    }

    async fn raw<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.raw.clone()).await.expect("raw redis command")
    }

    async fn lease(&self, key: &SessionKey) -> Lease {
        self.store.try_acquire_lease(key, "worker", LONG).await.unwrap().expect("lease is free")
    }
}

fn key(tenant: &str, session: &str) -> SessionKey {
    SessionKey::new(TenantId::new(tenant).unwrap(), SessionId::new(session).unwrap())
}

fn user(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

fn agent() -> AgentId {
    AgentId::new("default").unwrap()
}

fn turn(request: &str, who: &str, texts: &[&str]) -> TurnRecord {
    let request_id = RequestId::new(request).unwrap();
    let messages = texts
        .iter()
        .enumerate()
        .map(|(i, t)| if i % 2 == 0 { Message::user(*t) } else { Message::assistant(*t) })
        .collect();
    TurnRecord {
        request_id: request_id.clone(),
        user: user(who),
        agent: agent(),
        messages,
        reply: StoredReply {
            request_id,
            text: format!("reply to {request}"),
            error: None,
            usage: Usage { input_tokens: 3, output_tokens: 5 },
            model: "fake/model".into(),
            completed_unix_ms: 42,
        },
    }
}

#[tokio::test]
async fn a_fenced_commit_leaves_only_the_lease_keys() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let stale = env.store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let _current = env.lease(&k).await;
    assert_eq!(env.store.commit_turn(&stale, &turn("r1", "alice", &["hi"])).await.unwrap(), CommitOutcome::Fenced);
    let keys: Vec<String> = env.raw(redis::cmd("KEYS").arg("*")).await;
    assert_eq!(
        keys.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["ch:{acme:s1}:fence".into(), "ch:{acme:s1}:lease".into()])
    );
}

#[tokio::test]
async fn turn_records_expire() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let lease = env.lease(&k).await;
    env.store.commit_turn(&lease, &turn("r1", "alice", &["hi"])).await.unwrap();
    let ttl: i64 = env.raw(redis::cmd("TTL").arg("ch:{acme:s1}:turn:r1")).await;
    let max = i64::try_from(StoreConfig::default().turn_record_ttl_secs).unwrap();
    assert!(ttl > 0 && ttl <= max, "turn record TTL {ttl}");
}

#[tokio::test]
async fn a_corrupt_history_entry_names_its_key() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let lease = env.lease(&k).await;
    env.store.commit_turn(&lease, &turn("r1", "alice", &["m1", "m2"])).await.unwrap();
    let _: i64 = env.raw(redis::cmd("RPUSH").arg("ch:{acme:s1}:history").arg("{not json")).await;
    match env.store.history(&k, 2).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("ch:{acme:s1}:history"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_index_entries_are_skipped() {
    let env = Env::start().await;
    let (alice, bob) = (user("alice"), user("bob"));
    env.store.ensure_session(&key("acme", "s1"), &alice, &agent()).await.unwrap();
    env.store.ensure_session(&key("acme", "s4"), &bob, &agent()).await.unwrap();
    // A session that belongs to someone else, and one whose meta vanished.
    let _: i64 = env
        .raw(
            redis::cmd("ZADD")
                .arg("ch:{acme}:user:alice:sessions")
                .arg(i64::MAX / 2)
                .arg("s4")
                .arg(i64::MAX / 2)
                .arg("ghost"),
        )
        .await;
    let listed = env.store.list_sessions(&TenantId::new("acme").unwrap(), &alice).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.key.to_string()).collect::<Vec<_>>(), ["acme/s1"]);
}

#[tokio::test]
async fn every_key_carries_its_hash_tag() {
    let env = Env::with_prefix("t1").await;
    let k = key("acme", "s1");
    env.store.ensure_session(&k, &user("alice"), &agent()).await.unwrap();
    let lease = env.lease(&k).await;
    env.store.commit_turn(&lease, &turn("r1", "alice", &["hi"])).await.unwrap();

    let keys: BTreeSet<String> = env.raw::<Vec<String>>(redis::cmd("KEYS").arg("*")).await.into_iter().collect();
    let expected: BTreeSet<String> = [
        "t1:{acme:s1}:meta",
        "t1:{acme:s1}:history",
        "t1:{acme:s1}:lease",
        "t1:{acme:s1}:fence",
        "t1:{acme:s1}:turn:r1",
        "t1:{acme}:user:alice:sessions",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys, expected);
    for key in &keys {
        let tag = key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(tag, _)| tag);
        let want = if key.contains(":user:") { "acme" } else { "acme:s1" };
        assert_eq!(tag, Some(want), "hash tag of {key}");
    }
}

#[tokio::test]
async fn health_follows_the_server() {
    let env = Env::start().await;
    env.store.health().await.unwrap();
    let Env { store, raw, _server } = env;
    drop(raw);
    drop(_server);
    let started = std::time::Instant::now();
    let err = store.health().await.expect_err("health with the server gone");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "health took {:?}", started.elapsed());
}

#[tokio::test]
async fn connect_errors_name_the_url_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = StoreConfig { redis_url: format!("redis://app:s3cret@127.0.0.1:{port}"), ..StoreConfig::default() };
    let msg = RedisStore::connect(&cfg).await.expect_err("nothing listens there").to_string();
    assert!(msg.contains(&format!("redis://app:<redacted>@127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");

    let cfg = StoreConfig { key_prefix: "a{b}".into(), ..StoreConfig::default() };
    let msg = RedisStore::connect(&cfg).await.expect_err("braces in the prefix").to_string();
    assert!(msg.contains("key_prefix"), "{msg}");
}
