//! Envelope signatures: a request published straight to NATS with a forged or
//! altered principal is rejected by the worker — no LLM call, no reply.

mod common;

use clawhive_bus::Subjects;
use clawhive_bus::envelope::{Envelopes, decode_reply};
use clawhive_core::signing::EnvelopeSigner;
use clawhive_core::{AgentId, TenantId};
use clawhive_proto::v1 as pb;
use common::*;
use futures::StreamExt;
use std::time::Duration;

fn request(id: &str, user: &str, text: &str) -> pb::AgentRequest {
    let now = clawhive_core::time::now_unix_ms();
    pb::AgentRequest {
        request_id: id.into(),
        principal: Some(pb::Principal { tenant_id: "acme".into(), user_id: user.into(), ..Default::default() }),
        session_id: format!("forge-{id}"),
        agent_id: "default".into(),
        text: text.into(),
        reply_route: Some(pb::ReplyRoute {
            target: Some(pb::reply_route::Target::Gateway(pb::GatewayRoute {
                instance_id: "attacker".into(),
                call_id: id.into(),
            })),
        }),
        deadline_unix_ms: now + 20_000,
        created_unix_ms: now,
        stream_deltas: false,
        speaker: user.into(),
        signature: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_altered_envelopes_are_rejected_by_the_worker() {
    let cluster = Cluster::start(1).await;
    let subjects = Subjects::new("clawhive");
    let envelopes = Envelopes::new(cluster.bus.clone(), subjects.clone());
    let mut replies = cluster.bus.subscribe(&subjects.gateway_reply("attacker")).await.unwrap();
    let (tenant, agent) = (TenantId::new("acme").unwrap(), AgentId::new("default").unwrap());

    // 1. No signature at all.
    envelopes.publish_request(&tenant, &agent, &request("unsigned", "alice", "hi"), None).await.unwrap();
    // 2. Signed with the wrong key.
    let mut wrong = request("wrongkey", "alice", "hi");
    EnvelopeSigner::new(&[9u8; 32]).unwrap().sign(&mut wrong);
    envelopes.publish_request(&tenant, &agent, &wrong, None).await.unwrap();
    // 3. Signed correctly for bob, then the principal altered to alice.
    let signer = EnvelopeSigner::new(ENVELOPE_KEY.as_bytes()).unwrap();
    let mut altered = request("altered", "bob", "hi");
    signer.sign(&mut altered);
    altered.principal.as_mut().unwrap().user_id = "alice".into();
    envelopes.publish_request(&tenant, &agent, &altered, None).await.unwrap();

    cluster.workers[0]
        .wait_for_log("request_id=altered", Duration::from_secs(20))
        .await
        .expect("the worker saw the altered request");
    let log = cluster.workers[0].log();
    assert_eq!(log.matches("envelope signature check failed").count(), 3, "{log}");
    assert_eq!(cluster.llm.request_count(), 0, "no forged request may reach the LLM");

    // 4. The control: a correctly signed request is answered, so the rejections above are real.
    let mut good = request("good", "carl", "signed hello");
    signer.sign(&mut good);
    envelopes.publish_request(&tenant, &agent, &good, None).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), replies.next()).await.expect("a reply").unwrap();
    let reply = decode_reply(&msg.payload).unwrap();
    assert_eq!(reply.request_id, "good", "only the signed request gets a reply");
    assert_eq!(reply.text, "echo[1]: signed hello");
    assert_eq!(cluster.llm.request_count(), 1);
}
