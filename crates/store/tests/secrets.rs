//! Named secrets through the vault, on both adapters: sealed at rest, scoped per
//! user and tenant, bound to their slot, never listed with values.

mod conformance;

use clawhive_core::config::StoreConfig;
use clawhive_core::{Principal, TenantId, UserId};
use clawhive_store::{EmbeddedStore, RedisStore, SecretScope, SecretStore, SecretVault, StoreError};
use clawhive_tests::redis_server::RedisServer;
use std::sync::Arc;

const KEY: [u8; 32] = [7u8; 32];
const VALUE: &str = "li-personal-token-8f2d9c";

fn who(tenant: &str, user: &str) -> Principal {
    Principal::new(TenantId::new(tenant).unwrap(), UserId::new(user).unwrap())
}

async fn exercise(store: Arc<dyn SecretStore>) {
    let vault = SecretVault::new(store.clone(), KEY);
    let acme = TenantId::new("acme").unwrap();
    let alice = SecretScope::User(UserId::new("alice").unwrap());
    vault.put(&acme, &alice, "linkedin-token", VALUE).await.unwrap();
    vault.put(&acme, &SecretScope::Shared, "linkedin-token", "team-token").await.unwrap();
    vault.put(&acme, &SecretScope::Shared, "search-key", "shared-search").await.unwrap();

    // Own secret first, then the tenant's; never another user's or tenant's.
    let got = vault.resolve_for(&who("acme", "alice"), "linkedin-token").await.unwrap().unwrap();
    assert_eq!(got.expose(), VALUE);
    assert_eq!(vault.resolve_for(&who("acme", "bob"), "linkedin-token").await.unwrap().unwrap().expose(), "team-token");
    assert!(vault.resolve_for(&who("globex", "alice"), "linkedin-token").await.unwrap().is_none());
    assert!(vault.resolve_for(&who("acme", "bob"), "missing").await.unwrap().is_none());

    // Listing shows names and scopes only.
    let list = vault.list(&acme).await.unwrap();
    let names: Vec<_> = list.iter().map(|i| (i.name.as_str(), i.scope.as_key())).collect();
    assert_eq!(
        names,
        [
            ("linkedin-token", "shared".to_string()),
            ("linkedin-token", "user:alice".into()),
            ("search-key", "shared".into())
        ]
    );
    assert!(vault.list(&TenantId::new("globex").unwrap()).await.unwrap().is_empty());

    // At rest the value is ciphertext.
    let blob = store.get_secret_blob(&acme, &alice, "linkedin-token").await.unwrap().unwrap();
    assert!(!blob.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "plaintext at rest");

    // A blob moved to another user's slot does not open; nor under another key.
    let bob = SecretScope::User(UserId::new("bob").unwrap());
    store.put_secret_blob(&acme, &bob, "linkedin-token", blob.clone()).await.unwrap();
    assert!(matches!(vault.get(&acme, &bob, "linkedin-token").await, Err(StoreError::Corrupt(_))));
    let other_key = SecretVault::new(store.clone(), [9u8; 32]);
    assert!(matches!(other_key.get(&acme, &alice, "linkedin-token").await, Err(StoreError::Corrupt(_))));

    // Bad input is refused before anything is written.
    assert!(matches!(vault.put(&acme, &alice, "Bad Name", "x").await, Err(StoreError::Invalid(_))));
    assert!(matches!(vault.put(&acme, &alice, "empty", "").await, Err(StoreError::Invalid(_))));
    let huge = "x".repeat(clawhive_store::secrets::MAX_SECRET_BYTES + 1);
    assert!(matches!(vault.put(&acme, &alice, "huge", &huge).await, Err(StoreError::Invalid(_))));
    assert!(vault.get(&acme, &alice, "empty").await.unwrap().is_none());

    // Replace and delete.
    vault.put(&acme, &alice, "linkedin-token", "rotated").await.unwrap();
    assert_eq!(vault.get(&acme, &alice, "linkedin-token").await.unwrap().unwrap().expose(), "rotated");
    assert!(vault.delete(&acme, &alice, "linkedin-token").await.unwrap());
    assert!(!vault.delete(&acme, &alice, "linkedin-token").await.unwrap());
    assert_eq!(
        vault.resolve_for(&who("acme", "alice"), "linkedin-token").await.unwrap().unwrap().expose(),
        "team-token"
    );
}

#[tokio::test]
async fn secrets_on_redis() {
    let server = RedisServer::start().expect("redis-server starts");
    let cfg = StoreConfig { redis_url: server.url(), ..StoreConfig::default() };
    let store = RedisStore::connect(&cfg).await.expect("store connects");
    exercise(Arc::new(store)).await;
}

#[tokio::test]
async fn secrets_on_embedded() {
    let dir = conformance::TempDir::new("secrets");
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path).expect("store opens");
    exercise(Arc::new(store)).await;
    let file = std::fs::read(&path).unwrap();
    assert!(!file.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "plaintext in the store file");
}
