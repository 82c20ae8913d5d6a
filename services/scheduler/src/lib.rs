//! The scheduler: turns users' scheduled jobs into agent requests, each
//! `(job, slot)` exactly once across replicas and restarts.
//!
//! Module map:
//! - [`engine`]: one replica: the fenced leader lease and the claim → publish →
//!   confirm steps of a fire (why that order keeps fires single is documented there).
//! - [`outcomes`]: reads replies to fires, records each job's last run and
//!   feeds the failure guard (N failures in a row pause the job).
//! - [`notify`]: tells the owner when the guard paused a job.
//! - [`request`]: the signed `AgentRequest` of a fire and its reply route.
//! - [`owner`]: re-resolves a job's owner at every fire.
//! - [`clock`]: the time source (a manual clock in tests).
//!
//! Any number of replicas run [`start`]; only the lease holder fires. Jobs live
//! in the store (Redis in a cluster, redb under `clawhive up`), never on disk here.

pub mod clock;
pub mod engine;
pub mod notify;
pub mod outcomes;
pub mod owner;
pub mod request;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Deps, Scheduler, SchedulerError, Stats};

use clawhive_bus::Bus;
use clawhive_core::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running replica.
pub struct SchedulerHandle {
    pub scheduler: Arc<Scheduler>,
    task: JoinHandle<()>,
}

impl SchedulerHandle {
    pub fn instance_id(&self) -> &str {
        self.scheduler.instance_id()
    }

    /// Readiness: `Ok` while this replica's ticks reach the store.
    pub fn readiness(&self) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
        let s = self.scheduler.clone();
        move || {
            std::future::ready(if s.is_healthy() { Ok(()) } else { Err("the schedule store is unreachable".into()) })
        }
    }

    /// Waits until the replica stopped (after shutdown), having released its lease.
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "The scheduler task failed.");
        }
    }
}

/// Starts a replica: the tick loop (lease, due jobs) and the outcome reader,
/// until `shutdown`; then releases the lease so another replica takes over at once.
pub async fn start(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> Result<SchedulerHandle, SchedulerError> {
    let bus = deps.bus.clone();
    let instance_id = format!("sched-{}", uuid::Uuid::new_v4().simple());
    let scheduler = Arc::new(Scheduler::new(cfg, deps, instance_id)?);
    let outcomes = tokio::spawn(outcomes::run(scheduler.clone(), bus, shutdown.clone()));
    let s = scheduler.clone();
    let tick = Duration::from_millis(cfg.scheduler.tick_ms);
    let task = tokio::spawn(async move {
        tracing::info!(instance = %s.instance_id(), "scheduler started");
        loop {
            if let Err(e) = s.tick().await {
                tracing::warn!(error = %e, "A scheduler tick failed; retrying.");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        s.step_down().await;
        match outcomes.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "The outcome reader stopped with an error."),
            Err(e) => tracing::warn!(error = %e, "The outcome reader failed."),
            Ok(Ok(())) => {}
        }
        tracing::info!(instance = %s.instance_id(), "Scheduler stopped.");
    });
    Ok(SchedulerHandle { scheduler, task })
}

/// Connects NATS and Redis from `cfg` and runs a replica until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    let bus = clawhive_bus::nats::NatsBus::connect(&cfg.bus).await?;
    bus.ensure_topology().await?;
    let store = Arc::new(clawhive_store::RedisStore::connect(&cfg.store).await?);
    let deps = Deps {
        bus: Arc::new(bus),
        store: store.clone(),
        identity: store.clone(),
        sessions: store,
        clock: Arc::new(SystemClock),
    };
    start(&cfg, deps, shutdown).await?.wait().await;
    Ok(())
}

/// [`run`] for a pod: keeps retrying NATS and Redis while unready (instead of
/// exiting), then reports `nats` and `redis` on the admin server's `readiness`.
pub async fn run_observed(
    cfg: Config,
    shutdown: CancellationToken,
    readiness: clawhive_telemetry::Readiness,
) -> Result<(), SchedulerError> {
    use clawhive_telemetry::connect_observed;
    let Some(bus) = clawhive_bus::nats::NatsBus::connect_observed(&cfg.bus, &shutdown, &readiness).await else {
        return Ok(());
    };
    let redis = || clawhive_store::RedisStore::connect(&cfg.store);
    let health = |s: Arc<clawhive_store::RedisStore>| async move { clawhive_store::SessionStore::health(&*s).await };
    let Some(store) = connect_observed("redis", &shutdown, &readiness, redis, health).await else {
        return Ok(());
    };
    let deps =
        Deps { bus, store: store.clone(), identity: store.clone(), sessions: store, clock: Arc::new(SystemClock) };
    start(&cfg, deps, shutdown).await?.wait().await;
    Ok(())
}
