//! Embedded-only behaviour of the embedded adapter: the file outlives the
//! process (sessions survive a restart, fencing tokens keep growing), redb's
//! file lock, damaged files and turn-record expiry. The port's semantics are in
//! the conformance suite (`conformance_embedded.rs`).

mod conformance;

use clawhive_core::RequestId;
use clawhive_store::{CommitOutcome, EmbeddedStore, SessionStore, StoreError};
use conformance::{LONG, TempDir, agent, contents, key, lease, sessions, turn, user};
use std::time::Duration;

#[tokio::test]
async fn sessions_survive_closing_and_reopening_the_file() {
    let dir = TempDir::new("embedded-reopen");
    let path = dir.path().join("sessions.redb");
    let k = key("acme", "s1");
    let (meta_before, reply) = {
        let store = EmbeddedStore::open(&path).unwrap();
        let l = lease(&store, &k).await;
        let t = turn("r1", "alice", &["m1", "m2"]);
        assert_eq!(store.commit_turn(&l, &t).await.unwrap(), CommitOutcome::Committed);
        store.commit_turn(&l, &turn("r2", "alice", &["m3"])).await.unwrap();
        store.ensure_session(&key("acme", "s2"), &user("alice"), &agent()).await.unwrap();
        (store.session_meta(&k).await.unwrap().unwrap(), t.reply)
        // The store (and with it the file) is closed here.
    };

    let store = EmbeddedStore::open(&path).expect("reopens");
    assert_eq!(contents(&store.history(&k, 100).await.unwrap()), ["m1", "m2", "m3"]);
    assert_eq!(store.session_meta(&k).await.unwrap(), Some(meta_before.clone()));
    assert_eq!(meta_before.message_count, 3);
    assert_eq!(store.committed_turn(&k, &RequestId::new("r1").unwrap()).await.unwrap(), Some(reply.clone()));
    let listed = store.list_sessions(&k.tenant, &user("alice")).await.unwrap();
    assert_eq!(sessions(&listed), ["acme/s2", "acme/s1"]);

    // The lease died with the process; a redelivered request still finds its reply,
    // and history keeps appending after the old entries.
    let l = store.try_acquire_lease(&k, "w-new", LONG).await.unwrap().expect("leases do not survive a restart");
    assert_eq!(
        store.commit_turn(&l, &turn("r1", "alice", &["dup"])).await.unwrap(),
        CommitOutcome::AlreadyCommitted(reply)
    );
    store.commit_turn(&l, &turn("r3", "alice", &["m4"])).await.unwrap();
    assert_eq!(contents(&store.history(&k, 2).await.unwrap()), ["m3", "m4"]);
    assert_eq!(store.session_meta(&k).await.unwrap().unwrap().message_count, 4);
}

/// Opens `path`, waiting out a flusher thread that may still be closing the
/// previous handle (it holds the file for one fsync at most).
async fn reopen(path: &std::path::Path, flush_every: Duration) -> EmbeddedStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedStore::open_with(path, Duration::from_secs(3600), flush_every) {
            Ok(store) => return store,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "not yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen {}: {e}", path.display()),
        }
    }
}

/// Group commit (`store.embedded_flush_ms`): turns commit without waiting for
/// the disk; the flusher makes them durable within the interval, and closing
/// the store persists whatever is left.
#[tokio::test]
async fn group_commit_reaches_the_disk_within_the_interval_and_on_close() {
    let dir = TempDir::new("embedded-group-commit");
    let path = dir.path().join("sessions.redb");
    let k = key("acme", "s1");
    let store = reopen(&path, Duration::from_millis(50)).await;
    let l = lease(&store, &k).await;
    assert_eq!(store.commit_turn(&l, &turn("r1", "alice", &["m1", "m2"])).await.unwrap(), CommitOutcome::Committed);
    // Visible at once to readers of this store.
    assert_eq!(contents(&store.history(&k, 10).await.unwrap()), ["m1", "m2"]);
    // What a crash would leave: a copy of the file as it is while the store is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = dir.path().join("snapshot.redb");
    std::fs::copy(&path, &snapshot).unwrap();
    {
        let copy = reopen(&snapshot, Duration::ZERO).await;
        assert_eq!(contents(&copy.history(&k, 10).await.unwrap()), ["m1", "m2"], "flushed within the interval");
    }

    // A long interval: the turn is only in memory and the page cache until close.
    drop(store);
    let store = reopen(&path, Duration::from_secs(3600)).await;
    let l = store.try_acquire_lease(&k, "w", LONG).await.unwrap().unwrap();
    store.commit_turn(&l, &turn("r2", "alice", &["m3"])).await.unwrap();
    drop(store);
    let store = reopen(&path, Duration::ZERO).await;
    assert_eq!(contents(&store.history(&k, 10).await.unwrap()), ["m1", "m2", "m3"], "persisted on close");
}

#[tokio::test]
async fn fencing_tokens_keep_growing_across_restarts() {
    let dir = TempDir::new("embedded-fence");
    let path = dir.path().join("sessions.redb");
    let k = key("acme", "s1");
    let before = {
        let store = EmbeddedStore::open(&path).unwrap();
        let a = lease(&store, &k).await;
        store.release_lease(&a).await.unwrap();
        lease(&store, &k).await // Still held when the process "dies".
    };
    let store = EmbeddedStore::open(&path).unwrap();
    let after = lease(&store, &k).await;
    assert!(after.token > before.token, "token {} after restart, {} before", after.token, before.token);
    // A worker holding a lease from before the restart is fenced.
    assert_eq!(store.commit_turn(&before, &turn("r1", "alice", &["late"])).await.unwrap(), CommitOutcome::Fenced);
    assert!(!store.renew_lease(&before, LONG).await.unwrap());
    assert_eq!(store.commit_turn(&after, &turn("r1", "alice", &["hi"])).await.unwrap(), CommitOutcome::Committed);
}

#[tokio::test]
async fn a_file_open_elsewhere_is_refused_with_its_path() {
    let dir = TempDir::new("embedded-lock");
    let path = dir.path().join("sessions.redb");
    let first = EmbeddedStore::open(&path).unwrap();
    let err = EmbeddedStore::open(&path).expect_err("redb locks the file");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(msg.contains(&path.display().to_string()) && msg.contains("already open"), "{msg}");
    // The first handle is unaffected, and the file opens again once it is closed.
    first.health().await.unwrap();
    drop(first);
    EmbeddedStore::open(&path).expect("opens after the first handle closed").health().await.unwrap();
}

#[tokio::test]
async fn a_damaged_file_is_refused_with_its_path() {
    let dir = TempDir::new("embedded-damaged");
    let path = dir.path().join("sessions.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let err = EmbeddedStore::open(&path).expect_err("not a redb file");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)) && msg.contains(&path.display().to_string()), "{msg}");

    // A real store whose pages were overwritten after it was closed.
    let path = dir.path().join("overwritten.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        let k = key("acme", "s1");
        let l = lease(&store, &k).await;
        let long = "x".repeat(2000);
        for i in 0..50 {
            store.commit_turn(&l, &turn(&format!("r{i}"), "alice", &[long.as_str()])).await.unwrap();
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len] {
        *b ^= 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = EmbeddedStore::open(&path).expect_err("damaged pages are detected on open");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)) && msg.contains(&path.display().to_string()), "{msg}");

    // A directory where the file should be.
    let err = EmbeddedStore::open(dir.path()).expect_err("a directory");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

#[tokio::test]
async fn turn_records_expire() {
    let dir = TempDir::new("embedded-ttl");
    let path = dir.path().join("sessions.redb");
    let k = key("acme", "s1");
    let r1 = RequestId::new("r1").unwrap();
    {
        let store = EmbeddedStore::open_with_turn_ttl(&path, Duration::from_secs(1)).unwrap();
        let l = lease(&store, &k).await;
        store.commit_turn(&l, &turn("r1", "alice", &["m1"])).await.unwrap();
        assert!(store.committed_turn(&k, &r1).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(store.committed_turn(&k, &r1).await.unwrap(), None, "expired record returned");
        // An expired record no longer deduplicates.
        assert_eq!(store.commit_turn(&l, &turn("r1", "alice", &["m2"])).await.unwrap(), CommitOutcome::Committed);
        assert!(store.committed_turn(&k, &r1).await.unwrap().is_some());
    }
    // Reopening purges expired records and keeps live ones.
    let store = EmbeddedStore::open(&path).unwrap();
    assert!(store.committed_turn(&k, &r1).await.unwrap().is_some());
    assert_eq!(contents(&store.history(&k, 10).await.unwrap()), ["m1", "m2"]);
}
