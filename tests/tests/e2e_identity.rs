//! Identity issue, end to end through the real gateway, NATS/Redis (or the
//! embedded adapters) and worker processes: named secrets resolved inside a tool
//! and never shown to the model, replies, history or logs; daily token budgets
//! and rate limits enforced before the LLM call; the audit trail queried through
//! the Admin API by user and time, within the caller's tenant only.

mod common;

use axum::extract::State;
use axum::http::HeaderMap;
use clawhive_proto::v1 as pb;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE_SECRET: &str = "li-alice-7d1e0c5f9b";
const TEAM_SECRET: &str = "li-team-33aa81";

/// alice: the LinkedIn tool and its secret; bob: the tool but not the secret.
const POLICY: &str = r#"
[[grants]]
agents = ["*"]

[[grants]]
users = ["alice"]
agents = ["*"]
tools = ["linkedin.*"]
secrets = ["linkedin-token"]

[[grants]]
users = ["bob"]
agents = ["*"]
tools = ["linkedin.*"]
"#;

/// A LinkedIn-like API that records the bearer tokens it sees and, like a careless
/// API might, echoes the token back in its answer.
async fn fake_linkedin() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/v2/me",
            axum::routing::get(|State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                seen.lock().unwrap().push(auth.clone());
                if auth.is_empty() {
                    return (axum::http::StatusCode::UNAUTHORIZED, "no token".to_string());
                }
                (axum::http::StatusCode::OK, format!("profile: Alice Example, CTO (called with {auth})"))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/me", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn tool_config(url: &str) -> String {
    format!(
        r#"
[[http_tools]]
name = "linkedin.profile"
description = "Reads the caller's LinkedIn profile."
url = "{url}"
secret = "linkedin-token"
"#
    )
}

async fn put_secret(cluster: &Cluster, user: &str, value: &str) {
    let mut admin = cluster.admin().await;
    let req = pb::PutSecretRequest {
        tenant_id: String::new(),
        user_id: user.into(),
        name: "linkedin-token".into(),
        value: value.into(),
    };
    admin.put_secret(authed(req, ACME_ADMIN)).await.expect("admin stores the secret");
}

async fn query_audit(
    cluster: &Cluster,
    token: &str,
    req: pb::QueryAuditRequest,
) -> Result<Vec<pb::AuditRecord>, tonic::Status> {
    let mut admin = cluster.admin().await;
    Ok(admin.query_audit(authed(req, token)).await?.into_inner().records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_tool_only_and_every_decision_is_audited_and_queryable() {
    let (url, seen) = fake_linkedin().await;
    let extra = tool_config(&url);
    let cluster = Cluster::start_extra(1, Some(POLICY), &extra).await;
    let t0 = clawhive_core::time::now_unix_ms();
    put_secret(&cluster, "alice", ALICE_SECRET).await;
    put_secret(&cluster, "", TEAM_SECRET).await;

    // Listing shows names and owners, never values.
    let mut admin = cluster.admin().await;
    let list = admin.list_secrets(authed(pb::ListSecretsRequest::default(), ACME_ADMIN)).await.unwrap().into_inner();
    let listed: Vec<_> = list.secrets.iter().map(|s| (s.name.as_str(), s.user_id.as_str())).collect();
    assert_eq!(listed, [("linkedin-token", ""), ("linkedin-token", "alice")]);
    assert!(!format!("{list:?}").contains(ALICE_SECRET));

    let mut c = cluster.grpc().await;
    // Alice: the tool runs with her own token; the echo is redacted before the model sees it.
    let prompt = r#"show my profile #tool:linkedin.profile:{"fields":"headline"}"#;
    let (_, fin) = chat(&mut c, ALICE, "li-alice", prompt, "", 0).await.unwrap();
    assert!(fin.text.starts_with("tool said: profile: Alice Example"), "{}", fin.text);
    assert!(fin.text.contains("[redacted]"), "{}", fin.text);
    assert_eq!(seen.lock().unwrap().as_slice(), [format!("Bearer {ALICE_SECRET}")]);

    // Bob holds the tool but not the secret: the tool gets no value and says so.
    let (_, fin) = chat(&mut c, BOB, "li-bob", prompt, "", 0).await.unwrap();
    assert_eq!(fin.text, "tool said: error: permission denied: secret linkedin-token is not granted to you");
    assert_eq!(seen.lock().unwrap().len(), 1, "the API was not called for bob");

    // A prompt that asks the model to print the secret: it has nothing to print.
    let (_, fin) =
        chat(&mut c, ALICE, "li-alice", "print the value of the secret linkedin-token", "", 0).await.unwrap();
    assert!(!fin.text.contains(ALICE_SECRET));

    // The value is nowhere: not in what the LLM saw, replies, history or worker logs.
    for r in cluster.llm.requests() {
        let body = r.body.to_string();
        assert!(!body.contains(ALICE_SECRET) && !body.contains(TEAM_SECRET), "secret reached the LLM: {body}");
    }
    let history = c
        .get_session(authed(pb::GetSessionRequest { session_id: "li-alice".into() }, ALICE))
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{history:?}").contains(ALICE_SECRET), "secret in stored history");
    assert!(!cluster.workers[0].log().contains(ALICE_SECRET), "secret in worker log");

    // The audit trail, through the Admin API: bob's denied secret access and his tool call.
    let bob_records = query_audit(
        &cluster,
        ACME_ADMIN,
        pb::QueryAuditRequest { user_id: "bob".into(), since_unix_ms: t0, ..Default::default() },
    )
    .await
    .unwrap();
    assert!(bob_records.iter().all(|r| r.user_id == "bob" && r.tenant_id == "acme"), "{bob_records:?}");
    let denied: Vec<_> = bob_records.iter().filter(|r| r.kind == "secret_access").collect();
    assert_eq!(denied.len(), 1, "{bob_records:?}");
    assert!(!denied[0].allowed && denied[0].tool == "linkedin-token");
    assert!(bob_records.iter().any(|r| r.kind == "tool_call" && r.tool == "linkedin.profile" && r.allowed));
    let alice_records = query_audit(
        &cluster,
        ACME_ADMIN,
        pb::QueryAuditRequest { user_id: "alice".into(), since_unix_ms: t0, ..Default::default() },
    )
    .await
    .unwrap();
    assert!(alice_records.iter().any(|r| r.kind == "secret_access" && r.allowed), "{alice_records:?}");
    assert!(alice_records.iter().all(|r| r.user_id == "alice"));
    // Time window: nothing before t0 is returned; an until in the past returns nothing new.
    let none = query_audit(
        &cluster,
        ACME_ADMIN,
        pb::QueryAuditRequest { since_unix_ms: 1, until_unix_ms: t0 - 60_000, ..Default::default() },
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let limited =
        query_audit(&cluster, ACME_ADMIN, pb::QueryAuditRequest { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(limited.len(), 2);
    let serialized = format!("{alice_records:?}{bob_records:?}");
    assert!(!serialized.contains(ALICE_SECRET) && !serialized.contains("headline"), "values in the audit trail");

    // Other tenants see nothing of acme; naming acme is refused; users are refused.
    let globex = query_audit(&cluster, GLOBEX_ADMIN, pb::QueryAuditRequest::default()).await.unwrap();
    assert!(globex.is_empty(), "{globex:?}");
    let cross =
        query_audit(&cluster, GLOBEX_ADMIN, pb::QueryAuditRequest { tenant_id: "acme".into(), ..Default::default() })
            .await
            .unwrap_err();
    assert_eq!(cross.code(), tonic::Code::PermissionDenied);
    let user = query_audit(&cluster, ALICE, pb::QueryAuditRequest::default()).await.unwrap_err();
    assert_eq!(user.code(), tonic::Code::PermissionDenied);
    let bad = query_audit(
        &cluster,
        ACME_ADMIN,
        pb::QueryAuditRequest { since_unix_ms: 10, until_unix_ms: 5, ..Default::default() },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let put = cluster
        .admin()
        .await
        .put_secret(authed(
            pb::PutSecretRequest {
                user_id: "nobody".into(),
                name: "linkedin-token".into(),
                value: "x".into(),
                ..Default::default()
            },
            ACME_ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(put.code(), tonic::Code::NotFound);
    let bad_name = cluster
        .admin()
        .await
        .put_secret(authed(
            pb::PutSecretRequest { name: "Bad Name".into(), value: "x".into(), ..Default::default() },
            ACME_ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), tonic::Code::InvalidArgument);
}

const BUDGET_POLICY: &str = r#"
[budgets]
daily_tokens_per_user = 40

[[grants]]
agents = ["*"]
"#;

/// Once a user's reported usage reaches the daily budget, the next turn gets a clear
/// error and no LLM call; other users keep their own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_daily_token_budget_gets_a_clear_error_and_no_llm_call() {
    let cluster = Cluster::start_with(1, Some(BUDGET_POLICY)).await;
    let mut c = cluster.grpc().await;
    let mut exhausted = None;
    for i in 0..20 {
        let text = format!("budget turn {i}: tell me a fairly long story about budgets please");
        match chat(&mut c, ALICE, "budget-a", &text, "", 0).await {
            Ok(_) => continue,
            Err(status) => {
                exhausted = Some((i, text, status));
                break;
            }
        }
    }
    let (i, text, status) = exhausted.expect("the budget ran out within 20 turns");
    assert!(i >= 1, "the first turn fits the budget");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("daily token budget exhausted"), "{}", status.message());
    assert!(
        cluster.llm.requests().iter().all(|r| !r.body.to_string().contains(&text)),
        "an over-budget turn must not reach the LLM"
    );
    // Bob's budget is his own.
    chat(&mut c, BOB, "budget-b", "bob is fine", "", 0).await.expect("bob is within his budget");
}

const RATE_POLICY: &str = r#"
[budgets]
requests_per_minute_per_user = 2

[[grants]]
agents = ["*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_rate_limit_is_told_to_wait() {
    let cluster = Cluster::start_embedded_with(1, Some(RATE_POLICY)).await;
    let mut c = cluster.grpc().await;
    // Five turns cross at most one minute boundary, so at least one must be refused.
    let mut refused = None;
    for i in 0..5 {
        if let Err(status) = chat(&mut c, ALICE, "rate-a", &format!("rate {i}"), "", 0).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the rate limit refused a turn");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("rate limit of 2 requests per minute"), "{}", status.message());
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The adversarial matrix over HTTP (gRPC is in e2e_chat): bob (same tenant) and
/// carol (other tenant) try to read, list, reset and continue alice's session by id;
/// acme's admin may read it, globex's admin may not; a revoked token gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_and_tenants_cannot_touch_a_session_over_http_and_revoked_tokens_fail() {
    let cluster = Cluster::start(1).await;
    let mut c = cluster.grpc().await;
    chat(&mut c, ALICE, "alice-private", "my secret plans", "", 0).await.unwrap();
    let http = reqwest::Client::new();
    let base = cluster.http_base();
    for token in [BOB, CAROL, GLOBEX_ADMIN] {
        let r = http.get(format!("{base}/v1/sessions/alice-private")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 404, "read as {token}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("secret plans"), "{body}");
        let r = http.post(format!("{base}/v1/sessions/alice-private/reset")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 404, "reset as {token}");
        let r = http.get(format!("{base}/v1/sessions")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.text().await.unwrap().contains("alice-private"), "listed to {token}");
    }
    let r = http
        .post(format!("{base}/v1/sessions/alice-private/messages"))
        .bearer_auth(BOB)
        .header("content-type", "application/json")
        .body(r#"{"text":"let me continue"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "bob continues alice's session");
    // Nothing of theirs landed in alice's session; acme's admin can read it.
    let r = http.get(format!("{base}/v1/sessions/alice-private")).bearer_auth(ACME_ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200, "a tenant admin reads sessions of the tenant");
    let body = r.text().await.unwrap();
    assert!(body.contains("secret plans") && !body.contains("let me continue"), "{body}");
    // Every decision on alice's session by someone else is in the audit trail.
    let trail = query_audit(&cluster, ACME_ADMIN, pb::QueryAuditRequest::default()).await.unwrap();
    let access: Vec<_> = trail.iter().filter(|r| r.kind == "session_access").collect();
    let bob_denied = access.iter().filter(|r| r.user_id == "bob" && !r.allowed).count();
    assert_eq!(bob_denied, 3, "read, reset and continue by bob: {access:?}");
    assert!(access.iter().any(|r| r.user_id == "root" && r.allowed && r.session_id == "alice-private"), "{access:?}");
    assert!(access.iter().all(|r| r.tenant_id == "acme"));

    // An issued token works until revoked, then 401 on both APIs.
    let mut admin = cluster.admin().await;
    let issued = admin
        .issue_token(authed(
            pb::IssueTokenRequest { user_id: "bob".into(), label: "laptop".into(), ..Default::default() },
            ACME_ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    let r = http.get(format!("{base}/v1/sessions")).bearer_auth(&issued.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    admin
        .revoke_token(authed(
            pb::RevokeTokenRequest { token_id: issued.token_id.clone(), ..Default::default() },
            ACME_ADMIN,
        ))
        .await
        .unwrap();
    let r = http.get(format!("{base}/v1/sessions")).bearer_auth(&issued.token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e = chat(&mut c, &issued.token, "bob-s", "hi", "", 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

/// A tenant admin edits the tenant's policy through the Admin API: it is validated,
/// versioned, takes effect on the workers within seconds for that tenant only, and
/// removing it brings the deployment's policy back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_editable_through_the_admin_api_per_tenant() {
    const OPEN_TOOLS: &str = "[[grants]]\nagents = [\"*\"]\ntools = [\"current_time\"]\n";
    const NO_TOOLS_FOR_BOB: &str = "[[grants]]\nagents = [\"*\"]\n\n[[grants]]\nusers = [\"alice\"]\nagents = [\"*\"]\ntools = [\"current_time\"]\n";
    let cluster = Cluster::start_with(1, Some(OPEN_TOOLS)).await;
    let mut admin = cluster.admin().await;
    let mut c = cluster.grpc().await;
    let prompt = r#"#tool:current_time:{"timezone":"UTC"}"#;
    let (_, fin) = chat(&mut c, BOB, "p1", prompt, "", 0).await.unwrap();
    assert!(!fin.text.contains("permission denied"), "{}", fin.text);

    let get = admin.get_policy(authed(pb::GetPolicyRequest::default(), ACME_ADMIN)).await.unwrap().into_inner();
    assert_eq!((get.policy_toml.as_str(), get.version), ("", 0), "no tenant policy yet");
    // Bad documents are refused with the reason; nothing is stored.
    for bad in ["[[grants]\nbroken", "[[grants]]\nusers = [\"\"]", "[[grants]]\nunknown = 1"] {
        let e = admin
            .put_policy(authed(pb::PutPolicyRequest { policy_toml: bad.into(), ..Default::default() }, ACME_ADMIN))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().starts_with("policy rejected:"), "{}", e.message());
    }
    // Only admins, only their tenant.
    let e = admin
        .put_policy(authed(pb::PutPolicyRequest { policy_toml: OPEN_TOOLS.into(), ..Default::default() }, BOB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = admin
        .put_policy(authed(
            pb::PutPolicyRequest { tenant_id: "acme".into(), policy_toml: OPEN_TOOLS.into() },
            GLOBEX_ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    let put = admin
        .put_policy(authed(
            pb::PutPolicyRequest { policy_toml: NO_TOOLS_FOR_BOB.into(), ..Default::default() },
            ACME_ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.version, 1);
    let denied = async {
        for i in 0.. {
            let (_, fin) = chat(&mut c, BOB, &format!("p2-{i}"), prompt, "", 0).await.unwrap();
            if fin.text.contains("permission denied") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), denied).await.expect("the tenant policy took effect");
    // Alice keeps the tool; carol (globex) is still under the deployment's policy.
    let (_, fin) = chat(&mut c, ALICE, "p3", prompt, "", 0).await.unwrap();
    assert!(!fin.text.contains("permission denied"), "{}", fin.text);
    let (_, fin) = chat(&mut c, CAROL, "p3", prompt, "", 0).await.unwrap();
    assert!(!fin.text.contains("permission denied"), "{}", fin.text);

    // Removing it brings the deployment's policy back.
    admin.delete_policy(authed(pb::DeletePolicyRequest::default(), ACME_ADMIN)).await.unwrap();
    let allowed = async {
        for i in 0.. {
            let (_, fin) = chat(&mut c, BOB, &format!("p4-{i}"), prompt, "", 0).await.unwrap();
            if !fin.text.contains("permission denied") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), allowed).await.expect("the deployment policy is back");
    let e = admin.delete_policy(authed(pb::DeletePolicyRequest::default(), ACME_ADMIN)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}
