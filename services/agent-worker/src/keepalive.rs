//! Keeps a long turn alive: JetStream in-progress heartbeats so the request is
//! not redelivered while we work, and lease renewal so no other worker starts
//! a turn of the same session.

use clawhive_bus::Acker;
use clawhive_store::{Lease, SessionStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Keepalive {
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
}

impl Keepalive {
    /// Starts heartbeating `acker` every `ack_wait / 3` and renewing `lease`
    /// every `lease_ttl / 3`, until dropped.
    pub fn start(
        acker: Arc<dyn Acker>,
        store: Arc<dyn SessionStore>,
        lease: Lease,
        ack_wait: Duration,
        lease_ttl: Duration,
    ) -> Self {
        let stop = CancellationToken::new();
        let lost = Arc::new(AtomicBool::new(false));
        let (s, l) = (stop.clone(), lost.clone());
        tokio::spawn(async move {
            let mut beat = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
            let mut renew = tokio::time::interval((lease_ttl / 3).max(Duration::from_millis(100)));
            beat.tick().await;
            renew.tick().await;
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = beat.tick() => {
                        if let Err(e) = acker.in_progress().await {
                            tracing::warn!(error = %e, "in-progress heartbeat failed");
                        }
                    }
                    _ = renew.tick() => match store.renew_lease(&lease, lease_ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(session = %lease.key, "session lease lost; the commit will be fenced");
                            l.store(true, Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                    },
                }
            }
        });
        Self { stop, lost }
    }

    pub fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
