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
        // Slots taken for deliveries still to come: we never pull more than we can run,
        // and when several slots are free one pull asks for that many.
        let mut held: Vec<tokio::sync::OwnedSemaphorePermit> = Vec::new();
        loop {
            if held.is_empty() {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                };
                held.push(first);
                while let Ok(more) = slots.clone().try_acquire_owned() {
                    held.push(more);
                }
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = consumer.next_up_to(held.len()) => n,
            };
            match next {
                Some(Ok(delivery)) => {
                    // A slot is held for every delivery (`next_up_to` never brings more).
                    let permit = held.pop();
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
        // Requests that reached this worker but were not started go straight to another.
        consumer.hand_back().await;
        drop(consumer);
        drop(held);
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
///
/// The first piece goes out at once (time to first token is what a reader
/// notices); after that, pieces arriving within `worker.delta_interval_ms` of
/// the last send are joined into one delta. A model streaming a token every
/// few tens of milliseconds is forwarded token by token; a burst (a fast model,
/// a buffered network read) costs one bus message and one client frame, not one
/// per token.
pub(crate) struct DeltaForwarder {
    tx: Option<mpsc::UnboundedSender<String>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DeltaForwarder {
    pub fn start(ctx: &Ctx, req: &pb::AgentRequest, trace: TraceContext) -> Self {
        if !req.stream_deltas || ctx.envelopes.delta_subject(req.reply_route.as_ref()).is_none() {
            return Self { tx: None, task: None };
        }
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let envelopes = ctx.envelopes.clone();
        let route = req.reply_route.clone();
        let request_id = req.request_id.clone();
        let call_id = match route.as_ref().and_then(|r| r.target.as_ref()) {
            Some(pb::reply_route::Target::Gateway(g)) => g.call_id.clone(),
            _ => String::new(),
        };
        let interval = Duration::from_millis(ctx.config.worker.delta_interval_ms);
        let task = tokio::spawn(async move {
            let mut seq = 0u32;
            let send = |text: String| {
                seq += 1;
                let delta = pb::ReplyDelta { request_id: request_id.clone(), call_id: call_id.clone(), seq, text };
                let envelopes = envelopes.clone();
                let route = route.clone();
                async move {
                    if let Err(e) = envelopes.publish_delta(route.as_ref(), &delta, Some(&trace)).await {
                        tracing::debug!(error = %e, "delta not published");
                    }
                }
            };
            coalesce(rx, interval, send).await;
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

/// Reads pieces from `rx` until it closes and hands them to `send`: the first
/// piece alone at once, later ones no more often than every `interval`, joined;
/// whatever is pending when `rx` closes is sent then.
async fn coalesce<F, Fut>(mut rx: mpsc::UnboundedReceiver<String>, interval: Duration, mut send: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(first) = rx.recv().await else { return };
    send(first).await;
    let mut next_send = tokio::time::Instant::now() + interval;
    while let Some(mut text) = rx.recv().await {
        let mut open = true;
        // Gather until the interval since the last send is over (or the stream ends).
        loop {
            while let Ok(more) = rx.try_recv() {
                text.push_str(&more);
            }
            if tokio::time::Instant::now() >= next_send {
                break;
            }
            tokio::select! {
                more = rx.recv() => match more {
                    Some(more) => text.push_str(&more),
                    None => {
                        open = false;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(next_send) => {}
            }
        }
        send(text).await;
        next_send = tokio::time::Instant::now() + interval;
        if !open {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn collector() -> (Arc<Mutex<Vec<String>>>, impl FnMut(String) -> std::future::Ready<()>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = sent.clone();
        (sent, move |t: String| {
            s.lock().unwrap().push(t);
            std::future::ready(())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_out_as_the_first_piece_then_one_joined_delta() {
        let (tx, rx) = mpsc::unbounded_channel();
        for w in ["one ", "two ", "three ", "four"] {
            tx.send(w.to_string()).unwrap();
        }
        drop(tx);
        let (sent, send) = collector();
        coalesce(rx, Duration::from_millis(50), send).await;
        assert_eq!(sent.lock().unwrap().clone(), vec!["one ", "two three four"]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_pieces_go_out_one_by_one_and_the_tail_is_flushed_at_the_end() {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let (sent, send) = collector();
        let task = tokio::spawn(coalesce(rx, Duration::from_millis(50), send));
        tx.send("a".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send("b".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Two pieces 10 ms apart, right after a send: joined.
        tx.send("c".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send("d".into()).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send("e".into()).unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(sent.lock().unwrap().clone(), vec!["a", "b", "c", "de"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_sends_every_piece() {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let (sent, send) = collector();
        let task = tokio::spawn(coalesce(rx, Duration::ZERO, send));
        for w in ["x", "y", "z"] {
            tx.send(w.into()).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(tx);
        task.await.unwrap();
        assert_eq!(sent.lock().unwrap().clone(), vec!["x", "y", "z"]);
    }
}
