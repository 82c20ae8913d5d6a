//! `current_time`: the current date and time in an IANA time zone.

use super::{Tool, ToolResult};
use async_trait::async_trait;
use clawhive_core::chat::ToolSpec;

pub struct CurrentTime;

#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    timezone: Option<String>,
}

#[async_trait]
impl Tool for CurrentTime {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "current_time".into(),
            description: "Current date and time in an IANA time zone such as Europe/Paris (UTC if omitted).".into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA time zone, e.g. America/New_York"}},
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, arguments: &str) -> ToolResult {
        let args: Args = if arguments.trim().is_empty() {
            Args { timezone: None }
        } else {
            serde_json::from_str(arguments).map_err(|e| format!("invalid arguments: {e}"))?
        };
        let name = args.timezone.unwrap_or_else(|| "UTC".into());
        let tz: chrono_tz::Tz =
            name.parse().map_err(|_| format!("unknown time zone {name:?}; use an IANA name like Europe/Paris"))?;
        let now = chrono::Utc::now().with_timezone(&tz);
        Ok(format!("{} ({}, {})", now.format("%Y-%m-%dT%H:%M:%S%:z"), tz.name(), now.format("%A")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_the_zone_and_rejects_unknown_zones() {
        let out = CurrentTime.call(r#"{"timezone":"Asia/Kolkata"}"#).await.unwrap();
        assert!(out.contains("+05:30") && out.contains("Asia/Kolkata"), "{out}");
        assert!(CurrentTime.call(r#"{"timezone":"Mars/Base"}"#).await.unwrap_err().contains("unknown time zone"));
        assert!(CurrentTime.call("{not json").await.unwrap_err().contains("invalid arguments"));
        assert!(CurrentTime.call("").await.unwrap().contains("UTC"));
    }
}
