//! Runs a tiny cluster-mode benchmark end to end (real nats-server,
//! redis-server, gateway and worker processes) and checks the result document.
//! No timing assertions: this machine may be busy.

use serde_json::Value;
use std::process::Command;

fn run_bench(api: &str, out: &std::path::Path) -> Value {
    let status = Command::new(env!("CARGO_BIN_EXE_clawhive-bench"))
        .args(["--workers", "1", "--turns", "20", "--warmup", "4", "--api", api, "--name", "smoke"])
        .arg("--out-dir")
        .arg(out)
        .args(["concurrency", "4"])
        .status()
        .expect("run clawhive-bench");
    assert!(status.success(), "clawhive-bench failed: {status}");
    let text = std::fs::read_to_string(out.join("smoke.json")).expect("smoke.json written");
    let md = std::fs::read_to_string(out.join("latest.md")).expect("latest.md written");
    assert!(md.contains("| cluster | "), "{md}");
    serde_json::from_str(&text).expect("result is JSON")
}

fn check(v: &Value, api: &str) {
    for path in [
        "/name",
        "/date",
        "/command_line",
        "/machine/nproc",
        "/machine/mem_total_mib",
        "/machine/cpu_model",
        "/config/mode",
        "/results/throughput_turns_per_s",
        "/results/latency/p50_ms",
        "/results/latency/p90_ms",
        "/results/latency/p99_ms",
        "/results/latency/max_ms",
        "/results/fake_llm_rtt/p50_ms",
        "/results/llm_in_worker/p50_ms",
        "/results/overhead/p50_ms",
        "/results/overhead/p99_ms",
        "/targets",
    ] {
        assert!(v.pointer(path).is_some_and(|x| !x.is_null()), "{path} missing in {v:#}");
    }
    assert_eq!(v["config"]["api"], api);
    assert_eq!(v["results"]["errors"], 0, "{v:#}");
    assert_eq!(v["results"]["turns_ok"], 20, "{v:#}");
    // Every measured turn's LLM wait was found in the worker's log, and the
    // overhead never exceeds the latency it is taken from.
    assert_eq!(v["results"]["overhead_turns"], 20, "{v:#}");
    let (overhead, latency) = (v["results"]["overhead"]["max_ms"].as_f64(), v["results"]["latency"]["max_ms"].as_f64());
    assert!(overhead.zip(latency).is_some_and(|(o, l)| o <= l), "{v:#}");
    let procs = v["processes"].as_array().expect("processes");
    let names: Vec<&str> = procs.iter().filter_map(|p| p["name"].as_str()).collect();
    for want in ["gateway", "worker-0"] {
        let p = procs.iter().find(|p| p["name"] == want).unwrap_or_else(|| panic!("no {want} in {names:?}"));
        assert!(p["ready_ms"].as_f64().is_some(), "{p}");
        assert!(p["rss_idle_mib"].as_f64().is_some_and(|r| r > 0.0), "{p}");
        assert!(p["rss_max_mib"].as_f64().is_some_and(|r| r > 0.0), "{p}");
    }
    assert!(names.iter().any(|n| n.starts_with("nats-server")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("redis-server")), "{names:?}");
}

#[test]
fn tiny_cluster_bench_over_grpc_and_http() {
    let dir = std::env::temp_dir().join(format!("clawhive-bench-smoke-{}", std::process::id()));
    for api in ["grpc", "http"] {
        let out = dir.join(api);
        let v = run_bench(api, &out);
        check(&v, api);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
