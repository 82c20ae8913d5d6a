//! A configured HTTP tool (`[[http_tools]]`): calls one endpoint for the principal,
//! authenticated with a named secret resolved inside the tool. The secret goes into
//! the request header only; the response the model sees has any echo of it redacted,
//! and errors never quote it.

use super::{Tool, ToolContext, ToolResult};
use async_trait::async_trait;
use clawhive_core::chat::ToolSpec;
use clawhive_core::http_tool::HttpToolConfig;
use std::time::Duration;

pub struct HttpTool {
    cfg: HttpToolConfig,
    client: reqwest::Client,
}

impl HttpTool {
    pub fn new(cfg: HttpToolConfig, client: reqwest::Client) -> Self {
        Self { cfg, client }
    }

    /// The model's arguments as query parameters: a flat JSON object of scalars.
    fn query(arguments: &str) -> Result<Vec<(String, String)>, String> {
        let text = if arguments.trim().is_empty() { "{}" } else { arguments };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
        let obj = value.as_object().ok_or("arguments must be a JSON object")?;
        obj.iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Ok((k.clone(), n.to_string())),
                serde_json::Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(format!("argument {k} must be a string, number or boolean")),
            })
            .collect()
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" …[truncated]");
    }
    text
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.cfg.name.clone(),
            description: if self.cfg.description.is_empty() {
                format!("Calls {} for the user.", self.cfg.name)
            } else {
                self.cfg.description.clone()
            },
            parameters: serde_json::json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        }
    }

    async fn call(&self, _arguments: &str) -> ToolResult {
        Err("this tool needs a caller".into())
    }

    async fn call_as(&self, ctx: &ToolContext<'_>, arguments: &str) -> ToolResult {
        let query = Self::query(arguments)?;
        let secret = if self.cfg.secret.is_empty() { None } else { Some(ctx.secrets.resolve(&self.cfg.secret).await?) };
        let mut url =
            reqwest::Url::parse(&self.cfg.url).map_err(|e| format!("{} has a bad url: {e}", self.cfg.name))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &query {
                pairs.append_pair(k, v);
            }
        }
        let mut req = self.client.get(url).timeout(Duration::from_millis(self.cfg.timeout_ms));
        if let Some(s) = &secret {
            req = req.bearer_auth(s.expose());
        }
        // reqwest errors may quote the URL, never headers; still, redact below.
        let redact = |text: String| match &secret {
            Some(s) if !s.expose().is_empty() => text.replace(s.expose(), "[redacted]"),
            _ => text,
        };
        let resp = req.send().await.map_err(|e| redact(format!("{} is unreachable: {e}", self.cfg.name)))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| redact(format!("reading the response failed: {e}")))?;
        let body = truncate(redact(body), self.cfg.max_response_bytes);
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{} answered HTTP {}: {body}", self.cfg.name, status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_query_parameters() {
        assert_eq!(HttpTool::query(r#"{"q":"rust","n":3,"x":true}"#).unwrap().len(), 3);
        assert!(HttpTool::query("").unwrap().is_empty());
        assert!(HttpTool::query("[1]").is_err());
        assert!(HttpTool::query(r#"{"a":{"b":1}}"#).is_err());
        assert!(HttpTool::query("{not json").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo".into(), 2), "h …[truncated]");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
