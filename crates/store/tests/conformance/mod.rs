//! The `SessionStore` conformance suite: the port's semantics, checked against
//! every adapter through `Arc<dyn SessionStore>` only.
//!
//! A runner (`conformance_<adapter>.rs`) invokes [`conformance_tests!`] with an
//! async function returning a fresh [`Fixture`]; the macro expands to one
//! `#[tokio::test]` per case, so every adapter runs every case, and a case added
//! here runs everywhere.
//!
//! Each test crate uses a part of this module.
#![allow(dead_code, unused_macros)]

use clawhive_core::chat::{Message, Usage};
use clawhive_core::{AgentId, RequestId, SessionId, SessionKey, SessionMeta, TenantId, UserId};
use clawhive_store::{BeginTurn, CommitOutcome, Lease, SessionStore, StoredReply, TurnRecord};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const LONG: Duration = Duration::from_secs(30);
pub const SHORT: Duration = Duration::from_millis(200);
/// Comfortably past `SHORT`, so the lease has expired.
pub const PAST_SHORT: Duration = Duration::from_millis(500);

/// A fresh, empty store, and whatever must live as long as it (a server, a directory).
pub struct Fixture {
    pub store: Arc<dyn SessionStore>,
    // Dropped after the store.
    pub guard: Box<dyn Send>,
}

/// Expands to one test per conformance case; `$fresh` is an async fn returning a [`Fixture`].
macro_rules! conformance_tests {
    ($fresh:path) => {
        conformance_tests!(@cases $fresh;
            lease_is_exclusive,
            racing_acquirers_get_one_lease,
            release_by_a_non_holder_is_a_no_op,
            expired_lease_is_reacquired_with_a_larger_token,
            commit_with_a_stale_lease_is_fenced_and_writes_nothing,
            a_stale_lease_is_fenced_even_for_a_committed_request,
            a_request_id_commits_once,
            a_commit_creates_the_session_for_its_user,
            history_is_oldest_first_and_limited_to_the_newest,
            begin_turn_takes_the_lease_and_reads_the_session_under_it,
            finish_turn_commits_and_ends_the_lease,
            racing_creators_agree_on_one_owner,
            list_sessions_shows_only_the_owners_newest_first,
            reset_clears_history_and_keeps_the_owner,
            health_is_ok,
            usage_adds_up_per_user_and_day,
            turns_are_counted_per_user_and_minute,
            policy_documents_are_per_tenant_and_versioned,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture: conformance::Fixture = $fresh().await;
                conformance::$case(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
}

pub fn key(tenant: &str, session: &str) -> SessionKey {
    SessionKey::new(TenantId::new(tenant).unwrap(), SessionId::new(session).unwrap())
}

pub fn user(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

pub fn agent() -> AgentId {
    AgentId::new("default").unwrap()
}

pub fn turn(request: &str, who: &str, texts: &[&str]) -> TurnRecord {
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

pub fn contents(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

pub fn sessions(metas: &[SessionMeta]) -> Vec<String> {
    metas.iter().map(|m| m.key.to_string()).collect()
}

pub async fn lease(store: &dyn SessionStore, key: &SessionKey) -> Lease {
    store.try_acquire_lease(key, "worker", LONG).await.unwrap().expect("lease is free")
}

/// A directory under the system temp dir, unique to this process and call,
/// removed on `Drop`.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("clawhive-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- the cases

pub async fn lease_is_exclusive(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let a = store.try_acquire_lease(&k, "w1", LONG).await.unwrap().expect("first acquire wins");
    assert_eq!((a.holder.as_str(), &a.key), ("w1", &k));
    assert!(store.try_acquire_lease(&k, "w2", LONG).await.unwrap().is_none(), "second holder got the lease");
    assert!(store.try_acquire_lease(&k, "w1", LONG).await.unwrap().is_none(), "lease is not re-entrant");
    assert!(store.renew_lease(&a, LONG).await.unwrap());
    // Another session's lease is independent, and the same session id in another tenant too.
    assert!(store.try_acquire_lease(&key("acme", "s2"), "w2", LONG).await.unwrap().is_some());
    assert!(store.try_acquire_lease(&key("other", "s1"), "w2", LONG).await.unwrap().is_some());
}

pub async fn racing_acquirers_get_one_lease(store: Arc<dyn SessionStore>) {
    let k = key("acme", "contended");
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.try_acquire_lease(&k, &format!("w{i}"), LONG).await.unwrap()
            })
        })
        .collect();
    let mut granted = Vec::new();
    for t in tasks {
        granted.extend(t.await.unwrap());
    }
    assert_eq!(granted.len(), 1, "leases granted: {granted:?}");
    let winner = &granted[0];
    assert!(store.renew_lease(winner, LONG).await.unwrap());
    store.release_lease(winner).await.unwrap();
    let next = store.try_acquire_lease(&k, "late", LONG).await.unwrap().expect("free after release");
    assert!(next.token > winner.token, "token {} after {}", next.token, winner.token);
}

pub async fn release_by_a_non_holder_is_a_no_op(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let a = lease(&*store, &k).await;
    for token in [a.token + 1, a.token.saturating_sub(1)] {
        let forged = Lease { holder: "intruder".into(), token, ..a.clone() };
        store.release_lease(&forged).await.unwrap();
        assert!(!store.renew_lease(&forged, LONG).await.unwrap(), "a foreign token renewed the lease");
        assert!(store.try_acquire_lease(&k, "w2", LONG).await.unwrap().is_none(), "released by token {token}");
    }

    store.release_lease(&a).await.unwrap();
    let b = store.try_acquire_lease(&k, "w2", LONG).await.unwrap().expect("free after the holder released");
    assert!(b.token > a.token);
    // The old holder releasing again must not free the new holder's lease.
    store.release_lease(&a).await.unwrap();
    assert!(store.try_acquire_lease(&k, "w3", LONG).await.unwrap().is_none());
    assert!(store.renew_lease(&b, LONG).await.unwrap());
    assert!(!store.renew_lease(&a, LONG).await.unwrap(), "a released lease renewed");
}

pub async fn expired_lease_is_reacquired_with_a_larger_token(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let a = store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(!store.renew_lease(&a, LONG).await.unwrap(), "an expired lease was renewed");
    let b = store.try_acquire_lease(&k, "w2", LONG).await.unwrap().expect("expired lease is free");
    assert!(b.token > a.token, "token {} after {}", b.token, a.token);

    // Renewal extends the TTL.
    let k2 = key("acme", "s2");
    let c = store.try_acquire_lease(&k2, "w1", SHORT).await.unwrap().unwrap();
    assert!(store.renew_lease(&c, LONG).await.unwrap());
    tokio::time::sleep(PAST_SHORT).await;
    assert!(store.try_acquire_lease(&k2, "w2", LONG).await.unwrap().is_none(), "renewed lease expired");
}

pub async fn commit_with_a_stale_lease_is_fenced_and_writes_nothing(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let stale = store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let current = lease(&*store, &k).await;

    let t = turn("r1", "alice", &["hi", "hello"]);
    assert_eq!(store.commit_turn(&stale, &t).await.unwrap(), CommitOutcome::Fenced);
    assert!(store.history(&k, 100).await.unwrap().is_empty());
    assert_eq!(store.committed_turn(&k, &t.request_id).await.unwrap(), None);
    assert_eq!(store.session_meta(&k).await.unwrap(), None);
    assert!(store.list_sessions(&k.tenant, &user("alice")).await.unwrap().is_empty());

    assert_eq!(store.commit_turn(&current, &t).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(contents(&store.history(&k, 100).await.unwrap()), ["hi", "hello"]);

    // Without any lease at all, nothing commits either.
    store.release_lease(&current).await.unwrap();
    let t2 = turn("r2", "alice", &["again"]);
    assert_eq!(store.commit_turn(&current, &t2).await.unwrap(), CommitOutcome::Fenced);
    assert_eq!(store.history(&k, 100).await.unwrap().len(), 2);
    assert_eq!(store.committed_turn(&k, &t2.request_id).await.unwrap(), None);
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 2);

    // A lease of another session does not fence this one in.
    let other = lease(&*store, &key("acme", "s2")).await;
    let forged = Lease { key: k.clone(), ..other };
    assert_eq!(store.commit_turn(&forged, &t2).await.unwrap(), CommitOutcome::Fenced);
}

pub async fn a_stale_lease_is_fenced_even_for_a_committed_request(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let first = store.try_acquire_lease(&k, "w1", SHORT).await.unwrap().unwrap();
    let t = turn("r1", "alice", &["hi"]);
    assert_eq!(store.commit_turn(&first, &t).await.unwrap(), CommitOutcome::Committed);
    tokio::time::sleep(PAST_SHORT).await;
    let _current = lease(&*store, &k).await;
    // The fence is checked first: a stale worker learns it lost the lease.
    assert_eq!(store.commit_turn(&first, &t).await.unwrap(), CommitOutcome::Fenced);
}

pub async fn a_request_id_commits_once(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let lease = lease(&*store, &k).await;
    let first = turn("r1", "alice", &["hi", "hello"]);
    assert_eq!(store.commit_turn(&lease, &first).await.unwrap(), CommitOutcome::Committed);

    let mut retry = turn("r1", "alice", &["hi again", "different"]);
    retry.reply.text = "a different reply".into();
    assert_eq!(store.commit_turn(&lease, &retry).await.unwrap(), CommitOutcome::AlreadyCommitted(first.reply.clone()));

    assert_eq!(store.history(&k, 100).await.unwrap(), first.messages);
    assert_eq!(store.committed_turn(&k, &first.request_id).await.unwrap(), Some(first.reply.clone()));
    let meta = store.session_meta(&k).await.unwrap().expect("commit created the session");
    assert_eq!((meta.owner.as_str(), meta.message_count), ("alice", 2));
    assert_eq!(store.list_sessions(&k.tenant, &user("alice")).await.unwrap(), vec![meta]);

    // Request ids are per session.
    assert_eq!(store.committed_turn(&key("acme", "s2"), &first.request_id).await.unwrap(), None);
    let other = self::lease(&*store, &key("acme", "s2")).await;
    assert_eq!(store.commit_turn(&other, &retry).await.unwrap(), CommitOutcome::Committed);
}

pub async fn a_commit_creates_the_session_for_its_user(store: Arc<dyn SessionStore>) {
    let k = key("acme", "fresh");
    let lease = lease(&*store, &k).await;
    let mut t = turn("r1", "carol", &["q", "a", "q2"]);
    t.agent = AgentId::new("helper").unwrap();
    assert_eq!(store.commit_turn(&lease, &t).await.unwrap(), CommitOutcome::Committed);
    let meta = store.session_meta(&k).await.unwrap().expect("commit created the session");
    assert_eq!((meta.owner.as_str(), meta.agent.as_str(), meta.message_count), ("carol", "helper", 3));
    assert!(meta.updated_unix_ms >= meta.created_unix_ms);

    // A later turn by another user neither changes the owner nor goes back in time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.commit_turn(&lease, &turn("r2", "dave", &["x"])).await.unwrap(), CommitOutcome::Committed);
    let after = store.session_meta(&k).await.unwrap().unwrap();
    assert_eq!((after.owner.as_str(), after.agent.as_str(), after.message_count), ("carol", "helper", 4));
    assert_eq!(after.created_unix_ms, meta.created_unix_ms);
    assert!(after.updated_unix_ms >= meta.updated_unix_ms);
    assert!(store.list_sessions(&k.tenant, &user("dave")).await.unwrap().is_empty());
    assert_eq!(store.ensure_session(&k, &user("dave"), &agent()).await.unwrap(), after);
    // A turn without messages commits (its reply is kept) and adds nothing.
    assert_eq!(store.commit_turn(&lease, &turn("r3", "carol", &[])).await.unwrap(), CommitOutcome::Committed);
    assert!(store.committed_turn(&k, &RequestId::new("r3").unwrap()).await.unwrap().is_some());
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 4);
}

pub async fn history_is_oldest_first_and_limited_to_the_newest(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let lease = lease(&*store, &k).await;
    for (r, texts) in [("r1", ["m1", "m2"]), ("r2", ["m3", "m4"]), ("r3", ["m5", "m6"])] {
        assert_eq!(store.commit_turn(&lease, &turn(r, "alice", &texts)).await.unwrap(), CommitOutcome::Committed);
    }
    assert_eq!(contents(&store.history(&k, 100).await.unwrap()), ["m1", "m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(contents(&store.history(&k, 3).await.unwrap()), ["m4", "m5", "m6"]);
    assert_eq!(contents(&store.history(&k, 1).await.unwrap()), ["m6"]);
    assert_eq!(contents(&store.history(&k, 6).await.unwrap()).len(), 6);
    assert!(store.history(&k, 0).await.unwrap().is_empty());
    assert!(store.history(&key("acme", "nobody"), 10).await.unwrap().is_empty());
    // Same session id, other tenant: nothing shared.
    assert!(store.history(&key("other", "s1"), 10).await.unwrap().is_empty());
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 6);
    // Messages round-trip whole, not just their text.
    let t = turn("r4", "alice", &["m7"]);
    store.commit_turn(&lease, &t).await.unwrap();
    assert_eq!(store.history(&k, 1).await.unwrap(), t.messages);
}

pub async fn racing_creators_agree_on_one_owner(store: Arc<dyn SessionStore>) {
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
    assert_eq!(winner.message_count, 0);
    assert_eq!(store.session_meta(&k).await.unwrap(), Some(winner.clone()));
    assert_eq!(store.ensure_session(&k, &user("late"), &AgentId::new("other").unwrap()).await.unwrap(), winner);
    for i in 0..8 {
        let owner = user(&format!("u{i}"));
        let listed = store.list_sessions(&k.tenant, &owner).await.unwrap();
        let expected = if owner == winner.owner { vec![winner.clone()] } else { Vec::new() };
        assert_eq!(listed, expected, "sessions of {owner}");
    }
}

pub async fn begin_turn_takes_the_lease_and_reads_the_session_under_it(store: Arc<dyn SessionStore>) {
    let k = key("acme", "begin");
    let (alice, r1, r2) = (user("alice"), RequestId::new("r1").unwrap(), RequestId::new("r2").unwrap());
    let agent = agent();
    let begin = |request_id, history_limit| BeginTurn {
        key: &k,
        holder: "worker",
        ttl: LONG,
        request_id,
        owner: &alice,
        agent: &agent,
        history_limit,
    };

    // A new session: created for the owner (and listed), no history, nothing committed.
    let start = store.begin_turn(&begin(&r1, 10)).await.unwrap().expect("the lease is free");
    let state = start.state.unwrap();
    assert_eq!((state.committed, state.history.len()), (None, 0));
    assert_eq!((state.meta.owner.as_str(), state.meta.message_count), ("alice", 0));
    assert_eq!(sessions(&store.list_sessions(&k.tenant, &alice).await.unwrap()), ["acme/begin"]);
    // Held: nobody else begins, and nothing is read or created for them.
    assert!(store.begin_turn(&begin(&r2, 10)).await.unwrap().is_none());
    assert!(store.try_acquire_lease(&k, "other", LONG).await.unwrap().is_none());

    let committed = turn("r1", "alice", &["one", "two", "three", "four"]);
    assert_eq!(store.commit_turn(&start.lease, &committed).await.unwrap(), CommitOutcome::Committed);
    store.release_lease(&start.lease).await.unwrap();

    // A redelivery of r1 finds its reply; the history is the newest messages, oldest first;
    // the new lease fences the old one.
    let again = store.begin_turn(&begin(&r1, 3)).await.unwrap().expect("released");
    assert!(again.lease.token > start.lease.token);
    let state = again.state.unwrap();
    assert_eq!(state.committed, Some(committed.reply.clone()));
    assert_eq!(contents(&state.history), ["two", "three", "four"]);
    assert_eq!(state.meta.message_count, 4);
    assert_eq!(store.commit_turn(&start.lease, &turn("r9", "alice", &["x"])).await.unwrap(), CommitOutcome::Fenced);
    store.release_lease(&again.lease).await.unwrap();

    // Another request: nothing committed for it; a zero limit reads no history.
    let other = store.begin_turn(&begin(&r2, 0)).await.unwrap().expect("released");
    let state = other.state.unwrap();
    assert_eq!((state.committed, state.history.len()), (None, 0));
    // The session keeps its first owner whoever begins a turn in it.
    let bob = user("bob");
    store.release_lease(&other.lease).await.unwrap();
    let by_bob = BeginTurn { owner: &bob, ..begin(&r2, 10) };
    let state = store.begin_turn(&by_bob).await.unwrap().expect("released").state.unwrap();
    assert_eq!(state.meta.owner.as_str(), "alice");
}

pub async fn finish_turn_commits_and_ends_the_lease(store: Arc<dyn SessionStore>) {
    let k = key("acme", "finish");
    let first = lease(&*store, &k).await;
    let t1 = turn("r1", "alice", &["q1", "a1"]);
    assert_eq!(store.finish_turn(&first, &t1).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(contents(&store.history(&k, 10).await.unwrap()), ["q1", "a1"]);
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 2);
    // Released with the commit: the next turn takes the lease at once.
    let second = lease(&*store, &k).await;
    assert!(second.token > first.token);
    // A duplicate also ends the lease, and writes nothing.
    assert_eq!(
        store.finish_turn(&second, &turn("r1", "alice", &["again"])).await.unwrap(),
        CommitOutcome::AlreadyCommitted(t1.reply.clone())
    );
    let third = lease(&*store, &k).await;
    // A fenced (stale) finish leaves the current holder's lease alone.
    assert_eq!(store.finish_turn(&second, &turn("r2", "alice", &["late"])).await.unwrap(), CommitOutcome::Fenced);
    assert!(store.try_acquire_lease(&k, "other", LONG).await.unwrap().is_none(), "still held by the third");
    assert_eq!(store.commit_turn(&third, &turn("r3", "alice", &["q3"])).await.unwrap(), CommitOutcome::Committed);
    assert!(store.try_acquire_lease(&k, "other", LONG).await.unwrap().is_none(), "commit_turn keeps the lease");
    assert_eq!(contents(&store.history(&k, 10).await.unwrap()), ["q1", "a1", "q3"]);
}

pub async fn list_sessions_shows_only_the_owners_newest_first(store: Arc<dyn SessionStore>) {
    let (alice, bob) = (user("alice"), user("bob"));
    let tick = || tokio::time::sleep(Duration::from_millis(10));
    for s in ["s1", "s2", "s3"] {
        store.ensure_session(&key("acme", s), &alice, &agent()).await.unwrap();
        tick().await;
    }
    store.ensure_session(&key("acme", "s4"), &bob, &agent()).await.unwrap();
    store.ensure_session(&key("other", "s1"), &alice, &agent()).await.unwrap();
    let acme = TenantId::new("acme").unwrap();
    assert_eq!(sessions(&store.list_sessions(&acme, &alice).await.unwrap()), ["acme/s3", "acme/s2", "acme/s1"]);

    // A turn moves s1 to the top; bob speaking in alice's session does not make it his.
    tick().await;
    let lease = lease(&*store, &key("acme", "s1")).await;
    store.commit_turn(&lease, &turn("r1", "bob", &["hi"])).await.unwrap();
    assert_eq!(sessions(&store.list_sessions(&acme, &alice).await.unwrap()), ["acme/s1", "acme/s3", "acme/s2"]);
    assert_eq!(sessions(&store.list_sessions(&acme, &bob).await.unwrap()), ["acme/s4"]);
    let other = TenantId::new("other").unwrap();
    assert_eq!(sessions(&store.list_sessions(&other, &alice).await.unwrap()), ["other/s1"]);
    assert!(store.list_sessions(&other, &bob).await.unwrap().is_empty());
    // A user whose id extends another's sees none of theirs.
    assert!(store.list_sessions(&acme, &user("ali")).await.unwrap().is_empty());
    assert!(store.list_sessions(&acme, &user("alicex")).await.unwrap().is_empty());
    // Each listed meta is the session's current one.
    let listed = store.list_sessions(&acme, &alice).await.unwrap();
    assert_eq!(Some(listed[0].clone()), store.session_meta(&key("acme", "s1")).await.unwrap());
    assert_eq!(listed[0].message_count, 1);
}

pub async fn reset_clears_history_and_keeps_the_owner(store: Arc<dyn SessionStore>) {
    let k = key("acme", "s1");
    let lease = lease(&*store, &k).await;
    store.commit_turn(&lease, &turn("r1", "alice", &["m1", "m2"])).await.unwrap();
    let before = store.session_meta(&k).await.unwrap().unwrap();

    assert!(store.reset_session(&k).await.unwrap());
    assert!(store.history(&k, 100).await.unwrap().is_empty());
    let after = store.session_meta(&k).await.unwrap().unwrap();
    assert_eq!(
        (after.owner.as_str(), after.message_count, after.created_unix_ms),
        ("alice", 0, before.created_unix_ms)
    );
    // A redelivered request still finds its reply.
    assert!(store.committed_turn(&k, &RequestId::new("r1").unwrap()).await.unwrap().is_some());
    assert_eq!(store.list_sessions(&k.tenant, &user("alice")).await.unwrap(), vec![after]);

    store.commit_turn(&lease, &turn("r2", "alice", &["m3", "m4"])).await.unwrap();
    assert_eq!(contents(&store.history(&k, 100).await.unwrap()), ["m3", "m4"]);
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 2);

    assert!(!store.reset_session(&key("acme", "never")).await.unwrap());
    assert_eq!(store.session_meta(&key("acme", "never")).await.unwrap(), None);
}

pub async fn health_is_ok(store: Arc<dyn SessionStore>) {
    store.health().await.unwrap();
    store.ensure_session(&key("acme", "s1"), &user("alice"), &agent()).await.unwrap();
    store.health().await.unwrap();
}

pub async fn usage_adds_up_per_user_and_day(store: Arc<dyn SessionStore>) {
    use clawhive_store::DailyUsage;
    let tenant = TenantId::new("acme").unwrap();
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    let day = "2026-03-04";
    let u = |user, tenant| DailyUsage { user, tenant };
    assert_eq!(store.usage(&tenant, &alice, day).await.unwrap(), u(0, 0));
    assert_eq!(store.add_usage(&tenant, &alice, day, 10).await.unwrap(), u(10, 10));
    assert_eq!(store.add_usage(&tenant, &alice, day, 5).await.unwrap(), u(15, 15));
    assert_eq!(store.add_usage(&tenant, &alice, day, 0).await.unwrap(), u(15, 15));
    assert_eq!(store.usage(&tenant, &alice, day).await.unwrap(), u(15, 15));
    // Other users, days and tenants are counted apart; the tenant total adds its users up.
    assert_eq!(store.usage(&tenant, &bob, day).await.unwrap(), u(0, 15));
    assert_eq!(store.usage(&tenant, &alice, "2026-03-05").await.unwrap(), u(0, 0));
    assert_eq!(store.usage(&TenantId::new("globex").unwrap(), &alice, day).await.unwrap(), u(0, 0));
    assert_eq!(store.add_usage(&tenant, &bob, day, 7).await.unwrap(), u(7, 22));
    assert_eq!(store.usage(&tenant, &alice, day).await.unwrap(), u(15, 22));
    assert!(matches!(
        store.add_usage(&tenant, &alice, "2026-3-4", 1).await,
        Err(clawhive_store::StoreError::Invalid(_))
    ));
    assert!(matches!(store.usage(&tenant, &alice, "{x}").await, Err(clawhive_store::StoreError::Invalid(_))));
}

pub async fn turns_are_counted_per_user_and_minute(store: Arc<dyn SessionStore>) {
    let tenant = TenantId::new("acme").unwrap();
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    let minute = clawhive_core::time::now_unix_ms() / 60_000;
    assert_eq!(store.count_turn(&tenant, &alice, minute).await.unwrap(), 1);
    assert_eq!(store.count_turn(&tenant, &alice, minute).await.unwrap(), 2);
    assert_eq!(store.count_turn(&tenant, &bob, minute).await.unwrap(), 1);
    assert_eq!(store.count_turn(&TenantId::new("globex").unwrap(), &alice, minute).await.unwrap(), 1);
    // A new minute starts from one.
    assert_eq!(store.count_turn(&tenant, &alice, minute + 1).await.unwrap(), 1);
    assert_eq!(store.count_turn(&tenant, &alice, minute + 1).await.unwrap(), 2);
}

pub async fn policy_documents_are_per_tenant_and_versioned(store: Arc<dyn SessionStore>) {
    let (acme, globex) = (TenantId::new("acme").unwrap(), TenantId::new("globex").unwrap());
    assert_eq!(store.policy_doc(&acme).await.unwrap(), None);
    assert_eq!(store.put_policy_doc(&acme, "[[grants]]\nagents = [\"*\"]\n").await.unwrap(), 1);
    let doc = store.policy_doc(&acme).await.unwrap().expect("stored");
    assert_eq!((doc.text.as_str(), doc.version), ("[[grants]]\nagents = [\"*\"]\n", 1));
    assert!(doc.updated_unix_ms > 0);
    assert_eq!(store.policy_doc(&globex).await.unwrap(), None, "tenants are apart");
    assert_eq!(store.put_policy_doc(&acme, "# v2").await.unwrap(), 2);
    assert_eq!(store.policy_doc(&acme).await.unwrap().unwrap().text, "# v2");
    assert!(store.delete_policy_doc(&acme).await.unwrap());
    assert!(!store.delete_policy_doc(&acme).await.unwrap());
    assert_eq!(store.policy_doc(&acme).await.unwrap(), None);
    // Versions are never reused, also across a delete.
    assert_eq!(store.put_policy_doc(&acme, "# v3").await.unwrap(), 3);
    let huge = "#".repeat(clawhive_store::port::MAX_POLICY_BYTES + 1);
    assert!(matches!(store.put_policy_doc(&acme, &huge).await, Err(clawhive_store::StoreError::Invalid(_))));
}
