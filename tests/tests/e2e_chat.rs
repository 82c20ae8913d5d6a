//! End-to-end: client → gateway → NATS JetStream → agent-worker process →
//! fake LLM → Redis → reply back over the bus → client.

mod common;

use clawhive_proto::v1 as pb;
use common::*;
use std::time::Duration;

/// Each shared case runs twice: against real NATS + Redis with worker
/// processes, and in one process on the in-process bus and embedded store.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod cluster_mode {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Cluster::start(1).await).await
                }
            )*
        }
        mod single_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Cluster::start_embedded(1).await).await
                }
            )*
        }
    };
}

in_both_modes!(
    grpc_chat_streams_deltas_then_final_and_remembers_history,
    http_sse_chat_gets_the_answer_and_anthropic_agent_works,
    the_tool_loop_runs_a_real_tool,
    an_llm_500_then_200_gives_one_reply,
    an_llm_that_never_answers_gives_a_clear_timeout_within_the_deadline,
    bad_input_gets_clear_errors_and_other_users_sessions_stay_hidden,
);

async fn grpc_chat_streams_deltas_then_final_and_remembers_history(cluster: Cluster) {
    let mut c = cluster.grpc().await;
    let (deltas, fin) = chat(&mut c, ALICE, "s1", "hello there", "", 0).await.unwrap();
    assert_eq!(fin.text, "echo[1]: hello there");
    assert!(deltas.len() >= 2, "expected streamed deltas, got {deltas:?}");
    assert_eq!(deltas.concat(), fin.text);
    assert_eq!(fin.model, "fake/echo-model");
    assert!(fin.usage.unwrap().output_tokens > 0);

    // The follow-up carries the history: the fake counts user messages.
    let (_, fin2) = chat(&mut c, ALICE, "s1", "and again", "", 0).await.unwrap();
    assert_eq!(fin2.text, "echo[2]: and again");

    // The LLM saw the system prompt, both user turns and the first answer.
    let last = cluster.llm.requests().last().unwrap().body.clone();
    let msgs = last["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert!(msgs.iter().any(|m| m["content"] == "echo[1]: hello there"));

    // History is readable through the API.
    let got =
        c.get_session(authed(pb::GetSessionRequest { session_id: "s1".into() }, ALICE)).await.unwrap().into_inner();
    let roles: Vec<_> = got.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(got.session.unwrap().message_count, 4);
}

async fn http_sse_chat_gets_the_answer_and_anthropic_agent_works(cluster: Cluster) {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v1/sessions/web-1/messages", cluster.http_base()))
        .bearer_auth(ALICE)
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"text": "stream me", "agent_id": "claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("event: delta"), "{body}");
    assert!(body.contains("event: final"), "{body}");
    assert!(body.contains("echo[1]: stream me"), "{body}");
    let anthropic = cluster.llm.requests().into_iter().filter(|r| r.protocol == "anthropic").count();
    assert_eq!(anthropic, 1, "the claude agent must use the Anthropic protocol");

    // Plain JSON on the same session continues it.
    let resp = http
        .post(format!("{}/v1/sessions/web-1/messages", cluster.http_base()))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"text": "json please", "agent_id": "claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "echo[2]: json please");
}

async fn the_tool_loop_runs_a_real_tool(cluster: Cluster) {
    let mut c = cluster.grpc().await;
    let (_, fin) =
        chat(&mut c, ALICE, "tools", r#"what time is it? #tool:current_time:{"timezone":"Asia/Kolkata"}"#, "", 0)
            .await
            .unwrap();
    assert!(fin.text.starts_with("tool said: "), "{}", fin.text);
    assert!(fin.text.contains("+05:30") && fin.text.contains("Asia/Kolkata"), "{}", fin.text);
    let got =
        c.get_session(authed(pb::GetSessionRequest { session_id: "tools".into() }, ALICE)).await.unwrap().into_inner();
    let roles: Vec<_> = got.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_run_in_parallel_on_two_workers() {
    let cluster = Cluster::start(2).await;
    let (mut a, mut b) = (cluster.grpc().await, cluster.grpc().await);
    let (ra, rb) = tokio::join!(
        chat(&mut a, ALICE, "par-a", "#slow:1500 first", "", 0),
        chat(&mut b, BOB, "par-b", "#slow:1500 second", "", 0),
    );
    assert_eq!(ra.unwrap().1.text, "echo[1]: #slow:1500 first");
    assert_eq!(rb.unwrap().1.text, "echo[1]: #slow:1500 second");
    // Each worker committed one of the turns: they ran side by side, not one after the other.
    let committed: Vec<usize> = cluster.workers.iter().map(|w| w.log().matches("turn committed").count()).collect();
    assert_eq!(committed, vec![1, 1], "turns per worker: {committed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_turn_leaves_the_request_to_another_and_exactly_one_reply_arrives() {
    let mut cluster = Cluster::start(1).await;
    let mut c = cluster.grpc().await;
    let text = "#slow:3000 survive the crash";
    let call = tokio::spawn(async move { chat(&mut c, ALICE, "crash", text, "", 30_000).await });
    // Wait until the worker is inside the LLM call, then SIGKILL it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cluster.llm.request_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "worker never called the LLM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.workers[0].kill();
    cluster.spawn_worker().await;
    let (_, fin) = call.await.unwrap().unwrap();
    assert_eq!(fin.text, "echo[1]: #slow:3000 survive the crash");
    assert_eq!(cluster.llm.request_count(), 2, "the new worker re-ran the turn once");
    assert_eq!(count_stored_replies(&cluster.bus, &fin.request_id).await, 1, "exactly one reply on the bus");
    let mut c = cluster.grpc().await;
    let got =
        c.get_session(authed(pb::GetSessionRequest { session_id: "crash".into() }, ALICE)).await.unwrap().into_inner();
    assert_eq!(got.messages.len(), 2, "the turn is in the history exactly once");
}

async fn an_llm_500_then_200_gives_one_reply(cluster: Cluster) {
    let mut c = cluster.grpc().await;
    let (_, fin) = chat(&mut c, ALICE, "flaky", "#fail:500:1:e2e-flaky hi", "", 0).await.unwrap();
    assert_eq!(fin.text, "echo[1]: #fail:500:1:e2e-flaky hi");
    assert_eq!(cluster.llm.request_count(), 2);
    assert_eq!(count_stored_replies(&cluster.bus, &fin.request_id).await, 1);
}

async fn an_llm_that_never_answers_gives_a_clear_timeout_within_the_deadline(cluster: Cluster) {
    let mut c = cluster.grpc().await;
    let started = std::time::Instant::now();
    let err = chat(&mut c, ALICE, "hang", "#hang", "", 1500).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("deadline") || err.message().contains("within"), "{}", err.message());
    // Bounded by the deadline plus the gateway's grace, not by the hung LLM.
    assert!(started.elapsed() < Duration::from_secs(10));
    // HTTP gets the same: a 504 with a JSON error.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sessions/hang2/messages", cluster.http_base()))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"text": "#hang", "timeout_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "deadline_exceeded");
}

async fn bad_input_gets_clear_errors_and_other_users_sessions_stay_hidden(cluster: Cluster) {
    let http = reqwest::Client::new();
    let base = cluster.http_base();
    let post = |session: &str, token: &str, body: String| {
        http.post(format!("{base}/v1/sessions/{session}/messages"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
    };
    // Malformed JSON.
    let r = post("s", ALICE, "{not json".into()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument");
    // Wrong token.
    let r = post("s", "nope", r#"{"text":"hi"}"#.into()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Oversized body.
    let r = post("s", ALICE, format!(r#"{{"text":"{}"}}"#, "x".repeat(10_000))).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Unknown session.
    let r = http.get(format!("{base}/v1/sessions/nobody-here")).bearer_auth(ALICE).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Bad session id.
    let r = post("bad%20id", ALICE, r#"{"text":"hi"}"#.into()).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // Alice's session is invisible to Bob (same tenant) and Carol (other tenant).
    let mut c = cluster.grpc().await;
    chat(&mut c, ALICE, "private", "secret plans", "", 0).await.unwrap();
    for token in [BOB, CAROL] {
        let e = c.get_session(authed(pb::GetSessionRequest { session_id: "private".into() }, token)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        if token == BOB {
            let e = chat(&mut c, token, "private", "let me in", "", 0).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound);
        }
        let e =
            c.reset_session(authed(pb::ResetSessionRequest { session_id: "private".into() }, token)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let list = c.list_sessions(authed(pb::ListSessionsRequest {}, token)).await.unwrap().into_inner();
        assert!(list.sessions.iter().all(|s| s.session_id != "private"));
    }
    // Session ids are per tenant: Carol's "private" is her own, with none of Alice's history.
    let (_, fin) = chat(&mut c, CAROL, "private", "let me in", "", 0).await.unwrap();
    assert_eq!(fin.text, "echo[1]: let me in");
    let alice = c
        .get_session(authed(pb::GetSessionRequest { session_id: "private".into() }, ALICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alice.messages.len(), 2, "Carol's turn must not land in Alice's session");
    assert!(alice.messages.iter().all(|m| !m.content.contains("let me in")));
    let list = c.list_sessions(authed(pb::ListSessionsRequest {}, ALICE)).await.unwrap().into_inner();
    assert!(list.sessions.iter().any(|s| s.session_id == "private"));
    // Wrong token on gRPC.
    let e = chat(&mut c, "nope", "private", "hi", "", 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // Unknown agent.
    let e = chat(&mut c, ALICE, "x", "hi", "no-such-agent", 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}
