//! A throwaway `redis-server` on a free loopback port.
//!
//! Each [`RedisServer`] is its own process with its own scratch directory, no
//! persistence and no config file; dropping it kills the process and removes
//! the directory. It never touches the shared instance on 6379.
//!
//! [`RedisServer::start`] blocks (at most ~10 s per attempt) until the server
//! answers `PING`; calling it from a `#[tokio::test]` is fine.

use crate::scratch::{StartError, start_on_free_port, tail};
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "apt-get install -y redis-server";
/// How long one start attempt may take before we give up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts; another process may grab the port between our probe and the server's bind.
const ATTEMPTS: usize = 5;

/// A running `redis-server`, stopped on `Drop`.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Spawns `redis-server` on a free port of 127.0.0.1 and waits until it answers `PING`.
    pub fn start() -> anyhow::Result<RedisServer> {
        let binary = redis_server_binary()?;
        let (child, port, dir) = start_on_free_port("redis", ATTEMPTS, |port, dir| start_on(&binary, port, dir))?;
        Ok(RedisServer { child, port, dir })
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `redis-server` to run: `$CLAWHIVE_REDIS_SERVER`, else the first one on
/// `PATH`, in `/usr/bin` or in `/usr/local/bin`.
pub fn redis_server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CLAWHIVE_REDIS_SERVER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "CLAWHIVE_REDIS_SERVER={} is not a file; unset it or install Redis with `{INSTALL_HINT}`",
            path.display()
        );
    }
    let path_dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("redis-server not found on PATH, in /usr/bin or /usr/local/bin; install it with `{INSTALL_HINT}` or set CLAWHIVE_REDIS_SERVER")
        })
}

fn start_on(binary: &Path, port: u16, dir: &Path) -> Result<Child, StartError> {
    let log_path = dir.join("redis.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))
        .map_err(StartError::Fatal)?;
    let log_err = log.try_clone().context("cannot duplicate the log file handle").map_err(StartError::Fatal)?;
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("cannot spawn {}", binary.display()))
        .map_err(StartError::Fatal)?;

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("cannot poll redis-server").map_err(StartError::Fatal)? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let err = anyhow::anyhow!("redis-server on port {port} exited with {status}: {}", tail(&log));
            return Err(if log.contains("Address already in use") {
                StartError::PortTaken(err)
            } else {
                StartError::Fatal(err)
            });
        }
        if answers_ping(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(StartError::Fatal(anyhow::anyhow!(
                "redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}: {}",
                tail(&log)
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a Redis server on `port` answers `PING` with `+PONG`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 5 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"+PONG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_cleans_up() {
        let server = RedisServer::start().unwrap();
        assert_ne!(server.port(), 6379);
        assert!(answers_ping(server.port()));
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        let (port, dir) = (server.port(), server.dir.clone());
        assert!(dir.is_dir());
        drop(server);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!answers_ping(port), "redis-server still answers after drop");
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = RedisServer::start().unwrap();
        let b = RedisServer::start().unwrap();
        assert_ne!(a.port(), b.port());
    }
}
