//! The result document (JSON) and its Markdown rendering.

use crate::load::{Api, Load, Outcome};
use crate::sys::Machine;
use crate::target::Mode;
use serde::Serialize;
use serde_json::Value;

pub fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Cluster => "cluster",
        Mode::Embedded => "embedded",
    }
}

pub fn api_str(a: Api) -> &'static str {
    match a {
        Api::Grpc => "grpc",
        Api::Http => "http",
    }
}

#[derive(Debug, Serialize)]
pub struct ProcResult {
    pub name: String,
    pub pid: u32,
    pub ready_ms: Option<f64>,
    pub rss_idle_mib: Option<f64>,
    pub rss_max_mib: Option<f64>,
    /// CPU time (user + system) the process spent per measured turn, 10 ms resolution over the run.
    pub cpu_ms_per_turn: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub turns_ok: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed_s: f64,
    pub throughput_turns_per_s: f64,
    /// Client-observed turn latency; the fake LLM answers instantly, so this is
    /// an upper bound of the platform overhead per turn.
    pub latency: Option<Latency>,
    /// One streamed completion straight from this process to the fake LLM (before the run).
    pub fake_llm_rtt: Option<Latency>,
    /// Per turn: the time the worker spent waiting on the LLM (request sent →
    /// last byte), from its "turn committed" log line.
    pub llm_in_worker: Option<Latency>,
    /// Per turn: client-observed latency minus the worker's LLM wait, i.e. what
    /// the platform adds to the model's answer. Judged against the overhead targets.
    pub overhead: Option<Latency>,
    /// Turns whose LLM wait was found in the worker logs (the rest are not in `overhead`).
    pub overhead_turns: u64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub value: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct RunConfig {
    pub mode: Mode,
    pub api: Api,
    pub load: Load,
    pub load_label: String,
    pub workers: usize,
    pub worker_concurrency: usize,
    pub rust_log: String,
    pub turns_per_session: u64,
    pub warmup_turns: u64,
    pub bound_turns: Option<u64>,
    pub bound_duration_s: Option<f64>,
    /// Runtime tuning of the processes under test: `--service-env` pairs and the
    /// `GOMAXPROCS` nats-server inherits (empty: defaults).
    pub tuning: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub date: String,
    pub command_line: String,
    pub machine: Machine,
    pub note: String,
    pub config: RunConfig,
    pub results: Results,
    pub processes: Vec<ProcResult>,
    pub targets: Vec<Target>,
}

pub struct Inputs {
    pub tuning: Vec<String>,
    pub name: String,
    pub machine: Machine,
    pub note: String,
    pub mode: Mode,
    pub api: Api,
    pub load: Load,
    pub workers: usize,
    pub worker_concurrency: usize,
    pub rust_log: String,
    pub turns_per_session: u64,
    pub warmup: u64,
    pub bound_turns: Option<u64>,
    pub bound_duration_s: Option<f64>,
    pub outcome: Outcome,
    pub fake_llm_rtt_us: Vec<u64>,
    /// Request id → the worker's LLM wait (µs), from the worker logs.
    pub llm_us_by_request: std::collections::HashMap<String, u64>,
    pub processes: Vec<ProcResult>,
}

/// Nearest-rank percentiles of microsecond samples, in milliseconds.
fn latency(samples: &[u64]) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
        s[rank.min(s.len()) - 1] as f64 / 1e3
    };
    Some(Latency {
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        max_ms: *s.last().unwrap_or(&0) as f64 / 1e3,
        mean_ms: s.iter().sum::<u64>() as f64 / s.len() as f64 / 1e3,
    })
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

pub fn build(i: Inputs) -> Report {
    let o = &i.outcome;
    let lat = latency(&o.latencies_us);
    let rtt = latency(&i.fake_llm_rtt_us);
    let ok = o.latencies_us.len() as u64;
    let elapsed = o.elapsed.as_secs_f64();
    let tput = if elapsed > 0.0 { ok as f64 / elapsed } else { 0.0 };
    let (mut llm_us, mut overhead_us) = (Vec::new(), Vec::new());
    for (latency_us, id) in o.latencies_us.iter().zip(&o.request_ids) {
        if let Some(llm) = i.llm_us_by_request.get(id) {
            llm_us.push(*llm);
            overhead_us.push(latency_us.saturating_sub(*llm));
        }
    }
    let overhead = latency(&overhead_us);
    let mut targets = Vec::new();
    if let Some(l) = &lat {
        // The overhead targets are judged on latency minus the worker's LLM wait
        // (the raw latency when the logs gave no LLM times).
        let oh = overhead.as_ref().unwrap_or(l);
        match (i.mode, i.load) {
            (Mode::Cluster, Load::Sequential) => {
                targets.push(t("overhead p50 (cluster)", "≤ 1 ms", oh.p50_ms, oh.p50_ms <= 1.0, "ms"));
                targets.push(t("overhead p99 (cluster)", "≤ 5 ms", oh.p99_ms, oh.p99_ms <= 5.0, "ms"));
            }
            (Mode::Embedded, Load::Sequential) => {
                targets.push(t("overhead p50 (embedded)", "≤ 0.3 ms", oh.p50_ms, oh.p50_ms <= 0.3, "ms"));
            }
            (_, Load::Concurrency { conversations: 32 }) => {
                targets.push(t("throughput at concurrency 32", "≥ 2000 turns/s", tput, tput >= 2000.0, "turns/s"));
                targets.push(t("p99 at concurrency 32", "≤ 50 ms", l.p99_ms, l.p99_ms <= 50.0, "ms"));
            }
            _ => {}
        }
    }
    for p in i.processes.iter().filter(|p| p.ready_ms.is_some()) {
        if let Some(rss) = p.rss_idle_mib {
            targets.push(t(&format!("{} RSS idle", p.name), "≤ 30 MiB", rss, rss <= 30.0, "MiB"));
        }
        if p.name == "gateway" || p.name == "clawhive-up" {
            let r = p.ready_ms.unwrap_or(f64::INFINITY);
            targets.push(t(&format!("{} start → /readyz 200", p.name), "≤ 100 ms", r, r <= 100.0, "ms"));
        }
    }
    Report {
        name: i.name,
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command_line: std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" "),
        machine: i.machine,
        note: i.note,
        config: RunConfig {
            mode: i.mode,
            api: i.api,
            load: i.load,
            load_label: i.load.label(),
            workers: i.workers,
            worker_concurrency: i.worker_concurrency,
            rust_log: i.rust_log,
            turns_per_session: i.turns_per_session,
            warmup_turns: i.warmup,
            bound_turns: i.bound_turns,
            bound_duration_s: i.bound_duration_s,
            tuning: i.tuning,
        },
        results: Results {
            turns_ok: ok,
            errors: o.errors,
            error_samples: o.error_samples.clone(),
            elapsed_s: elapsed,
            throughput_turns_per_s: tput,
            latency: lat,
            fake_llm_rtt: rtt,
            llm_in_worker: latency(&llm_us),
            overhead_turns: overhead_us.len() as u64,
            overhead,
        },
        processes: i.processes,
        targets,
    }
}

fn t(name: &str, target: &str, value: f64, met: bool, unit: &str) -> Target {
    Target { name: name.into(), target: target.into(), value: format!("{value:.2} {unit}"), met }
}

fn f(v: &Value, path: &str, digits: usize) -> String {
    match v.pointer(path).and_then(Value::as_f64) {
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    }
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("?")
}

/// `idle / max` MiB of the named processes (`worker` matches every worker: the largest is shown).
fn rss(v: &Value, prefix: &str) -> String {
    let procs = v.pointer("/processes").and_then(Value::as_array).cloned().unwrap_or_default();
    let pick = |key: &str| {
        procs
            .iter()
            .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .filter_map(|p| p[key].as_f64())
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    match (pick("rss_idle_mib"), pick("rss_max_mib")) {
        (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
        _ => "–".into(),
    }
}

fn ready(v: &Value) -> String {
    let procs = v.pointer("/processes").and_then(Value::as_array).cloned().unwrap_or_default();
    procs
        .iter()
        .find(|p| matches!(p["name"].as_str(), Some("gateway" | "clawhive-up")))
        .and_then(|p| p["ready_ms"].as_f64())
        .map_or("–".into(), |r| format!("{r:.0}"))
}

const HEADER: &str = "| mode | tuning | api | load | workers | turns ok | errors | turns/s | p50 ms | p90 ms | p99 ms | max ms | LLM wait p50 ms | overhead p50 / p99 ms | gateway RSS idle / max MiB | worker RSS idle / max MiB | gateway ready ms | CPU ms / turn (services) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

fn row(v: &Value) -> String {
    let service = if s(v, "/config/mode") == "embedded" { "clawhive-up" } else { "gateway" };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |\n",
        s(v, "/config/mode"),
        tuning(v),
        s(v, "/config/api"),
        s(v, "/config/load_label"),
        v.pointer("/config/workers").and_then(Value::as_u64).unwrap_or(0),
        v.pointer("/results/turns_ok").and_then(Value::as_u64).unwrap_or(0),
        v.pointer("/results/errors").and_then(Value::as_u64).unwrap_or(0),
        f(v, "/results/throughput_turns_per_s", 0),
        f(v, "/results/latency/p50_ms", 2),
        f(v, "/results/latency/p90_ms", 2),
        f(v, "/results/latency/p99_ms", 2),
        f(v, "/results/latency/max_ms", 1),
        f(v, "/results/llm_in_worker/p50_ms", 2),
        f(v, "/results/overhead/p50_ms", 2),
        f(v, "/results/overhead/p99_ms", 2),
        rss(v, service),
        if service == "gateway" { rss(v, "worker") } else { "(in-process)".into() },
        ready(v),
        cpu_total(v),
    )
}

/// The run's runtime tuning, `default` if none.
fn tuning(v: &Value) -> String {
    let t: Vec<&str> = v
        .pointer("/config/tuning")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if t.is_empty() { "default".into() } else { t.join(" ") }
}

/// CPU time of all measured processes (servers included, not the load generator) per turn.
fn cpu_total(v: &Value) -> String {
    let per: Vec<f64> = v
        .pointer("/processes")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| p.pointer("/cpu_ms_per_turn").and_then(Value::as_f64)).collect())
        .unwrap_or_default();
    if per.is_empty() { "–".into() } else { format!("{:.2}", per.iter().sum::<f64>()) }
}

/// One run: machine, command line, the row, the processes and the targets.
pub fn markdown(v: &Value) -> String {
    let mut md = format!("## {}\n\n", s(v, "/name"));
    md += &format!(
        "- date: {}\n- machine: {} CPU(s), {} MiB, {}, load average at start {}\n",
        s(v, "/date"),
        v.pointer("/machine/nproc").and_then(Value::as_u64).unwrap_or(0),
        v.pointer("/machine/mem_total_mib").and_then(Value::as_u64).unwrap_or(0),
        s(v, "/machine/cpu_model"),
        s(v, "/machine/load_avg_at_start"),
    );
    md += &format!("- command: `{}`\n", s(v, "/command_line"));
    if !s(v, "/note").is_empty() {
        md += &format!("- note: {}\n", s(v, "/note"));
    }
    md += "\n";
    md += HEADER;
    md += &row(v);
    md += "\n| process | pid | ready ms | RSS idle MiB | RSS max MiB | CPU ms / turn |\n|---|---|---|---|---|---|\n";
    for p in v.pointer("/processes").and_then(Value::as_array).cloned().unwrap_or_default() {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            p["name"].as_str().unwrap_or("?"),
            p["pid"],
            f(&p, "/ready_ms", 1),
            f(&p, "/rss_idle_mib", 1),
            f(&p, "/rss_max_mib", 1),
            f(&p, "/cpu_ms_per_turn", 3),
        );
    }
    let targets = v.pointer("/targets").and_then(Value::as_array).cloned().unwrap_or_default();
    if !targets.is_empty() {
        md += "\n| target | goal | measured | met |\n|---|---|---|---|\n";
        for t in targets {
            md += &format!(
                "| {} | {} | {} | {} |\n",
                t["name"].as_str().unwrap_or("?"),
                t["target"].as_str().unwrap_or("?"),
                t["value"].as_str().unwrap_or("?"),
                if t["met"].as_bool() == Some(true) { "yes" } else { "**no**" }
            );
        }
    }
    md
}

/// Several runs as one table.
pub fn table(docs: &[Value]) -> String {
    let mut md = String::from(HEADER);
    for d in docs {
        md += &row(d);
    }
    md
}
