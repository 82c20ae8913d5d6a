//! Extractors whose rejections are JSON errors: `{"error":{"code","message"}}`.

use crate::state::Gateway;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clawhive_core::{ClawError, Principal};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// An error response. The status comes from the [`ErrorCode`](clawhive_core::ErrorCode)
/// except for transport-level failures (413, 405) that have no code of their own.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found_route() -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such route".into() }
    }
    pub fn method_not_allowed() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "invalid_argument",
            message: "method not allowed on this route".into(),
        }
    }
}

impl From<ClawError> for ApiError {
    fn from(e: ClawError) -> Self {
        Self {
            status: StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: e.code.as_str(),
            message: e.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        clawhive_telemetry::metrics::error("gateway", self.code);
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The authenticated caller.
pub struct Authed(pub Principal);

impl FromRequestParts<Arc<Gateway>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        gw.authenticate(header).await.map(Authed).map_err(ApiError::from)
    }
}

/// A JSON body; wrong content type, unreadable or oversized bodies and bad
/// JSON are all JSON errors naming the reason.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Gateway>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ClawError::invalid("Content-Type must be application/json").into());
        }
        let bytes = Bytes::from_request(req, gw).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "invalid_argument",
                    message: format!(
                        "payload too large: the request body exceeds {} bytes",
                        gw.cfg.gateway.max_body_bytes
                    ),
                }
            } else {
                ClawError::invalid(format!("cannot read the request body: {}", rejection.body_text())).into()
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ClawError::invalid(format!("invalid JSON body: {e}")).into())
    }
}
