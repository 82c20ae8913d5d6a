//! Binding, serving and graceful shutdown of both listeners.

use crate::admin::AdminService;
use crate::auth::Authenticator;
use crate::fanin::FanIn;
use crate::grpc::AssistantService;
use crate::state::Gateway;
use axum::serve::ListenerExt;
use clawhive_bus::envelope::Envelopes;
use clawhive_bus::nats::NatsBus;
use clawhive_bus::{Bus, BusError, Subjects};
use clawhive_core::config::Config;
use clawhive_proto::v1::admin_server::AdminServer;
use clawhive_proto::v1::assistant_server::AssistantServer;
use clawhive_proto::v1::schedules_server::SchedulesServer;
use clawhive_store::{IdentityStore, RedisStore, SessionStore, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight calls may run on after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Serve(String),
}

/// The adapters the gateway runs on.
pub struct Deps {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn SessionStore>,
    /// Users and issued tokens (usually the same object as `store`).
    pub identity: Arc<dyn IdentityStore>,
    /// Named secrets for the Admin API; `None` without a secrets key.
    pub secrets: Option<clawhive_store::SecretVault>,
}

/// A running gateway.
pub struct GatewayHandle {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub instance_id: String,
    task: JoinHandle<Result<(), GatewayError>>,
}

impl GatewayHandle {
    /// Waits until both servers have stopped (after the shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), GatewayError> {
        self.task.await.map_err(|e| GatewayError::Serve(format!("gateway task failed: {e}")))?
    }
}

async fn bind(addr: &str) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).await.map_err(|e| GatewayError::Bind { addr: addr.to_string(), reason: e.to_string() })
}

/// Binds both listeners, subscribes to this instance's reply and delta
/// subjects, and serves until `shutdown` is cancelled; then stops accepting
/// and lets in-flight calls finish for up to 10 s.
/// Optional parts of a gateway, beyond [`Deps`].
#[derive(Default)]
pub struct Extras {
    /// Scheduled jobs: serves the `Schedules` gRPC service and `/v1/schedules`.
    pub schedules: Option<Arc<dyn clawhive_store::ScheduleStore>>,
}

/// [`start_with`] without the optional parts.
pub async fn start(cfg: &Config, deps: Deps, shutdown: CancellationToken) -> Result<GatewayHandle, GatewayError> {
    start_with(cfg, deps, Extras::default(), shutdown).await
}

/// Binds both listeners and serves, like [`start`], with the optional parts in `extras`.
pub async fn start_with(
    cfg: &Config,
    deps: Deps,
    extras: Extras,
    shutdown: CancellationToken,
) -> Result<GatewayHandle, GatewayError> {
    let jobs = extras.schedules.map(|s| clawhive_store::Jobs::new(s, deps.identity.clone(), Arc::new(cfg.clone())));
    let auth = Authenticator::from_config(&cfg.gateway)?;
    let signer = clawhive_core::signing::signer_from_config(&cfg.security).map_err(GatewayError::Config)?;
    let instance_id = format!("gw-{}", uuid::Uuid::new_v4().simple());
    let subjects = Subjects::new(&cfg.bus.namespace);
    let grpc_listener = bind(&cfg.gateway.grpc_addr).await?;
    let http_listener = bind(&cfg.gateway.http_addr).await?;
    let addr_of = |l: &TcpListener, addr: &str| {
        l.local_addr().map_err(|e| GatewayError::Bind { addr: addr.to_string(), reason: e.to_string() })
    };
    let grpc_addr = addr_of(&grpc_listener, &cfg.gateway.grpc_addr)?;
    let http_addr = addr_of(&http_listener, &cfg.gateway.http_addr)?;

    let fanin = FanIn::default();
    let fanin_task = fanin.spawn(&deps.bus, &subjects, &instance_id).await?;
    let gw = Arc::new(Gateway {
        cfg: cfg.clone(),
        instance_id: instance_id.clone(),
        auth,
        envelopes: Envelopes::new(deps.bus.clone(), subjects),
        bus: deps.bus,
        store: deps.store,
        identity: deps.identity,
        fanin,
        signer,
        secrets: deps.secrets,
        jobs,
        tokens: crate::cache::TokenCache::new(Duration::from_millis(cfg.gateway.auth_cache_ms)),
        sessions: crate::cache::SessionCache::new(Duration::from_millis(cfg.gateway.session_cache_ms)),
    });
    let identity_task = crate::state::spawn_identity_listener(&gw).await?;

    // gRPC: the API, health, reflection.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AssistantServer<AssistantService>>().await;
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(clawhive_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| GatewayError::Serve(format!("gRPC reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(clawhive_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| GatewayError::Serve(format!("gRPC reflection: {e}")))?;
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc_shutdown = shutdown.clone();
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AssistantServer::new(AssistantService::new(gw.clone())))
        .add_service(AdminServer::new(AdminService::new(gw.clone())))
        .add_service(SchedulesServer::new(crate::schedules::SchedulesService::new(gw.clone())))
        .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned());

    // HTTP.
    let app = crate::http::router(gw.clone());
    let listener = http_listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY on an HTTP connection.");
        }
    });
    let http_shutdown = shutdown.clone();
    let http = axum::serve(listener, app).with_graceful_shutdown(http_shutdown.cancelled_owned());

    tracing::info!(%grpc_addr, %http_addr, instance_id = %instance_id, "Gateway listening.");
    let task = tokio::spawn(async move {
        let grpc = tokio::spawn(grpc);
        let http = tokio::spawn(async move { http.await });
        shutdown.cancelled().await;
        tracing::info!(pending = gw.fanin.pending(), "Gateway shutting down; finishing calls in flight.");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let (g, h) = tokio::join!(grpc, http);
            (g, h)
        })
        .await;
        fanin_task.abort();
        identity_task.abort();
        match drained {
            Ok((g, h)) => {
                g.map_err(|e| GatewayError::Serve(format!("gRPC server task: {e}")))?
                    .map_err(|e| GatewayError::Serve(format!("gRPC server: {e}")))?;
                h.map_err(|e| GatewayError::Serve(format!("HTTP server task: {e}")))?
                    .map_err(|e| GatewayError::Serve(format!("HTTP server: {e}")))?;
                tracing::info!("Gateway stopped.");
            }
            Err(_) => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "Calls still in flight after the grace period; dropping them.")
            }
        }
        Ok(())
    });
    Ok(GatewayHandle { grpc_addr, http_addr, instance_id, task })
}

/// [`run`] for a pod: keeps retrying NATS and Redis while unready (instead of
/// exiting), then reports their health on `readiness` (`nats`, `redis`).
pub async fn run_observed(
    cfg: Config,
    shutdown: CancellationToken,
    readiness: clawhive_telemetry::Readiness,
) -> Result<(), GatewayError> {
    use clawhive_telemetry::connect_observed;
    let Some(bus) = clawhive_bus::nats::NatsBus::connect_observed(&cfg.bus, &shutdown, &readiness).await else {
        return Ok(());
    };
    let redis = || RedisStore::connect(&cfg.store);
    let health = |s: Arc<clawhive_store::RedisStore>| async move { clawhive_store::SessionStore::health(&*s).await };
    let Some(store) = connect_observed("redis", &shutdown, &readiness, redis, health).await else {
        return Ok(());
    };
    let secrets =
        clawhive_store::secrets::vault_from_config(&cfg.security, store.clone()).map_err(GatewayError::Config)?;
    let extras = Extras { schedules: Some(store.clone()) };
    let handle =
        start_with(&cfg, Deps { bus, store: store.clone(), identity: store, secrets }, extras, shutdown).await?;
    handle.wait().await
}

/// Connects NATS and Redis from `cfg`, sets up the streams, serves until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let bus = NatsBus::connect(&cfg.bus).await?;
    bus.ensure_topology().await?;
    let store = Arc::new(RedisStore::connect(&cfg.store).await?);
    let secrets =
        clawhive_store::secrets::vault_from_config(&cfg.security, store.clone()).map_err(GatewayError::Config)?;
    let handle = start_with(
        &cfg,
        Deps { bus: Arc::new(bus), store: store.clone(), identity: store.clone(), secrets },
        Extras { schedules: Some(store) },
        shutdown,
    )
    .await?;
    handle.wait().await
}
