//! The deployment as a platform team gets it: the image's binaries, the
//! Kustomize manifests' commands, ports, env names and probes agree with the
//! workspace and the config model; and the service binaries, run with the
//! Deployment's args and env, report readiness by the probe contract and drain
//! on SIGTERM without losing a turn.
//!
//! Rendering and schema validation of the overlays (`kubectl kustomize`,
//! `kubernetes-validate --strict`) run in `.ci/run`.

mod deploy;

use clawhive_core::config::Config;
use clawhive_tests::fake_llm::FakeLlm;
use clawhive_tests::nats_server::NatsServer;
use clawhive_tests::procs::{ServiceProcess, binary};
use clawhive_tests::redis_server::RedisServer;
use clawhive_tests::scratch::{ScratchDir, free_port};
use deploy::*;
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ENVELOPE_KEY: &str = "deploy-test-envelope-key-0123456789abcdef";
const BOOT_TOKEN: &str = "deploy-test-bootstrap-token";

fn base_config() -> Config {
    let text = std::fs::read_to_string(kustomize_dir("base/clawhive.toml")).unwrap();
    Config::from_sources(Some(&text), Vec::new()).expect("base/clawhive.toml is a valid config")
}

fn prod_config() -> Config {
    let text = std::fs::read_to_string(kustomize_dir("overlays/prod/clawhive.toml")).unwrap();
    Config::from_sources(Some(&text), Vec::new()).expect("overlays/prod/clawhive.toml is a valid config")
}

#[test]
fn the_image_holds_exactly_the_workspace_service_binaries() {
    let (built, installed) = dockerfile_binaries();
    let workspace = workspace_service_binaries();
    assert!(workspace.contains("clawhive-gateway") && workspace.contains("clawhive"), "{workspace:?}");
    assert_eq!(built, workspace, "Dockerfile --bin list vs services/*/Cargo.toml [[bin]] targets");
    assert_eq!(installed, workspace, "Dockerfile COPY … /usr/local/bin list vs the workspace's service binaries");
    let text = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile")).unwrap();
    assert!(text.contains("USER 65532:65532"), "the image runs as the non-root user 65532");
    assert!(text.contains("FROM gcr.io/distroless/cc"), "the runtime image has no shell");
}

#[test]
fn every_deployment_runs_an_image_binary_with_the_mounted_config() {
    let (_, installed) = dockerfile_binaries();
    let names: BTreeSet<String> = base_workloads().iter().map(|w| w.deployment.clone()).collect();
    let expected: BTreeSet<String> =
        ["clawhive-gateway", "clawhive-agent-worker", "clawhive-slack-bridge", "clawhive-scheduler"]
            .map(String::from)
            .into();
    assert_eq!(names, expected);
    for w in base_workloads() {
        assert_eq!(w.command, vec![format!("/usr/local/bin/{}", w.binary())], "{}", w.deployment);
        assert!(installed.contains(w.binary()), "{}: {} is not in the image", w.deployment, w.binary());
        assert_eq!(w.binary(), w.deployment, "a Deployment is named after its binary");
        assert!(
            w.config_arg().starts_with(&format!("{}/", w.config_mount)),
            "{}: --config {} is not under the config mount {}",
            w.deployment,
            w.config_arg(),
            w.config_mount
        );
        assert_eq!(w.config_arg(), "/etc/clawhive/clawhive.toml", "{}", w.deployment);
    }
}

#[test]
fn ports_and_probes_match_the_config() {
    for cfg in [base_config(), prod_config()] {
        let admin = port_of(&cfg.telemetry.admin_addr);
        for w in base_workloads() {
            assert_eq!(w.port("admin"), Some(admin), "{}: admin port vs telemetry.admin_addr", w.deployment);
            assert_eq!(w.readiness, ("/readyz".into(), "admin".into()), "{}", w.deployment);
            assert_eq!(w.liveness, ("/healthz".into(), "admin".into()), "{}", w.deployment);
        }
        let gw = workload("clawhive-gateway");
        assert_eq!(gw.port("http"), Some(port_of(&cfg.gateway.http_addr)));
        assert_eq!(gw.port("grpc"), Some(port_of(&cfg.gateway.grpc_addr)));
        assert_eq!(workload("clawhive-slack-bridge").port("events"), Some(port_of(&cfg.slack.http_addr)));
    }
    // Services point at named ports their Deployment declares; Ingresses at the Service's ports.
    let docs = resources(&kustomize_dir("base"));
    for svc in of_kind(&docs, "Service") {
        let w = workload(svc["spec"]["selector"]["app.kubernetes.io/name"].as_str().expect("selector"));
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let target = p["targetPort"].as_str().expect("named targetPort");
            assert!(w.port(target).is_some(), "Service {} targets unknown port {target}", name(svc));
        }
    }
    for ing in of_kind(&docs, "Ingress") {
        for rule in ing["spec"]["rules"].as_sequence().unwrap() {
            for path in rule["http"]["paths"].as_sequence().unwrap() {
                let backend = &path["backend"]["service"];
                let svc = of_kind(&docs, "Service").into_iter().find(|s| name(s) == backend["name"].as_str().unwrap());
                let svc = svc.unwrap_or_else(|| panic!("Ingress {} names a missing Service", name(ing)));
                let port = backend["port"]["name"].as_str().unwrap();
                assert!(
                    svc["spec"]["ports"].as_sequence().unwrap().iter().any(|p| p["name"].as_str() == Some(port)),
                    "Ingress {} names port {port} the Service lacks",
                    name(ing)
                );
            }
        }
    }
}

/// Env names a Deployment may set: config overrides of keys that exist, or the
/// names the config (and the gateway's bootstrap admin) read secrets from.
#[test]
fn env_names_are_ones_the_binaries_read() {
    let cfg = base_config();
    let known_keys = toml::Value::try_from(prod_config()).unwrap();
    let mut secret_names: BTreeSet<String> = [
        cfg.security.envelope_key_env.clone(),
        cfg.security.secrets_key_env.clone(),
        cfg.slack.app_token_env.clone(),
        cfg.slack.bot_token_env.clone(),
        cfg.slack.signing_secret_env.clone(),
        clawhive_gateway::auth::BOOTSTRAP_TOKEN_ENV.to_string(),
        clawhive_gateway::auth::BOOTSTRAP_TENANT_ENV.to_string(),
    ]
    .into();
    secret_names.extend(cfg.llm.providers.values().map(|p| p.api_key_env.clone()).filter(|e| !e.is_empty()));
    let secrets_env = env_file_keys(&kustomize_dir("base/secrets.env"));
    for w in base_workloads() {
        for e in &w.env {
            if let Some(path) = e.name.strip_prefix("CLAWHIVE_").filter(|_| e.name.contains("__")) {
                let mut v = &known_keys;
                for seg in path.split("__") {
                    v = v.get(seg.to_ascii_lowercase()).unwrap_or_else(|| {
                        panic!("{}: {} names no config key", w.deployment, e.name);
                    });
                }
            } else {
                assert!(secret_names.contains(&e.name), "{}: no binary reads env {}", w.deployment, e.name);
            }
            if let Some(key) = &e.secret_key {
                assert!(
                    e.optional || secrets_env.contains(key),
                    "{}: required Secret key {key} is not in base/secrets.env",
                    w.deployment
                );
            }
        }
    }
    for key in &secrets_env {
        assert!(secret_names.contains(key), "base/secrets.env has {key}, which nothing reads");
    }
    // The services that sign or verify envelopes all get the key, and signing is required.
    assert!(cfg.security.require_signed_envelopes);
    for w in base_workloads() {
        assert!(w.env.iter().any(|e| e.name == cfg.security.envelope_key_env), "{}", w.deployment);
    }
}

#[test]
fn pods_are_locked_down_and_drain_within_their_grace_period() {
    for w in base_workloads() {
        let psc = &w.pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true), "{}", w.deployment);
        assert_eq!(psc["runAsUser"].as_u64(), Some(65532), "{}", w.deployment);
        let csc = &w.container["securityContext"];
        assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true), "{}", w.deployment);
        assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false), "{}", w.deployment);
        assert_eq!(strings(&csc["capabilities"]["drop"]), vec!["ALL".to_string()], "{}", w.deployment);
        assert_eq!(w.pod["automountServiceAccountToken"].as_bool(), Some(false), "{}", w.deployment);
        for k in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                assert!(w.container["resources"][k][r].as_str().is_some(), "{}: resources.{k}.{r}", w.deployment);
            }
        }
    }
    for cfg in [base_config(), prod_config()] {
        let w = workload("clawhive-agent-worker");
        let drain = cfg.worker.drain_timeout_ms.div_ceil(1000);
        assert!(
            w.grace_seconds > w.pre_stop_seconds + drain,
            "worker grace {} s must exceed preStop {} s + worker.drain_timeout_ms {} s",
            w.grace_seconds,
            w.pre_stop_seconds,
            drain
        );
    }
    // The gateway lets calls in flight run 10 s after SIGTERM (services/gateway/src/server.rs).
    let gw = workload("clawhive-gateway");
    assert!(gw.grace_seconds > gw.pre_stop_seconds + 10, "gateway grace {} s", gw.grace_seconds);
}

#[test]
fn only_the_gateway_and_bridge_take_traffic_and_only_workers_and_bridge_reach_https() {
    let docs = resources(&kustomize_dir("base"));
    let selects = |np: &Json, app: &str| -> bool {
        let sel = &np["spec"]["podSelector"];
        if let Some(n) = sel["matchLabels"]["app.kubernetes.io/name"].as_str() {
            return n == app;
        }
        if sel["matchLabels"]["app.kubernetes.io/part-of"].as_str() == Some("clawhive") {
            return true;
        }
        sel["matchExpressions"].as_array().is_some_and(|es| {
            es.iter().any(|e| e["values"].as_array().is_some_and(|v| v.iter().any(|x| x.as_str() == Some(app))))
        })
    };
    let policies: Vec<Json> =
        of_kind(&docs, "NetworkPolicy").into_iter().map(|d| serde_json::to_value(d).unwrap()).collect();
    let deny = policies.iter().find(|p| p["metadata"]["name"] == "clawhive-default-deny").expect("default deny");
    assert_eq!(deny["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    for app in ["clawhive-gateway", "clawhive-agent-worker", "clawhive-slack-bridge", "clawhive-scheduler"] {
        let mut ingress_ports = BTreeSet::new();
        let mut egress_ports = BTreeSet::new();
        for p in policies.iter().filter(|p| selects(p, app)) {
            for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
                for port in rule["ports"].as_array().into_iter().flatten() {
                    ingress_ports.insert(port["port"].as_u64().unwrap());
                }
            }
            for rule in p["spec"]["egress"].as_array().into_iter().flatten() {
                for port in rule["ports"].as_array().into_iter().flatten() {
                    egress_ports.insert(port["port"].as_u64().unwrap());
                }
            }
        }
        let takes_traffic = ingress_ports.iter().any(|p| *p != 9090);
        assert_eq!(
            takes_traffic,
            matches!(app, "clawhive-gateway" | "clawhive-slack-bridge"),
            "{app}: ingress ports {ingress_ports:?}"
        );
        assert!(egress_ports.is_superset(&[4222, 6379].into()), "{app} reaches NATS and Redis");
        assert_eq!(
            egress_ports.contains(&443),
            matches!(app, "clawhive-agent-worker" | "clawhive-slack-bridge"),
            "{app}: egress ports {egress_ports:?}"
        );
    }
}

#[test]
fn prod_scales_on_the_real_stream_and_consumer_with_two_or_more_replicas() {
    let cfg = prod_config();
    assert_eq!(cfg.bus.stream_replicas, 3, "prod streams are replicated 3 times");
    let dir = kustomize_dir("overlays/prod");
    let k = kustomization(&dir);
    let docs = resources(&dir);
    let so = of_kind(&docs, "ScaledObject").pop().expect("a KEDA ScaledObject");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"].as_str(), Some("clawhive-agent-worker"));
    assert!(so["spec"]["minReplicaCount"].as_u64().unwrap() >= 2);
    let trigger = &so["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("nats-jetstream"));
    let subjects = clawhive_bus::Subjects::new(&cfg.bus.namespace);
    assert_eq!(
        trigger["metadata"]["stream"].as_str(),
        Some(subjects.stream_name(clawhive_bus::StreamKind::Requests).as_str())
    );
    assert_eq!(trigger["metadata"]["consumer"].as_str(), Some(clawhive_agent_worker::worker::CONSUMER));
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler").pop().expect("an HPA for the gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some("clawhive-gateway"));
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let replicas = k["replicas"].as_sequence().expect("replicas in prod");
    for w in base_workloads() {
        let n = replicas.iter().find(|r| r["name"].as_str() == Some(&w.deployment)).and_then(|r| r["count"].as_u64());
        assert!(n.unwrap_or(0) >= 2, "{} runs at least 2 replicas in prod", w.deployment);
    }
    // Dev runs NATS (JetStream) and Redis in-cluster, one replica each.
    let dev = resources(&kustomize_dir("overlays/dev"));
    let sets = of_kind(&dev, "StatefulSet");
    assert_eq!(sets.iter().map(|s| name(s)).collect::<BTreeSet<_>>(), ["nats", "redis"].into());
    let nats = sets.iter().find(|s| name(s) == "nats").unwrap();
    assert!(strings(&nats["spec"]["template"]["spec"]["containers"][0]["args"]).contains(&"--jetstream".into()));
    let dev_cfg = base_config();
    assert_eq!(dev_cfg.bus.nats_url, "nats://nats:4222");
    assert_eq!(dev_cfg.store.redis_url, "redis://redis:6379");
}

// The binaries, run as the Deployments run them.
#[path = "deploy/running.rs"]
mod running;
