//! Leases, in memory: a lease must not outlive the process that granted it.
//! Fencing tokens come from one counter per run, above the run's persisted
//! epoch (see [`super::tables::FENCE`]), so they grow across restarts without a
//! write per lease.

use crate::port::Lease;
use clawhive_core::SessionKey;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Past this many entries, a grant first drops the expired ones.
const PRUNE_ABOVE: usize = 1024;

struct Held {
    token: u64,
    expires: Instant,
}

impl Held {
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

#[derive(Default)]
pub(super) struct Leases(Mutex<HashMap<SessionKey, Held>>);

/// The lease table locked. Callers that also write to the database take this
/// lock only after `begin_write`, so the order is always database, then leases.
pub(super) struct Locked<'a>(MutexGuard<'a, HashMap<SessionKey, Held>>);

impl Leases {
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Locked<'_> {
    /// Whether somebody holds a live lease on `key`.
    pub(super) fn is_held(&self, key: &SessionKey) -> bool {
        self.0.get(key).is_some_and(|h| h.live(Instant::now()))
    }

    /// Whether `lease` is the live lease of its session.
    pub(super) fn is_current(&self, lease: &Lease) -> bool {
        self.0.get(&lease.key).is_some_and(|h| h.token == lease.token && h.live(Instant::now()))
    }

    pub(super) fn grant(&mut self, key: &SessionKey, token: u64, ttl: Duration) {
        let now = Instant::now();
        if self.0.len() > PRUNE_ABOVE {
            self.0.retain(|_, h| h.live(now));
        }
        self.0.insert(key.clone(), Held { token, expires: deadline(now, ttl) });
    }

    /// Extends `lease` if it is still current.
    pub(super) fn renew(&mut self, lease: &Lease, ttl: Duration) -> bool {
        let now = Instant::now();
        match self.0.get_mut(&lease.key) {
            Some(h) if h.token == lease.token && h.live(now) => {
                h.expires = deadline(now, ttl);
                true
            }
            _ => false,
        }
    }

    /// Drops the lease of `key` if its token is `token`.
    pub(super) fn remove(&mut self, key: &SessionKey, token: u64) {
        if self.0.get(key).is_some_and(|h| h.token == token) {
            self.0.remove(key);
        }
    }
}

/// `now + ttl`, at least 1 ms (as Redis's `PX`), saturating far in the future.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    let ttl = ttl.max(Duration::from_millis(1));
    now.checked_add(ttl).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
