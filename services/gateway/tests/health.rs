//! `/healthz`, `/readyz` and the gRPC health service.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn healthz_and_readyz_report_json_and_readyz_fails_without_nats() {
    let mut env = Env::start().await;
    let resp = env.http.get(env.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let resp = env.http.get(env.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ready", "checks": {"bus": "ok", "store": "ok"}}));

    env.nats.stop();
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = env.http.get(env.url("/readyz")).send().await.unwrap();
        if resp.status() == 503 {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "not_ready");
            assert_eq!(body["checks"]["store"], "ok");
            assert_ne!(body["checks"]["bus"], "ok");
            assert!(body["checks"]["bus"].as_str().unwrap().contains("NATS"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed {} after NATS stopped", resp.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Liveness does not depend on the bus.
    assert_eq!(env.http.get(env.url("/healthz")).send().await.unwrap().status(), 200);
    env.stop().await;
}

#[tokio::test]
async fn grpc_health_is_serving() {
    let env = Env::start().await;
    let channel = tonic::transport::Endpoint::from_shared(env.grpc_url()).unwrap().connect().await.expect("connects");
    let mut client = HealthClient::new(channel);
    for service in ["", "clawhive.v1.Assistant"] {
        let resp = client
            .check(HealthCheckRequest { service: service.into() })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"));
        assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32, "{service:?}");
    }
    env.stop().await;
}
