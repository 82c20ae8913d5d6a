//! Tool policy end to end: the worker checks the policy before the LLM call and
//! at every tool call, offers the model only granted tools, and audits every
//! decision on the audit stream (with an arguments digest, never the arguments).

mod common;

use clawhive_bus::{Bus, ConsumerSpec, StreamKind};
use clawhive_proto::v1 as pb;
use common::*;
use std::sync::Arc;
use std::time::Duration;

/// Everyone may use the `default` agent (no tools); only alice gets `current_time`,
/// and (through `*`) the `claude` agent.
const POLICY: &str = r#"
[[grants]]
agents = ["default"]

[[grants]]
users = ["alice"]
agents = ["*"]
tools = ["current_time"]
"#;

const ARGS: &str = r#"{"timezone":"Asia/Kolkata"}"#;
const DENIAL: &str = "error: permission denied: tool current_time is not granted to you";

macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod cluster_mode {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Cluster::start_with(1, Some(super::POLICY)).await).await
                }
            )*
        }
        mod single_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Cluster::start_embedded_with(1, Some(super::POLICY)).await).await
                }
            )*
        }
    };
}

in_both_modes!(
    a_tool_call_without_a_grant_is_refused_and_audited,
    an_agent_without_a_grant_is_refused_before_any_llm_call,
);

/// Every audit record on the stream so far (fresh durable, so from the start).
async fn audit_records(bus: &Arc<dyn Bus>, durable: &str) -> Vec<(pb::AuditRecord, Vec<u8>)> {
    let mut consumer = bus
        .consume(ConsumerSpec {
            stream: StreamKind::Audit,
            durable: durable.into(),
            filter_subject: "clawhive.audit.>".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 1,
            max_ack_pending: 1000,
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(800), consumer.next()).await {
        assert_eq!(d.message.subject, "clawhive.audit.acme");
        let rec = clawhive_bus::envelope::decode_audit(&d.message.payload).unwrap();
        out.push((rec, d.message.payload.to_vec()));
        let _ = d.acker.ack().await;
    }
    out
}

/// The tool names offered in LLM requests whose messages mention `marker`.
fn offered_tools(cluster: &Cluster, marker: &str) -> Vec<Vec<String>> {
    cluster
        .llm
        .requests()
        .into_iter()
        .filter(|r| r.body["messages"].to_string().contains(marker))
        .map(|r| {
            r.body["tools"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| t["function"]["name"].as_str().or(t["name"].as_str()).unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

async fn a_tool_call_without_a_grant_is_refused_and_audited(cluster: Cluster) {
    let mut c = cluster.grpc().await;

    // Alice holds the grant: the tool runs and she is offered it.
    let (_, fin) =
        chat(&mut c, ALICE, "t-alice", &format!("alice asks #tool:current_time:{ARGS}"), "", 0).await.unwrap();
    assert!(fin.text.starts_with("tool said: "), "{}", fin.text);
    assert!(!fin.text.contains("permission denied"), "{}", fin.text);
    let alice_offers = offered_tools(&cluster, "alice asks");
    assert!(!alice_offers.is_empty());
    assert!(alice_offers.iter().all(|t| t.iter().any(|n| n == "current_time")), "{alice_offers:?}");

    // Bob does not: the model is talked into the call anyway; it is refused, not executed.
    let (_, fin) = chat(&mut c, BOB, "t-bob", &format!("bob asks #tool:current_time:{ARGS}"), "", 0).await.unwrap();
    assert_eq!(fin.text, format!("tool said: {DENIAL}"));
    let bob_offers = offered_tools(&cluster, "bob asks");
    assert!(!bob_offers.is_empty());
    assert!(bob_offers.iter().all(|t| !t.iter().any(|n| n == "current_time")), "{bob_offers:?}");
    let got =
        c.get_session(authed(pb::GetSessionRequest { session_id: "t-bob".into() }, BOB)).await.unwrap().into_inner();
    let tool_results: Vec<_> = got.messages.iter().filter(|m| m.role == "tool").map(|m| m.content.as_str()).collect();
    assert_eq!(tool_results, [DENIAL]);

    // Every decision is on the audit stream; arguments only as a digest.
    let records = audit_records(&cluster.bus, "policy-audit-tools").await;
    let find = |user: &str, kind: &str| {
        records.iter().filter(|(r, _)| r.user_id == user && r.kind == kind).map(|(r, _)| r.clone()).collect::<Vec<_>>()
    };
    let digest = clawhive_core::policy::arguments_digest(ARGS);

    let bob_calls = find("bob", "tool_call");
    assert_eq!(bob_calls.len(), 1, "{records:?}");
    let denied = &bob_calls[0];
    assert!(!denied.allowed);
    assert_eq!(denied.tool, "current_time");
    assert_eq!(denied.agent_id, "default");
    assert_eq!(denied.tenant_id, "acme");
    assert_eq!(denied.session_id, "t-bob");
    assert!(!denied.request_id.is_empty());
    assert!(!denied.reason.is_empty());
    assert_eq!(denied.arguments_sha256, digest);
    assert!(denied.at_unix_ms > 0);

    let alice_calls = find("alice", "tool_call");
    assert_eq!(alice_calls.len(), 1, "{records:?}");
    assert!(alice_calls[0].allowed);
    assert_eq!(alice_calls[0].arguments_sha256, digest);

    for user in ["alice", "bob"] {
        let access = find(user, "agent_access");
        assert_eq!(access.len(), 1, "{records:?}");
        assert!(access[0].allowed);
        assert!(access[0].tool.is_empty() && access[0].arguments_sha256.is_empty());
    }
    for (_, raw) in &records {
        let text = String::from_utf8_lossy(raw);
        assert!(!text.contains("Asia/Kolkata") && !text.contains("timezone"), "arguments leaked into audit: {text}");
    }
}

async fn an_agent_without_a_grant_is_refused_before_any_llm_call(cluster: Cluster) {
    let mut c = cluster.grpc().await;
    let err = chat(&mut c, BOB, "a-bob", "bob wants claude", "claude", 0).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        cluster.llm.requests().iter().all(|r| !r.body.to_string().contains("bob wants claude")),
        "a denied agent must not reach the LLM"
    );

    // Alice holds `agents = ["*"]`.
    let (_, fin) = chat(&mut c, ALICE, "a-alice", "alice wants claude", "claude", 0).await.unwrap();
    assert!(fin.text.contains("alice wants claude"), "{}", fin.text);

    let records = audit_records(&cluster.bus, "policy-audit-agents").await;
    let bob: Vec<_> = records.iter().map(|(r, _)| r).filter(|r| r.user_id == "bob").collect();
    assert_eq!(bob.len(), 1, "{records:?}");
    assert_eq!(bob[0].kind, "agent_access");
    assert_eq!(bob[0].agent_id, "claude");
    assert!(!bob[0].allowed);
    assert!(bob[0].reason.contains("no grant"), "{}", bob[0].reason);
    let alice: Vec<_> = records.iter().map(|(r, _)| r).filter(|r| r.user_id == "alice").collect();
    assert!(alice.iter().any(|r| r.kind == "agent_access" && r.allowed && r.agent_id == "claude"), "{records:?}");
}

/// A changed policy file takes effect without a restart; a broken one keeps the last good policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_reloads_when_its_file_changes() {
    let cluster = Cluster::start_embedded_with(1, Some(POLICY)).await;
    let mut c = cluster.grpc().await;
    let prompt = format!("reload #tool:current_time:{ARGS}");
    let (_, fin) = chat(&mut c, BOB, "r1", &prompt, "", 0).await.unwrap();
    assert_eq!(fin.text, format!("tool said: {DENIAL}"));

    std::fs::write(cluster.policy_path(), POLICY.replace("alice", "bob")).unwrap();
    let granted = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (_, fin) = chat(&mut c, BOB, &format!("r2-{i}"), &prompt, "", 0).await.unwrap();
            if !fin.text.contains("permission denied") {
                assert!(fin.text.starts_with("tool said: "), "{}", fin.text);
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), granted).await.expect("the new policy took effect");

    // A broken file is rejected; bob keeps the grant of the last good policy.
    std::fs::write(cluster.policy_path(), "[[grants]\nbroken").unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (_, fin) = chat(&mut c, BOB, "r3", &prompt, "", 0).await.unwrap();
    assert!(!fin.text.contains("permission denied"), "{}", fin.text);
}
