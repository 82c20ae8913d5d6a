//! Retries, `Retry-After`, the deadline and model fallback, against the fake provider.

mod common;

use clawhive_core::ErrorCode;
use clawhive_llm::LlmError;
use clawhive_tests::fake_llm::FakeLlm;
use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

both_protocols!(
    retries_a_server_error,
    honours_retry_after_on_429,
    gives_up_after_max_retries,
    does_not_retry_a_bad_request,
    returns_promptly_at_the_deadline,
    never_retries_after_a_delta,
);

async fn retries_a_server_error(model: &str) {
    let fake = FakeLlm::start().await;
    let router = router(&config(&fake));
    let out = chat(&router, &[model], &user("#fail:500:1:k hello"), T).await;
    let resp = out.result.unwrap();
    assert_eq!(resp.text, "echo[1]: #fail:500:1:k hello");
    assert_eq!(fake.request_count(), 2);
    assert_eq!(out.deltas.concat(), resp.text, "the failed attempt must not leak deltas");
}

async fn honours_retry_after_on_429(model: &str) {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    // Our own backoff would wait 2.5 s and then 5 s or more; the fake's `Retry-After: 0` must win.
    for p in cfg.providers.values_mut() {
        p.initial_backoff_ms = 5_000;
    }
    let router = router(&cfg);
    let out = chat(&router, &[model], &user("#fail:429:2:k hi"), T).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(fake.request_count(), 3);
    assert!(out.elapsed < Duration::from_millis(2_500), "Retry-After ignored: took {:?}", out.elapsed);
}

async fn gives_up_after_max_retries(model: &str) {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    for p in cfg.providers.values_mut() {
        p.max_retries = 1;
    }
    let router = router(&cfg);
    let err = chat(&router, &[model], &user("#fail:429:9:k hi"), T).await.result.unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 429, .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::ResourceExhausted);
    assert!(err.to_string().contains("fake failure"), "body excerpt missing: {err}");
    assert_eq!(fake.request_count(), 2);
}

async fn does_not_retry_a_bad_request(model: &str) {
    let fake = FakeLlm::start().await;
    let router = router(&config(&fake));
    let err = chat(&router, &[model, OPENAI], &user("#fail:400:1:k hi"), T).await.result.unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 400, .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert_eq!(fake.request_count(), 1, "a 400 is neither retried nor sent to the fallback");
}

async fn returns_promptly_at_the_deadline(model: &str) {
    let fake = FakeLlm::start().await;
    let router = router(&config(&fake));
    let out = chat(&router, &[model, OPENAI], &user("#hang"), Duration::from_millis(300)).await;
    let err = out.result.unwrap_err();
    assert!(matches!(err, LlmError::DeadlineExceeded), "{err}");
    assert_eq!(err.code(), ErrorCode::DeadlineExceeded);
    assert!(out.elapsed < Duration::from_secs(2), "took {:?}", out.elapsed);
    assert_eq!(fake.request_count(), 1);
}

async fn never_retries_after_a_delta(model: &str) {
    let fake = FakeLlm::start().await;
    let router = router(&config(&fake));
    let other = if model == OPENAI { ANTHROPIC } else { OPENAI };
    let out = chat(&router, &[model, other], &user("one two three four five six #cut"), T).await;
    let err = out.result.unwrap_err();
    assert!(!out.deltas.is_empty(), "the fake should have streamed part of the answer");
    assert!(err.is_retryable(), "a cut stream is transient: {err}");
    assert_eq!(fake.request_count(), 1, "no retry and no fallback once a delta was emitted");
}

#[tokio::test]
async fn falls_back_when_the_key_is_missing() {
    let fake = FakeLlm::start().await;
    let router = router(&config(&fake));
    let out = chat(&router, &["nokey/m1", ANTHROPIC], &user("hi"), T).await;
    let resp = out.result.unwrap();
    assert_eq!(resp.model, ANTHROPIC);
    assert_eq!(fake.request_count(), 1);

    let err = chat(&router, &["nokey/m1"], &user("hi"), T).await.result.unwrap_err();
    assert!(matches!(err, LlmError::MissingApiKey { .. }), "{err}");
    assert!(err.to_string().contains("NOKEY_API_KEY"), "{err}");
}

#[tokio::test]
async fn falls_back_when_retries_are_exhausted() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    for p in cfg.providers.values_mut() {
        p.max_retries = 1;
    }
    let router = router(&cfg);
    // Two attempts at the first model use up both failures; the fallback's first attempt succeeds.
    let out = chat(&router, &[ANTHROPIC, OPENAI], &user("#fail:503:2:k hi"), T).await;
    let resp = out.result.unwrap();
    assert_eq!(resp.model, OPENAI);
    let protocols: Vec<&str> = fake.requests().iter().map(|r| r.protocol).collect();
    assert_eq!(protocols, ["anthropic", "anthropic", "openai"]);
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_is_retried() {
    let fake = FakeLlm::start().await;
    let mut cfg = config(&fake);
    for p in cfg.providers.values_mut() {
        p.attempt_timeout_ms = 150;
        p.max_retries = 1;
    }
    let router = router(&cfg);
    let err = chat(&router, &[OPENAI], &user("#slow:5000 hi"), T).await.result.unwrap_err();
    assert!(matches!(err, LlmError::Transport(_)), "{err}");
    assert_eq!(fake.request_count(), 2);
}
