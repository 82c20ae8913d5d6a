//! The `IdentityStore` conformance suite: the port's semantics, checked against
//! every adapter through `Arc<dyn IdentityStore>` only.
//!
//! A runner (`identity_<adapter>.rs`) invokes [`identity_tests!`] with an async
//! function returning a fresh [`Fixture`]; the macro expands to one test per case.
#![allow(dead_code, unused_macros)]

use clawhive_core::time::now_unix_ms;
use clawhive_core::{TenantId, UserId};
use clawhive_store::{IdentityStore, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Everything the store holds, as bytes (Redis keys and values; the redb file).
pub type Dump = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// A fresh, empty store, a way to dump its raw contents, and whatever must live as long as it.
pub struct Fixture {
    pub store: Arc<dyn IdentityStore>,
    pub dump: Dump,
    pub guard: Box<dyn Send>,
}

macro_rules! identity_tests {
    ($fresh:path) => {
        identity_tests!(@cases $fresh;
            create_get_list_and_duplicates,
            issued_tokens_resolve_to_the_user,
            revoked_tokens_do_not_resolve,
            expired_tokens_do_not_resolve,
            deleting_a_user_kills_their_tokens_and_links,
            tenants_are_isolated,
            external_identities_resolve,
            plaintext_is_never_stored,
            registered_tokens_resolve_once_and_revoke_like_issued_ones,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: identity_conformance::Fixture = $fresh().await;
                identity_conformance::$case(&fixture).await;
                drop(fixture);
            }
        )*
    };
}

pub fn tenant(t: &str) -> TenantId {
    TenantId::new(t).unwrap()
}

pub fn user(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- the cases

pub async fn create_get_list_and_duplicates(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    let alice = s.create_user(&acme, &user("alice"), &strings(&["admin"]), &strings(&["eng"]), "Alice").await.unwrap();
    assert_eq!((alice.user.as_str(), alice.display_name.as_str()), ("alice", "Alice"));
    assert_eq!((alice.roles.clone(), alice.groups.clone()), (strings(&["admin"]), strings(&["eng"])));
    s.create_user(&acme, &user("bob"), &[], &[], "").await.unwrap();
    let dup = s.create_user(&acme, &user("alice"), &[], &[], "again").await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    assert_eq!(s.get_user(&acme, &user("alice")).await.unwrap(), Some(alice));
    assert_eq!(s.get_user(&acme, &user("carol")).await.unwrap(), None);
    let listed: Vec<String> = s.list_users(&acme).await.unwrap().into_iter().map(|u| u.user.to_string()).collect();
    assert_eq!(listed, strings(&["alice", "bob"]));
    assert!(s.list_users(&tenant("other")).await.unwrap().is_empty());
    let e = s.issue_token(&acme, &user("carol"), None, "").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
}

pub async fn issued_tokens_resolve_to_the_user(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &strings(&["dev"]), &strings(&["eng"]), "Alice").await.unwrap();
    let t = s.issue_token(&acme, &user("alice"), None, "laptop").await.unwrap();
    assert!(t.token.starts_with("chv1_"), "{}", t.token);
    let p = s.resolve_token(&t.token).await.unwrap().expect("resolves");
    assert_eq!((p.tenant.as_str(), p.user.as_str()), ("acme", "alice"));
    assert_eq!((p.roles, p.groups, p.display_name.as_str()), (strings(&["dev"]), strings(&["eng"]), "Alice"));
    assert_eq!(s.resolve_token("chv1_nope").await.unwrap(), None);
    assert_eq!(s.resolve_token("").await.unwrap(), None);
    let listed = s.list_tokens(&acme, &user("alice")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].token_id.as_str(), listed[0].label.as_str(), listed[0].revoked),
        (t.token_id.as_str(), "laptop", false)
    );
    let debug = format!("{listed:?}");
    assert!(!debug.contains(&t.token) && !debug.contains(&clawhive_core::token::hash_token(&t.token)), "{debug}");
}

pub async fn revoked_tokens_do_not_resolve(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &[], &[], "").await.unwrap();
    let t1 = s.issue_token(&acme, &user("alice"), None, "one").await.unwrap();
    let t2 = s.issue_token(&acme, &user("alice"), None, "two").await.unwrap();
    assert!(s.revoke_token(&acme, &t1.token_id).await.unwrap());
    assert_eq!(s.resolve_token(&t1.token).await.unwrap(), None);
    assert!(s.resolve_token(&t2.token).await.unwrap().is_some(), "the other token still works");
    assert!(s.revoke_token(&acme, &t1.token_id).await.unwrap(), "revoking twice is fine");
    assert!(!s.revoke_token(&acme, "tk_00").await.unwrap());
    assert!(!s.revoke_token(&acme, "garbage{x}").await.unwrap());
    let listed = s.list_tokens(&acme, &user("alice")).await.unwrap();
    let mut revoked: Vec<(String, bool)> = listed.into_iter().map(|t| (t.label, t.revoked)).collect();
    revoked.sort();
    assert_eq!(revoked, vec![("one".to_string(), true), ("two".to_string(), false)]);
}

pub async fn expired_tokens_do_not_resolve(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &[], &[], "").await.unwrap();
    let past = s.issue_token(&acme, &user("alice"), Some(now_unix_ms() - 1000), "").await.unwrap();
    let future = s.issue_token(&acme, &user("alice"), Some(now_unix_ms() + 3_600_000), "").await.unwrap();
    assert_eq!(s.resolve_token(&past.token).await.unwrap(), None);
    assert!(s.resolve_token(&future.token).await.unwrap().is_some());
}

pub async fn deleting_a_user_kills_their_tokens_and_links(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &[], &[], "").await.unwrap();
    let t = s.issue_token(&acme, &user("alice"), None, "").await.unwrap();
    s.link_external(&acme, &user("alice"), "slack", "T1:U1").await.unwrap();
    assert!(s.delete_user(&acme, &user("alice")).await.unwrap());
    assert!(!s.delete_user(&acme, &user("alice")).await.unwrap());
    assert_eq!(s.resolve_token(&t.token).await.unwrap(), None);
    assert_eq!(s.resolve_external("slack", "T1:U1").await.unwrap(), None);
    assert!(s.list_users(&acme).await.unwrap().is_empty());
    // A new user of the same id does not inherit the old token or link.
    s.create_user(&acme, &user("alice"), &[], &[], "").await.unwrap();
    assert_eq!(s.resolve_token(&t.token).await.unwrap(), None);
    assert_eq!(s.resolve_external("slack", "T1:U1").await.unwrap(), None);
}

pub async fn tenants_are_isolated(f: &Fixture) {
    let s = &f.store;
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    s.create_user(&a, &user("alice"), &strings(&["admin"]), &[], "A").await.unwrap();
    s.create_user(&b, &user("alice"), &[], &[], "B").await.unwrap();
    let ta = s.issue_token(&a, &user("alice"), None, "").await.unwrap();
    let tb = s.issue_token(&b, &user("alice"), None, "").await.unwrap();
    let pa = s.resolve_token(&ta.token).await.unwrap().unwrap();
    let pb = s.resolve_token(&tb.token).await.unwrap().unwrap();
    assert_eq!((pa.tenant.as_str(), pa.display_name.as_str(), pa.is_admin()), ("tenant-a", "A", true));
    assert_eq!((pb.tenant.as_str(), pb.display_name.as_str(), pb.is_admin()), ("tenant-b", "B", false));
    assert_ne!(pa, pb);
    // Tenant B cannot revoke or list tenant A's token.
    assert!(!s.revoke_token(&b, &ta.token_id).await.unwrap());
    assert!(s.resolve_token(&ta.token).await.unwrap().is_some());
    let b_tokens: Vec<String> =
        s.list_tokens(&b, &user("alice")).await.unwrap().into_iter().map(|t| t.token_id).collect();
    assert_eq!(b_tokens, vec![tb.token_id.clone()]);
    // Deleting B's alice leaves A's alice alone.
    assert!(s.delete_user(&b, &user("alice")).await.unwrap());
    assert_eq!(s.resolve_token(&tb.token).await.unwrap(), None);
    assert_eq!(s.resolve_token(&ta.token).await.unwrap().unwrap().tenant.as_str(), "tenant-a");
}

pub async fn external_identities_resolve(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &[], &strings(&["eng"]), "").await.unwrap();
    s.create_user(&acme, &user("bob"), &[], &[], "").await.unwrap();
    s.link_external(&acme, &user("alice"), "slack", "T123:U456").await.unwrap();
    s.link_external(&acme, &user("alice"), "slack", "T123:U456").await.unwrap();
    let p = s.resolve_external("slack", "T123:U456").await.unwrap().unwrap();
    assert_eq!((p.tenant.as_str(), p.user.as_str(), p.groups.clone()), ("acme", "alice", strings(&["eng"])));
    let e = s.link_external(&acme, &user("bob"), "slack", "T123:U456").await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let e = s.link_external(&acme, &user("nobody"), "slack", "T123:U9").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert_eq!(s.resolve_external("slack", "T123:U999").await.unwrap(), None);
    assert_eq!(s.resolve_external("github", "T123:U456").await.unwrap(), None);
}

pub async fn plaintext_is_never_stored(f: &Fixture) {
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("alice"), &[], &[], "").await.unwrap();
    let t = s.issue_token(&acme, &user("alice"), None, "label").await.unwrap();
    let t2 = s.issue_token(&acme, &user("alice"), None, "revoked").await.unwrap();
    s.revoke_token(&acme, &t2.token_id).await.unwrap();
    let dump = (f.dump)().await;
    let secret = t.token.strip_prefix("chv1_").unwrap();
    for needle in [t.token.as_str(), secret, t2.token.as_str()] {
        assert!(!dump.windows(needle.len()).any(|w| w == needle.as_bytes()), "plaintext found in the store");
    }
    // Sanity: the dump does see what was stored.
    assert!(dump.windows(t.token_id.len()).any(|w| w == t.token_id.as_bytes()), "the dump is empty");
}

pub async fn registered_tokens_resolve_once_and_revoke_like_issued_ones(f: &Fixture) {
    use clawhive_core::token::hash_token;
    let s = &f.store;
    let acme = tenant("acme");
    s.create_user(&acme, &user("root"), &strings(&["admin"]), &[], "").await.unwrap();
    let id = s.register_token(&acme, &user("root"), &hash_token("my-known-token"), None, "bootstrap").await.unwrap();
    let p = s.resolve_token("my-known-token").await.unwrap().expect("resolves");
    assert_eq!((p.user.as_str(), p.is_admin()), ("root", true));
    // The same hash twice is a conflict, for the same or another user.
    let again = s.register_token(&acme, &user("root"), &hash_token("my-known-token"), None, "again").await;
    assert!(matches!(again, Err(clawhive_store::StoreError::Conflict(_))), "{again:?}");
    // Unknown users and malformed digests are refused.
    let nobody = s.register_token(&acme, &user("nobody"), &hash_token("x"), None, "").await;
    assert!(matches!(nobody, Err(clawhive_store::StoreError::NotFound(_))), "{nobody:?}");
    let bad = s.register_token(&acme, &user("root"), "NOT-HEX", None, "").await;
    assert!(matches!(bad, Err(clawhive_store::StoreError::Invalid(_))), "{bad:?}");
    assert!(s.revoke_token(&acme, &id).await.unwrap());
    assert_eq!(s.resolve_token("my-known-token").await.unwrap(), None);
}
