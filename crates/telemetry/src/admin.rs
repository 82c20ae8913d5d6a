//! The admin HTTP server every service runs on `telemetry.admin_addr`:
//! `/healthz` (the process answers), `/readyz` (the [`Readiness`] contract),
//! `/metrics` (Prometheus text).
//!
//! It outlives the service's shutdown token on purpose: while a pod drains,
//! `/readyz` answers 503 `draining` and `/metrics` stays scrapeable until the
//! process exits ([`Admin::stop`]).

use crate::readiness::Readiness;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clawhive_core::config::TelemetryConfig;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on telemetry.admin_addr {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

/// A running (or, with no `admin_addr`, absent) admin server.
pub struct Admin {
    readiness: Readiness,
    addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Admin {
    /// Starts the admin server for `service` on `cfg.admin_addr` (nothing when
    /// empty) with `checks` declared; readiness turns to draining when
    /// `shutdown` is cancelled.
    pub async fn start(
        cfg: &TelemetryConfig,
        service: &str,
        checks: &[&str],
        shutdown: &CancellationToken,
    ) -> Result<Admin, AdminError> {
        crate::metrics::register_service(service);
        let readiness = Readiness::new(checks);
        let drain = readiness.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            drain.set_draining();
        });
        let stop = CancellationToken::new();
        if cfg.admin_addr.is_empty() {
            return Ok(Admin { readiness, addr: None, stop, task: None });
        }
        let bind_err = |e: std::io::Error| AdminError::Bind { addr: cfg.admin_addr.clone(), reason: e.to_string() };
        let listener = tokio::net::TcpListener::bind(&cfg.admin_addr).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let app = router(readiness.clone());
        let until = stop.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await {
                tracing::warn!(error = %e, "The admin server failed.");
            }
        });
        tracing::info!(%addr, service, "Admin server listening (/healthz, /readyz, /metrics).");
        Ok(Admin { readiness, addr: Some(addr), stop, task: Some(task) })
    }

    /// The readiness this server reports; the service sets its checks on it.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Where it listens (`None` when disabled).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stops serving; call when the service has finished draining.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}

/// The admin routes, for embedding or tests.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (ready, body) = readiness.report().await;
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::encode())
}
