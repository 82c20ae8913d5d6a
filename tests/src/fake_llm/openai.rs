//! The fake's OpenAI chat-completions dialect.

use super::script::{Answer, Last, Prompt, fragments, tokens, words};
use serde_json::{Value, json};

pub fn parse(body: &Value) -> Result<Prompt, String> {
    let model = body.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).ok_or("model is required")?;
    let messages = body.get("messages").and_then(Value::as_array).ok_or("messages is required")?;
    let last = messages.last().ok_or("messages must not be empty")?;
    let text = |m: &Value| content_text(m.get("content").unwrap_or(&Value::Null));
    let last = match last.get("role").and_then(Value::as_str) {
        Some("tool") => Last::ToolResult(text(last)),
        _ => Last::Text(text(last)),
    };
    Ok(Prompt {
        model: model.to_string(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        last,
        user_count: messages.iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("user")).count(),
        prompt_chars: messages.iter().map(|m| text(m).chars().count()).sum(),
    })
}

/// `content` is a string, null, or an array of parts with `text`.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

pub fn error_body(status: u16, message: &str) -> Value {
    json!({ "error": { "message": message, "type": "fake_error", "code": status } })
}

fn usage(prompt: &Prompt, answer_chars: usize) -> Value {
    let (input, output) = (tokens(prompt.prompt_chars), tokens(answer_chars));
    json!({ "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output })
}

/// A complete, non-streamed completion.
pub fn completion(prompt: &Prompt, answer: &Answer, seq: u64) -> Value {
    let (message, finish, chars) = match answer {
        Answer::Text(text) => (json!({ "role": "assistant", "content": text }), "stop", text.chars().count()),
        Answer::ToolCall { name, arguments } => (
            json!({ "role": "assistant", "content": null, "tool_calls": [
                { "id": format!("call_fake_{seq}"), "type": "function", "function": { "name": name, "arguments": arguments } }
            ]}),
            "tool_calls",
            arguments.chars().count(),
        ),
    };
    json!({
        "id": format!("chatcmpl-fake-{seq}"),
        "object": "chat.completion",
        "created": 0,
        "model": prompt.model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage(prompt, chars),
    })
}

/// The SSE events of a streamed completion, each a complete `data:` event.
pub fn stream_events(prompt: &Prompt, answer: &Answer, seq: u64, include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": format!("chatcmpl-fake-{seq}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": prompt.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut out = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
    let (finish, chars) =
        match answer {
            Answer::Text(text) => {
                out.extend(words(text).into_iter().map(|w| chunk(json!({ "content": w }), None)));
                ("stop", text.chars().count())
            }
            Answer::ToolCall { name, arguments } => {
                out.push(chunk(
                    json!({ "tool_calls": [{ "index": 0, "id": format!("call_fake_{seq}"), "type": "function",
                    "function": { "name": name, "arguments": "" } }] }),
                    None,
                ));
                out.extend(fragments(arguments, 3).into_iter().map(|frag| {
                    chunk(json!({ "tool_calls": [{ "index": 0, "function": { "arguments": frag } }] }), None)
                }));
                ("tool_calls", arguments.chars().count())
            }
        };
    out.push(chunk(json!({}), Some(finish)));
    if include_usage {
        out.push(json!({
            "id": format!("chatcmpl-fake-{seq}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": prompt.model,
            "choices": [],
            "usage": usage(prompt, chars),
        }));
    }
    let mut events: Vec<String> = out.into_iter().map(|v| format!("data: {v}\n\n")).collect();
    events.push("data: [DONE]\n\n".into());
    events
}
