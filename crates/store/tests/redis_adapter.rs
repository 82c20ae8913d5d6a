//! The Redis adapter against a real `redis-server` (one per test, from the harness).

use clawhive_core::chat::{Message, Usage};
use clawhive_core::config::StoreConfig;
use clawhive_core::{AgentId, RequestId, SessionId, SessionKey, TenantId, UserId};
use clawhive_store::{CommitOutcome, Lease, RedisStore, SessionStore, StoreError, StoredReply, TurnRecord};
use clawhive_tests::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;
use std::collections::BTreeSet;
use std::sync::Arc;
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

fn contents(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

fn sessions(metas: &[clawhive_core::SessionMeta]) -> Vec<String> {
    metas.iter().map(|m| m.key.to_string()).collect()
}

#[tokio::test]
async fn lease_is_exclusive() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let a = env.store.try_acquire_lease(&k, "w1", LONG).await.unwrap().expect("first acquire wins");
    assert_eq!((a.holder.as_str(), &a.key), ("w1", &k));
    assert!(env.store.try_acquire_lease(&k, "w2", LONG).await.unwrap().is_none(), "second holder got the lease");
    assert!(env.store.try_acquire_lease(&k, "w1", LONG).await.unwrap().is_none(), "lease is not re-entrant");
    assert!(env.store.renew_lease(&a, LONG).await.unwrap());
    // Another session's lease is independent.
    assert!(env.store.try_acquire_lease(&key("acme", "s2"), "w2", LONG).await.unwrap().is_some());
}

#[tokio::test]
async fn release_by_a_non_holder_is_a_no_op() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let a = env.lease(&k).await;
    for token in [a.token + 1, a.token.saturating_sub(1)] {
        let forged = Lease { holder: "intruder".into(), token, ..a.clone() };
        env.store.release_lease(&forged).await.unwrap();
        assert!(!env.store.renew_lease(&forged, LONG).await.unwrap(), "a foreign token renewed the lease");
        assert!(env.store.try_acquire_lease(&k, "w2", LONG).await.unwrap().is_none(), "released by token {token}");
    }

    env.store.release_lease(&a).await.unwrap();
    let b = env.store.try_acquire_lease(&k, "w2", LONG).await.unwrap().expect("free after the holder released");
    assert!(b.token > a.token);
    // The old holder releasing again must not free the new holder's lease.
    env.store.release_lease(&a).await.unwrap();
    assert!(env.store.try_acquire_lease(&k, "w3", LONG).await.unwrap().is_none());
    assert!(env.store.renew_lease(&b, LONG).await.unwrap());
}

#[tokio::test]
async fn expired_lease_is_reacquired_with_a_larger_token() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let a = env.store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(!env.store.renew_lease(&a, LONG).await.unwrap(), "an expired lease was renewed");
    let b = env.store.try_acquire_lease(&k, "w2", LONG).await.unwrap().expect("expired lease is free");
    assert!(b.token > a.token, "token {} after {}", b.token, a.token);

    // Renewal extends the TTL.
    let k2 = key("acme", "s2");
    let c = env.store.try_acquire_lease(&k2, "w1", SHORT).await.unwrap().unwrap();
    assert!(env.store.renew_lease(&c, LONG).await.unwrap());
    tokio::time::sleep(PAST_SHORT).await;
    assert!(env.store.try_acquire_lease(&k2, "w2", LONG).await.unwrap().is_none(), "renewed lease expired");
}

#[tokio::test]
async fn commit_with_a_stale_lease_is_fenced_and_writes_nothing() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let stale = env.store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let current = env.lease(&k).await;

    let t = turn("r1", "alice", &["hi", "hello"]);
    assert_eq!(env.store.commit_turn(&stale, &t).await.unwrap(), CommitOutcome::Fenced);
    assert!(env.store.history(&k, 100).await.unwrap().is_empty());
    assert_eq!(env.store.committed_turn(&k, &t.request_id).await.unwrap(), None);
    assert_eq!(env.store.session_meta(&k).await.unwrap(), None);
    assert!(env.store.list_sessions(&k.tenant, &user("alice")).await.unwrap().is_empty());
    let keys: Vec<String> = env.raw(redis::cmd("KEYS").arg("*")).await;
    assert_eq!(
        keys.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["ch:{acme:s1}:fence".into(), "ch:{acme:s1}:lease".into()])
    );

    assert_eq!(env.store.commit_turn(&current, &t).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(contents(&env.store.history(&k, 100).await.unwrap()), ["hi", "hello"]);

    // Without any lease at all, nothing commits either.
    env.store.release_lease(&current).await.unwrap();
    let t2 = turn("r2", "alice", &["again"]);
    assert_eq!(env.store.commit_turn(&current, &t2).await.unwrap(), CommitOutcome::Fenced);
    assert_eq!(env.store.history(&k, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_request_id_commits_once() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let lease = env.lease(&k).await;
    let first = turn("r1", "alice", &["hi", "hello"]);
    assert_eq!(env.store.commit_turn(&lease, &first).await.unwrap(), CommitOutcome::Committed);

    let mut retry = turn("r1", "alice", &["hi again", "different"]);
    retry.reply.text = "a different reply".into();
    assert_eq!(
        env.store.commit_turn(&lease, &retry).await.unwrap(),
        CommitOutcome::AlreadyCommitted(first.reply.clone())
    );

    assert_eq!(env.store.history(&k, 100).await.unwrap(), first.messages);
    assert_eq!(env.store.committed_turn(&k, &first.request_id).await.unwrap(), Some(first.reply.clone()));
    let meta = env.store.session_meta(&k).await.unwrap().expect("commit created the session");
    assert_eq!((meta.owner.as_str(), meta.message_count), ("alice", 2));
    assert_eq!(env.store.list_sessions(&k.tenant, &user("alice")).await.unwrap(), vec![meta]);
    let ttl: i64 = env.raw(redis::cmd("TTL").arg("ch:{acme:s1}:turn:r1")).await;
    let max = i64::try_from(StoreConfig::default().turn_record_ttl_secs).unwrap();
    assert!(ttl > 0 && ttl <= max, "turn record TTL {ttl}");
}

#[tokio::test]
async fn history_is_oldest_first_and_limited_to_the_newest() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let lease = env.lease(&k).await;
    for (r, texts) in [("r1", ["m1", "m2"]), ("r2", ["m3", "m4"]), ("r3", ["m5", "m6"])] {
        assert_eq!(env.store.commit_turn(&lease, &turn(r, "alice", &texts)).await.unwrap(), CommitOutcome::Committed);
    }
    assert_eq!(contents(&env.store.history(&k, 100).await.unwrap()), ["m1", "m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(contents(&env.store.history(&k, 3).await.unwrap()), ["m4", "m5", "m6"]);
    assert_eq!(contents(&env.store.history(&k, 6).await.unwrap()).len(), 6);
    assert!(env.store.history(&k, 0).await.unwrap().is_empty());
    assert!(env.store.history(&key("acme", "nobody"), 10).await.unwrap().is_empty());
    assert_eq!(env.store.session_meta(&k).await.unwrap().unwrap().message_count, 6);

    let _: i64 = env.raw(redis::cmd("RPUSH").arg("ch:{acme:s1}:history").arg("{not json")).await;
    match env.store.history(&k, 2).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("ch:{acme:s1}:history"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_agree_on_one_owner() {
    let env = Env::start().await;
    let store = Arc::new(env.store.clone());
    let k = key("acme", "shared");
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.ensure_session(&k, &user(&format!("u{i}")), &agent()).await.unwrap()
            })
        })
        .collect();
    let mut metas = Vec::new();
    for t in tasks {
        metas.push(t.await.unwrap());
    }
    let winner = metas[0].clone();
    assert!(metas.iter().all(|m| *m == winner), "creators saw different metas: {metas:?}");
    assert!((0..8).any(|i| winner.owner.as_str() == format!("u{i}")));
    assert_eq!(store.session_meta(&k).await.unwrap(), Some(winner.clone()));
    assert_eq!(store.ensure_session(&k, &user("late"), &AgentId::new("other").unwrap()).await.unwrap(), winner);
    for i in 0..8 {
        let owner = user(&format!("u{i}"));
        let listed = store.list_sessions(&k.tenant, &owner).await.unwrap();
        let expected = if owner == winner.owner { vec![winner.clone()] } else { Vec::new() };
        assert_eq!(listed, expected, "sessions of {owner}");
    }
}

#[tokio::test]
async fn list_sessions_shows_only_the_owners_newest_first() {
    let env = Env::start().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let tick = || tokio::time::sleep(Duration::from_millis(10));
    for s in ["s1", "s2", "s3"] {
        env.store.ensure_session(&key("acme", s), &alice, &agent()).await.unwrap();
        tick().await;
    }
    env.store.ensure_session(&key("acme", "s4"), &bob, &agent()).await.unwrap();
    env.store.ensure_session(&key("other", "s1"), &alice, &agent()).await.unwrap();
    let acme = TenantId::new("acme").unwrap();
    assert_eq!(sessions(&env.store.list_sessions(&acme, &alice).await.unwrap()), ["acme/s3", "acme/s2", "acme/s1"]);

    // A turn moves s1 to the top; bob speaking in alice's session does not make it his.
    tick().await;
    let lease = env.lease(&key("acme", "s1")).await;
    env.store.commit_turn(&lease, &turn("r1", "bob", &["hi"])).await.unwrap();
    assert_eq!(sessions(&env.store.list_sessions(&acme, &alice).await.unwrap()), ["acme/s1", "acme/s3", "acme/s2"]);
    assert_eq!(sessions(&env.store.list_sessions(&acme, &bob).await.unwrap()), ["acme/s4"]);
    let other = TenantId::new("other").unwrap();
    assert_eq!(sessions(&env.store.list_sessions(&other, &alice).await.unwrap()), ["other/s1"]);
    assert!(env.store.list_sessions(&other, &bob).await.unwrap().is_empty());

    // Stale index entries (a session that changed hands, one whose meta vanished) are skipped.
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
    assert_eq!(sessions(&env.store.list_sessions(&acme, &alice).await.unwrap()), ["acme/s1", "acme/s3", "acme/s2"]);
}

#[tokio::test]
async fn reset_clears_history_and_keeps_the_owner() {
    let env = Env::start().await;
    let k = key("acme", "s1");
    let lease = env.lease(&k).await;
    env.store.commit_turn(&lease, &turn("r1", "alice", &["m1", "m2"])).await.unwrap();
    let before = env.store.session_meta(&k).await.unwrap().unwrap();

    assert!(env.store.reset_session(&k).await.unwrap());
    assert!(env.store.history(&k, 100).await.unwrap().is_empty());
    let after = env.store.session_meta(&k).await.unwrap().unwrap();
    assert_eq!(
        (after.owner.as_str(), after.message_count, after.created_unix_ms),
        ("alice", 0, before.created_unix_ms)
    );
    // A redelivered request still finds its reply.
    assert!(env.store.committed_turn(&k, &RequestId::new("r1").unwrap()).await.unwrap().is_some());

    env.store.commit_turn(&lease, &turn("r2", "alice", &["m3", "m4"])).await.unwrap();
    assert_eq!(contents(&env.store.history(&k, 100).await.unwrap()), ["m3", "m4"]);
    assert_eq!(env.store.session_meta(&k).await.unwrap().unwrap().message_count, 2);

    assert!(!env.store.reset_session(&key("acme", "never")).await.unwrap());
    assert_eq!(env.store.session_meta(&key("acme", "never")).await.unwrap(), None);
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
