//! What the gateway remembers between calls, so a conversation's turns do not
//! ask the stores the same questions every time.
//!
//! - [`TokenCache`]: bearer token (by SHA-256) → principal, for
//!   `gateway.auth_cache_ms`. A revocation or user deletion through any
//!   gateway's Admin API clears the tenant's entries here at once and, over the
//!   bus (`<ns>.control.identity`), on every other gateway; the TTL bounds how
//!   long a missed broadcast can keep a revoked token working. Unknown tokens
//!   are never cached.
//! - [`SessionCache`]: (tenant, session, user) seen writable by that user. A
//!   session's owner never changes, and the worker checks ownership again under
//!   the session's lease, so a stale entry can only skip the gateway's early
//!   check, never let anyone into another user's session.
//!
//! Both are bounded: at capacity, expired entries go first, then everything.

use clawhive_core::token::hash_token;
use clawhive_core::{Principal, SessionKey, TenantId, UserId};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Entries either cache holds at most.
const CAPACITY: usize = 50_000;

struct TtlMap<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { ttl, map: Mutex::new(HashMap::new()) }
    }

    fn get(&self, k: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(k) {
            Some((v, until)) if Instant::now() < *until => Some(v.clone()),
            Some(_) => {
                map.remove(k);
                None
            }
            None => None,
        }
    }

    /// Remembers `v` for the TTL, or for `at_most` if that is shorter.
    fn put(&self, k: K, v: V, at_most: Option<Duration>) {
        let ttl = at_most.map_or(self.ttl, |m| m.min(self.ttl));
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, (_, until)| now < *until);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(k, (v, now + ttl));
    }

    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, (v, _)| keep(k, v));
    }

    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Resolved bearer tokens (see the module docs).
pub struct TokenCache(TtlMap<String, Principal>);

impl TokenCache {
    /// `ttl` zero: nothing is cached.
    pub fn new(ttl: Duration) -> Self {
        Self(TtlMap::new(ttl))
    }

    /// The principal `token` resolved to within the TTL.
    pub fn get(&self, token: &str) -> Option<Principal> {
        self.0.get(&hash_token(token))
    }

    /// Remembers a resolved token, never past its own expiry (unix ms).
    pub fn put(&self, token: &str, principal: &Principal, expires_at_unix_ms: Option<i64>) {
        let left = expires_at_unix_ms
            .map(|e| Duration::from_millis(u64::try_from(e - clawhive_core::time::now_unix_ms()).unwrap_or(0)));
        self.0.put(hash_token(token), principal.clone(), left);
    }

    /// Forgets every token of `tenant` (a token was revoked or a user deleted there).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.0.retain(|_, p| p.tenant != *tenant);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sessions known to be writable by a user (see the module docs).
pub struct SessionCache(TtlMap<(SessionKey, UserId), ()>);

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        Self(TtlMap::new(ttl))
    }

    pub fn writable(&self, key: &SessionKey, user: &UserId) -> bool {
        self.0.get(&(key.clone(), user.clone())).is_some()
    }

    pub fn remember_writable(&self, key: &SessionKey, user: &UserId) {
        self.0.put((key.clone(), user.clone()), (), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::SessionId;

    fn principal(tenant: &str, user: &str) -> Principal {
        Principal::new(TenantId::new(tenant).unwrap(), UserId::new(user).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_remembered_for_the_ttl_and_forgotten_per_tenant() {
        let cache = TokenCache::new(Duration::from_secs(5));
        cache.put("t-alice", &principal("acme", "alice"), None);
        cache.put("t-carol", &principal("globex", "carol"), None);
        // A token expiring in 1 s is remembered for 1 s only; an expired one not at all.
        let now = clawhive_core::time::now_unix_ms();
        cache.put("t-soon", &principal("globex", "dan"), Some(now + 1_000));
        cache.put("t-gone", &principal("globex", "eve"), Some(now - 1));
        assert!(cache.get("t-soon").is_some());
        assert!(cache.get("t-gone").is_none());
        assert_eq!(cache.get("t-alice").unwrap().user.as_str(), "alice");
        assert!(cache.get("t-unknown").is_none());
        cache.forget_tenant(&TenantId::new("acme").unwrap());
        assert!(cache.get("t-alice").is_none());
        assert_eq!(cache.get("t-carol").unwrap().user.as_str(), "carol");
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert!(cache.get("t-soon").is_none(), "past its own expiry");
        assert!(cache.get("t-carol").is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cache.get("t-carol").is_none(), "expired");
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_caches_nothing_and_capacity_is_bounded() {
        let off = TokenCache::new(Duration::ZERO);
        off.put("t", &principal("acme", "alice"), None);
        assert!(off.get("t").is_none());

        let cache = SessionCache::new(Duration::from_secs(60));
        let alice = UserId::new("alice").unwrap();
        let key = |i: usize| SessionKey::new(TenantId::new("acme").unwrap(), SessionId::new(format!("s{i}")).unwrap());
        for i in 0..CAPACITY + 10 {
            cache.remember_writable(&key(i), &alice);
        }
        assert!(cache.0.len() <= CAPACITY);
        assert!(cache.writable(&key(CAPACITY + 9), &alice));
        assert!(!cache.writable(&key(CAPACITY + 9), &UserId::new("bob").unwrap()));
    }
}
