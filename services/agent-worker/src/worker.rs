//! The pull loop: one member of the shared `workers` consumer group.

use crate::tools::Registry;
use clawhive_bus::envelope::Envelopes;
use clawhive_bus::{Bus, ConsumerSpec, StreamKind, Subjects};
use clawhive_core::config::Config;
use clawhive_llm::LlmRouter;
use clawhive_proto::v1 as pb;
use clawhive_store::SessionStore;
use clawhive_telemetry::TraceContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The durable name every worker joins; members share the requests.
pub const CONSUMER: &str = "workers";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] clawhive_bus::BusError),
    #[error(transparent)]
    Store(#[from] clawhive_store::StoreError),
    #[error(transparent)]
    Llm(#[from] clawhive_llm::LlmError),
    #[error("worker task failed: {0}")]
    Join(String),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyLoadError),
    #[error("{0}")]
    Config(String),
}

pub struct Deps {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn SessionStore>,
    pub llm: LlmRouter,
    /// Named secrets for tools; `None` when no secrets key is configured.
    pub secrets: Option<clawhive_store::SecretVault>,
}

pub(crate) struct Ctx {
    pub config: Config,
    pub store: Arc<dyn SessionStore>,
    pub envelopes: Envelopes,
    pub llm: LlmRouter,
    pub secrets: Option<clawhive_store::SecretVault>,
    pub tools: Registry,
    pub instance_id: String,
    /// Verifies the ingress's signature over each request's principal.
    pub signer: Option<clawhive_core::signing::EnvelopeSigner>,
    /// Who may use which agent and tool; reloaded when the file changes.
    pub policy: crate::policy::PolicyWatch,
}

pub struct WorkerHandle {
    pub instance_id: String,
    join: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Waits until the worker has drained after shutdown.
    pub async fn wait(self) -> Result<(), WorkerError> {
        self.join.await.map_err(|e| WorkerError::Join(e.to_string()))
    }
}

/// [`start_with`] without the optional parts.
pub async fn start(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> Result<WorkerHandle, WorkerError> {
    start_with(cfg, deps, Extras::default(), shutdown).await
}

/// Optional parts of a worker, beyond [`Deps`].
#[derive(Default)]
pub struct Extras {
    /// Scheduled jobs: offers the `schedule` tool (to agents that list it).
    pub jobs: Option<clawhive_store::Jobs>,
}

/// Joins the consumer group and runs turns until `shutdown`; then stops
/// pulling, lets in-flight turns finish within `worker.drain_timeout_ms` and
/// hands the rest back un-acked. `extras` adds the optional tools.
pub async fn start_with(
    cfg: &Config,
    deps: Deps,
    extras: Extras,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, WorkerError> {
    let subjects = Subjects::new(cfg.bus.namespace.clone());
    let spec = ConsumerSpec {
        stream: StreamKind::Requests,
        durable: CONSUMER.into(),
        filter_subject: subjects.all_requests(),
        ack_wait: Duration::from_millis(cfg.bus.ack_wait_ms),
        // One delivery past the last attempt, to send the terminal error reply.
        max_deliver: cfg.bus.max_attempts + 1,
        max_ack_pending: 10_000,
    };
    let signer = clawhive_core::signing::signer_from_config(&cfg.security).map_err(WorkerError::Config)?;
    let policy = crate::policy::PolicyWatch::load(&cfg.security.policy_file)?;
    let mut tools = Registry::builtin();
    tools.add_http_tools(&cfg.http_tools).map_err(WorkerError::Config)?;
    if let Some(jobs) = extras.jobs {
        tools.add_schedule_tool(jobs);
    }
    let mut consumer = deps.bus.consume(spec).await?;
    let instance_id = format!("worker-{}", uuid::Uuid::new_v4().simple());
    let ctx = Arc::new(Ctx {
        config: cfg.clone(),
        store: deps.store,
        envelopes: Envelopes::new(deps.bus, subjects),
        llm: deps.llm,
        secrets: deps.secrets,
        tools,
        instance_id: instance_id.clone(),
        signer,
        policy,
    });
    ctx.policy.spawn_reloader(shutdown.clone());
    for agent in &cfg.agents {
        for t in &agent.tools {
            if ctx.tools.get(t).is_none() {
                tracing::warn!(agent = %agent.id, tool = %t, "agent names a tool that does not exist; it will not be offered");
            }
        }
    }
    let drain = Duration::from_millis(cfg.worker.drain_timeout_ms);
    let slots = Arc::new(Semaphore::new(cfg.worker.concurrency));
    tracing::info!(instance = %instance_id, concurrency = cfg.worker.concurrency, "agent worker started");
    let join = tokio::spawn(async move {
        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        loop {
            // Take a slot first, so we never pull more than we can run.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = consumer.next() => n,
            };
            match next {
                Some(Ok(delivery)) => {
                    let ctx = ctx.clone();
                    let stop = hard_stop.clone();
                    tracker.spawn(async move {
                        crate::turn::handle(ctx, delivery, stop).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pulling a request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {
                    tracing::warn!("request consumer closed");
                    break;
                }
            }
        }
        drop(consumer);
        tracker.close();
        tracing::info!(in_flight = tracker.len(), "stopped pulling; draining in-flight turns");
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!("drain timeout; handing unfinished turns back");
            hard_stop.cancel();
            tracker.wait().await;
        }
        tracing::info!("agent worker stopped");
    });
    Ok(WorkerHandle { instance_id, join })
}

/// Connects to NATS, Redis and the LLM providers from `cfg` and runs until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let bus = Arc::new(clawhive_bus::nats::NatsBus::connect(&cfg.bus).await?);
    bus.ensure_topology().await?;
    let store = Arc::new(clawhive_store::RedisStore::connect(&cfg.store).await?);
    let llm = LlmRouter::from_config(&cfg.llm, &|k| std::env::var(k).ok())?;
    let secrets =
        clawhive_store::secrets::vault_from_config(&cfg.security, store.clone()).map_err(WorkerError::Config)?;
    let jobs = clawhive_store::Jobs::new(store.clone(), store.clone(), Arc::new(cfg.clone()));
    let extras = Extras { jobs: Some(jobs) };
    let handle = start_with(&cfg, Deps { bus, store, llm, secrets }, extras, shutdown).await?;
    handle.wait().await
}

/// [`run`] for a pod: keeps retrying NATS and Redis while unready (instead of
/// exiting), then reports their health on `readiness` (`nats`, `redis`).
pub async fn run_observed(
    cfg: Config,
    shutdown: CancellationToken,
    readiness: clawhive_telemetry::Readiness,
) -> Result<(), WorkerError> {
    use clawhive_telemetry::connect_observed;
    let llm = LlmRouter::from_config(&cfg.llm, &|k| std::env::var(k).ok())?;
    let Some(bus) = clawhive_bus::nats::NatsBus::connect_observed(&cfg.bus, &shutdown, &readiness).await else {
        return Ok(());
    };
    let redis = || clawhive_store::RedisStore::connect(&cfg.store);
    let health = |s: Arc<clawhive_store::RedisStore>| async move { clawhive_store::SessionStore::health(&*s).await };
    let Some(store) = connect_observed("redis", &shutdown, &readiness, redis, health).await else {
        return Ok(());
    };
    let secrets =
        clawhive_store::secrets::vault_from_config(&cfg.security, store.clone()).map_err(WorkerError::Config)?;
    let jobs = clawhive_store::Jobs::new(store.clone(), store.clone(), Arc::new(cfg.clone()));
    let extras = Extras { jobs: Some(jobs) };
    let handle = start_with(&cfg, Deps { bus, store, llm, secrets }, extras, shutdown).await?;
    handle.wait().await
}

/// Publishes streaming deltas in order from a synchronous callback.
pub(crate) struct DeltaForwarder {
    tx: Option<mpsc::UnboundedSender<String>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DeltaForwarder {
    pub fn start(ctx: &Ctx, req: &pb::AgentRequest, trace: TraceContext) -> Self {
        if !req.stream_deltas || ctx.envelopes.delta_subject(req.reply_route.as_ref()).is_none() {
            return Self { tx: None, task: None };
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let envelopes = ctx.envelopes.clone();
        let route = req.reply_route.clone();
        let request_id = req.request_id.clone();
        let call_id = match route.as_ref().and_then(|r| r.target.as_ref()) {
            Some(pb::reply_route::Target::Gateway(g)) => g.call_id.clone(),
            _ => String::new(),
        };
        let task = tokio::spawn(async move {
            let mut seq = 0u32;
            while let Some(text) = rx.recv().await {
                seq += 1;
                let delta = pb::ReplyDelta { request_id: request_id.clone(), call_id: call_id.clone(), seq, text };
                if let Err(e) = envelopes.publish_delta(route.as_ref(), &delta, Some(&trace)).await {
                    tracing::debug!(error = %e, "delta not published");
                }
            }
        });
        Self { tx: Some(tx), task: Some(task) }
    }

    pub fn push(&self, text: &str) {
        if let Some(tx) = &self.tx
            && !text.is_empty()
        {
            let _ = tx.send(text.to_string());
        }
    }

    /// Flushes the deltas so they reach the origin before the final reply.
    pub async fn finish(mut self) {
        self.tx.take();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
