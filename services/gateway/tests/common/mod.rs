//! Shared set-up: a real nats-server and redis-server, a gateway on port 0,
//! and a test-side "worker" that answers requests over the real bus.
#![allow(dead_code)]

use clawhive_bus::envelope::{Envelopes, decode_request};
use clawhive_bus::nats::NatsBus;
use clawhive_bus::{Bus, Consumer, ConsumerSpec, Delivery, StreamKind, Subjects};
use clawhive_core::config::Config;
use clawhive_core::token::hash_token;
use clawhive_core::{TenantId, UserId};
use clawhive_gateway::{Deps, GatewayHandle};
use clawhive_proto::v1 as pb;
use clawhive_store::IdentityStore;
use clawhive_store::RedisStore;
use clawhive_tests::nats_server::NatsServer;
use clawhive_tests::redis_server::RedisServer;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const NS: &str = "gwtest";
pub const TOKEN_A: &str = "alice-secret-token";
pub const TOKEN_B: &str = "bob-secret-token";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Env {
    pub nats: NatsServer,
    pub redis: RedisServer,
    pub bus: Arc<dyn Bus>,
    pub envelopes: Envelopes,
    pub handle: Option<GatewayHandle>,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    pub base: String,
    pub cfg: Config,
}

/// A user the test creates in the identity store, with a known token: (tenant, user, roles, token).
pub type Seed = (&'static str, &'static str, &'static [&'static str], &'static str);

/// alice and bob in acme (role member, group eng), each with a known token.
pub const DEFAULT_USERS: &[Seed] = &[("acme", "alice", &["member"], TOKEN_A), ("acme", "bob", &["member"], TOKEN_B)];

async fn seed(identity: &dyn IdentityStore, users: &[Seed]) {
    for (tenant, user, roles, token) in users {
        let (tenant, user) = (TenantId::new(*tenant).unwrap(), UserId::new(*user).unwrap());
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        identity.create_user(&tenant, &user, &roles, &["eng".to_string()], "").await.expect("create test user");
        identity.register_token(&tenant, &user, &hash_token(token), None, "test").await.expect("register test token");
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// [`Env::start`], with `adjust` applied to the config before the gateway starts.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Env {
        Env::start_seeded(adjust, &[]).await
    }

    /// [`Env::start_with`], creating `extra` users beside [`DEFAULT_USERS`].
    pub async fn start_seeded(adjust: impl FnOnce(&mut Config), extra: &[Seed]) -> Env {
        clawhive_telemetry::install_crypto_provider();
        let nats = NatsServer::start().expect("nats-server starts");
        let redis = RedisServer::start().expect("redis-server starts");
        let mut cfg = Config::default();
        cfg.bus.nats_url = nats.url();
        cfg.bus.namespace = NS.into();
        cfg.store.redis_url = redis.url();
        cfg.gateway.grpc_addr = "127.0.0.1:0".into();
        cfg.gateway.http_addr = "127.0.0.1:0".into();
        cfg.gateway.max_body_bytes = 1024;
        adjust(&mut cfg);
        cfg.validate().expect("valid test config");

        let bus = NatsBus::connect(&cfg.bus).await.expect("bus connects");
        bus.ensure_topology().await.expect("topology");
        let bus: Arc<dyn Bus> = Arc::new(bus);
        let store = Arc::new(RedisStore::connect(&cfg.store).await.expect("store connects"));
        seed(store.as_ref(), DEFAULT_USERS).await;
        seed(store.as_ref(), extra).await;
        let shutdown = CancellationToken::new();
        let secrets = Some(clawhive_store::SecretVault::new(store.clone(), [3u8; 32]));
        let deps = Deps { bus: bus.clone(), store: store.clone(), identity: store, secrets };
        let handle = clawhive_gateway::start(&cfg, deps, shutdown.clone()).await.expect("gateway starts");
        assert_ne!(handle.http_addr.port(), 0);
        assert_ne!(handle.grpc_addr.port(), 0);
        let base = format!("http://{}", handle.http_addr);
        Env {
            nats,
            redis,
            envelopes: Envelopes::new(bus.clone(), Subjects::new(NS)),
            bus,
            handle: Some(handle),
            shutdown,
            http: reqwest::Client::new(),
            base,
            cfg,
        }
    }

    /// Another gateway replica on the same NATS and Redis; stops with `shutdown`.
    pub async fn second_gateway(&self, shutdown: CancellationToken) -> GatewayHandle {
        let store = Arc::new(RedisStore::connect(&self.cfg.store).await.expect("store connects"));
        let secrets = Some(clawhive_store::SecretVault::new(store.clone(), [3u8; 32]));
        let deps = Deps { bus: self.bus.clone(), store: store.clone(), identity: store, secrets };
        clawhive_gateway::start(&self.cfg, deps, shutdown).await.expect("second gateway starts")
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.handle.as_ref().unwrap().grpc_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Joins the workers' consumer group on the requests stream.
    pub async fn worker(&self) -> Box<dyn Consumer> {
        self.bus
            .consume(ConsumerSpec {
                stream: StreamKind::Requests,
                durable: "workers".into(),
                filter_subject: format!("{NS}.req.>"),
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                max_ack_pending: 100,
            })
            .await
            .expect("consumer joins")
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), h.wait()).await.expect("stops in time").expect("clean stop");
        }
    }
}

/// The next request delivered to the test worker.
pub async fn next_request(worker: &mut Box<dyn Consumer>) -> (pb::AgentRequest, Delivery) {
    let d = tokio::time::timeout(WAIT, worker.next())
        .await
        .expect("a request within the wait")
        .expect("consumer open")
        .expect("good delivery");
    let req = decode_request(&d.message.payload).expect("an AgentRequest");
    (req, d)
}

/// Asserts nothing reaches the requests stream for a short while.
pub async fn nothing_published(worker: &mut Box<dyn Consumer>) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(700), worker.next()).await {
        panic!("expected no request on the bus, got {got:?}");
    }
}

/// Answers `req` like a worker: deltas, then a final reply (text or error), then ack.
pub async fn answer(env: &Env, req: &pb::AgentRequest, d: &Delivery, deltas: &[&str], error: Option<pb::Error>) {
    for (i, text) in deltas.iter().enumerate() {
        let delta = pb::ReplyDelta {
            request_id: req.request_id.clone(),
            call_id: call_id(req),
            seq: i as u32,
            text: text.to_string(),
        };
        env.envelopes.publish_delta(req.reply_route.as_ref(), &delta, None).await.expect("delta published");
    }
    let reply = pb::Reply {
        request_id: req.request_id.clone(),
        session_id: req.session_id.clone(),
        reply_route: req.reply_route.clone(),
        text: if error.is_some() { String::new() } else { deltas.concat() },
        error,
        usage: Some(pb::Usage { input_tokens: 11, output_tokens: 7 }),
        model: "fake/model".into(),
        completed_unix_ms: clawhive_core::time::now_unix_ms(),
        tenant_id: "acme".into(),
    };
    let tenant = TenantId::new("acme").unwrap();
    env.envelopes.publish_reply(&tenant, &reply, None).await.expect("reply published");
    d.acker.ack().await.expect("ack");
}

pub fn call_id(req: &pb::AgentRequest) -> String {
    match req.reply_route.as_ref().and_then(|r| r.target.as_ref()) {
        Some(pb::reply_route::Target::Gateway(g)) => g.call_id.clone(),
        other => panic!("expected a gateway route, got {other:?}"),
    }
}

/// Splits an SSE body into (event, data) pairs.
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}
