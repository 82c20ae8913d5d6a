//! The gRPC Admin service against real NATS and Redis: issued tokens
//! authenticate both APIs, revoked and expired ones do not, only admins get in,
//! and only within their tenant.

mod common;

use clawhive_proto::v1 as pb;
use clawhive_proto::v1::admin_client::AdminClient;
use clawhive_proto::v1::assistant_client::AssistantClient;
use common::*;
use tonic::transport::Channel;
use tonic::{Code, Request};

const ADMIN_ACME: &str = "acme-admin-token";
const ADMIN_OTHER: &str = "other-admin-token";

async fn start() -> Env {
    Env::start_seeded(|_| {}, &[("acme", "root", &["admin"], ADMIN_ACME), ("other", "root", &["admin"], ADMIN_OTHER)])
        .await
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn admin(env: &Env) -> AdminClient<Channel> {
    AdminClient::connect(env.grpc_url()).await.expect("gRPC connects")
}

async fn list_sessions(env: &Env, token: &str) -> Result<pb::ListSessionsResponse, tonic::Status> {
    let mut c = AssistantClient::connect(env.grpc_url()).await.expect("gRPC connects");
    c.list_sessions(authed(pb::ListSessionsRequest {}, token)).await.map(|r| r.into_inner())
}

async fn http_status(env: &Env, token: &str) -> u16 {
    env.http.get(env.url("/v1/sessions")).bearer_auth(token).send().await.expect("HTTP answers").status().as_u16()
}

async fn create(c: &mut AdminClient<Channel>, admin: &str, user: &str) {
    let req = pb::CreateUserRequest { user_id: user.into(), roles: vec!["member".into()], ..Default::default() };
    c.create_user(authed(req, admin)).await.expect("user created");
}

async fn issue(
    c: &mut AdminClient<Channel>,
    admin: &str,
    user: &str,
    expires_at_unix_ms: i64,
) -> pb::IssueTokenResponse {
    let req =
        pb::IssueTokenRequest { user_id: user.into(), expires_at_unix_ms, label: "test".into(), ..Default::default() };
    c.issue_token(authed(req, admin)).await.expect("token issued").into_inner()
}

#[tokio::test]
async fn issued_tokens_authenticate_until_revoked() {
    let env = start().await;
    let mut c = admin(&env).await;
    create(&mut c, ADMIN_ACME, "dave").await;
    let t = issue(&mut c, ADMIN_ACME, "dave", 0).await;
    assert!(t.token.starts_with("chv1_"), "{}", t.token);
    list_sessions(&env, &t.token).await.expect("issued token authenticates gRPC");
    assert_eq!(http_status(&env, &t.token).await, 200);
    // The static tokens still work alongside.
    list_sessions(&env, TOKEN_A).await.expect("static token still works");

    let listed = c
        .list_tokens(authed(pb::ListTokensRequest { user_id: "dave".into(), ..Default::default() }, ADMIN_ACME))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);
    assert_eq!((listed.tokens[0].token_id.as_str(), listed.tokens[0].revoked), (t.token_id.as_str(), false));

    c.revoke_token(authed(pb::RevokeTokenRequest { token_id: t.token_id.clone(), ..Default::default() }, ADMIN_ACME))
        .await
        .expect("revoked");
    assert_eq!(list_sessions(&env, &t.token).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(http_status(&env, &t.token).await, 401);
    env.stop().await;
}

/// Polls `call` with `token` until it is refused as unauthenticated; fails after 2 s.
async fn refused_within_2s<F, Fut>(call: &F, token: &str, what: &str)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(2_000);
    loop {
        match call(token.to_string()).await {
            Err(e) if e.code() == Code::Unauthenticated => return,
            other => {
                assert!(tokio::time::Instant::now() < deadline, "B still accepts {what}: {other:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// Gateways remember resolved tokens (`gateway.auth_cache_ms`, 5 s by default);
/// a revocation through one gateway reaches the others' caches over the bus.
#[tokio::test]
async fn a_token_revoked_through_one_gateway_stops_working_on_the_others() {
    let env = start().await;
    let stop_b = tokio_util::sync::CancellationToken::new();
    let b = env.second_gateway(stop_b.clone()).await;
    let b_url = format!("http://{}", b.grpc_addr);
    let on_b = |token: String| {
        let url = b_url.clone();
        async move {
            let mut c = AssistantClient::connect(url).await.expect("gRPC connects");
            c.list_sessions(authed(pb::ListSessionsRequest {}, &token)).await.map(drop)
        }
    };
    let mut c = admin(&env).await;
    create(&mut c, ADMIN_ACME, "frank").await;
    let t = issue(&mut c, ADMIN_ACME, "frank", 0).await;
    // Both gateways have resolved (and remembered) it.
    list_sessions(&env, &t.token).await.expect("gateway A");
    on_b(t.token.clone()).await.expect("gateway B");

    c.revoke_token(authed(pb::RevokeTokenRequest { token_id: t.token_id.clone(), ..Default::default() }, ADMIN_ACME))
        .await
        .expect("revoked");
    assert_eq!(list_sessions(&env, &t.token).await.unwrap_err().code(), Code::Unauthenticated, "A: at once");
    // B hears it over the bus (milliseconds), long before its cache entry would expire.
    refused_within_2s(&on_b, &t.token, "a revoked token").await;
    // Deleting a user reaches B the same way.
    let t2 = issue(&mut c, ADMIN_ACME, "frank", 0).await;
    on_b(t2.token.clone()).await.expect("gateway B, new token");
    c.delete_user(authed(pb::DeleteUserRequest { user_id: "frank".into(), ..Default::default() }, ADMIN_ACME))
        .await
        .expect("deleted");
    refused_within_2s(&on_b, &t2.token, "a deleted user's token").await;
    stop_b.cancel();
    b.wait().await.expect("B stops");
    env.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let env = start().await;
    let mut c = admin(&env).await;
    create(&mut c, ADMIN_ACME, "erin").await;
    let t = issue(&mut c, ADMIN_ACME, "erin", clawhive_core::time::now_unix_ms() - 1000).await;
    assert_eq!(list_sessions(&env, &t.token).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(http_status(&env, &t.token).await, 401);
    env.stop().await;
}

#[tokio::test]
async fn only_admins_may_call_the_admin_api() {
    let env = start().await;
    let mut c = admin(&env).await;
    let e = c.list_users(authed(pb::ListUsersRequest::default(), TOKEN_A)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .create_user(authed(pb::CreateUserRequest { user_id: "mallory".into(), ..Default::default() }, TOKEN_A))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An issued token without the admin role is refused too.
    create(&mut c, ADMIN_ACME, "frank").await;
    let t = issue(&mut c, ADMIN_ACME, "frank", 0).await;
    let e = c.list_users(authed(pb::ListUsersRequest::default(), &t.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c.list_users(Request::new(pb::ListUsersRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // An issued admin token works.
    let req = pb::CreateUserRequest { user_id: "grace".into(), roles: vec!["admin".into()], ..Default::default() };
    c.create_user(authed(req, ADMIN_ACME)).await.unwrap();
    let t = issue(&mut c, ADMIN_ACME, "grace", 0).await;
    let users = c.list_users(authed(pb::ListUsersRequest::default(), &t.token)).await.unwrap().into_inner().users;
    let ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob", "frank", "grace", "root"]);
    env.stop().await;
}

#[tokio::test]
async fn admins_act_only_within_their_tenant() {
    let env = start().await;
    let mut c = admin(&env).await;
    create(&mut c, ADMIN_OTHER, "olga").await;
    let olga = issue(&mut c, ADMIN_OTHER, "olga", 0).await;
    // Naming the other tenant is refused.
    let req = pb::ListUsersRequest { tenant_id: "other".into() };
    assert_eq!(c.list_users(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::PermissionDenied);
    let req = pb::CreateUserRequest { tenant_id: "other".into(), user_id: "x".into(), ..Default::default() };
    assert_eq!(c.create_user(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::PermissionDenied);
    // The other tenant's users and tokens are simply not there.
    let users = c.list_users(authed(pb::ListUsersRequest::default(), ADMIN_ACME)).await.unwrap().into_inner().users;
    let ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob", "root"], "no user of the other tenant");
    let req = pb::IssueTokenRequest { user_id: "olga".into(), ..Default::default() };
    assert_eq!(c.issue_token(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::NotFound);
    let req = pb::DeleteUserRequest { user_id: "olga".into(), ..Default::default() };
    assert_eq!(c.delete_user(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::NotFound);
    let req = pb::ListTokensRequest { user_id: "olga".into(), ..Default::default() };
    assert_eq!(c.list_tokens(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::NotFound);
    let req = pb::RevokeTokenRequest { token_id: olga.token_id.clone(), ..Default::default() };
    assert_eq!(c.revoke_token(authed(req, ADMIN_ACME)).await.unwrap_err().code(), Code::NotFound);
    // Olga's token still works, in her tenant; the same user id in acme is another principal.
    list_sessions(&env, &olga.token).await.expect("still valid");
    create(&mut c, ADMIN_ACME, "olga").await;
    let acme_olga = issue(&mut c, ADMIN_ACME, "olga", 0).await;
    list_sessions(&env, &acme_olga.token).await.expect("acme's olga");
    // Deleting acme's olga leaves the other tenant's olga alone.
    let req = pb::DeleteUserRequest { user_id: "olga".into(), ..Default::default() };
    c.delete_user(authed(req, ADMIN_ACME)).await.expect("deleted");
    assert_eq!(list_sessions(&env, &acme_olga.token).await.unwrap_err().code(), Code::Unauthenticated);
    list_sessions(&env, &olga.token).await.expect("other tenant's olga still valid");
    env.stop().await;
}

#[tokio::test]
async fn issued_plaintext_is_nowhere_in_redis() {
    let env = start().await;
    let mut c = admin(&env).await;
    create(&mut c, ADMIN_ACME, "heidi").await;
    let t = issue(&mut c, ADMIN_ACME, "heidi", 0).await;
    list_sessions(&env, &t.token).await.expect("authenticates");
    let mut con = redis::Client::open(env.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    assert!(!keys.is_empty());
    let secret = t.token.trim_start_matches("chv1_");
    for key in keys {
        assert!(!key.contains(secret), "plaintext in key {key}");
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap()],
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            other => panic!("unexpected type {other} of {key}"),
        };
        for v in values {
            assert!(!v.contains(secret), "plaintext in the value of {key}");
        }
    }
    env.stop().await;
}
