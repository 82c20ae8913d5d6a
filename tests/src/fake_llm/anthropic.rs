//! The fake's Anthropic Messages dialect.

use super::script::{Answer, Last, Prompt, fragments, tokens, words};
use serde_json::{Value, json};

pub fn parse(body: &Value) -> Result<Prompt, String> {
    let model = body.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).ok_or("model: Field required")?;
    let messages = body.get("messages").and_then(Value::as_array).ok_or("messages: Field required")?;
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err("max_tokens: Field required".into());
    }
    let last = messages.last().ok_or("messages: at least one message is required")?;
    let last = match last.get("content") {
        Some(Value::Array(blocks)) => match blocks.last() {
            Some(b) if block_type(b) == "tool_result" => {
                Last::ToolResult(text_of(b.get("content").unwrap_or(&Value::Null)))
            }
            _ => Last::Text(text_of(&Value::Array(blocks.clone()))),
        },
        Some(other) => Last::Text(text_of(other)),
        None => Last::Text(String::new()),
    };
    let is_user_turn = |m: &&Value| {
        m.get("role").and_then(Value::as_str) == Some("user")
            && match m.get("content") {
                Some(Value::Array(blocks)) => blocks.iter().any(|b| block_type(b) != "tool_result"),
                _ => true,
            }
    };
    let system_chars = text_of(body.get("system").unwrap_or(&Value::Null)).chars().count();
    let message_chars: usize =
        messages.iter().map(|m| text_of(m.get("content").unwrap_or(&Value::Null)).chars().count()).sum();
    Ok(Prompt {
        model: model.to_string(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        last,
        user_count: messages.iter().filter(is_user_turn).count(),
        prompt_chars: system_chars + message_chars,
    })
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Text of a string, or of the `text` blocks (and nested tool-result contents) of an array.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match block_type(b) {
                "text" => b.get("text").and_then(Value::as_str).unwrap_or("").to_string(),
                "tool_result" => text_of(b.get("content").unwrap_or(&Value::Null)),
                _ => String::new(),
            })
            .collect(),
        _ => String::new(),
    }
}

pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

fn answer_parts(answer: &Answer, seq: u64) -> (Value, &'static str, usize) {
    match answer {
        Answer::Text(text) => (json!({ "type": "text", "text": text }), "end_turn", text.chars().count()),
        Answer::ToolCall { name, arguments } => {
            let input = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| Value::String(arguments.clone()));
            (
                json!({ "type": "tool_use", "id": format!("toolu_fake_{seq}"), "name": name, "input": input }),
                "tool_use",
                arguments.chars().count(),
            )
        }
    }
}

/// A complete, non-streamed message.
pub fn message(prompt: &Prompt, answer: &Answer, seq: u64) -> Value {
    let (block, stop, chars) = answer_parts(answer, seq);
    json!({
        "id": format!("msg_fake_{seq}"),
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": { "input_tokens": tokens(prompt.prompt_chars), "output_tokens": tokens(chars) },
    })
}

/// The SSE events of a streamed message, each with its `event:` line.
pub fn stream_events(prompt: &Prompt, answer: &Answer, seq: u64) -> Vec<String> {
    let (_, stop, chars) = answer_parts(answer, seq);
    let mut out = vec![
        json!({ "type": "message_start", "message": {
            "id": format!("msg_fake_{seq}"), "type": "message", "role": "assistant", "model": prompt.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": tokens(prompt.prompt_chars), "output_tokens": 1 },
        }}),
        json!({ "type": "ping" }),
    ];
    match answer {
        Answer::Text(text) => {
            out.push(
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            );
            out.extend(words(text).into_iter().map(
                |w| json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": w } }),
            ));
        }
        Answer::ToolCall { name, arguments } => {
            out.push(json!({ "type": "content_block_start", "index": 0, "content_block":
                { "type": "tool_use", "id": format!("toolu_fake_{seq}"), "name": name, "input": {} } }));
            out.extend(fragments(arguments, 3).into_iter().map(|frag| {
                json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "input_json_delta", "partial_json": frag } })
            }));
        }
    }
    out.push(json!({ "type": "content_block_stop", "index": 0 }));
    out.push(json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": null },
        "usage": { "output_tokens": tokens(chars) } }));
    out.push(json!({ "type": "message_stop" }));
    out.into_iter().map(|v| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or("message"))).collect()
}
