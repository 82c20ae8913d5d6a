//! The `clawhive` binary end to end: `config check`, `chat` without a token,
//! and `up` + `chat` against a fake LLM, with restart and clean shutdown.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clawhive");

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("clawhive-cli-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A command with no inherited `CLAWHIVE_*` variables.
fn clawhive() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("CLAWHIVE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn config_check_prints_redacted_toml() {
    let dir = temp_dir("cfg-ok");
    let file = dir.join("ok.toml");
    std::fs::write(&file, "[store]\nredis_url = \"redis://u:hunter2@127.0.0.1:6379\"\n[worker]\nconcurrency = 3\n")
        .unwrap();
    let out = clawhive().args(["config", "check", "--config"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("concurrency = 3"), "{stdout}");
    assert!(stdout.contains("redis://u:<redacted>@127.0.0.1:6379"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stderr.contains("config ok"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_check_rejects_invalid_file_with_one_line() {
    let dir = temp_dir("cfg-bad");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[worker]\nconcurrency = 0\n").unwrap();
    let out = clawhive().args(["config", "check", "--config"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("config error: "), "{stderr}");
    assert!(stderr.contains("worker.concurrency"), "{stderr}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_check_ignores_cli_env_vars() {
    let out = clawhive()
        .args(["config", "check"])
        .env("CLAWHIVE_MODEL", "fake/echo")
        .env("CLAWHIVE_TOKEN", "x")
        .env("CLAWHIVE_WORKER__CONCURRENCY", "5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("concurrency = 5"), "{stdout}");
}

#[test]
fn chat_without_token_fails_clearly() {
    let out = clawhive().args(["chat", "--addr", "http://127.0.0.1:1", "hello"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CLAWHIVE_TOKEN") && stderr.contains("--token"), "{stderr}");
}

#[test]
fn chat_reports_grpc_errors() {
    // Nothing listens on port 1: one-shot chat prints `error: <code>: …` and exits 1.
    let out = clawhive().args(["chat", "--addr", "http://127.0.0.1:1", "--token", "t", "hello"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: Unavailable:"), "{stderr}");
}

/// A running `clawhive up` and what it printed.
struct Up {
    child: Child,
    grpc: String,
    token: String,
    pids: Vec<u32>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// Starts `clawhive up --backend <backend>`; `path` replaces `PATH` for it.
fn start_up(data: &Path, llm_url: &str, log: &Path, backend: &str, path: Option<&Path>) -> Up {
    let log_file = std::fs::File::create(log).unwrap();
    let mut cmd = clawhive();
    if let Some(p) = path {
        cmd.env("PATH", p).env_remove("CLAWHIVE_NATS_SERVER").env_remove("CLAWHIVE_REDIS_SERVER");
    }
    let expected_pids = if backend == "servers" { 2 } else { 0 };
    let mut child = cmd
        .args([
            "up",
            "--backend",
            backend,
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--workers",
            "2",
        ])
        .env("CLAWHIVE_DATA_DIR", data)
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__KIND", "openai")
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__BASE_URL", llm_url)
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__API_KEY_ENV", "\"\"")
        .env("CLAWHIVE_MODEL", "fake/echo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut grpc, mut token, mut pids) = (None, None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while grpc.is_none() || token.is_none() || pids.len() < expected_pids {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                panic!("`clawhive up` printed no ready block; stderr:\n{}", std::fs::read_to_string(log).unwrap())
            }
        };
        if let Some(a) = line.strip_prefix("grpc: ") {
            grpc = Some(a.trim().to_string());
        } else if let Some(t) = line.strip_prefix("export CLAWHIVE_TOKEN=") {
            token = Some(t.trim().to_string());
        }
        for tag in ["nats-server pid: ", "redis-server pid: "] {
            if let Some((_, rest)) = line.split_once(tag) {
                pids.push(rest.trim_end_matches(')').trim().parse::<u32>().unwrap());
            }
        }
    }
    Up { child, grpc: grpc.unwrap(), token: token.unwrap(), pids }
}

async fn chat(up: &Up, session: &str, text: &str) -> std::process::Output {
    let mut c = tokio::process::Command::new(BIN);
    c.args(["chat", "--addr", &format!("http://{}", up.grpc), "--token", &up.token, "--session", session, text]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CLAWHIVE_") {
            c.env_remove(k);
        }
    }
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("chat timed out").unwrap()
}

fn alive(pid: u32) -> bool {
    Command::new("kill").args(["-0", &pid.to_string()]).stderr(Stdio::null()).status().unwrap().success()
}

/// SIGTERM, then a bounded wait for exit; asserts the children are gone.
fn stop_up(mut up: Up, log: &Path) {
    let pid = up.child.id();
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(s) = up.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "`clawhive up` did not exit after SIGTERM; stderr:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit {status}; stderr:\n{}", std::fs::read_to_string(log).unwrap());
    // The servers were our children and were reaped by `up`; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in &up.pids {
        assert!(!alive(*p), "server pid {p} survived `clawhive up`");
    }
    up.pids.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_local_servers_serves_chat_persists_and_shuts_down_cleanly() {
    up_serves_chat_persists_and_shuts_down_cleanly("servers", None).await;
}

/// The single-machine mode needs nothing but the binary: no nats-server or
/// redis-server on PATH, sessions kept in the embedded store across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_embedded_runs_without_nats_or_redis_on_path() {
    let empty = temp_dir("empty-path");
    up_serves_chat_persists_and_shuts_down_cleanly("embedded", Some(&empty)).await;
    let _ = std::fs::remove_dir_all(&empty);
}

async fn up_serves_chat_persists_and_shuts_down_cleanly(backend: &str, path: Option<&Path>) {
    let llm = clawhive_tests::fake_llm::FakeLlm::start().await;
    let data = temp_dir("up");
    let log = data.join("up.log");

    let up = start_up(&data, &llm.openai_base_url(), &log, backend, path);
    assert_eq!(up.token.len(), 64, "{}", up.token);

    let out = chat(&up, "s1", "hello there").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}\nup log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(stdout.contains("echo[1]: hello there"), "{stdout}");

    let out = chat(&up, "s1", "again").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("echo[2]: again"), "{stdout}");

    // A wrong token is refused with a gRPC error and exit 1.
    let bad =
        Up { child: Command::new("true").spawn().unwrap(), grpc: up.grpc.clone(), token: "nope".into(), pids: vec![] };
    let out = chat(&bad, "s1", "hi").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: Unauthenticated:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(bad);

    let token = up.token.clone();
    stop_up(up, &log);

    // A restart reuses the bootstrap token and the stored session.
    let up = start_up(&data, &llm.openai_base_url(), &log, backend, path);
    assert_eq!(up.token, token, "the bootstrap token must survive restarts");
    let out = chat(&up, "s1", "third").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("echo[3]: third"), "{stdout}");
    stop_up(up, &log);

    let _ = std::fs::remove_dir_all(&data);
}

async fn admin(up: &Up, args: &[&str]) -> std::process::Output {
    let mut c = tokio::process::Command::new(BIN);
    c.arg("admin").args(args).args(["--addr", &format!("http://{}", up.grpc), "--token", &up.token]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CLAWHIVE_") {
            c.env_remove(k);
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("admin timed out").unwrap();
    assert!(out.status.success(), "clawhive admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `clawhive admin` against `clawhive up` (embedded): a user, an issued token
/// that chats, then revoked and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_issues_and_revokes_tokens_on_up_embedded() {
    let llm = clawhive_tests::fake_llm::FakeLlm::start().await;
    let data = temp_dir("admin");
    let log = data.join("up.log");
    let up = start_up(&data, &llm.openai_base_url(), &log, "embedded", None);

    let out = admin(&up, &["user", "create", "bob", "--role", "member", "--group", "eng"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user bob in tenant local"));
    let out = admin(&up, &["user", "list"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob\troles=member\tgroups=eng"));

    let out = admin(&up, &["token", "issue", "bob", "--expires-in-days", "30", "--label", "ci"]).await;
    let bob_token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(bob_token.starts_with("chv1_"), "{bob_token}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token_id = stderr
        .split_once("token id: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("the token id is printed")
        .to_string();

    let bob =
        Up { child: Command::new("true").spawn().unwrap(), grpc: up.grpc.clone(), token: bob_token, pids: vec![] };
    let out = chat(&bob, "b1", "hi from bob").await;
    assert!(
        out.status.success(),
        "stderr: {}\nup log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo[1]: hi from bob"));

    let out = admin(&up, &["token", "list", "bob"]).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(&token_id) && listed.contains("active") && !listed.contains(&bob.token), "{listed}");

    admin(&up, &["token", "revoke", &token_id]).await;
    let out = chat(&bob, "b1", "still there?").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: Unauthenticated:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(&up, &["token", "list", "bob"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    drop(bob);

    stop_up(up, &log);
    let _ = std::fs::remove_dir_all(&data);
}

/// `clawhive admin` with `input` on standard input; the output whatever the exit.
async fn admin_with_input(up: &Up, args: &[&str], input: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new(BIN);
    c.arg("admin").args(args).args(["--addr", &format!("http://{}", up.grpc), "--token", &up.token]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CLAWHIVE_") {
            c.env_remove(k);
        }
    }
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("admin timed out").unwrap()
}

/// `clawhive admin secret|policy|audit` against `clawhive up` (embedded): secret values
/// go in on stdin and never come out; a bad policy is refused with its reason; the
/// audit trail shows the admin's own turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_secrets_and_policy_and_reads_the_audit_trail_on_up_embedded() {
    let llm = clawhive_tests::fake_llm::FakeLlm::start().await;
    let data = temp_dir("admin-ops");
    let log = data.join("up.log");
    let up = start_up(&data, &llm.openai_base_url(), &log, "embedded", None);

    admin(&up, &["user", "create", "bob"]).await;
    let out = admin_with_input(&up, &["secret", "put", "linkedin-token", "--user", "bob"], "li-bob-value\n").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stored secret linkedin-token for user bob"));
    let out = admin_with_input(&up, &["secret", "put", "team-key"], "").await;
    assert!(!out.status.success(), "an empty value is refused");
    let out = admin(&up, &["secret", "list"]).await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("linkedin-token\tbob") && !listed.contains("li-bob-value"), "{listed}");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("li-bob-value"), "secret value in the log");

    let out = admin(&up, &["policy", "get"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("no policy of its own"));
    let bad = data.join("bad-policy.toml");
    std::fs::write(&bad, "[[grants]]\nnot_a_field = 1\n").unwrap();
    let out = admin_with_input(&up, &["policy", "set", bad.to_str().unwrap()], "").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("policy rejected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = data.join("policy.toml");
    std::fs::write(&good, "[[grants]]\nagents = [\"*\"]\n").unwrap();
    let out = admin(&up, &["policy", "set", good.to_str().unwrap()]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("policy version 1 stored"));
    let out = admin(&up, &["policy", "get"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("agents = [\"*\"]"));

    let out = chat(&up, "audit-me", "hello audit").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = admin(&up, &["audit", "--user", "admin", "--since-minutes", "10"]).await;
    let trail = String::from_utf8_lossy(&out.stdout);
    assert!(trail.contains("\tadmin\tdefault\tagent_access\t\tallow\t"), "{trail}");
    admin(&up, &["policy", "clear"]).await;

    stop_up(up, &log);
    let _ = std::fs::remove_dir_all(&data);
}
