//! The gateway and agent-worker binaries started with their Deployment's
//! command, args and env (Secret values filled with test values), the base
//! config file, and only loopback addresses overridden: readiness follows
//! NATS, `/metrics` answers, and SIGTERM during a slow turn never loses it.

use super::*;

/// A service binary started like its Deployment, plus its admin address.
struct Pod {
    proc: ServiceProcess,
    admin: String,
}

/// What differs from a pod: loopback addresses, the fake LLM, test secret values.
struct Env {
    config_path: String,
    nats_url: String,
    redis_url: String,
    llm_base_url: String,
    slack_base_url: String,
}

impl Env {
    fn start(&self, deployment: &str, extra: &[(&str, String)]) -> Pod {
        let w = workload(deployment);
        // Each service package is named after its binary.
        let bin = binary(w.binary(), w.binary()).expect("service binary");
        let args: Vec<String> =
            w.args.iter().map(|a| if a == w.config_arg() { self.config_path.clone() } else { a.clone() }).collect();
        // Every env name the Deployment sets, with the value its Secret would hold here.
        let mut env: Vec<(&str, String)> = w
            .env
            .iter()
            .map(|e| {
                let value = match e.name.as_str() {
                    "CLAWHIVE_ENVELOPE_KEY" => ENVELOPE_KEY.to_string(),
                    "CLAWHIVE_BOOTSTRAP_ADMIN_TOKEN" => BOOT_TOKEN.to_string(),
                    "OPENROUTER_API_KEY" => "test-openrouter-key".to_string(),
                    "SLACK_APP_TOKEN" => clawhive_tests::fake_slack::APP_TOKEN.to_string(),
                    "SLACK_BOT_TOKEN" => clawhive_tests::fake_slack::BOT_TOKEN.to_string(),
                    "SLACK_SIGNING_SECRET" => "test-signing-secret".to_string(),
                    _ => String::new(), // an empty Secret value counts as unset
                };
                (e.name.as_str(), value)
            })
            .collect();
        let admin = format!("127.0.0.1:{}", free_port().unwrap());
        env.extend([
            ("CLAWHIVE_TELEMETRY__ADMIN_ADDR", admin.clone()),
            ("CLAWHIVE_BUS__NATS_URL", self.nats_url.clone()),
            ("CLAWHIVE_STORE__REDIS_URL", self.redis_url.clone()),
            ("CLAWHIVE_GATEWAY__HTTP_ADDR", format!("127.0.0.1:{}", free_port().unwrap())),
            ("CLAWHIVE_GATEWAY__GRPC_ADDR", format!("127.0.0.1:{}", free_port().unwrap())),
            ("CLAWHIVE_LLM__PROVIDERS__OPENROUTER__BASE_URL", self.llm_base_url.clone()),
            ("CLAWHIVE_SLACK__API_BASE_URL", self.slack_base_url.clone()),
            ("CLAWHIVE_SLACK__HTTP_ADDR", format!("127.0.0.1:{}", free_port().unwrap())),
            // Short leases so a handed-back turn is picked up quickly by another worker.
            ("CLAWHIVE_WORKER__LEASE_TTL_MS", "3000".to_string()),
        ]);
        env.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = ServiceProcess::spawn(&bin, &args, &env).expect("spawn service");
        Pod { proc, admin }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// GET `path` on `addr`: (status, JSON body or the text as a JSON string).
async fn get(addr: &str, path: &str) -> Option<(u16, Json, String)> {
    let r = http().get(format!("http://{addr}{path}")).timeout(Duration::from_secs(3)).send().await.ok()?;
    let status = r.status().as_u16();
    let text = r.text().await.ok()?;
    let body = serde_json::from_str(&text).unwrap_or(Json::String(text.clone()));
    Some((status, body, text))
}

/// Polls `/readyz` until `want(status, body)` or `timeout`; returns the last answer.
async fn readyz_until(pod: &Pod, timeout: Duration, want: impl Fn(u16, &Json) -> bool) -> (u16, Json) {
    let end = Instant::now() + timeout;
    let mut last = (0, Json::Null);
    while Instant::now() < end {
        if let Some((s, b, _)) = get(&pod.admin, "/readyz").await {
            if want(s, &b) {
                return (s, b);
            }
            last = (s, b);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never matched within {timeout:?}; last {last:?}; log:\n{}", pod.proc.log());
}

async fn chat(gateway_http: &str, session: &str, text: &str) -> reqwest::Response {
    http()
        .post(format!("http://{gateway_http}/v1/sessions/{session}/messages"))
        .bearer_auth(BOOT_TOKEN)
        .json(&json!({"text": text, "timeout_ms": 40000}))
        .send()
        .await
        .expect("the gateway answers")
}

/// The gateway's HTTP address, from its log line.
async fn http_addr_of(pod: &Pod) -> String {
    pod.proc.wait_for_log("Gateway listening.", Duration::from_secs(30)).await.expect("gateway listening");
    let log = pod.proc.log();
    let line = log.lines().find(|l| l.contains("Gateway listening.")).unwrap();
    let v: Json = serde_json::from_str(line).expect("JSON logs (telemetry.log_format = json in the base config)");
    v["http_addr"].as_str().expect("http_addr field").to_string()
}

/// Waits until the fake LLM has seen `n` requests whose prompt contains `needle`.
async fn llm_saw(llm: &FakeLlm, needle: &str, n: usize) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if llm.requests().iter().filter(|r| r.body.to_string().contains(needle)).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the LLM did not see {n} request(s) with {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_nats_and_sigterm_during_a_turn_never_loses_it() {
    clawhive_telemetry::install_crypto_provider();
    let mut nats = NatsServer::start().expect("nats-server");
    let redis = RedisServer::start().expect("redis-server");
    let llm = FakeLlm::start().await;
    let slack = clawhive_tests::fake_slack::FakeSlack::start().await;
    let scratch = ScratchDir::create("deploy").unwrap();
    // The base ConfigMap's file, as the pod mounts it.
    let config_path = scratch.path().join("clawhive.toml");
    std::fs::copy(kustomize_dir("base/clawhive.toml"), &config_path).unwrap();
    let env = Env {
        config_path: config_path.display().to_string(),
        nats_url: nats.url(),
        redis_url: redis.url(),
        llm_base_url: llm.openai_base_url(),
        slack_base_url: slack.api_base_url(),
    };

    let t_build = Instant::now();
    // Build the binaries first, so the pods below start within moments of each other.
    tokio::task::spawn_blocking(|| {
        for w in base_workloads() {
            binary(w.binary(), w.binary()).expect("service binary");
        }
    })
    .await
    .unwrap();

    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6} ms] {what}", t0.elapsed().as_millis());
    eprintln!("binaries built in {} ms", t_build.elapsed().as_millis());
    // 1. NATS is down: every pod is live but not ready, and says why.
    nats.stop();
    let gateway = env.start("clawhive-gateway", &[]);
    let worker_a = env.start("clawhive-agent-worker", &[]);
    let bridge = env.start("clawhive-slack-bridge", &[]);
    let scheduler = env.start("clawhive-scheduler", &[]);
    for pod in [&gateway, &worker_a, &bridge, &scheduler] {
        let (status, body) = readyz_until(pod, Duration::from_secs(30), |s, _| s != 0).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable", "{body}");
        assert_ne!(body["checks"]["nats"], "ok", "{body}");
        assert!(body["checks"].get("redis").is_some(), "{body}");
        let (live, health, _) = get(&pod.admin, "/healthz").await.unwrap();
        assert_eq!((live, health), (200, json!({"status": "ok"})));
    }

    step("unready while NATS is down");
    // 2. NATS comes up: ready, by the JSON probe contract.
    nats.restart().expect("nats restarts");
    for pod in [&gateway, &worker_a, &scheduler] {
        let (_, body) = readyz_until(pod, Duration::from_secs(40), |s, _| s == 200).await;
        assert_eq!(body, json!({"status": "ok", "checks": {"nats": "ok", "redis": "ok"}}));
    }
    // The bridge is ready once it also holds a Slack connection (or serves the Events API).
    let (_, body) = readyz_until(&bridge, Duration::from_secs(40), |s, _| s == 200).await;
    assert_eq!(body, json!({"status": "ok", "checks": {"nats": "ok", "redis": "ok", "slack": "ok"}}));
    for (pod, service) in [(&bridge, "clawhive-slack-bridge"), (&scheduler, "clawhive-scheduler")] {
        let (_, _, metrics) = get(&pod.admin, "/metrics").await.unwrap();
        assert!(metrics.contains(&format!("clawhive_build_info{{service=\"{service}\"")), "{metrics}");
    }
    let (status, _, metrics) = get(&gateway.admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("clawhive_build_info{service=\"clawhive-gateway\""), "{metrics}");
    let gw_http = http_addr_of(&gateway).await;

    step("ready once NATS is up");
    // 3. SIGTERM during a slow turn, drain long enough: the turn completes on
    //    the draining worker, which reports unavailable meanwhile, then exits 0.
    let first = tokio::spawn({
        let gw_http = gw_http.clone();
        async move { chat(&gw_http, "drain-1", "#slow:2500 first turn").await }
    });
    llm_saw(&llm, "first turn", 1).await;
    worker_a.proc.terminate();
    let (status, body) = readyz_until(&worker_a, Duration::from_secs(5), |s, _| s == 503).await;
    assert_eq!((status, &body["status"], &body["draining"]), (503, &json!("unavailable"), &json!(true)), "{body}");
    let resp = first.await.unwrap();
    assert_eq!(resp.status(), 200);
    let reply: Json = resp.json().await.unwrap();
    assert!(reply["text"].as_str().unwrap().contains("first turn"), "{reply}");
    let mut worker_a = worker_a;
    let exit = tokio::task::spawn_blocking(move || {
        let s = worker_a.proc.wait_exit(Duration::from_secs(20));
        (s, worker_a)
    })
    .await
    .unwrap();
    assert!(exit.0.is_some_and(|s| s.success()), "worker A exits cleanly after draining: {:?}", exit.0);

    step("drained turn completed");
    // 4. SIGTERM with a drain shorter than the turn: the turn is handed back
    //    un-acked and another worker finishes it; the caller gets one reply.
    let worker_b = env.start("clawhive-agent-worker", &[("CLAWHIVE_WORKER__DRAIN_TIMEOUT_MS", "300".into())]);
    readyz_until(&worker_b, Duration::from_secs(30), |s, _| s == 200).await;
    let second = tokio::spawn({
        let gw_http = gw_http.clone();
        async move { chat(&gw_http, "drain-2", "#slow:3000 second turn").await }
    });
    llm_saw(&llm, "second turn", 1).await;
    let worker_c = env.start("clawhive-agent-worker", &[]);
    readyz_until(&worker_c, Duration::from_secs(30), |s, _| s == 200).await;
    worker_b.proc.terminate();
    worker_b.proc.wait_for_log("drain timeout", Duration::from_secs(10)).await.expect("worker B hands the turn back");
    let resp = second.await.unwrap();
    assert_eq!(resp.status(), 200);
    let reply: Json = resp.json().await.unwrap();
    assert!(reply["text"].as_str().unwrap().contains("second turn"), "{reply}");
    llm_saw(&llm, "second turn", 2).await; // asked again by worker C
    let (_, _, metrics) = get(&worker_c.admin, "/metrics").await.unwrap();
    assert!(metrics.contains("clawhive_turn_duration_seconds_count{outcome=\"ack\"} 1"), "{metrics}");
    assert!(metrics.contains("clawhive_llm_tokens_total{model=\"openrouter/arcee-ai/trinity-mini:free\""), "{metrics}");

    step("handed-back turn redelivered");
    // 5. The others, with nothing in flight, stop at once and cleanly.
    for mut pod in [gateway, bridge, scheduler] {
        pod.proc.terminate();
        let (exit, pod) =
            tokio::task::spawn_blocking(move || (pod.proc.wait_exit(Duration::from_secs(25)), pod)).await.unwrap();
        assert!(exit.is_some_and(|s| s.success()), "clean exit on SIGTERM: {exit:?}; log:\n{}", pod.proc.log());
    }
    step("every service stopped cleanly");
    drop(worker_c);
}
