//! Both wire protocols against the fake provider over real HTTP: streaming,
//! tool calls, history mapping, headers.

mod common;

use clawhive_core::chat::{Message, ToolCall};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

both_protocols!(streams_text_in_order, assembles_tool_calls, maps_history_and_roles, tool_results_reach_the_model);

async fn streams_text_in_order(model: &str) {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let req = clawhive_llm::ChatRequest {
        messages: vec![Message::system("Be brief."), Message::user("hello brave new world")],
        max_tokens: Some(64),
        temperature: Some(0.2),
        ..Default::default()
    };
    let out = chat(&router, &[model], &req, T).await;
    let resp = out.result.unwrap();
    assert_eq!(resp.text, "echo[1]: hello brave new world");
    assert!(out.deltas.len() >= 4, "expected word-by-word deltas, got {:?}", out.deltas);
    assert_eq!(out.deltas.concat(), resp.text, "deltas must arrive complete and in order");
    assert_eq!(resp.model, model);
    assert_eq!(resp.finish_reason, "stop");
    assert!(resp.usage.input_tokens > 0 && resp.usage.output_tokens > 0, "{:?}", resp.usage);
    assert!(resp.tool_calls.is_empty());

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.model, wire_model(model));
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["max_tokens"], 64);
    if model == OPENAI {
        assert_eq!(r.protocol, "openai");
        assert_eq!(r.auth.as_deref(), Some("Bearer sk-oa"));
        assert_eq!(r.body["stream_options"]["include_usage"], true);
        assert_eq!(r.body["messages"][0], json!({ "role": "system", "content": "Be brief." }));
    } else {
        assert_eq!(r.protocol, "anthropic");
        assert_eq!(r.auth.as_deref(), Some("sk-an"));
        let version = r.headers.iter().find(|(k, _)| k == "anthropic-version").map(|(_, v)| v.as_str());
        assert_eq!(version, Some("2023-06-01"));
        assert_eq!(r.body["system"], "Be brief.");
        assert_eq!(r.body["messages"].as_array().unwrap().len(), 1);
    }
}

async fn assembles_tool_calls(model: &str) {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let mut req = user("what time is it? #tool:clock:{\"tz\": \"Europe/Paris\", \"format\": \"iso\"}");
    req.tools.push(clock_tool());
    let resp = chat(&router, &[model], &req, T).await.result.unwrap();
    assert_eq!(resp.finish_reason, "tool_calls");
    assert_eq!(resp.tool_calls.len(), 1, "{:?}", resp.tool_calls);
    let call = &resp.tool_calls[0];
    assert_eq!(call.name, "clock");
    assert!(!call.id.is_empty());
    let args: Value = serde_json::from_str(&call.arguments).expect("arguments are whole JSON");
    assert_eq!(args, json!({ "tz": "Europe/Paris", "format": "iso" }));

    let body = &fake.requests()[0].body;
    if model == OPENAI {
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "clock");
        assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
    } else {
        assert_eq!(body["tools"][0]["name"], "clock");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    }
}

async fn maps_history_and_roles(model: &str) {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let req = clawhive_llm::ChatRequest {
        messages: vec![
            Message::system("sys"),
            Message::user("one"),
            Message::assistant("two"),
            Message::user("three"),
            Message::assistant("four"),
            Message::user("five"),
        ],
        ..Default::default()
    };
    let resp = chat(&router, &[model], &req, T).await.result.unwrap();
    assert_eq!(resp.text, "echo[3]: five");
    let body = &fake.requests()[0].body;
    let roles: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    if model == OPENAI {
        assert_eq!(roles, ["system", "user", "assistant", "user", "assistant", "user"]);
    } else {
        assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
        assert_eq!(body["system"], "sys");
    }
}

async fn tool_results_reach_the_model(model: &str) {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let call = ToolCall { id: "call_7".into(), name: "clock".into(), arguments: "{\"tz\":\"UTC\"}".into() };
    let mut asked = Message::assistant("");
    asked.tool_calls.push(call.clone());
    let mut req = clawhive_llm::ChatRequest {
        messages: vec![
            Message::system("sys"),
            Message::user("time? #tool:clock:{}"),
            asked,
            Message::tool_result(&call, "noon"),
        ],
        ..Default::default()
    };
    req.tools.push(clock_tool());
    let resp = chat(&router, &[model], &req, T).await.result.unwrap();
    assert_eq!(resp.text, "tool said: noon");
    assert!(resp.tool_calls.is_empty());

    let msgs = fake.requests()[0].body["messages"].as_array().unwrap().clone();
    if model == OPENAI {
        assert_eq!(msgs[2]["tool_calls"][0]["id"], "call_7");
        assert_eq!(msgs[2]["tool_calls"][0]["function"]["arguments"], "{\"tz\":\"UTC\"}");
        assert_eq!(msgs[3], json!({ "role": "tool", "tool_call_id": "call_7", "content": "noon" }));
    } else {
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[1]["content"][0],
            json!({ "type": "tool_use", "id": "call_7", "name": "clock", "input": { "tz": "UTC" } })
        );
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][0], json!({ "type": "tool_result", "tool_use_id": "call_7", "content": "noon" }));
    }
}

#[tokio::test]
async fn model_is_split_at_the_first_slash() {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let resp = chat(&router, &["oa/arcee-ai/trinity-mini:free"], &user("hi"), T).await.result.unwrap();
    assert_eq!(resp.model, "oa/arcee-ai/trinity-mini:free");
    assert_eq!(fake.requests()[0].model, "arcee-ai/trinity-mini:free");

    let err = chat(&router, &["gpt-4o"], &user("hi"), T).await.result.unwrap_err();
    assert!(matches!(err, clawhive_llm::LlmError::InvalidModel(_)), "{err}");
    let err = chat(&router, &["nope/m"], &user("hi"), T).await.result.unwrap_err();
    assert!(matches!(err, clawhive_llm::LlmError::UnknownProvider { .. }), "{err}");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn keyless_provider_sends_no_credentials() {
    let fake = clawhive_tests::fake_llm::FakeLlm::start().await;
    let router = router(&config(&fake));
    let resp = chat(&router, &["local/llama"], &user("hi"), T).await.result.unwrap();
    assert_eq!(resp.text, "echo[1]: hi");
    assert_eq!(fake.requests()[0].auth, None);
}

#[test]
fn https_providers_build_without_keys() {
    // Needs the rustls crypto provider; an unused provider's missing key is not an error yet.
    let router = clawhive_llm::LlmRouter::from_config(&Default::default(), &|_| None).unwrap();
    assert!(format!("{router:?}").contains("openrouter"));
}
