//! Bad input, bad credentials and other users' sessions over HTTP: every
//! error is a JSON body with the right status, and nothing reaches the bus.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn error_of(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON error body");
    let code = body["error"]["code"].as_str().expect("error.code").to_string();
    let message = body["error"]["message"].as_str().expect("error.message").to_string();
    (status, code, message)
}

#[tokio::test]
async fn bad_bodies_are_400_json_and_publish_nothing() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let url = env.url("/v1/sessions/s1/messages");
    let post = || env.http.post(&url).bearer_auth(TOKEN_A);

    let (s, c, m) =
        error_of(post().header("content-type", "application/json").body("{not json").send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (StatusCode::BAD_REQUEST, "invalid_argument"));
    assert!(m.contains("invalid JSON"), "{m}");

    let (s, _, m) = error_of(post().json(&json!({"agent_id": "default"})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(m.contains("missing field `text`"), "{m}");

    let (s, _, m) = error_of(post().body(r#"{"text":"hi"}"#).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(m.contains("Content-Type"), "{m}");

    let (s, _, m) = error_of(post().json(&json!({"text": "   "})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(m.contains("empty"), "{m}");

    let (s, _, m) = error_of(post().json(&json!({"text": "hi", "agent_id": "nope"})).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(m.contains("nope"), "{m}");

    let bad_session = env.url("/v1/sessions/a%20b/messages");
    let (s, _, m) =
        error_of(env.http.post(&bad_session).bearer_auth(TOKEN_A).json(&json!({"text": "hi"})).send().await.unwrap())
            .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(m.contains("session id"), "{m}");

    let big = "x".repeat(4096);
    let (s, _, m) = error_of(post().json(&json!({ "text": big })).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(m.contains("1024"), "{m}");

    nothing_published(&mut worker).await;
    env.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_and_publishes_nothing() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let url = env.url("/v1/sessions/s1/messages");
    let body = json!({"text": "let me in"});

    let (s, c, m) = error_of(env.http.post(&url).bearer_auth("wrong-token").json(&body).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    assert!(m.contains("invalid API token"), "{m}");

    let (s, _, m) = error_of(env.http.post(&url).json(&body).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(m.contains("Authorization"), "{m}");

    let (s, _, _) = error_of(
        env.http.post(&url).header("authorization", format!("Basic {TOKEN_A}")).json(&body).send().await.unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    for path in ["/v1/sessions", "/v1/sessions/s1"] {
        let (s, _, _) = error_of(env.http.get(env.url(path)).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    nothing_published(&mut worker).await;
    env.stop().await;
}

#[tokio::test]
async fn unknown_session_and_route_are_404_json() {
    let env = Env::start().await;
    let (s, c, m) =
        error_of(env.http.get(env.url("/v1/sessions/nosuch")).bearer_auth(TOKEN_A).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(m, "session nosuch not found");
    let (s, _, _) =
        error_of(env.http.post(env.url("/v1/sessions/nosuch/reset")).bearer_auth(TOKEN_A).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, c, _) = error_of(env.http.get(env.url("/v2/whatever")).send().await.unwrap()).await;
    assert_eq!((s, c.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    env.stop().await;
}

#[tokio::test]
async fn users_see_only_their_own_sessions() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    // Alice starts a session (the test worker answers).
    let call = env
        .http
        .post(env.url("/v1/sessions/alice-s/messages"))
        .bearer_auth(TOKEN_A)
        .json(&json!({"text": "mine"}))
        .send();
    let call = tokio::spawn(call);
    let (req, d) = next_request(&mut worker).await;
    answer(&env, &req, &d, &["ok"], None).await;
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    // Bob cannot read, reset or post into it, and cannot tell it exists.
    let (s, _, m) =
        error_of(env.http.get(env.url("/v1/sessions/alice-s")).bearer_auth(TOKEN_B).send().await.unwrap()).await;
    assert_eq!((s, m.as_str()), (StatusCode::NOT_FOUND, "session alice-s not found"));
    let (s, _, _) =
        error_of(env.http.post(env.url("/v1/sessions/alice-s/reset")).bearer_auth(TOKEN_B).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, m) = error_of(
        env.http
            .post(env.url("/v1/sessions/alice-s/messages"))
            .bearer_auth(TOKEN_B)
            .json(&json!({"text": "hijack"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, m.as_str()), (StatusCode::NOT_FOUND, "session alice-s not found"));
    nothing_published(&mut worker).await;

    let list = |token: &'static str| env.http.get(env.url("/v1/sessions")).bearer_auth(token).send();
    let bob: Value = list(TOKEN_B).await.unwrap().json().await.unwrap();
    assert_eq!(bob, json!({"sessions": []}));
    let alice: Value = list(TOKEN_A).await.unwrap().json().await.unwrap();
    let sessions = alice["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{alice}");
    assert_eq!(sessions[0]["session_id"], "alice-s");
    assert_eq!(sessions[0]["agent_id"], "default");

    // Alice can read and reset her own.
    let resp = env.http.get(env.url("/v1/sessions/alice-s")).bearer_auth(TOKEN_A).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["session"]["session_id"], "alice-s");
    assert!(got["messages"].is_array(), "{got}");
    let resp = env.http.post(env.url("/v1/sessions/alice-s/reset")).bearer_auth(TOKEN_A).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let reset: Value = resp.json().await.unwrap();
    assert!(reset["existed"].is_boolean(), "{reset}");
    env.stop().await;
}
