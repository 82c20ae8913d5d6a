//! The `PairingStore` + `MarkerStore` conformance suite, run against every
//! adapter through the ports only. A runner (`pairing_<adapter>.rs`) invokes
//! [`pairing_tests!`] with an async function returning a fresh [`Fixture`].
#![allow(dead_code, unused_macros)]

use clawhive_core::{TenantId, UserId};
use clawhive_store::{IdentityStore, MarkerStore, PairingStore, StoreError, approve_pairing};
use std::sync::Arc;
use std::time::Duration;

pub struct Fixture {
    pub pairings: Arc<dyn PairingStore>,
    pub markers: Arc<dyn MarkerStore>,
    pub identity: Arc<dyn IdentityStore>,
    pub guard: Box<dyn Send>,
}

macro_rules! pairing_tests {
    ($fresh:path) => {
        pairing_tests!(@cases $fresh;
            a_pending_code_is_reused_and_listed_per_tenant,
            codes_are_single_use_and_expire,
            approval_links_the_identity,
            bad_inputs_are_refused,
            markers_claim_once_and_expire,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let f = $fresh().await;
                pairing_conformance::$case(&f).await;
            }
        )*
    };
}

fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

pub async fn a_pending_code_is_reused_and_listed_per_tenant(f: &Fixture) {
    let a = f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U1", "Ann", HOUR).await.unwrap();
    let again = f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U1", "Ann", HOUR).await.unwrap();
    assert_eq!(a, again, "a pending code is handed out again, not a new one");
    let b = f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U2", "Bo", HOUR).await.unwrap();
    assert_ne!(a.code, b.code);
    f.pairings.create_pairing(&tenant("globex"), "slack", "T9:U1", "", HOUR).await.unwrap();
    let listed = f.pairings.list_pairings(&tenant("acme")).await.unwrap();
    let mut codes: Vec<_> = listed.iter().map(|p| p.code.clone()).collect();
    codes.sort();
    let mut want = vec![a.code.clone(), b.code.clone()];
    want.sort();
    assert_eq!(codes, want);
    assert_eq!(listed.iter().find(|p| p.code == a.code).unwrap().display_name, "Ann");
    // Another tenant cannot take acme's code.
    assert!(f.pairings.take_pairing(&tenant("globex"), &a.code).await.unwrap().is_none());
}

pub async fn codes_are_single_use_and_expire(f: &Fixture) {
    let p = f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U1", "", HOUR).await.unwrap();
    let taken = f.pairings.take_pairing(&tenant("acme"), &p.code.to_lowercase()).await.unwrap();
    assert_eq!(taken.as_ref(), Some(&p));
    assert!(f.pairings.take_pairing(&tenant("acme"), &p.code).await.unwrap().is_none());
    assert!(f.pairings.list_pairings(&tenant("acme")).await.unwrap().is_empty());
    let short =
        f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U3", "", Duration::from_millis(200)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(f.pairings.list_pairings(&tenant("acme")).await.unwrap().is_empty());
    assert!(f.pairings.take_pairing(&tenant("acme"), &short.code).await.unwrap().is_none());
    let fresh = f.pairings.create_pairing(&tenant("acme"), "slack", "T1:U3", "", HOUR).await.unwrap();
    assert_ne!(fresh.code, short.code, "an expired code is replaced by a new one");
}

pub async fn approval_links_the_identity(f: &Fixture) {
    let acme = tenant("acme");
    let p = f.pairings.create_pairing(&acme, "slack", "T1:U1", "Ann", HOUR).await.unwrap();
    assert!(f.identity.resolve_external("slack", "T1:U1").await.unwrap().is_none());
    let (pairing, user) =
        approve_pairing(f.identity.as_ref(), f.pairings.as_ref(), &acme, &p.code, None).await.unwrap();
    assert_eq!(pairing.code, p.code);
    assert_eq!(user.user.as_str(), "slack:T1:U1");
    assert_eq!(user.display_name, "Ann");
    let who = f.identity.resolve_external("slack", "T1:U1").await.unwrap().unwrap();
    assert_eq!((who.tenant.as_str(), who.user.as_str()), ("acme", "slack:T1:U1"));
    // Used: a second approval finds nothing.
    let again = approve_pairing(f.identity.as_ref(), f.pairings.as_ref(), &acme, &p.code, None).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    // An existing user can be named.
    f.identity.create_user(&acme, &UserId::new("bob").unwrap(), &[], &[], "").await.unwrap();
    let q = f.pairings.create_pairing(&acme, "slack", "T1:U2", "", HOUR).await.unwrap();
    let (_, bob) =
        approve_pairing(f.identity.as_ref(), f.pairings.as_ref(), &acme, &q.code, Some(UserId::new("bob").unwrap()))
            .await
            .unwrap();
    assert_eq!(bob.user.as_str(), "bob");
    assert_eq!(f.identity.resolve_external("slack", "T1:U2").await.unwrap().unwrap().user.as_str(), "bob");
}

pub async fn bad_inputs_are_refused(f: &Fixture) {
    let acme = tenant("acme");
    for (provider, ext) in [("Slack", "T1:U1"), ("slack", ""), ("slack", "a b"), ("slack", "{x}")] {
        let r = f.pairings.create_pairing(&acme, provider, ext, "", HOUR).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{provider} {ext}: {r:?}");
    }
    assert!(matches!(
        f.pairings.create_pairing(&acme, "slack", "T1:U1", "", Duration::ZERO).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(f.pairings.take_pairing(&acme, "nope").await, Err(StoreError::Invalid(_))));
    assert!(matches!(f.markers.claim_marker("a b", "v", HOUR).await, Err(StoreError::Invalid(_))));
    assert!(matches!(f.markers.put_marker("k", "v", Duration::ZERO).await, Err(StoreError::Invalid(_))));
    assert!(matches!(f.markers.get_marker("").await, Err(StoreError::Invalid(_))));
}

pub async fn markers_claim_once_and_expire(f: &Fixture) {
    let m = &f.markers;
    assert_eq!(m.claim_marker("slack:ev:T1:E1", "pending", HOUR).await.unwrap(), None);
    assert_eq!(m.claim_marker("slack:ev:T1:E1", "other", HOUR).await.unwrap().as_deref(), Some("pending"));
    m.put_marker("slack:ev:T1:E1", "done", HOUR).await.unwrap();
    assert_eq!(m.get_marker("slack:ev:T1:E1").await.unwrap().as_deref(), Some("done"));
    m.remove_marker("slack:ev:T1:E1").await.unwrap();
    assert_eq!(m.get_marker("slack:ev:T1:E1").await.unwrap(), None);
    m.remove_marker("slack:ev:T1:E1").await.unwrap();
    assert_eq!(m.claim_marker("short", "x", Duration::from_millis(150)).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(m.get_marker("short").await.unwrap(), None);
    assert_eq!(m.claim_marker("short", "y", HOUR).await.unwrap(), None, "an expired marker can be claimed again");
}
