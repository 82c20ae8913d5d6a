//! `clawhive-bench`: per-turn platform overhead, throughput, memory and
//! start-up time of Clawhive against an instant fake LLM. See `bench/README.md`.

mod load;
mod report;
mod sys;
mod target;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use load::{Api, Bounds, Client, Load};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use target::{Mode, Settings, Target};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Benchmarks Clawhive: per-turn overhead, throughput, RSS and start-up, against an instant fake LLM."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// What runs: separate processes (gateway, workers, nats-server, redis-server) or `clawhive up`.
    #[arg(long, value_enum, default_value = "cluster", global = true)]
    mode: Mode,
    /// The API the load goes through.
    #[arg(long, value_enum, default_value = "grpc", global = true)]
    api: Api,
    /// Agent worker processes (cluster) or workers inside `clawhive up` (embedded).
    #[arg(long, default_value_t = 1, global = true)]
    workers: usize,
    /// `worker.concurrency`: turns one worker runs at once (the config default is 16).
    #[arg(long, default_value_t = 16, global = true)]
    worker_concurrency: usize,
    /// Stop after this many measured turns.
    #[arg(long, global = true)]
    turns: Option<u64>,
    /// Stop after this many seconds of measured load.
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Unmeasured turns first (same load shape, at most 5 s).
    #[arg(long, default_value_t = 50, global = true)]
    warmup: u64,
    /// A conversation starts a fresh session after this many turns, bounding the history sent to the LLM.
    #[arg(long, default_value_t = 20, global = true)]
    turns_per_session: u64,
    /// gRPC: HTTP/2 connections the conversations share (HTTP uses a keep-alive pool).
    #[arg(long, default_value_t = 4, global = true)]
    connections: usize,
    /// Open loop: turns in flight beyond this are not sent and count as errors.
    #[arg(long, default_value_t = 10_000, global = true)]
    max_in_flight: u64,
    /// `RUST_LOG` of the service processes (production runs `info`, which logs a line per turn).
    #[arg(long, default_value = "info", global = true)]
    rust_log: String,
    /// Result name: `<out-dir>/<name>.json` (default: derived from the parameters and the time).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Where the JSON and `latest.md` go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"), global = true)]
    out_dir: PathBuf,
    /// Run the service binaries next to clawhive-bench as they are instead of `cargo build`-ing them first.
    #[arg(long, global = true)]
    prebuilt: bool,
    /// Profile: run the gateway and workers (or `clawhive up`) under callgrind, counters zeroed
    /// after the warm-up and dumped after the measured phase, into `<DIR>/<process>.<pid>.out.1`.
    #[arg(long, global = true, value_name = "DIR")]
    callgrind: Option<PathBuf>,
    /// Extra environment for the service processes, e.g. `TOKIO_WORKER_THREADS=1` (repeatable).
    #[arg(long = "service-env", value_name = "KEY=VALUE", value_parser = parse_env, global = true)]
    service_env: Vec<(String, String)>,
    /// Free text stored with the result (e.g. "machine shared with two cargo builds").
    #[arg(long, default_value = "", global = true)]
    note: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One conversation, one turn at a time (default: 500 turns).
    Sequential,
    /// N conversations, each sending its next turn as soon as the last is answered (default: 10 s).
    Concurrency {
        #[arg(default_value_t = 32)]
        conversations: usize,
    },
    /// Turns arrive at a fixed rate whatever the latency (default: 10 s).
    OpenLoop {
        /// Turns per second.
        #[arg(long)]
        rate: f64,
    },
    /// Prints one Markdown table of result JSON files.
    Report { files: Vec<PathBuf> },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let load = match cli.cmd {
        Cmd::Sequential => Load::Sequential,
        Cmd::Concurrency { conversations } if conversations > 0 => Load::Concurrency { conversations },
        Cmd::Concurrency { .. } => bail!("concurrency needs at least 1 conversation"),
        Cmd::OpenLoop { rate } if rate > 0.0 && rate.is_finite() => Load::OpenLoop { rate_per_s: rate },
        Cmd::OpenLoop { .. } => bail!("--rate must be a positive number"),
        Cmd::Report { ref files } => {
            let docs = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))
                })
                .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
            print!("{}", report::table(&docs));
            return Ok(());
        }
    };
    if cli.workers == 0 {
        bail!("--workers must be at least 1");
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cli, load))
}

async fn run(cli: Cli, load: Load) -> anyhow::Result<()> {
    clawhive_telemetry::install_crypto_provider();
    let machine = sys::machine();
    let (turns, duration) = match (cli.turns, cli.duration, load) {
        (None, None, Load::Sequential) => (Some(500), None),
        (None, None, _) => (None, Some(Duration::from_secs(10))),
        (t, d, _) => (t, d.map(Duration::from_secs_f64)),
    };
    let settings = Settings {
        mode: cli.mode,
        workers: cli.workers,
        worker_concurrency: cli.worker_concurrency,
        rust_log: cli.rust_log.clone(),
        prebuilt: cli.prebuilt,
        callgrind: cli.callgrind.clone(),
        service_env: cli.service_env.clone(),
    };
    eprintln!("starting the {:?} target ({} worker(s))…", cli.mode, cli.workers);
    let target = Target::start(&settings).await?;
    let client = Client::connect(cli.api, target.grpc_addr, target.http_addr, cli.connections).await?;

    // Idle memory: after start, before any turn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle: HashMap<u32, u64> = target.procs.iter().filter_map(|p| Some((p.pid, sys::rss_kib(p.pid)?))).collect();

    let fake_rtt = load::fake_llm_rtt(&target.llm.openai_base_url(), 200).await;

    if cli.warmup > 0 {
        let b = Bounds {
            turns: Some(cli.warmup),
            duration: Some(Duration::from_secs(5)),
            turns_per_session: cli.turns_per_session,
            max_in_flight: cli.max_in_flight,
        };
        let w = load::run(&client, load, &b, "warm").await;
        if w.errors > 0 && w.latencies_us.is_empty() {
            bail!("every warm-up turn failed, e.g.: {}", w.error_samples.join(" | "));
        }
    }

    // Peak memory and CPU time while measuring.
    let peak = Arc::new(Mutex::new(idle.clone()));
    let pids: Vec<u32> = target.procs.iter().map(|p| p.pid).collect();
    let cpu_before: HashMap<u32, f64> = pids.iter().filter_map(|&p| Some((p, sys::cpu_ms(p)?))).collect();
    let sampler = {
        let peak = peak.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            loop {
                for &pid in &pids {
                    if let Some(kib) = sys::rss_kib(pid) {
                        let mut m = peak.lock().unwrap_or_else(|e| e.into_inner());
                        let e = m.entry(pid).or_default();
                        *e = (*e).max(kib);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Services only: nats-server and redis-server are not under callgrind.
    let profiled: Vec<u32> = target.procs.iter().filter(|p| p.ready_ms.is_some()).map(|p| p.pid).collect();
    if cli.callgrind.is_some() {
        target::callgrind_control("-z", &profiled)?;
    }
    let bounds = Bounds { turns, duration, turns_per_session: cli.turns_per_session, max_in_flight: cli.max_in_flight };
    eprintln!("measuring {} via {:?}…", load.label(), cli.api);
    let outcome = load::run(&client, load, &bounds, "run").await;
    sampler.abort();
    if let Some(dir) = &cli.callgrind {
        target::callgrind_control("-d", &profiled)?;
        eprintln!("callgrind profiles of the measured phase: {}/*.out.1", dir.display());
    }
    let cpu_after: HashMap<u32, f64> = pids.iter().filter_map(|&p| Some((p, sys::cpu_ms(p)?))).collect();
    let peak = peak.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let processes = target
        .procs
        .iter()
        .map(|p| report::ProcResult {
            name: p.name.clone(),
            pid: p.pid,
            ready_ms: p.ready_ms,
            rss_idle_mib: idle.get(&p.pid).map(|k| *k as f64 / 1024.0),
            rss_max_mib: peak.get(&p.pid).map(|k| *k as f64 / 1024.0),
            cpu_ms_per_turn: match (cpu_before.get(&p.pid), cpu_after.get(&p.pid)) {
                (Some(b), Some(a)) if !outcome.latencies_us.is_empty() => {
                    Some((a - b) / outcome.latencies_us.len() as f64)
                }
                _ => None,
            },
        })
        .collect();
    let name = cli.name.clone().unwrap_or_else(|| {
        let load = match load {
            Load::Sequential => "seq".to_string(),
            Load::Concurrency { conversations } => format!("c{conversations}"),
            Load::OpenLoop { rate_per_s } => format!("r{rate_per_s}"),
        };
        format!(
            "{}-{}-{load}-w{}-{}",
            report::mode_str(cli.mode),
            report::api_str(cli.api),
            cli.workers,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )
    });
    let mut tuning: Vec<String> = cli.service_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Ok(g) = std::env::var("GOMAXPROCS") {
        tuning.push(format!("GOMAXPROCS={g} (nats-server)"));
    }
    let result = report::build(report::Inputs {
        tuning,
        name: name.clone(),
        machine,
        note: cli.note.clone(),
        mode: cli.mode,
        api: cli.api,
        load,
        workers: cli.workers,
        worker_concurrency: cli.worker_concurrency,
        rust_log: cli.rust_log.clone(),
        turns_per_session: cli.turns_per_session,
        warmup: cli.warmup,
        bound_turns: turns,
        bound_duration_s: duration.map(|d| d.as_secs_f64()),
        outcome,
        fake_llm_rtt_us: fake_rtt,
        llm_us_by_request: target.llm_us_by_request(),
        processes,
    });
    drop(client);
    drop(target);

    std::fs::create_dir_all(&cli.out_dir).with_context(|| format!("creating {}", cli.out_dir.display()))?;
    let json_path = cli.out_dir.join(format!("{name}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = report::markdown(&serde_json::to_value(&result)?);
    std::fs::write(cli.out_dir.join("latest.md"), &md)?;
    print!("{md}");
    eprintln!("wrote {}", json_path.display());
    if result.results.errors > 0 {
        eprintln!("{} turn(s) failed, e.g.: {}", result.results.errors, result.results.error_samples.join(" | "));
    }
    Ok(())
}
