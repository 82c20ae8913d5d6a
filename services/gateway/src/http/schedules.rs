//! `/v1/schedules`: the caller's scheduled jobs over HTTP.
//!
//! | method | path | body |
//! |---|---|---|
//! | POST | `/v1/schedules` | `{"schedule": {"kind": "cron", "expr": "0 7 * * 1-5", "timezone": "Europe/Paris"}, "prompt": "…", "agent_id"?, "delivery"?, "paused"?}` |
//! | GET | `/v1/schedules` (`?all=true`: admins, the whole tenant) | |
//! | GET, PATCH, DELETE | `/v1/schedules/{id}` | PATCH: any of `schedule`, `prompt`, `agent_id`, `delivery` |
//! | POST | `/v1/schedules/{id}/pause`, `/v1/schedules/{id}/resume` | |
//!
//! Schedules are `{"kind":"cron","expr","timezone"?}`, `{"kind":"every","interval_secs"}`
//! or `{"kind":"at","at_unix_ms"}`; deliveries `{"kind":"session"}`,
//! `{"kind":"slack_dm","team_id","user_id"}` or `{"kind":"slack_channel","team_id","channel_id","user_id"}`.

use super::extract::{ApiError, ApiJson, Authed};
use crate::schedules::jobs_of;
use crate::state::Gateway;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clawhive_core::ClawError;
use clawhive_core::schedule::Job;
use clawhive_store::{JobEdit, NewJob};
use serde_json::{Value, json};
use std::sync::Arc;

/// A job as the HTTP API shows it (no internal bookkeeping).
pub fn job_json(j: &Job) -> Value {
    json!({
        "job_id": j.id,
        "tenant_id": j.tenant,
        "owner_id": j.owner,
        "schedule": j.schedule,
        "prompt": j.prompt,
        "agent_id": j.agent,
        "delivery": j.delivery,
        "enabled": j.enabled,
        "paused_reason": j.paused_reason,
        "next_run_unix_ms": j.next_run_unix_ms,
        "last_run": j.last_run.as_ref().map(|r| json!({
            "slot_unix_ms": r.slot_unix_ms,
            "at_unix_ms": r.at_unix_ms,
            "outcome": r.outcome.as_str(),
            "detail": r.detail,
        })),
        "consecutive_failures": j.consecutive_failures,
        "session_id": j.session_id(),
        "created_unix_ms": j.created_unix_ms,
    })
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    ApiJson(new): ApiJson<NewJob>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let job = jobs_of(&gw)?.create(&who, new).await?;
    Ok((StatusCode::CREATED, Json(job_json(&job))))
}

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ClawError::invalid(format!("invalid query: {}", e.body_text())))?;
    let jobs = jobs_of(&gw)?.list(&who, q.all).await?;
    Ok(Json(json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()})))
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&jobs_of(&gw)?.get(&who, &id).await?)))
}

pub async fn update(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
    ApiJson(edit): ApiJson<JobEdit>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&jobs_of(&gw)?.update(&who, &id, edit).await?)))
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    jobs_of(&gw)?.delete(&who, &id).await?;
    Ok(Json(json!({"deleted": id})))
}

pub async fn pause(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&jobs_of(&gw)?.pause(&who, &id).await?)))
}

pub async fn resume(
    State(gw): State<Arc<Gateway>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&jobs_of(&gw)?.resume(&who, &id).await?)))
}
