//! The system under test: a cluster of real processes (nats-server,
//! redis-server, the gateway and N agent workers), or `clawhive up` as one
//! process. Both answer on loopback gRPC and HTTP and report their processes.

use anyhow::{Context, bail};
use clawhive_tests::fake_llm::FakeLlm;
use clawhive_tests::nats_server::NatsServer;
use clawhive_tests::procs::{ServiceProcess, binary};
use clawhive_tests::redis_server::RedisServer;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "bench-token";
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// nats-server, redis-server, the gateway and each worker as separate processes.
    Cluster,
    /// `clawhive up` as one process with the in-process bus and the embedded store.
    Embedded,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub workers: usize,
    pub worker_concurrency: usize,
    /// `RUST_LOG` of the service processes.
    pub rust_log: String,
    /// Run the service binaries next to this one as they are, without `cargo build`.
    pub prebuilt: bool,
    /// Run the gateway, the workers (or `clawhive up`) under `valgrind --tool=callgrind`, profiles in this directory.
    pub callgrind: Option<PathBuf>,
    /// Extra environment of the service processes (`--service-env K=V`).
    pub service_env: Vec<(String, String)>,
}

/// One process of the system under test.
#[derive(Clone, Debug, Serialize)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// Spawn → ready: `/readyz` = 200 for the gateway and `clawhive up`,
    /// the "agent worker started" log line for a worker; `None` for servers the harness starts.
    pub ready_ms: Option<f64>,
}

pub struct Target {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub procs: Vec<Proc>,
    pub llm: OwnThreadLlm,
    // Dropped in reverse order of start: services first, then the servers.
    children: Vec<ServiceProcess>,
    _redis: Option<RedisServer>,
    _nats: Option<NatsServer>,
    config_path: PathBuf,
    data_dir: Option<PathBuf>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.children.clear();
        let _ = std::fs::remove_file(&self.config_path);
        if let Some(d) = &self.data_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Target {
    pub async fn start(s: &Settings) -> anyhow::Result<Target> {
        match s.mode {
            Mode::Cluster => start_cluster(s).await,
            Mode::Embedded => start_embedded(s).await,
        }
    }
}

impl Target {
    /// For each committed turn the workers logged ("turn committed", JSON
    /// logs): its request id → microseconds the worker spent waiting on the LLM.
    pub fn llm_us_by_request(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for child in &self.children {
            for line in child.log().lines().filter(|l| l.contains("turn committed")) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let id = find(&v, "request_id").and_then(|r| r.as_str());
                if let (Some(id), Some(us)) = (id, find(&v, "llm_us").and_then(|u| u.as_u64())) {
                    out.insert(id.to_string(), us);
                }
            }
        }
        out
    }
}

/// The first value under `key` anywhere in `v` (log fields sit in the event or its spans).
fn find<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// The fake LLM on a thread of its own with a single-threaded runtime, as a
/// real provider runs elsewhere: its answers do not wait for the load
/// generator's threads, and the load generator does not wait for it.
pub struct OwnThreadLlm {
    llm: Option<FakeLlm>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OwnThreadLlm {
    fn start() -> anyhow::Result<OwnThreadLlm> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("fake-llm".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("fake LLM runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let _ = ready_tx.send(Ok(FakeLlm::start().await));
                let _ = stopped.await;
            });
        })?;
        let llm = ready_rx.recv().context("the fake LLM thread ended before it started")??;
        Ok(OwnThreadLlm { llm: Some(llm), stop: Some(stop), thread: Some(thread) })
    }

    pub fn openai_base_url(&self) -> String {
        self.llm.as_ref().map(FakeLlm::openai_base_url).unwrap_or_default()
    }
}

impl Drop for OwnThreadLlm {
    fn drop(&mut self) {
        // The fake stops serving when its handle drops; then its runtime ends.
        self.llm.take();
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The services' environment: `base` plus `--service-env`.
fn service_env(s: &Settings, base: &[(&'static str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    env.extend(s.service_env.iter().cloned());
    env
}

/// Spawns a service binary, under callgrind when asked (`<dir>/<tag>.<pid>.out`, dumped by [`callgrind_control`]).
fn spawn_service(
    s: &Settings,
    bin: &Path,
    tag: &str,
    args: &[&str],
    env: &[(String, String)],
) -> anyhow::Result<ServiceProcess> {
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let env = env.as_slice();
    let Some(dir) = &s.callgrind else { return ServiceProcess::spawn(bin, args, env) };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = format!("--callgrind-out-file={}/{tag}.%p.out", dir.display());
    let bin = bin.to_str().context("binary path is not UTF-8")?;
    let mut all = vec!["--tool=callgrind", out.as_str(), bin];
    all.extend_from_slice(args);
    ServiceProcess::spawn(Path::new("valgrind"), &all, env)
}

/// `callgrind_control <flag> <pid>` for each process (`-z` zeroes the counters, `-d` dumps them).
pub fn callgrind_control(flag: &str, pids: &[u32]) -> anyhow::Result<()> {
    for pid in pids {
        let status = std::process::Command::new("callgrind_control")
            .args([flag, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running callgrind_control")?;
        if !status.success() {
            bail!("callgrind_control {flag} {pid} failed");
        }
    }
    Ok(())
}

/// A loopback port that was free a moment ago (the children cannot report port 0 back).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config_toml(
    s: &Settings,
    nats_url: &str,
    redis_url: &str,
    grpc: SocketAddr,
    http: SocketAddr,
    llm: &OwnThreadLlm,
) -> String {
    format!(
        r#"
[bus]
nats_url = "{nats_url}"
ack_wait_ms = 30000
max_attempts = 3

[store]
redis_url = "{redis_url}"

[worker]
concurrency = {conc}
lease_ttl_ms = 30000
lease_wait_ms = 120000
drain_timeout_ms = 2000

[gateway]
grpc_addr = "{grpc}"
http_addr = "{http}"
default_timeout_ms = 120000
max_timeout_ms = 600000
request_timeout_ms = 60000

[telemetry]
log_format = "json"

[llm.providers.fake]
kind = "openai"
base_url = "{openai}"
max_retries = 0

[[agents]]
id = "default"
model = "fake/echo-model"
tools = []
system_prompt = "You are a benchmark agent."
"#,
        conc = s.worker_concurrency,
        openai = llm.openai_base_url(),
    )
}

/// Creates the bench user (tenant `bench`) with the known [`TOKEN`], as the Admin API would.
async fn seed_bench_user(identity: &dyn clawhive_store::IdentityStore) -> anyhow::Result<()> {
    let (tenant, user) = (clawhive_core::TenantId::new("bench")?, clawhive_core::UserId::new("bench")?);
    identity.create_user(&tenant, &user, &[], &[], "bench").await.context("creating the bench user")?;
    let sha = clawhive_core::token::hash_token(TOKEN);
    identity.register_token(&tenant, &user, &sha, None, "bench").await.context("registering the bench token")?;
    Ok(())
}

fn write_config(toml: &str, tag: &str) -> anyhow::Result<PathBuf> {
    clawhive_core::config::Config::from_sources(Some(toml), Vec::new()).context("the bench config is invalid")?;
    let path = std::env::temp_dir().join(format!("clawhive-bench-{}-{tag}.toml", std::process::id()));
    std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn build(package: &'static str, bin: &'static str, prebuilt: bool) -> anyhow::Result<PathBuf> {
    if prebuilt {
        let exe = std::env::current_exe()?;
        let path = exe.parent().context("no directory around this binary")?.join(bin);
        if !path.exists() {
            bail!("--prebuilt: {} does not exist; build it with cargo build -p {package}", path.display());
        }
        return Ok(path);
    }
    binary(package, bin).with_context(|| format!("building {bin}"))
}

async fn start_cluster(s: &Settings) -> anyhow::Result<Target> {
    let prebuilt = s.prebuilt;
    let gateway_bin =
        tokio::task::spawn_blocking(move || build("clawhive-gateway", "clawhive-gateway", prebuilt)).await??;
    let worker_bin =
        tokio::task::spawn_blocking(move || build("clawhive-agent-worker", "clawhive-agent-worker", prebuilt))
            .await??;
    let nats = tokio::task::spawn_blocking(NatsServer::start).await?.context("starting nats-server")?;
    let redis = tokio::task::spawn_blocking(RedisServer::start).await?.context("starting redis-server")?;
    let llm = OwnThreadLlm::start()?;
    let grpc_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let config_path =
        write_config(&config_toml(s, &nats.url(), &redis.url(), grpc_addr, http_addr, &llm), &nats.port().to_string())?;
    let config = config_path.to_str().context("temp path is not UTF-8")?.to_string();
    let store_cfg = clawhive_core::config::StoreConfig { redis_url: redis.url(), ..Default::default() };
    let store = clawhive_store::RedisStore::connect(&store_cfg).await.context("connecting to redis")?;
    seed_bench_user(&store).await?;
    let env = service_env(s, &[("RUST_LOG", s.rust_log.clone())]);

    let mut procs = Vec::new();
    for (pid, comm) in crate::sys::children() {
        if comm.starts_with("nats-server") || comm.starts_with("redis-server") {
            procs.push(Proc { name: comm, pid, ready_ms: None });
        }
    }
    procs.sort_by(|a, b| a.name.cmp(&b.name));

    let mut children = Vec::new();
    let t0 = Instant::now();
    let gateway = spawn_service(s, &gateway_bin, "gateway", &["--config", &config], &env)?;
    let ready = wait_readyz(http_addr, t0, &gateway).await?;
    procs.push(Proc { name: "gateway".into(), pid: gateway.pid(), ready_ms: Some(ready) });
    children.push(gateway);

    for i in 0..s.workers {
        let t0 = Instant::now();
        let w = spawn_service(s, &worker_bin, &format!("worker-{i}"), &["--config", &config], &env)?;
        let ready = wait_log(&w, "agent worker started", t0).await?;
        procs.push(Proc { name: format!("worker-{i}"), pid: w.pid(), ready_ms: Some(ready) });
        children.push(w);
    }
    Ok(Target {
        grpc_addr,
        http_addr,
        procs,
        llm,
        children,
        _redis: Some(redis),
        _nats: Some(nats),
        config_path,
        data_dir: None,
    })
}

async fn start_embedded(s: &Settings) -> anyhow::Result<Target> {
    let prebuilt = s.prebuilt;
    const NEEDS: &str = "embedded mode needs clawhive up with embedded adapters";
    let up_bin = tokio::task::spawn_blocking(move || build("clawhive", "clawhive", prebuilt)).await??;
    let llm = OwnThreadLlm::start()?;
    let grpc_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let http_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    // Unused by embedded adapters; unreachable on purpose so a non-embedded `up --external` fails loudly.
    let toml = config_toml(s, "nats://127.0.0.1:1", "redis://127.0.0.1:1", grpc_addr, http_addr, &llm);
    let config_path = write_config(&toml, "up")?;
    let data_dir = std::env::temp_dir().join(format!("clawhive-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    {
        // Seed the store file `clawhive up` will open, then close it.
        let store =
            clawhive_store::EmbeddedStore::open(&data_dir.join("sessions.redb")).context("opening the store")?;
        seed_bench_user(&store).await?;
    }
    let workers = s.workers.to_string();
    let grpc = grpc_addr.to_string();
    let http = http_addr.to_string();
    let args = [
        "up",
        "--backend",
        "embedded",
        "--config",
        config_path.to_str().context("temp path is not UTF-8")?,
        "--workers",
        &workers,
        "--grpc-addr",
        &grpc,
        "--http-addr",
        &http,
    ];
    let env =
        service_env(s, &[("RUST_LOG", s.rust_log.clone()), ("CLAWHIVE_DATA_DIR", data_dir.display().to_string())]);
    let t0 = Instant::now();
    let up = spawn_service(s, &up_bin, "clawhive-up", &args, &env)?;
    let ready = wait_readyz(http_addr, t0, &up).await;
    let cleanup = |e: anyhow::Error| {
        let _ = std::fs::remove_file(&config_path);
        let _ = std::fs::remove_dir_all(&data_dir);
        e
    };
    let ready = ready.map_err(|e| {
        let e = if up.log().contains("--backend") { e.context(NEEDS) } else { e };
        cleanup(e)
    })?;
    // `clawhive up --backend embedded` says "bus: in-process" and starts no server processes.
    if !up.log().contains("bus: in-process") || !crate::sys::children_of(up.pid()).is_empty() {
        let log = up.log();
        drop(up);
        return Err(cleanup(anyhow::anyhow!("{NEEDS} (this `clawhive up` did not run in-process):\n{log}")));
    }
    let procs = vec![Proc { name: "clawhive-up".into(), pid: up.pid(), ready_ms: Some(ready) }];
    Ok(Target {
        grpc_addr,
        http_addr,
        procs,
        llm,
        children: vec![up],
        _redis: None,
        _nats: None,
        config_path,
        data_dir: Some(data_dir),
    })
}

/// Polls `GET /readyz` every millisecond until 200; returns ms since `t0`.
async fn wait_readyz(http: SocketAddr, t0: Instant, proc_: &ServiceProcess) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let end = t0 + START_TIMEOUT;
    while Instant::now() < end {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(http).await {
            let _ = conn.write_all(b"GET /readyz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n").await;
            let mut head = [0u8; 12];
            if conn.read_exact(&mut head).await.is_ok() && &head[9..12] == b"200" {
                return Ok(t0.elapsed().as_secs_f64() * 1e3);
            }
        } else if !crate::sys::is_running(proc_.pid()) {
            bail!("the process exited before {http}/readyz answered 200; log:\n{}", proc_.log());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("{http}/readyz did not answer 200 within {START_TIMEOUT:?}; log:\n{}", proc_.log())
}

/// Polls the log every 2 ms until it contains `needle`; returns ms since `t0`.
async fn wait_log(p: &ServiceProcess, needle: &str, t0: Instant) -> anyhow::Result<f64> {
    let end = t0 + START_TIMEOUT;
    while Instant::now() < end {
        if p.log().contains(needle) {
            return Ok(t0.elapsed().as_secs_f64() * 1e3);
        }
        if !crate::sys::is_running(p.pid()) {
            bail!("the process exited before logging {needle:?}; log:\n{}", p.log());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("no {needle:?} in the log within {START_TIMEOUT:?}; log:\n{}", p.log())
}
