//! `schedule`: the calling user's scheduled jobs, from chat ("remind me every
//! Monday at 9 to review PRs"). Acts only as the verified caller
//! ([`ToolContext::principal`]), through the same rules as the API
//! ([`clawhive_store::Jobs`]): own jobs only, checked schedules, the tenant's
//! minimum interval. Offered and checked by policy like any tool.

use super::{Tool, ToolContext, ToolResult};
use async_trait::async_trait;
use clawhive_core::chat::ToolSpec;
use clawhive_core::schedule::{Delivery, Job, Schedule, rfc3339};
use clawhive_store::{Jobs, NewJob};

pub struct ScheduleTool {
    jobs: Jobs,
}

impl ScheduleTool {
    pub fn new(jobs: Jobs) -> Self {
        Self { jobs }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    action: String,
    #[serde(default)]
    job_id: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    every_secs: Option<u64>,
    /// RFC 3339, e.g. 2026-03-02T09:00:00+01:00.
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    delivery: Option<Delivery>,
}

fn describe(s: &Schedule) -> String {
    match s {
        Schedule::Cron { expr, timezone } => format!("cron \"{expr}\" ({timezone})"),
        Schedule::Every { interval_secs } => format!("every {interval_secs} s"),
        Schedule::At { at_unix_ms } => format!("once at {}", rfc3339(*at_unix_ms)),
    }
}

fn line(j: &Job) -> String {
    let next = j.next_run_unix_ms.map(rfc3339).unwrap_or_else(|| "none".into());
    let state = if j.enabled { "active".to_string() } else { format!("paused {}", j.paused_reason).trim().to_string() };
    format!("{} — {} — {state} — next run {next} — prompt: {}", j.id, describe(&j.schedule), j.prompt)
}

/// Where a job created from chat reports by default: back to the Slack DM it
/// was asked in (the bridge names DM sessions `slack-dm:<team>:<user>`), else the session.
fn default_delivery(session_id: &str) -> Option<Delivery> {
    let rest = session_id.strip_prefix("slack-dm:")?;
    let (team_id, user_id) = rest.split_once(':')?;
    Some(Delivery::SlackDm { team_id: team_id.to_string(), user_id: user_id.to_string() })
}

fn schedule_of(a: &Args) -> Result<Schedule, String> {
    match (&a.cron, a.every_secs, &a.at) {
        (Some(expr), None, None) => {
            Ok(Schedule::Cron { expr: expr.clone(), timezone: a.timezone.clone().unwrap_or_default() })
        }
        (None, Some(secs), None) => Ok(Schedule::Every { interval_secs: secs }),
        (None, None, Some(at)) => chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| Schedule::At { at_unix_ms: t.timestamp_millis() })
            .map_err(|e| format!("at {at:?} is not an RFC 3339 time such as 2026-03-02T09:00:00+01:00: {e}")),
        _ => Err("give exactly one of cron (with an optional timezone), every_secs or at".into()),
    }
}

#[async_trait]
impl Tool for ScheduleTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "schedule".into(),
            description: "Manage the user's scheduled jobs: a prompt run on a schedule, whose answer is sent to the \
                user. action=create needs prompt and one of cron (5 fields, e.g. \"0 9 * * 1\" with an IANA \
                timezone), every_secs, or at (RFC 3339). action=list shows the jobs; delete, pause and resume need job_id."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["create", "list", "delete", "pause", "resume"]},
                    "job_id": {"type": "string"},
                    "prompt": {"type": "string", "description": "What to do at each run"},
                    "cron": {"type": "string", "description": "5-field cron, e.g. 0 9 * * 1 for Mondays at 9:00"},
                    "timezone": {"type": "string", "description": "IANA time zone for cron, e.g. Europe/Paris"},
                    "every_secs": {"type": "integer", "minimum": 1},
                    "at": {"type": "string", "description": "RFC 3339 time for a one-off run"},
                    "agent_id": {"type": "string"}
                },
                "required": ["action"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, _arguments: &str) -> ToolResult {
        Err("the schedule tool needs the calling user; it cannot run without one".into())
    }

    async fn call_as(&self, ctx: &ToolContext<'_>, arguments: &str) -> ToolResult {
        let a: Args = serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments })
            .map_err(|e| format!("invalid arguments: {e}"))?;
        let who = ctx.principal;
        let id = || a.job_id.clone().ok_or_else(|| format!("action {} needs job_id", a.action));
        match a.action.as_str() {
            "create" => {
                let new = NewJob {
                    schedule: Some(schedule_of(&a)?),
                    prompt: a.prompt.clone().unwrap_or_default(),
                    agent_id: a.agent_id.clone().unwrap_or_else(|| ctx.agent.to_string()),
                    delivery: a.delivery.clone().or_else(|| default_delivery(ctx.session_id)),
                    paused: false,
                };
                let job = self.jobs.create(who, new).await.map_err(|e| e.message)?;
                Ok(format!("Created job {}", line(&job)))
            }
            "list" => {
                let jobs = self.jobs.list(who, false).await.map_err(|e| e.message)?;
                if jobs.is_empty() {
                    return Ok("No scheduled jobs.".into());
                }
                Ok(jobs.iter().map(line).collect::<Vec<_>>().join("\n"))
            }
            "delete" => {
                let id = id()?;
                self.jobs.delete(who, &id).await.map_err(|e| e.message)?;
                Ok(format!("Deleted job {id}."))
            }
            "pause" => Ok(format!("Paused job {}", line(&self.jobs.pause(who, &id()?).await.map_err(|e| e.message)?))),
            "resume" => {
                Ok(format!("Resumed job {}", line(&self.jobs.resume(who, &id()?).await.map_err(|e| e.message)?)))
            }
            other => Err(format!("unknown action {other:?}; use create, list, delete, pause or resume")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_asked_for_in_a_slack_dm_report_to_that_dm() {
        assert_eq!(
            default_delivery("slack-dm:T1:U2"),
            Some(Delivery::SlackDm { team_id: "T1".into(), user_id: "U2".into() })
        );
        assert_eq!(default_delivery("shared:slack:T1:C1:5-5"), None);
        assert_eq!(default_delivery("api-session"), None);
    }

    #[test]
    fn one_schedule_kind_is_required() {
        let args = |json: &str| serde_json::from_str::<Args>(json).unwrap();
        assert!(schedule_of(&args(r#"{"action":"create","cron":"0 9 * * 1","every_secs":60}"#)).is_err());
        assert!(schedule_of(&args(r#"{"action":"create"}"#)).is_err());
        let e = schedule_of(&args(r#"{"action":"create","at":"tomorrow"}"#)).unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        assert_eq!(
            schedule_of(&args(r#"{"action":"create","at":"2030-01-01T09:00:00+01:00"}"#)).unwrap(),
            Schedule::At { at_unix_ms: 1_893_484_800_000 }
        );
        assert!(serde_json::from_str::<Args>(r#"{"action":"create","colour":"red"}"#).is_err());
    }
}
