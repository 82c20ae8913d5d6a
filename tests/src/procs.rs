//! Service binaries as child processes, so tests can SIGKILL a worker mid-turn.
//!
//! [`binary`] builds the named binary with the same cargo profile as the
//! running test (once per test process) and returns its path, so a test never
//! runs a stale binary.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The target directory's profile folder the running test binary lives in (`target/debug`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test binary has no parent dir")?;
    let dir = if deps.ends_with("deps") { deps.parent().context("no profile dir")? } else { deps };
    Ok(dir.to_path_buf())
}

/// Builds (if needed) and returns the path of binary `bin` from package `package`.
pub fn binary(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(bin) {
        return Ok(p.clone());
    }
    let dir = profile_dir()?;
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if profile == "release" {
        cmd.arg("--release");
    } else if profile != "debug" {
        cmd.args(["--profile", &profile]);
    }
    if let Some(target_dir) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target_dir);
    }
    let status = cmd.status().context("running cargo build for a service binary")?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {bin} failed");
    }
    let path = dir.join(bin);
    if !path.exists() {
        bail!("built {bin} but {} does not exist", path.display());
    }
    built.insert(bin.to_string(), path.clone());
    Ok(path)
}

/// A running service binary whose stderr goes to a log file.
pub struct ServiceProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ServiceProcess {
    pub fn spawn(path: &Path, args: &[&str], envs: &[(&str, String)]) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("service").to_string();
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!("clawhive-{name}-{}-{n}.log", std::process::id()));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(path);
        cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        cmd.env("RUST_LOG", std::env::var("CLAWHIVE_TEST_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", path.display()))?;
        Ok(Self { name, child, log_path })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: ask for a graceful drain.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("{} did not log {needle:?} within {timeout:?}; log:\n{}", self.name, self.log())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("CLAWHIVE_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}
