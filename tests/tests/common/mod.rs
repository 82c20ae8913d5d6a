//! A whole cluster on loopback: real nats-server and redis-server, the real
//! gateway (in this process) and real agent-worker processes, and a fake LLM.

#![allow(dead_code)]

use clawhive_bus::Bus;
use clawhive_bus::nats::NatsBus;
use clawhive_core::config::Config;
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::assistant_client::AssistantClient;
use clawhive_store::RedisStore;
use clawhive_tests::fake_llm::FakeLlm;
use clawhive_tests::nats_server::NatsServer;
use clawhive_tests::procs::{ServiceProcess, binary};
use clawhive_tests::redis_server::RedisServer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const ALICE: &str = "alice-token";
pub const BOB: &str = "bob-token";
pub const CAROL: &str = "carol-token";
pub const ACME_ADMIN: &str = "acme-admin-token";
pub const GLOBEX_ADMIN: &str = "globex-admin-token";

pub struct Cluster {
    pub nats: Option<NatsServer>,
    pub redis: Option<RedisServer>,
    pub llm: FakeLlm,
    pub config_path: PathBuf,
    pub config: Config,
    pub gateway: clawhive_gateway::GatewayHandle,
    pub workers: Vec<ServiceProcess>,
    pub in_process_workers: usize,
    pub bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
    data_dir: Option<PathBuf>,
}

impl Cluster {
    /// Cluster mode: real nats-server and redis-server, the gateway in this
    /// process and `workers` agent-worker processes.
    pub async fn start(workers: usize) -> Cluster {
        Self::start_with(workers, None).await
    }

    /// [`Cluster::start`] with an optional policy document (`security.policy_file`).
    pub async fn start_with(workers: usize, policy: Option<&str>) -> Cluster {
        Self::start_extra(workers, policy, "").await
    }

    /// [`Cluster::start_with`] plus `extra` TOML appended to the config (new tables only).
    pub async fn start_extra(workers: usize, policy: Option<&str>, extra: &str) -> Cluster {
        clawhive_telemetry::install_crypto_provider();
        let nats = NatsServer::start().expect("nats-server");
        let redis = RedisServer::start().expect("redis-server");
        let llm = FakeLlm::start().await;
        let toml = config_toml(&nats.url(), &redis.url(), &llm) + extra;
        let config_path =
            std::env::temp_dir().join(format!("clawhive-e2e-{}-{}.toml", std::process::id(), nats.port()));
        let toml = with_policy(toml, policy, &config_path);
        std::fs::write(&config_path, &toml).unwrap();
        let config = Config::from_sources(Some(&toml), Vec::new()).expect("test config is valid");
        let nats_bus = Arc::new(NatsBus::connect(&config.bus).await.expect("bus"));
        let bus: Arc<dyn Bus> = nats_bus;
        bus.ensure_topology().await.expect("topology");
        let store = Arc::new(RedisStore::connect(&config.store).await.expect("store"));
        seed_users(store.as_ref()).await;
        let shutdown = CancellationToken::new();
        let gateway = clawhive_gateway::start(
            &config,
            clawhive_gateway::Deps {
                bus: bus.clone(),
                store: store.clone(),
                identity: store.clone(),
                secrets: vault_for(&config, store.clone()),
            },
            shutdown.clone(),
        )
        .await
        .expect("gateway");
        let mut cluster = Cluster {
            nats: Some(nats),
            redis: Some(redis),
            llm,
            config_path,
            config,
            gateway,
            workers: Vec::new(),
            in_process_workers: 0,
            bus,
            shutdown,
            data_dir: None,
        };
        for _ in 0..workers {
            cluster.spawn_worker().await;
        }
        cluster
    }

    /// Single-process mode: the in-process bus, the embedded store (a file),
    /// the gateway and `workers` workers all in this process; no servers.
    pub async fn start_embedded(workers: usize) -> Cluster {
        Self::start_embedded_with(workers, None).await
    }

    /// [`Cluster::start_embedded`] with an optional policy document (`security.policy_file`).
    pub async fn start_embedded_with(workers: usize, policy: Option<&str>) -> Cluster {
        Self::start_embedded_extra(workers, policy, "").await
    }

    /// [`Cluster::start_embedded_with`] plus `extra` TOML appended to the config.
    pub async fn start_embedded_extra(workers: usize, policy: Option<&str>, extra: &str) -> Cluster {
        clawhive_telemetry::install_crypto_provider();
        let llm = FakeLlm::start().await;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data_dir = std::env::temp_dir().join(format!("clawhive-e2e-embedded-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        let toml = config_toml("nats://unused:1", "redis://unused:1", &llm) + extra;
        let config_path = data_dir.join("config.toml");
        let toml = with_policy(toml, policy, &config_path);
        std::fs::write(&config_path, &toml).unwrap();
        let config = Config::from_sources(Some(&toml), Vec::new()).expect("test config is valid");
        let bus: Arc<dyn Bus> = Arc::new(clawhive_bus::MemoryBus::new(&config.bus));
        bus.ensure_topology().await.expect("topology");
        let embedded =
            Arc::new(clawhive_store::EmbeddedStore::open(&data_dir.join("sessions.redb")).expect("embedded store"));
        let store: Arc<dyn clawhive_store::SessionStore> = embedded.clone();
        seed_users(embedded.as_ref()).await;
        let shutdown = CancellationToken::new();
        let gateway = clawhive_gateway::start(
            &config,
            clawhive_gateway::Deps {
                bus: bus.clone(),
                store: store.clone(),
                identity: embedded.clone(),
                secrets: vault_for(&config, embedded.clone()),
            },
            shutdown.clone(),
        )
        .await
        .expect("gateway");
        let env = |k: &str| (k == "FAKE_ANTHROPIC_KEY").then(|| "test-anthropic-key".to_string());
        for _ in 0..workers {
            let llm_router = clawhive_llm::LlmRouter::from_config(&config.llm, &env).expect("llm");
            clawhive_agent_worker::start(
                &config,
                clawhive_agent_worker::Deps {
                    bus: bus.clone(),
                    store: store.clone(),
                    llm: llm_router,
                    secrets: vault_for(&config, embedded.clone()),
                },
                shutdown.clone(),
            )
            .await
            .expect("worker");
        }
        Cluster {
            nats: None,
            redis: None,
            llm,
            config_path,
            config,
            gateway,
            workers: Vec::new(),
            in_process_workers: workers,
            bus,
            shutdown,
            data_dir: Some(data_dir),
        }
    }

    pub async fn spawn_worker(&mut self) -> usize {
        let bin = tokio::task::spawn_blocking(|| binary("clawhive-agent-worker", "clawhive-agent-worker"))
            .await
            .unwrap()
            .expect("worker binary");
        let p = ServiceProcess::spawn(
            &bin,
            &["--config", self.config_path.to_str().unwrap()],
            &[("FAKE_ANTHROPIC_KEY", "test-anthropic-key".to_string())],
        )
        .expect("spawn worker");
        p.wait_for_log("agent worker started", Duration::from_secs(20)).await.expect("worker ready");
        self.workers.push(p);
        self.workers.len() - 1
    }

    pub async fn grpc(&self) -> AssistantClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.gateway.grpc_addr)).unwrap().connect().await.unwrap();
        AssistantClient::new(ch)
    }

    pub async fn admin(&self) -> clawhive_proto::v1::admin_client::AdminClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.gateway.grpc_addr)).unwrap().connect().await.unwrap();
        clawhive_proto::v1::admin_client::AdminClient::new(ch)
    }

    pub fn http_base(&self) -> String {
        format!("http://{}", self.gateway.http_addr)
    }

    /// Where the policy document (if any) lives: next to the config file.
    pub fn policy_path(&self) -> PathBuf {
        policy_path_for(&self.config_path)
    }
}

fn policy_path_for(config_path: &std::path::Path) -> PathBuf {
    config_path.with_extension("policy.toml")
}

/// Writes `policy` next to the config file and points `security.policy_file` at it.
fn with_policy(toml: String, policy: Option<&str>, config_path: &std::path::Path) -> String {
    let Some(policy) = policy else { return toml };
    let path = policy_path_for(config_path);
    std::fs::write(&path, policy).unwrap();
    let line = format!("policy_file = {:?}\n", path.display().to_string());
    if toml.contains("\n[security]\n") {
        toml.replacen("\n[security]\n", &format!("\n[security]\n{line}"), 1)
    } else {
        format!("{toml}\n[security]\n{line}")
    }
}

/// The envelope-signing key shared by the test gateway and workers (a file, as
/// a mounted Kubernetes Secret would be).
pub const ENVELOPE_KEY: &str = "e2e-envelope-key-0123456789abcdef0123456789";

/// The test system's users, created through the identity store like the Admin API
/// does, each with a known token registered for them: (tenant, user, roles, token).
pub const USERS: &[(&str, &str, &[&str], &str)] = &[
    ("acme", "alice", &[], ALICE),
    ("acme", "bob", &[], BOB),
    ("globex", "carol", &[], CAROL),
    ("acme", "root", &["admin"], ACME_ADMIN),
    ("globex", "groot", &["admin"], GLOBEX_ADMIN),
];

pub async fn seed_users(identity: &dyn clawhive_store::IdentityStore) {
    use clawhive_core::{TenantId, UserId};
    for (tenant, user, roles, token) in USERS {
        let (tenant, user) = (TenantId::new(*tenant).unwrap(), UserId::new(*user).unwrap());
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        identity.create_user(&tenant, &user, &roles, &[], "").await.expect("create test user");
        let sha = clawhive_core::token::hash_token(token);
        identity.register_token(&tenant, &user, &sha, None, "test").await.expect("register test token");
    }
}

/// The key that seals the test system's secrets (hex, in a file like a mounted Secret).
pub const SECRETS_KEY_HEX: &str = "6b6579206f662074686520746573742073656372657473207661756c74212121";

pub fn secrets_key_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("clawhive-e2e-secrets-key-{}", std::process::id()));
    if !path.exists() {
        std::fs::write(&path, SECRETS_KEY_HEX).unwrap();
    }
    path
}

/// The vault the services build from the test config.
pub fn vault_for(config: &Config, store: Arc<dyn clawhive_store::SecretStore>) -> Option<clawhive_store::SecretVault> {
    clawhive_store::secrets::vault_from_config(&config.security, store).expect("secrets key")
}

pub fn envelope_key_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("clawhive-e2e-envelope-key-{}", std::process::id()));
    if !path.exists() {
        std::fs::write(&path, ENVELOPE_KEY).unwrap();
    }
    path
}

/// The test system's config: three users in two tenants, an OpenAI-protocol
/// and an Anthropic-protocol agent, both served by the fake LLM.
pub fn config_toml(nats_url: &str, redis_url: &str, llm: &FakeLlm) -> String {
    format!(
        r#"
[bus]
nats_url = "{nats}"
ack_wait_ms = 2000
max_attempts = 3

[store]
redis_url = "{redis}"

[worker]
concurrency = 8
lease_ttl_ms = 3000
lease_wait_ms = 15000
drain_timeout_ms = 5000

[gateway]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
default_timeout_ms = 20000
max_body_bytes = 4096

[llm.providers.fake]
kind = "openai"
base_url = "{openai}"
initial_backoff_ms = 50

[llm.providers.fakeanthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "FAKE_ANTHROPIC_KEY"
initial_backoff_ms = 50

[[agents]]
id = "default"
model = "fake/echo-model"
# linkedin.profile exists only where a test configures it as an [[http_tools]] entry.
tools = ["current_time", "linkedin.profile"]
system_prompt = "You are a test agent."

[[agents]]
id = "claude"
model = "fakeanthropic/claude-test"
tools = ["current_time"]

[security]
envelope_key_file = "{key_file}"
require_signed_envelopes = true
secrets_key_env = "CLAWHIVE_TEST_SECRETS_KEY_UNSET"
secrets_key_file = "{secrets_key_file}"
"#,
        key_file = envelope_key_file().display(),
        secrets_key_file = secrets_key_file().display(),
        nats = nats_url,
        redis = redis_url,
        openai = llm.openai_base_url(),
        anthropic = llm.anthropic_base_url(),
    )
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(self.policy_path());
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Runs one gRPC chat and returns (deltas, final) or the status.
pub async fn chat(
    client: &mut AssistantClient<Channel>,
    token: &str,
    session: &str,
    text: &str,
    agent: &str,
    timeout_ms: u32,
) -> Result<(Vec<String>, pb::ChatFinal), tonic::Status> {
    let req = pb::ChatRequest {
        session_id: session.into(),
        text: text.into(),
        agent_id: agent.into(),
        idempotency_key: String::new(),
        timeout_ms,
    };
    let mut stream = client.chat(authed(req, token)).await?.into_inner();
    let mut deltas = Vec::new();
    let mut fin = None;
    while let Some(ev) = stream.message().await? {
        match ev.event {
            Some(pb::chat_event::Event::Delta(d)) => deltas.push(d.text),
            Some(pb::chat_event::Event::Final(f)) => fin = Some(f),
            None => {}
        }
    }
    Ok((deltas, fin.expect("stream ended with a final event")))
}

/// Counts final replies for `request_id` seen on the reply stream (durable).
pub async fn count_stored_replies(bus: &Arc<dyn Bus>, request_id: &str) -> usize {
    use clawhive_bus::{ConsumerSpec, StreamKind};
    let mut consumer = bus
        .consume(ConsumerSpec {
            stream: StreamKind::Replies,
            durable: format!("count-{}", request_id.replace(|c: char| !c.is_ascii_alphanumeric(), "")),
            filter_subject: "clawhive.reply.>".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 1,
            max_ack_pending: 1000,
        })
        .await
        .unwrap();
    let mut n = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(800), consumer.next()).await {
        let reply = clawhive_bus::envelope::decode_reply(&d.message.payload).unwrap();
        if reply.request_id == request_id {
            n += 1;
        }
        let _ = d.acker.ack().await;
    }
    n
}
