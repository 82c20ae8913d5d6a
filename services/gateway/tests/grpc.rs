//! The gRPC Assistant service against real NATS and Redis.

mod common;

use clawhive_bus::envelope::trace_of;
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::assistant_client::AssistantClient;
use common::*;
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn client(env: &Env) -> AssistantClient<Channel> {
    AssistantClient::connect(env.grpc_url()).await.expect("gRPC connects")
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn chat(session: &str, text: &str, timeout_ms: u32) -> pb::ChatRequest {
    pb::ChatRequest { session_id: session.into(), text: text.into(), timeout_ms, ..Default::default() }
}

#[tokio::test]
async fn chat_streams_deltas_then_final() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let mut c = client(&env).await;
    let call = tokio::spawn(async move { c.chat(authed(chat("g1", "hi grpc", 0), TOKEN_A)).await });
    let (req, d) = next_request(&mut worker).await;
    assert_eq!(req.principal.as_ref().unwrap().user_id, "alice");
    assert_eq!(req.session_id, "g1");
    assert!(trace_of(&d.message).is_some());
    answer(&env, &req, &d, &["a", "b"], None).await;
    let mut stream = call.await.unwrap().expect("chat accepted").into_inner();
    let mut events = Vec::new();
    while let Some(ev) = tokio::time::timeout(WAIT, stream.message()).await.expect("in time").expect("no error") {
        events.push(ev.event.expect("an event"));
    }
    use pb::chat_event::Event;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], Event::Delta(pb::ChatDelta { text: "a".into() }));
    assert_eq!(events[1], Event::Delta(pb::ChatDelta { text: "b".into() }));
    match &events[2] {
        Event::Final(f) => {
            assert_eq!(f.text, "ab");
            assert_eq!(f.request_id, req.request_id);
            assert_eq!(f.session_id, "g1");
            assert_eq!(f.usage, Some(pb::Usage { input_tokens: 11, output_tokens: 7 }));
        }
        other => panic!("expected final, got {other:?}"),
    }
    env.stop().await;
}

#[tokio::test]
async fn errors_map_to_grpc_codes() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let mut c = client(&env).await;

    // Credentials.
    let e = c.chat(Request::new(chat("g2", "hi", 0))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c.chat(authed(chat("g2", "hi", 0), "nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Input.
    let e = c.chat(authed(chat("g2", "", 0), TOKEN_A)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    nothing_published(&mut worker).await;

    // An error reply from the worker.
    let mut c2 = c.clone();
    let call = tokio::spawn(async move {
        let mut s = c2.chat(authed(chat("g2", "hi", 0), TOKEN_A)).await?.into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    });
    let (req, d) = next_request(&mut worker).await;
    let err = pb::Error { code: pb::ErrorCode::PermissionDenied as i32, message: "no tools for you".into() };
    answer(&env, &req, &d, &[], Some(err)).await;
    let e = call.await.unwrap().unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::PermissionDenied, "no tools for you"));

    // No reply at all.
    let mut s = c.chat(authed(chat("g3", "hello?", 300), TOKEN_A)).await.expect("accepted").into_inner();
    let e = tokio::time::timeout(WAIT, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without an error"),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert_eq!(e.message(), "no reply within 300 ms");
    env.stop().await;
}

#[tokio::test]
async fn sessions_list_get_reset_are_per_user() {
    let env = Env::start().await;
    let mut worker = env.worker().await;
    let mut c = client(&env).await;
    let mut c2 = c.clone();
    let call = tokio::spawn(async move {
        let mut s = c2.chat(authed(chat("g4", "remember me", 0), TOKEN_A)).await?.into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    });
    let (req, d) = next_request(&mut worker).await;
    answer(&env, &req, &d, &["noted"], None).await;
    call.await.unwrap().expect("chat ok");

    let mine = c.list_sessions(authed(pb::ListSessionsRequest {}, TOKEN_A)).await.unwrap().into_inner();
    assert_eq!(mine.sessions.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(), ["g4"]);
    let theirs = c.list_sessions(authed(pb::ListSessionsRequest {}, TOKEN_B)).await.unwrap().into_inner();
    assert!(theirs.sessions.is_empty());

    let got =
        c.get_session(authed(pb::GetSessionRequest { session_id: "g4".into() }, TOKEN_A)).await.unwrap().into_inner();
    assert_eq!(got.session.unwrap().session_id, "g4");
    let e = c.get_session(authed(pb::GetSessionRequest { session_id: "g4".into() }, TOKEN_B)).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "session g4 not found"));
    let e = c.reset_session(authed(pb::ResetSessionRequest { session_id: "g4".into() }, TOKEN_B)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.list_sessions(Request::new(pb::ListSessionsRequest {})).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    c.reset_session(authed(pb::ResetSessionRequest { session_id: "g4".into() }, TOKEN_A)).await.expect("own reset");
    env.stop().await;
}
