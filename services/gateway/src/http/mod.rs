//! The HTTP API (axum): JSON and SSE chat, sessions, health.
//!
//! - [`extract`]: the JSON error body, the bearer-token and JSON extractors
//!   (every rejection is a JSON error, never axum's plain text).
//! - [`chat`]: `POST /v1/sessions/{id}/messages`, JSON or `text/event-stream`.
//! - [`sessions`]: list, get, reset.
//! - [`schedules`]: `/v1/schedules` CRUD, pause, resume.
//! - [`health`]: `/healthz` (alive) and `/readyz` (bus and store reachable).

pub mod chat;
pub mod extract;
pub mod health;
pub mod schedules;
pub mod sessions;

use crate::state::Gateway;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use extract::ApiError;
use std::sync::Arc;

pub fn router(gw: Arc<Gateway>) -> Router {
    let limit = gw.cfg.gateway.max_body_bytes;
    Router::new()
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::get))
        .route("/v1/sessions/{id}/reset", post(sessions::reset))
        .route("/v1/sessions/{id}/messages", post(chat::post_message))
        .route("/v1/schedules", post(schedules::create).get(schedules::list))
        .route("/v1/schedules/{id}", get(schedules::get).patch(schedules::update).delete(schedules::delete))
        .route("/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(gw)
}
