//! HTTP chat against real NATS and Redis, the test playing the worker.

mod common;

use clawhive_bus::envelope::trace_of;
use clawhive_proto::v1 as pb;
use common::*;
use serde_json::{Value, json};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn json_chat_gets_the_reply_and_publishes_a_complete_request() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let call = env
        .http
        .post(env.url("/v1/sessions/s1/messages"))
        .bearer_auth(TOKEN_A)
        .header("traceparent", TRACEPARENT)
        .json(&json!({"text": "hello there"}))
        .send();
    let call = tokio::spawn(call);

    let before = clawhive_core::time::now_unix_ms();
    let (req, d) = next_request(&mut worker).await;
    let p = req.principal.clone().expect("principal");
    assert_eq!((p.tenant_id.as_str(), p.user_id.as_str()), ("acme", "alice"));
    assert_eq!(p.roles, vec!["member".to_string()]);
    assert_eq!(p.groups, vec!["eng".to_string()]);
    assert_eq!(req.session_id, "s1");
    assert_eq!(req.agent_id, "default");
    assert_eq!(req.text, "hello there");
    assert_eq!(req.speaker, "alice");
    assert!(req.stream_deltas);
    assert_eq!(d.message.subject, format!("{NS}.req.acme.default"));
    let default_ms = env.cfg.gateway.default_timeout_ms as i64;
    assert!(req.deadline_unix_ms - req.created_unix_ms == default_ms, "deadline {req:?}");
    assert!((req.created_unix_ms - before).abs() < 5_000);
    match req.reply_route.as_ref().and_then(|r| r.target.as_ref()) {
        Some(pb::reply_route::Target::Gateway(g)) => {
            assert_eq!(g.instance_id, env.handle.as_ref().unwrap().instance_id);
            assert!(!g.call_id.is_empty());
        }
        other => panic!("route {other:?}"),
    }
    let trace = trace_of(&d.message).expect("a traceparent header");
    assert_eq!(trace.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c", "the caller's trace continues");

    answer(&env, &req, &d, &["Hi ", "Alice"], None).await;
    let resp = call.await.unwrap().expect("response");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["text"], "Hi Alice");
    assert_eq!(body["request_id"], req.request_id.as_str());
    assert_eq!(body["session_id"], "s1");
    assert_eq!(body["model"], "fake/model");
    assert_eq!(body["usage"], json!({"input_tokens": 11, "output_tokens": 7}));
    env.stop().await;
}

#[tokio::test]
async fn sse_chat_streams_deltas_then_final() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let call = env
        .http
        .post(env.url("/v1/sessions/s2/messages"))
        .bearer_auth(TOKEN_A)
        .header("accept", "text/event-stream")
        .json(&json!({"text": "stream please", "timeout_ms": 5000}))
        .send();
    let call = tokio::spawn(call);
    let (req, d) = next_request(&mut worker).await;
    // Without a traceparent from the caller, the gateway starts a trace.
    assert!(trace_of(&d.message).is_some(), "a traceparent header");
    assert_eq!(req.deadline_unix_ms - req.created_unix_ms, 5000);
    answer(&env, &req, &d, &["one ", "two ", "three"], None).await;
    let resp = call.await.unwrap().expect("response");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = tokio::time::timeout(WAIT, resp.text()).await.expect("stream ends").unwrap();
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "delta", "final"], "{body}");
    let texts: Vec<String> = events[..3]
        .iter()
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["one ", "two ", "three"]);
    let fin: Value = serde_json::from_str(&events[3].1).unwrap();
    assert_eq!(fin["text"], "one two three");
    assert_eq!(fin["request_id"], req.request_id.as_str());
    env.stop().await;
}

#[tokio::test]
async fn sse_error_reply_is_an_error_event() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let call = env
        .http
        .post(env.url("/v1/sessions/s3/messages"))
        .bearer_auth(TOKEN_A)
        .header("accept", "text/event-stream")
        .json(&json!({"text": "fail please"}))
        .send();
    let call = tokio::spawn(call);
    let (req, d) = next_request(&mut worker).await;
    let err = pb::Error { code: pb::ErrorCode::PermissionDenied as i32, message: "tool shell denied".into() };
    answer(&env, &req, &d, &["partial"], Some(err)).await;
    let body = call.await.unwrap().unwrap().text().await.unwrap();
    let events = sse_events(&body);
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[0].0, "delta");
    assert_eq!(events[1].0, "error");
    let e: Value = serde_json::from_str(&events[1].1).unwrap();
    assert_eq!(e, json!({"code": "permission_denied", "message": "tool shell denied"}));
    env.stop().await;
}

#[tokio::test]
async fn error_reply_maps_to_its_http_status() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    for (code, status, name) in [
        (pb::ErrorCode::ResourceExhausted, 429, "resource_exhausted"),
        (pb::ErrorCode::Unavailable, 503, "unavailable"),
    ] {
        let call =
            env.http.post(env.url("/v1/sessions/s4/messages")).bearer_auth(TOKEN_A).json(&json!({"text": "go"})).send();
        let call = tokio::spawn(call);
        let (req, d) = next_request(&mut worker).await;
        answer(&env, &req, &d, &[], Some(pb::Error { code: code as i32, message: "budget spent".into() })).await;
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({"error": {"code": name, "message": "budget spent"}}));
    }
    env.stop().await;
}

#[tokio::test]
async fn no_reply_is_deadline_exceeded() {
    let env = Env::start().await;
    let started = std::time::Instant::now();
    let resp = env
        .http
        .post(env.url("/v1/sessions/s5/messages"))
        .bearer_auth(TOKEN_A)
        .json(&json!({"text": "anyone?", "timeout_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert_eq!(body["error"]["message"], "no reply within 300 ms");
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(2_300) && took < std::time::Duration::from_secs(8), "{took:?}");
    env.stop().await;
}

#[tokio::test]
async fn same_idempotency_key_while_running_is_a_conflict() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let body = json!({"text": "once", "idempotency_key": "k-1", "timeout_ms": 300});
    let first = env.http.post(env.url("/v1/sessions/s6/messages")).bearer_auth(TOKEN_A).json(&body).send();
    let first = tokio::spawn(first);
    let (req, _d) = next_request(&mut worker).await;
    assert_eq!(req.request_id.len(), 32, "derived from the key: {}", req.request_id);
    let second =
        env.http.post(env.url("/v1/sessions/s6/messages")).bearer_auth(TOKEN_A).json(&body).send().await.unwrap();
    assert_eq!(second.status(), 409);
    let v: Value = second.json().await.unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    assert_eq!(first.await.unwrap().unwrap().status(), 504);
    env.stop().await;
}
