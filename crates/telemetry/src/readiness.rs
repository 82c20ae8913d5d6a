//! What `/readyz` reports: named dependency checks plus the drain flag.
//!
//! The probe contract (JSON, every service):
//! `{"status": "ok" | "unavailable", "checks": {"nats": "ok" | reason, "redis": …}}`,
//! HTTP 200 when every check passes and the process is not draining, else 503.
//! A check declared but not yet connected reports `"not connected yet"`, so a
//! pod is unready from its first second until its connections are up.

use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Shared, cheap to clone. Services fill in their checks once connected.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    checks: Mutex<Vec<(String, Option<CheckFn>)>>,
    draining: AtomicBool,
}

impl Readiness {
    /// A readiness with `names` declared and not yet connected.
    pub fn new(names: &[&str]) -> Self {
        let r = Self::default();
        r.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).extend(names.iter().map(|n| (n.to_string(), None)));
        r
    }

    /// Sets (or replaces) the check `name`; `check` is called on every probe.
    pub fn set_check<F, Fut, E>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let f: CheckFn = Arc::new(move || {
            let fut = check();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        let mut checks = self.inner.checks.lock().unwrap_or_else(|e| e.into_inner());
        match checks.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = Some(f),
            None => checks.push((name.to_string(), Some(f))),
        }
    }

    /// From now on the service reports unavailable: it is shutting down.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Runs every check at once; returns (ready, JSON body).
    pub async fn report(&self) -> (bool, Value) {
        let checks: Vec<(String, Option<CheckFn>)> =
            self.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        let results = futures::future::join_all(checks.into_iter().map(|(name, f)| async move {
            let result = match f {
                None => Err("not connected yet".to_string()),
                Some(f) => match tokio::time::timeout(CHECK_TIMEOUT, f()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
                },
            };
            (name, result)
        }))
        .await;
        let draining = self.is_draining();
        let mut ready = !draining;
        let mut map = Map::new();
        for (name, result) in results {
            ready &= result.is_ok();
            map.insert(name, Value::String(result.err().unwrap_or_else(|| "ok".into())));
        }
        let mut body = json!({"status": if ready { "ok" } else { "unavailable" }, "checks": map});
        if draining {
            body["draining"] = Value::Bool(true);
        }
        (ready, body)
    }
}

/// Calls `connect` until it succeeds or `shutdown` is cancelled (then `None`),
/// waiting up to 2 s between attempts; each failure is logged with `what`.
pub async fn connect_with_retry<T, E, F, Fut>(
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut connect: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = connect() => r,
        };
        match result {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(dependency = what, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "Cannot connect yet; the service stays unready and retries.");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// [`connect_with_retry`], then reports the connection's health on `readiness` as
/// check `what`. `None` when `shutdown` came first.
pub async fn connect_observed<T, E, F, Fut, H, HFut, HE>(
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    readiness: &Readiness,
    connect: F,
    health: H,
) -> Option<Arc<T>>
where
    T: Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
    H: Fn(Arc<T>) -> HFut + Send + Sync + 'static,
    HFut: Future<Output = Result<(), HE>> + Send + 'static,
    HE: std::fmt::Display,
{
    let conn = Arc::new(connect_with_retry(what, shutdown, connect).await?);
    let c = conn.clone();
    readiness.set_check(what, move || health(c.clone()));
    Some(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unready_until_connected_and_while_draining() {
        let r = Readiness::new(&["nats", "redis"]);
        let (ready, body) = r.report().await;
        assert!(!ready);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["nats"], "not connected yet");
        r.set_check("nats", || async { Ok::<_, String>(()) });
        r.set_check("redis", || async { Err::<(), _>("connection refused") });
        let (ready, body) = r.report().await;
        assert!(!ready);
        assert_eq!(body["checks"]["nats"], "ok");
        assert_eq!(body["checks"]["redis"], "connection refused");
        r.set_check("redis", || async { Ok::<_, String>(()) });
        let (ready, body) = r.report().await;
        assert!(ready, "{body}");
        assert_eq!(body, json!({"status": "ok", "checks": {"nats": "ok", "redis": "ok"}}));
        r.set_draining();
        let (ready, body) = r.report().await;
        assert!(!ready);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["draining"], true);
    }
}
