//! Anthropic Messages: the request body and the decoder of its event stream.
//!
//! The wire format differs from ours in ways that matter: system prompts go to
//! the top-level `system`; tool results are `user` messages with `tool_result`
//! blocks; assistant tool calls are `tool_use` blocks; two messages in a row
//! must not share a role (we merge them); `max_tokens` is required.

use crate::error::LlmError;
use crate::sse::SseEvent;
use crate::stream::{Decoder, Flow, non_empty_args};
use crate::types::{ChatRequest, ChatResponse};
use clawhive_core::chat::{Role, ToolCall, Usage};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 1024;

pub fn request_body(model: &str, req: &ChatRequest, default_max_tokens: Option<u32>) -> Result<Value, LlmError> {
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role {
            Role::System => {
                if !m.content.is_empty() {
                    system.push(m.content.as_str());
                }
                continue;
            }
            Role::User => ("user", text_block(&m.content).into_iter().collect()),
            Role::Assistant => {
                let mut blocks: Vec<Value> = text_block(&m.content).into_iter().collect();
                blocks.extend(m.tool_calls.iter().map(
                    |c| json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments) }),
                ));
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m
                    .tool_call_id
                    .as_deref()
                    .ok_or_else(|| LlmError::InvalidRequest("a tool message has no tool_call_id".into()))?;
                ("user", vec![json!({ "type": "tool_result", "tool_use_id": id, "content": m.content })])
            }
        };
        if blocks.is_empty() {
            // Anthropic rejects empty text blocks and empty messages.
            continue;
        }
        match messages.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let messages: Vec<Value> =
        messages.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect();
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens.or(default_max_tokens).unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                let schema = if t.parameters.is_object() {
                    t.parameters.clone()
                } else {
                    json!({ "type": "object", "properties": {} })
                };
                json!({ "name": t.name, "description": t.description, "input_schema": schema })
            })
            .collect();
    }
    if let Some(t) = req.temperature {
        body["temperature"] = t.into();
    }
    Ok(body)
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// `tool_use.input` must be an object; a model that once produced broken
/// arguments must not make the whole history unsendable.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, `content_block_stop` and anything added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `text` (its initial text is always empty) and `thinking` blocks.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    cache_creation_input_tokens: Option<u32>,
    cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    fn input(&self) -> Option<u32> {
        let parts = [self.input_tokens, self.cache_creation_input_tokens, self.cache_read_input_tokens];
        parts.iter().any(Option::is_some).then(|| parts.iter().flatten().fold(0u32, |a, b| a.saturating_add(*b)))
    }
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

struct ToolBlock {
    id: String,
    name: String,
    input: Value,
    json: String,
}

#[derive(Default)]
pub struct AnthropicDecoder {
    text: String,
    tools: BTreeMap<usize, ToolBlock>,
    usage: Usage,
    stop_reason: Option<String>,
    done: bool,
}

impl Decoder for AnthropicDecoder {
    fn event(&mut self, ev: &SseEvent, emit: &dyn Fn(&str)) -> Result<Flow, LlmError> {
        if ev.data.trim().is_empty() {
            return Ok(Flow::More);
        }
        let event: Event = serde_json::from_str(&ev.data)
            .map_err(|e| LlmError::Protocol(format!("bad Anthropic stream event {:?}: {e}", ev.event)))?;
        match event {
            Event::MessageStart { message } => {
                if let Some(n) = message.usage.as_ref().and_then(WireUsage::input) {
                    self.usage.input_tokens = n;
                }
            }
            Event::ContentBlockStart { index, content_block: Block::ToolUse { id, name, input } } => {
                self.tools.insert(index, ToolBlock { id, name, input, json: String::new() });
            }
            Event::ContentBlockStart { .. } => {}
            Event::ContentBlockDelta { delta: BlockDelta::TextDelta { text }, .. } => {
                if !text.is_empty() {
                    emit(&text);
                    self.text.push_str(&text);
                }
            }
            Event::ContentBlockDelta { index, delta: BlockDelta::InputJsonDelta { partial_json } } => {
                let block = self.tools.get_mut(&index).ok_or_else(|| {
                    LlmError::Protocol(format!("input_json_delta for block {index}, which is not a tool_use"))
                })?;
                block.json.push_str(&partial_json);
            }
            Event::ContentBlockDelta { .. } => {}
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    if let Some(n) = u.output_tokens {
                        self.usage.output_tokens = n;
                    }
                    if let Some(n) = u.input() {
                        self.usage.input_tokens = n;
                    }
                }
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(reason);
                }
            }
            Event::MessageStop => {
                self.done = true;
                return Ok(Flow::Done);
            }
            Event::Error { error } => {
                let retryable = matches!(error.kind.as_str(), "overloaded_error" | "api_error" | "rate_limit_error");
                return Err(LlmError::Stream { message: format!("{}: {}", error.kind, error.message), retryable });
            }
            Event::Other => {}
        }
        Ok(Flow::More)
    }

    fn finish(self: Box<Self>) -> Result<ChatResponse, LlmError> {
        if !self.done && self.stop_reason.is_none() {
            return Err(LlmError::Transport("the stream ended before the answer was complete".into()));
        }
        let tool_calls = self
            .tools
            .into_values()
            .map(|b| {
                let arguments =
                    if b.json.trim().is_empty() && b.input.is_object() { b.input.to_string() } else { b.json };
                ToolCall { id: b.id, name: b.name, arguments: non_empty_args(arguments) }
            })
            .collect();
        let finish_reason = match self.stop_reason.as_deref() {
            None | Some("end_turn" | "stop_sequence") => "stop".to_string(),
            Some("tool_use") => "tool_calls".into(),
            Some("max_tokens") => "length".into(),
            Some(other) => other.into(),
        };
        Ok(ChatResponse { text: self.text, tool_calls, usage: self.usage, model: String::new(), finish_reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::chat::{Message, ToolSpec};
    use std::cell::RefCell;

    fn feed(events: &[&str]) -> (Result<ChatResponse, LlmError>, Vec<String>) {
        let deltas = RefCell::new(Vec::new());
        let mut d = Box::new(AnthropicDecoder::default());
        for data in events {
            let ev = SseEvent { event: "x".into(), data: data.to_string() };
            match d.event(&ev, &|s| deltas.borrow_mut().push(s.to_string())) {
                Ok(Flow::Done) => break,
                Ok(Flow::More) => {}
                Err(e) => return (Err(e), deltas.into_inner()),
            }
        }
        (d.finish(), deltas.into_inner())
    }

    #[test]
    fn text_tool_use_and_usage() {
        let (r, deltas) = feed(&[
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"cache_read_input_tokens":2,"output_tokens":1}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me "}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"x\"}"}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        let r = r.unwrap();
        assert_eq!(deltas, ["Let me ", "check."]);
        assert_eq!(r.text, "Let me check.");
        assert_eq!(r.usage, Usage { input_tokens: 12, output_tokens: 15 });
        assert_eq!(r.finish_reason, "tool_calls");
        let calls: Vec<_> =
            r.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("toolu_1", "get", "{\"q\":\"x\"}"), ("toolu_2", "now", "{}")]);
    }

    #[test]
    fn error_event_and_truncation() {
        let (r, _) = feed(&[r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#]);
        let e = r.unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("Overloaded"), "{e}");
        let (r, _) = feed(&[r#"{"type":"error","error":{"type":"invalid_request_error","message":"no"}}"#]);
        assert!(!r.unwrap_err().is_retryable());
        let (r, _) = feed(&[r#"{"type":"message_start","message":{"usage":{"input_tokens":1}}}"#]);
        assert!(matches!(r.unwrap_err(), LlmError::Transport(_)));
    }

    #[test]
    fn history_is_mapped_and_merged() {
        let call = ToolCall { id: "toolu_1".into(), name: "get".into(), arguments: "{\"q\":1}".into() };
        let mut asst = Message::assistant("checking");
        asst.tool_calls.push(call.clone());
        let req = ChatRequest {
            messages: vec![
                Message::system("be brief"),
                Message::user("a"),
                Message::user("b"),
                asst,
                Message::tool_result(&call, "42"),
                Message::user("thanks"),
                Message::system("late rule"),
            ],
            tools: vec![ToolSpec { name: "get".into(), description: "d".into(), parameters: Value::Null }],
            ..Default::default()
        };
        let body = request_body("claude", &req, None).unwrap();
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["system"], "be brief\n\nlate rule");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        let expected = json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                {"type": "text", "text": "thanks"}
            ]},
        ]);
        assert_eq!(body["messages"], expected);
        let with_max = ChatRequest { max_tokens: Some(5), ..req };
        assert_eq!(request_body("claude", &with_max, Some(77)).unwrap()["max_tokens"], 5);
    }
}
