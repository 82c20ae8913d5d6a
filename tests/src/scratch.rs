//! Small things both server harnesses need: free loopback ports, scratch
//! directories that clean up after themselves, and log tails for errors.

use anyhow::Context;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A port nobody listens on right now (bound on 127.0.0.1:0 and released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last lines of a log, on one line, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A fresh directory under the system temp dir, removed on `Drop` unless kept.
pub struct ScratchDir(Option<PathBuf>);

impl ScratchDir {
    pub fn create(prefix: &str) -> anyhow::Result<ScratchDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "clawhive-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // create_dir, not create_dir_all: fail rather than share a directory.
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(Some(path)))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("scratch dir is present until kept")
    }

    /// Hands the directory over to the caller, who removes it.
    pub fn keep(mut self) -> PathBuf {
        self.0.take().expect("scratch dir is present until kept")
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Why a server did not start on one port.
pub enum StartError {
    /// Somebody else bound the port first; worth another try on another port.
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Starts `name` with `start(port, dir)` on a fresh free port and scratch dir, up to
/// `attempts` times while the port was taken; returns what started, its port and dir.
pub fn start_on_free_port<T>(
    name: &str,
    attempts: usize,
    mut start: impl FnMut(u16, &Path) -> Result<T, StartError>,
) -> anyhow::Result<(T, u16, PathBuf)> {
    let mut last_error = None;
    for _ in 0..attempts {
        let port = free_port()?;
        let dir = ScratchDir::create(name)?;
        match start(port, dir.path()) {
            Ok(started) => return Ok((started, port, dir.keep())),
            Err(StartError::PortTaken(e)) => last_error = Some(e),
            Err(StartError::Fatal(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{name}-server did not start")))
        .with_context(|| format!("{name}-server could not bind a free port in {attempts} attempts"))
}
