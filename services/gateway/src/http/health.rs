//! `/healthz`: the process answers. `/readyz`: the bus and the store answer too.

use crate::state::Gateway;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn check<E: std::fmt::Display>(fut: impl Future<Output = Result<(), E>>) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    }
}

pub async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Value>) {
    let (bus, store) = tokio::join!(check(gw.bus.health()), check(gw.store.health()));
    let ready = bus.is_ok() && store.is_ok();
    let text = |r: &Result<(), String>| r.as_ref().err().cloned().unwrap_or_else(|| "ok".into());
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"bus": text(&bus), "store": text(&store)},
    });
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
