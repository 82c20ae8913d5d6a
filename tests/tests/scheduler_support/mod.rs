//! The scheduler suites' harness: a whole system on loopback (real nats-server
//! and redis-server, the gateway, workers and scheduler replicas, a fake LLM),
//! users with issued tokens, and helpers to build and inspect jobs.
#![allow(dead_code, unused_imports)]

pub use clawhive_bus::nats::NatsBus;
pub use clawhive_bus::{Bus, ConsumerSpec, StreamKind};
pub use clawhive_core::config::Config;
pub use clawhive_core::schedule::{Delivery, Job, JobId, RunOutcome, Schedule};
pub use clawhive_core::{AgentId, TenantId, UserId};
pub use clawhive_proto::v1 as pb;
pub use clawhive_proto::v1::assistant_client::AssistantClient;
pub use clawhive_proto::v1::schedules_client::SchedulesClient;
pub use clawhive_scheduler::{Clock, ManualClock, Scheduler, SchedulerHandle, SystemClock};
pub use clawhive_store::{IdentityStore, Jobs, RedisStore, ScheduleStore};
pub use clawhive_tests::fake_llm::FakeLlm;
pub use clawhive_tests::nats_server::NatsServer;
pub use clawhive_tests::redis_server::RedisServer;
pub use serde_json::{Value, json};
pub use std::sync::Arc;
pub use std::sync::atomic::Ordering;
pub use std::time::Duration;
pub use tokio_util::sync::CancellationToken;
pub use tonic::transport::Channel;

/// Users (tenant, user, roles); each gets an issued API token.
pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const CAROL: &str = "carol";
pub const DAVE: &str = "dave";
pub const USERS: [(&str, &str, &[&str]); 4] =
    [("acme", ALICE, &[]), ("acme", BOB, &[]), ("globex", CAROL, &[]), ("acme", DAVE, &["admin"])];
pub const ENVELOPE_KEY: &str = "scheduler-e2e-envelope-key-0123456789abcdef";

pub struct Sys {
    pub _nats: NatsServer,
    pub _redis: RedisServer,
    pub llm: FakeLlm,
    pub cfg: Config,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<RedisStore>,
    pub gateway: Option<clawhive_gateway::GatewayHandle>,
    pub shutdown: CancellationToken,
    pub key_file: std::path::PathBuf,
    pub tokens: std::collections::HashMap<&'static str, String>,
    /// The config as a file, for service processes.
    pub config_path: std::path::PathBuf,
}

pub fn config_toml(nats: &str, redis: &str, llm: &FakeLlm, key_file: &std::path::Path, max_failures: u32) -> String {
    format!(
        r#"
[bus]
nats_url = "{nats}"
ack_wait_ms = 2000
max_attempts = 2

[store]
redis_url = "{redis}"

[worker]
concurrency = 4
lease_ttl_ms = 3000

[gateway]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
default_timeout_ms = 20000



[llm.providers.fake]
kind = "openai"
base_url = "{openai}"
initial_backoff_ms = 20
max_retries = 1

[[agents]]
id = "default"
model = "fake/echo-model"
tools = ["current_time", "schedule"]
system_prompt = "You are a test agent."

[scheduler]
tick_ms = 100
lease_ttl_ms = 1000
grace_ms = 30000
min_interval_secs = 120
max_consecutive_failures = {max_failures}
run_timeout_ms = 15000

[scheduler.tenant_min_interval_secs]
acme = 1

[security]
envelope_key_file = "{key_file}"
require_signed_envelopes = true
"#,
        openai = llm.openai_base_url(),
        key_file = key_file.display(),
    )
}

impl Sys {
    /// NATS, Redis, a fake LLM and the gateway (with the Schedules API); no
    /// workers and no scheduler yet.
    pub async fn start() -> Sys {
        Self::start_with(3).await
    }

    pub async fn start_with(max_failures: u32) -> Sys {
        Self::start_full(max_failures, "").await
    }

    /// [`Sys::start_with`], appending `extra` to the config (e.g. a `[slack]` section).
    pub async fn start_full(max_failures: u32, extra: &str) -> Sys {
        clawhive_telemetry::install_crypto_provider();
        let nats = NatsServer::start().expect("nats-server");
        let redis = RedisServer::start().expect("redis-server");
        let llm = FakeLlm::start().await;
        let key_file = std::env::temp_dir().join(format!("clawhive-sched-key-{}-{}", std::process::id(), nats.port()));
        std::fs::write(&key_file, ENVELOPE_KEY).unwrap();
        let toml = config_toml(&nats.url(), &redis.url(), &llm, &key_file, max_failures) + extra;
        let cfg = Config::from_sources(Some(&toml), Vec::new()).expect("test config is valid");
        let config_path = key_file.with_extension("toml");
        std::fs::write(&config_path, &toml).unwrap();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&cfg.bus).await.expect("bus"));
        bus.ensure_topology().await.expect("topology");
        let store = Arc::new(RedisStore::connect(&cfg.store).await.expect("store"));
        let mut tokens = std::collections::HashMap::new();
        for (tenant, user, roles) in USERS {
            let (t, u) = (TenantId::new(tenant).unwrap(), UserId::new(user).unwrap());
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            store.create_user(&t, &u, &roles, &[], "").await.unwrap();
            tokens.insert(user, store.issue_token(&t, &u, None, "e2e").await.unwrap().token);
        }
        let shutdown = CancellationToken::new();
        let gateway = clawhive_gateway::start_with(
            &cfg,
            clawhive_gateway::Deps { bus: bus.clone(), store: store.clone(), identity: store.clone(), secrets: None },
            clawhive_gateway::Extras { schedules: Some(store.clone()) },
            shutdown.clone(),
        )
        .await
        .expect("gateway");
        Sys {
            _nats: nats,
            _redis: redis,
            llm,
            cfg,
            bus,
            store,
            gateway: Some(gateway),
            shutdown,
            key_file,
            tokens,
            config_path,
        }
    }

    /// The API token of `user`.
    pub fn t(&self, user: &str) -> &str {
        &self.tokens[user]
    }

    pub fn jobs(&self) -> Jobs {
        Jobs::new(self.store.clone(), self.store.clone(), Arc::new(self.cfg.clone()))
    }

    pub fn deps(&self, clock: Arc<dyn Clock>) -> clawhive_scheduler::Deps {
        clawhive_scheduler::Deps {
            bus: self.bus.clone(),
            store: self.store.clone(),
            identity: self.store.clone(),
            sessions: self.store.clone(),
            clock,
        }
    }

    pub async fn scheduler(&self, clock: Arc<dyn Clock>, stop: &CancellationToken) -> SchedulerHandle {
        clawhive_scheduler::start(&self.cfg, self.deps(clock), stop.clone()).await.expect("scheduler")
    }

    pub async fn worker(&self) {
        let llm = clawhive_llm::LlmRouter::from_config(&self.cfg.llm, &|_| None).expect("llm");
        clawhive_agent_worker::start_with(
            &self.cfg,
            clawhive_agent_worker::Deps { bus: self.bus.clone(), store: self.store.clone(), llm, secrets: None },
            clawhive_agent_worker::Extras { jobs: Some(self.jobs()) },
            self.shutdown.clone(),
        )
        .await
        .expect("worker");
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.gateway.as_ref().unwrap().http_addr)
    }

    pub async fn grpc(&self) -> SchedulesClient<Channel> {
        let addr = format!("http://{}", self.gateway.as_ref().unwrap().grpc_addr);
        SchedulesClient::new(Channel::from_shared(addr).unwrap().connect().await.unwrap())
    }

    pub async fn assistant(&self) -> AssistantClient<Channel> {
        let addr = format!("http://{}", self.gateway.as_ref().unwrap().grpc_addr);
        AssistantClient::new(Channel::from_shared(addr).unwrap().connect().await.unwrap())
    }

    /// Every request stored in the requests stream (no worker runs), as request ids.
    pub async fn stored_requests(&self) -> Vec<String> {
        let mut consumer = self
            .bus
            .consume(ConsumerSpec {
                stream: StreamKind::Requests,
                durable: format!("count{}", rand_suffix()),
                filter_subject: "clawhive.req.>".into(),
                ack_wait: Duration::from_secs(30),
                max_deliver: 1,
                max_ack_pending: 10_000,
            })
            .await
            .unwrap();
        let mut ids = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(700), consumer.next()).await {
            ids.push(clawhive_bus::envelope::decode_request(&d.message.payload).unwrap().request_id);
            // Not acked: the requests stay for later counts.
        }
        ids
    }
}

impl Drop for Sys {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.key_file);
        let _ = std::fs::remove_file(&self.config_path);
    }
}

pub fn rand_suffix() -> String {
    clawhive_core::RequestId::random().as_str().replace('-', "")[..12].to_string()
}

pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub fn every(secs: u64) -> Option<pb::JobSchedule> {
    Some(pb::JobSchedule { kind: Some(pb::job_schedule::Kind::Every(pb::EverySchedule { interval_secs: secs })) })
}

pub fn cron(expr: &str, tz: &str) -> Option<pb::JobSchedule> {
    Some(pb::JobSchedule {
        kind: Some(pb::job_schedule::Kind::Cron(pb::CronSchedule { expr: expr.into(), timezone: tz.into() })),
    })
}

/// A job written straight into the store, with chosen times (for a manual clock).
pub fn raw_job(id: &str, schedule: Schedule, created: i64, next: Option<i64>) -> Job {
    Job {
        id: JobId::new(id).unwrap(),
        tenant: TenantId::new("acme").unwrap(),
        owner: UserId::new("alice").unwrap(),
        schedule,
        prompt: "daily digest".into(),
        agent: AgentId::new("default").unwrap(),
        delivery: Delivery::Session,
        enabled: true,
        paused_reason: String::new(),
        created_unix_ms: created,
        updated_unix_ms: created,
        next_run_unix_ms: next,
        last_run: None,
        last_fired_slot_ms: None,
        pending: None,
        consecutive_failures: 0,
        last_outcome_slot_ms: None,
        revision: 0,
    }
}

pub fn slot_of(request_id: &str) -> i64 {
    clawhive_core::schedule::parse_fire_request_id(request_id).expect("a fire request id").2
}

pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn job_of(sys: &Sys, id: &str) -> Job {
    sys.store.get_job(&TenantId::new("acme").unwrap(), &JobId::new(id).unwrap()).await.unwrap().expect("job exists")
}

pub async fn chat_final(client: &mut AssistantClient<Channel>, token: &str, session: &str, text: &str) -> String {
    let req = pb::ChatRequest {
        session_id: session.into(),
        text: text.into(),
        agent_id: String::new(),
        idempotency_key: String::new(),
        timeout_ms: 15_000,
    };
    let mut stream = client.chat(authed(req, token)).await.unwrap().into_inner();
    while let Some(ev) = stream.message().await.unwrap() {
        if let Some(pb::chat_event::Event::Final(f)) = ev.event {
            return f.text;
        }
    }
    panic!("no final event")
}
