//! Start-up, readiness and shutdown.

use crate::bridge::{Bridge, Deps, SlackSecrets};
use crate::socket::Sockets;
use crate::stream::Streams;
use crate::web::SlackWeb;
use clawhive_bus::envelope::Envelopes;
use clawhive_bus::nats::NatsBus;
use clawhive_bus::{Bus, BusError, Subjects};
use clawhive_core::config::Config;
use clawhive_store::{RedisStore, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Slack: {0}")]
    Slack(#[from] crate::web::WebError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Serve(String),
}

/// A running bridge.
pub struct BridgeHandle {
    /// Where `/slack/events` listens, when `slack.http_addr` is set.
    pub http_addr: Option<SocketAddr>,
    /// The bot's Slack user id.
    pub bot_user: String,
    readiness: Readiness,
    task: JoinHandle<()>,
}

/// Whether the bridge can take events now; cheap to clone into a `/readyz` check.
#[derive(Clone)]
pub struct Readiness {
    sockets: Option<Arc<Sockets>>,
    http: bool,
}

impl Readiness {
    /// Ready when a Socket Mode connection is open, or the Events API endpoint is served.
    pub fn is_ready(&self) -> bool {
        self.http || self.sockets.as_ref().is_some_and(|s| s.open_count() > 0)
    }

    /// Socket Mode connections open now.
    pub fn open_sockets(&self) -> usize {
        self.sockets.as_ref().map_or(0, |s| s.open_count())
    }
}

impl BridgeHandle {
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Waits until the bridge has stopped (after `shutdown` is cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Checks the config and secrets, asks Slack who the bot is, joins the reply
/// consumers, subscribes to deltas, and opens the sockets / the HTTP endpoint.
pub async fn start(
    cfg: &Config,
    deps: Deps,
    secrets: SlackSecrets,
    shutdown: CancellationToken,
) -> Result<BridgeHandle, BridgeError> {
    let sc = &cfg.slack;
    if sc.teams.is_empty() {
        return Err(BridgeError::Config("slack.teams is empty: map at least one workspace to a tenant".into()));
    }
    if secrets.bot_token.is_empty() {
        return Err(BridgeError::Config(format!("no bot token: set {}", sc.bot_token_env)));
    }
    if sc.socket_connections > 0 && secrets.app_token.is_empty() {
        return Err(BridgeError::Config(format!(
            "Socket Mode needs an app-level token: set {} (or slack.socket_connections = 0)",
            sc.app_token_env
        )));
    }
    if !sc.http_addr.is_empty() && secrets.signing_secret.is_empty() {
        return Err(BridgeError::Config(format!(
            "the Events API endpoint needs the signing secret: set {}",
            sc.signing_secret_env
        )));
    }
    if sc.socket_connections == 0 && sc.http_addr.is_empty() {
        return Err(BridgeError::Config("neither Socket Mode nor slack.http_addr is configured".into()));
    }
    let signer = clawhive_core::signing::signer_from_config(&cfg.security).map_err(BridgeError::Config)?;
    let web = SlackWeb::new(&sc.api_base_url, secrets.bot_token.clone(), secrets.app_token.clone())?;
    let (bot_user, bot_team) = web.auth_test().await?;
    tracing::info!(bot_user = %bot_user, team = %bot_team, "Slack bot identified.");
    let envelopes = Envelopes::new(deps.bus.clone(), Subjects::new(&cfg.bus.namespace));
    let bridge = Arc::new(Bridge {
        cfg: cfg.clone(),
        web,
        envelopes,
        signer,
        deps,
        bot_user: bot_user.clone(),
        streams: Streams::default(),
    });
    crate::replies::spawn(bridge.clone(), shutdown.clone()).await?;
    crate::stream::spawn(bridge.clone(), shutdown.clone()).await?;

    let mut http_addr = None;
    let mut http_task = None;
    if !sc.http_addr.is_empty() {
        let listener = tokio::net::TcpListener::bind(&sc.http_addr)
            .await
            .map_err(|e| BridgeError::Bind { addr: sc.http_addr.clone(), reason: e.to_string() })?;
        let addr = listener
            .local_addr()
            .map_err(|e| BridgeError::Bind { addr: sc.http_addr.clone(), reason: e.to_string() })?;
        let app = crate::http::router(bridge.clone(), &secrets.signing_secret);
        let stop = shutdown.clone();
        http_task = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "The Events API server failed.");
            }
        }));
        tracing::info!(%addr, "Events API endpoint listening on /slack/events.");
        http_addr = Some(addr);
    }
    let sockets = (sc.socket_connections > 0).then(|| {
        let s = Sockets::new(bridge.clone());
        s.spawn(shutdown.clone());
        s
    });
    let readiness = Readiness { sockets, http: http_addr.is_some() };
    let task = tokio::spawn(async move {
        shutdown.cancelled().await;
        if let Some(t) = http_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        tracing::info!("Slack bridge stopped.");
    });
    tracing::info!("slack bridge started");
    Ok(BridgeHandle { http_addr, bot_user, readiness, task })
}

/// Connects NATS and Redis from `cfg`, reads the Slack secrets from the
/// environment, and runs until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), BridgeError> {
    let bus = NatsBus::connect(&cfg.bus).await?;
    bus.ensure_topology().await?;
    let store = Arc::new(RedisStore::connect(&cfg.store).await?);
    let deps = Deps {
        bus: Arc::new(bus),
        sessions: store.clone(),
        identity: store.clone(),
        pairings: store.clone(),
        markers: store,
    };
    let handle = start(&cfg, deps, SlackSecrets::from_env(&cfg.slack), shutdown).await?;
    handle.wait().await;
    Ok(())
}

/// [`run`] for a pod: keeps retrying NATS and Redis while unready (instead of
/// exiting), then reports `nats`, `redis` and `slack` (a socket open or the
/// Events API served) on the admin server's `readiness`.
pub async fn run_observed(
    cfg: Config,
    shutdown: CancellationToken,
    readiness: clawhive_telemetry::Readiness,
) -> Result<(), BridgeError> {
    use clawhive_telemetry::connect_observed;
    let Some(bus) = clawhive_bus::nats::NatsBus::connect_observed(&cfg.bus, &shutdown, &readiness).await else {
        return Ok(());
    };
    let redis = || RedisStore::connect(&cfg.store);
    let health = |s: Arc<clawhive_store::RedisStore>| async move { clawhive_store::SessionStore::health(&*s).await };
    let Some(store) = connect_observed("redis", &shutdown, &readiness, redis, health).await else {
        return Ok(());
    };
    let deps = Deps { bus, sessions: store.clone(), identity: store.clone(), pairings: store.clone(), markers: store };
    let handle = start(&cfg, deps, SlackSecrets::from_env(&cfg.slack), shutdown).await?;
    let slack = handle.readiness();
    readiness.set_check("slack", move || {
        let slack = slack.clone();
        async move { if slack.is_ready() { Ok(()) } else { Err("no Socket Mode connection open") } }
    });
    handle.wait().await;
    Ok(())
}
