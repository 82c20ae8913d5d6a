//! OpenAI chat completions (also OpenRouter, vLLM, Ollama, …): the request
//! body and the decoder of its streamed chunks.
//!
//! Tool calls stream as fragments keyed by `index`: the first carries the id
//! and the name, the arguments are concatenated across fragments.

use crate::error::LlmError;
use crate::sse::SseEvent;
use crate::stream::{Decoder, Flow, non_empty_args};
use crate::types::{ChatRequest, ChatResponse};
use clawhive_core::chat::{Message, Role, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The request as a JSON value, for tests; the wire uses [`request_json`].
#[cfg(test)]
pub fn request_body(model: &str, req: &ChatRequest, default_max_tokens: Option<u32>) -> Result<Value, LlmError> {
    serde_json::to_value(wire_request(model, req, default_max_tokens)?)
        .map_err(|e| LlmError::InvalidRequest(format!("cannot encode the request: {e}")))
}

/// The request body as JSON bytes, serialized straight from the messages
/// (no intermediate `serde_json::Value`: the history is the bulk of a turn's request).
pub fn request_json(model: &str, req: &ChatRequest, default_max_tokens: Option<u32>) -> Result<Vec<u8>, LlmError> {
    serde_json::to_vec(&wire_request(model, req, default_max_tokens)?)
        .map_err(|e| LlmError::InvalidRequest(format!("cannot encode the request: {e}")))
}

fn wire_request<'a>(
    model: &'a str,
    req: &'a ChatRequest,
    default_max_tokens: Option<u32>,
) -> Result<WireRequest<'a>, LlmError> {
    Ok(WireRequest {
        model,
        messages: req.messages.iter().map(wire_message).collect::<Result<Vec<_>, _>>()?,
        stream: true,
        stream_options: StreamOptions { include_usage: true },
        tools: req
            .tools
            .iter()
            .map(|t| WireTool {
                kind: "function",
                function: WireFunction { name: &t.name, description: &t.description, parameters: &t.parameters },
            })
            .collect(),
        max_tokens: req.max_tokens.or(default_max_tokens),
        temperature: req.temperature,
    })
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

/// `content` is `null` only for an assistant message that just calls tools.
#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCallFunction<'a>,
}

#[derive(Serialize)]
struct WireCallFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn wire_message(m: &Message) -> Result<WireMessage<'_>, LlmError> {
    let plain = |role| WireMessage { role, content: Some(&m.content), tool_calls: Vec::new(), tool_call_id: None };
    Ok(match m.role {
        Role::System | Role::User => plain(m.role.as_str()),
        Role::Assistant if m.tool_calls.is_empty() => plain("assistant"),
        Role::Assistant => WireMessage {
            role: "assistant",
            content: (!m.content.is_empty()).then_some(m.content.as_str()),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| WireCall {
                    id: &c.id,
                    kind: "function",
                    function: WireCallFunction { name: &c.name, arguments: &c.arguments },
                })
                .collect(),
            tool_call_id: None,
        },
        Role::Tool => {
            let id = m
                .tool_call_id
                .as_deref()
                .ok_or_else(|| LlmError::InvalidRequest("a tool message has no tool_call_id".into()))?;
            WireMessage { role: "tool", content: Some(&m.content), tool_calls: Vec::new(), tool_call_id: Some(id) }
        }
    })
}

#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<usize>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: String,
    code: Option<Value>,
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
pub struct OpenAiDecoder {
    text: String,
    calls: BTreeMap<usize, PartialCall>,
    usage: Usage,
    finish_reason: Option<String>,
    done: bool,
}

impl Decoder for OpenAiDecoder {
    fn event(&mut self, ev: &SseEvent, emit: &dyn Fn(&str)) -> Result<Flow, LlmError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::More);
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| LlmError::Protocol(format!("bad chat completion chunk: {e}")))?;
        if let Some(err) = chunk.error {
            // OpenRouter reports upstream failures this way after a 200.
            let code = err.code.as_ref().and_then(Value::as_u64);
            let retryable = !matches!(code, Some(c) if (400..500).contains(&c) && c != 408 && c != 429);
            return Err(LlmError::Stream { message: err.message, retryable });
        }
        if let Some(u) = chunk.usage {
            self.usage = Usage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens };
        }
        for choice in chunk.choices.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    emit(&text);
                    self.text.push_str(&text);
                }
                for (pos, frag) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    let call = self.calls.entry(frag.index.unwrap_or(pos)).or_default();
                    if let Some(id) = frag.id.filter(|s| !s.is_empty()) {
                        call.id = id;
                    }
                    if let Some(f) = frag.function {
                        if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                            call.name = name;
                        }
                        call.arguments.push_str(f.arguments.as_deref().unwrap_or(""));
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(Flow::More)
    }

    fn finish(self: Box<Self>) -> Result<ChatResponse, LlmError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(LlmError::Transport("the stream ended before the answer was complete".into()));
        }
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for (index, c) in self.calls {
            if c.name.is_empty() {
                return Err(LlmError::Protocol(format!("tool call #{index} has no function name")));
            }
            let id = if c.id.is_empty() { format!("call_{index}") } else { c.id };
            tool_calls.push(ToolCall { id, name: c.name, arguments: non_empty_args(c.arguments) });
        }
        let finish_reason =
            self.finish_reason.unwrap_or_else(|| if tool_calls.is_empty() { "stop" } else { "tool_calls" }.into());
        Ok(ChatResponse { text: self.text, tool_calls, usage: self.usage, model: String::new(), finish_reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::chat::ToolSpec;
    use serde_json::json;
    use std::cell::RefCell;

    fn feed(lines: &[&str]) -> (Result<ChatResponse, LlmError>, Vec<String>) {
        let deltas = RefCell::new(Vec::new());
        let mut d = Box::new(OpenAiDecoder::default());
        for l in lines {
            let ev = SseEvent { event: String::new(), data: l.to_string() };
            match d.event(&ev, &|s| deltas.borrow_mut().push(s.to_string())) {
                Ok(Flow::Done) => break,
                Ok(Flow::More) => {}
                Err(e) => return (Err(e), deltas.into_inner()),
            }
        }
        (d.finish(), deltas.into_inner())
    }

    #[test]
    fn text_tool_calls_and_usage() {
        let (r, deltas) = feed(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hi "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"there"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","type":"function","function":{"name":"two","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"one","arguments":"{\"x\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            "[DONE]",
        ]);
        let r = r.unwrap();
        assert_eq!(deltas, ["Hi ", "there"]);
        assert_eq!(r.text, "Hi there");
        assert_eq!(r.finish_reason, "tool_calls");
        assert_eq!(r.usage, Usage { input_tokens: 7, output_tokens: 3 });
        let calls: Vec<_> =
            r.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("a", "one", "{\"x\":1}"), ("b", "two", "{}")]);
    }

    #[test]
    fn truncated_stream_is_a_retryable_error() {
        let (r, _) = feed(&[r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#]);
        assert!(r.unwrap_err().is_retryable());
    }

    #[test]
    fn mid_stream_error_and_garbage() {
        let (r, _) = feed(&[r#"{"error":{"message":"upstream overloaded","code":502}}"#]);
        let e = r.unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("upstream overloaded"), "{e}");
        let (r, _) = feed(&["{not json"]);
        assert!(matches!(r.unwrap_err(), LlmError::Protocol(_)));
    }

    #[test]
    fn roles_map_to_the_wire() {
        let call = ToolCall { id: "c1".into(), name: "t".into(), arguments: "{}".into() };
        let mut asst = Message::assistant("");
        asst.tool_calls.push(call.clone());
        let req = ChatRequest {
            messages: vec![Message::system("s"), Message::user("u"), asst, Message::tool_result(&call, "r")],
            tools: vec![ToolSpec { name: "t".into(), description: "d".into(), parameters: json!({"type":"object"}) }],
            max_tokens: None,
            temperature: Some(0.5),
        };
        let body = request_body("m", &req, Some(99)).unwrap();
        assert_eq!(body["max_tokens"], 99);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["tools"][0]["function"]["name"], "t");
        let roles: Vec<_> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(body["messages"][3]["tool_call_id"], "c1");
        let bad = ChatRequest { messages: vec![Message::new(Role::Tool, "x")], ..Default::default() };
        assert!(matches!(request_body("m", &bad, None), Err(LlmError::InvalidRequest(_))));
    }
}
