//! End to end through the Slack bridge, with no gateway in the path:
//! fake Slack (Socket Mode / Events API) → bridge → NATS JetStream → agent
//! worker → fake LLM → durable reply stream → bridge → fake Slack.

mod common;

use clawhive_core::config::Config;
use clawhive_core::{TenantId, UserId};
use clawhive_slack_bridge::{BridgeHandle, Deps, SlackSecrets};
use clawhive_store::{IdentityStore, RedisStore};
use clawhive_tests::fake_slack::{self, APP_TOKEN, BOT_TOKEN, FakeSlack, Posted};
use clawhive_tests::procs::{ServiceProcess, binary};
use common::Cluster;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SIGNING_SECRET: &str = "test-signing-secret";
const WAIT: Duration = Duration::from_secs(20);

struct Env {
    cluster: Cluster,
    slack: FakeSlack,
    store: Arc<RedisStore>,
    config: Config,
    bridge: Option<(BridgeHandle, CancellationToken)>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((_, stop)) = &self.bridge {
            stop.cancel();
        }
    }
}

/// The `[slack]` section the bridge runs with (as TOML, also for the binary).
fn slack_toml(slack: &FakeSlack) -> String {
    format!(
        r#"
[slack]
api_base_url = "{}"
socket_connections = 2
max_socket_connections = 3
socket_idle_timeout_ms = 2500
reconnect_initial_ms = 100
reconnect_max_ms = 1000
http_addr = "127.0.0.1:0"
stream_edit_interval_ms = 300
timeout_ms = 20000

[[slack.teams]]
team_id = "T1"
tenant = "acme"
"#,
        slack.api_base_url()
    )
}

async fn env() -> Env {
    let cluster = Cluster::start(1).await;
    let slack = FakeSlack::start().await;
    let base = std::fs::read_to_string(&cluster.config_path).unwrap();
    let config = Config::from_sources(Some(&format!("{base}\n{}", slack_toml(&slack))), Vec::new()).unwrap();
    let store = Arc::new(RedisStore::connect(&config.store).await.unwrap());
    // Slack users U1 (alice) and U2 (bob) are known; anyone else is not.
    let acme = TenantId::new("acme").unwrap();
    for (user, slack_user) in [("alice", "U1"), ("bob", "U2")] {
        let u = UserId::new(user).unwrap();
        match store.create_user(&acme, &u, &[], &[], user).await {
            Ok(_) | Err(clawhive_store::StoreError::Conflict(_)) => {}
            Err(e) => panic!("create {user}: {e}"),
        }
        store.link_external(&acme, &u, "slack", &format!("T1:{slack_user}")).await.unwrap();
    }
    if std::env::var_os("CLAWHIVE_TEST_TRACE").is_some() {
        clawhive_telemetry::init_tracing(&config.telemetry, "e2e-slack");
    }
    let mut env = Env { cluster, slack, store, config, bridge: None };
    env.start_bridge().await;
    env
}

impl Env {
    async fn start_bridge(&mut self) {
        let stop = CancellationToken::new();
        let deps = Deps {
            bus: self.cluster.bus.clone(),
            sessions: self.store.clone(),
            identity: self.store.clone(),
            pairings: self.store.clone(),
            markers: self.store.clone(),
        };
        let secrets = SlackSecrets {
            app_token: APP_TOKEN.into(),
            bot_token: BOT_TOKEN.into(),
            signing_secret: SIGNING_SECRET.into(),
        };
        let handle = clawhive_slack_bridge::start(&self.config, deps, secrets, stop.clone()).await.expect("bridge");
        self.bridge = Some((handle, stop));
        self.slack.wait_sockets(2, WAIT).await;
    }

    fn events_url(&self) -> String {
        format!("http://{}/slack/events", self.bridge.as_ref().unwrap().0.http_addr.unwrap())
    }

    /// A socket to send on (the oldest open one).
    fn socket(&self) -> u64 {
        self.slack.open_sockets()[0]
    }
}

fn texts(posted: &[Posted]) -> Vec<String> {
    posted.iter().map(|p| p.text.clone()).collect()
}

/// Final (not streaming) messages in `channel` containing `needle`.
fn finals<'a>(posted: &'a [Posted], channel: &str, needle: &str) -> Vec<&'a Posted> {
    posted.iter().filter(|p| p.channel == channel && p.text.contains(needle) && !p.text.ends_with('…')).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dm_gets_an_answer_in_the_dm() {
    let env = env().await;
    let s = env.socket();
    assert!(env.slack.send_event(s, "env-dm-1", &fake_slack::dm("T1", "EvDM1", "U1", "D1", "10.1", "hello there")));
    env.slack.wait_ack("env-dm-1", WAIT).await;
    let posted = env.slack.wait_posted(WAIT, |p| !finals(p, "D1", "echo[1]: hello there").is_empty()).await;
    let answer = finals(&posted, "D1", "echo[1]")[0];
    assert_eq!(answer.thread_ts, "", "a DM is answered in the DM, not in a thread");
    // The session is alice's own.
    let key = clawhive_core::SessionKey::new(
        TenantId::new("acme").unwrap(),
        clawhive_core::SessionId::new("slack-dm:T1:U1").unwrap(),
    );
    let meta = clawhive_store::SessionStore::session_meta(env.store.as_ref(), &key).await.unwrap().unwrap();
    assert_eq!(meta.owner.as_str(), "alice");

    // The same reply delivered again (as after a crash between posting and acking) is not posted twice.
    let reply = clawhive_proto::v1::Reply {
        request_id: "slack:T1:EvDM1".into(),
        text: "echo[1]: hello there".into(),
        tenant_id: "acme".into(),
        reply_route: Some(clawhive_proto::v1::ReplyRoute {
            target: Some(clawhive_proto::v1::reply_route::Target::Slack(clawhive_proto::v1::SlackRoute {
                team_id: "T1".into(),
                channel_id: "D1".into(),
                thread_ts: String::new(),
            })),
        }),
        ..Default::default()
    };
    let subject = clawhive_bus::Subjects::new("clawhive").slack_reply("T1");
    let payload = prost::Message::encode_to_vec(&reply).into();
    env.cluster.bus.publish_durable(&subject, "redelivered-reply", Vec::new(), payload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.slack.posted_in("D1").len(), 1, "{:#?}", env.slack.posted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mention_is_answered_in_its_thread_and_the_thread_keeps_its_history() {
    let env = env().await;
    let s = env.socket();
    env.slack.send_event(s, "env-m-1", &fake_slack::mention("T1", "EvM1", "U1", "C1", "100.1", "", "what is up"));
    let posted = env.slack.wait_posted(WAIT, |p| !finals(p, "C1", "echo[1]: what is up").is_empty()).await;
    assert_eq!(finals(&posted, "C1", "echo[1]")[0].thread_ts, "100.1", "answered in the mention's thread");

    // Bob follows up in the thread without mentioning the bot: same session, history carried.
    env.slack.send_event(
        s,
        "env-m-2",
        &fake_slack::thread_message("T1", "EvM2", "U2", "C1", "100.5", "100.1", "and more"),
    );
    let posted = env.slack.wait_posted(WAIT, |p| !finals(p, "C1", "echo[2]").is_empty()).await;
    let follow = finals(&posted, "C1", "echo[2]")[0];
    assert_eq!(follow.thread_ts, "100.1");
    assert!(follow.text.contains("and more"), "{follow:?}");

    // API clients cannot write into a Slack thread's shared session.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sessions/shared:slack:T1:C1:100-1/messages", env.cluster.http_base()))
        .bearer_auth(common::ALICE)
        .json(&serde_json::json!({"text": "sneak in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A message in a thread the bot is not in is ignored.
    env.slack.send_event(
        s,
        "env-m-3",
        &fake_slack::thread_message("T1", "EvM3", "U2", "C1", "200.5", "200.1", "not for you"),
    );
    env.slack.wait_ack("env-m-3", WAIT).await;
    // The bot's own message is ignored too.
    let own = fake_slack::dm("T1", "EvM4", fake_slack::BOT_USER, "D1", "300.1", "echo[1]: loop?");
    env.slack.send_event(s, "env-m-4", &own);
    env.slack.wait_ack("env-m-4", WAIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let posted = env.slack.posted();
    assert!(!texts(&posted).iter().any(|t| t.contains("not for you") || t.contains("loop?")), "{posted:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_delivered_three_times_gets_one_reply() {
    let env = env().await;
    let sockets = env.slack.open_sockets();
    let (a, b) = (sockets[0], sockets[1]);
    let ev = fake_slack::dm("T1", "EvDup1", "U1", "D7", "20.1", "only once");
    // Slack retries with a new envelope id, and may redeliver over another socket.
    assert!(env.slack.send_event(a, "env-dup-1", &ev));
    assert!(env.slack.send_event(b, "env-dup-2", &ev));
    assert!(env.slack.send_event(a, "env-dup-3", &ev));
    for e in ["env-dup-1", "env-dup-2", "env-dup-3"] {
        env.slack.wait_ack(e, WAIT).await;
    }
    // And once more over HTTP, as an Events API retry.
    let body = ev.to_string();
    let resp = signed_post(&env.events_url(), &body, now_secs(), SIGNING_SECRET, Some("1")).await;
    assert_eq!(resp.status(), 200);
    env.slack.wait_posted(WAIT, |p| !finals(p, "D7", "echo[1]: only once").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let posted = env.slack.posted_in("D7");
    assert_eq!(posted.len(), 1, "{posted:#?}");
    assert!(posted[0].text.contains("echo[1]: only once"), "{posted:#?}");
    assert_eq!(common::count_stored_replies(&env.cluster.bus, "slack:T1:EvDup1").await, 1);
    assert_eq!(env.cluster.llm.request_count(), 1, "one turn ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bridge_killed_before_posting_posts_the_reply_once_after_restart() {
    let mut env = env().await;
    // This test runs the bridge binary; stop the in-process one.
    if let Some((h, stop)) = env.bridge.take() {
        stop.cancel();
        h.wait().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = std::fs::read_to_string(&env.cluster.config_path).unwrap();
    let config_path = env.cluster.config_path.with_extension("slack.toml");
    std::fs::write(
        &config_path,
        format!("{base}\n{}", slack_toml(&env.slack).replace("http_addr = \"127.0.0.1:0\"\n", "")),
    )
    .unwrap();
    let bin = tokio::task::spawn_blocking(|| binary("clawhive-slack-bridge", "clawhive-slack-bridge"))
        .await
        .unwrap()
        .expect("bridge binary");
    let envs = [("SLACK_APP_TOKEN", APP_TOKEN.to_string()), ("SLACK_BOT_TOKEN", BOT_TOKEN.to_string())];
    let spawn =
        || ServiceProcess::spawn(&bin, &["--config", config_path.to_str().unwrap()], &envs).expect("spawn bridge");
    let seen = env.slack.connections_opened();
    let mut first = spawn();
    first.wait_for_log("Socket Mode connection ready", WAIT).await.unwrap();
    let s = *env.slack.open_sockets().iter().find(|id| **id > seen).expect("the binary's socket");
    // The LLM takes 3 s: the bridge is killed after publishing, before the reply exists.
    env.slack.send_event(s, "env-kill-1", &fake_slack::dm("T1", "EvKill1", "U1", "D9", "30.1", "#slow:3000 survive"));
    env.slack.wait_ack("env-kill-1", WAIT).await;
    first.kill();
    // The worker finishes the turn while no bridge runs.
    let until = tokio::time::Instant::now() + WAIT;
    while env.cluster.llm.request_count() == 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(finals(&env.slack.posted(), "D9", "survive").is_empty(), "nothing is posted while no bridge runs");
    let second = spawn();
    second.wait_for_log("slack bridge started", WAIT).await.unwrap();
    env.slack.wait_posted(WAIT, |p| !finals(p, "D9", "echo[1]: #slow:3000 survive").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let posted = env.slack.posted_in("D9");
    assert_eq!(finals(&posted, "D9", "survive").len(), 1, "{posted:#?}");
    drop(second);
    let _ = std::fs::remove_file(&config_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_socket_is_replaced() {
    let env = env().await;
    let before = env.slack.open_sockets();
    let silent = before[0];
    env.slack.go_silent(silent);
    // Within the idle timeout (2.5 s) plus a reconnect, the silent socket is gone and replaced.
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let open = env.slack.open_sockets();
        if !open.contains(&silent) && open.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "silent socket not replaced: open {open:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = *env.slack.open_sockets().iter().max().unwrap();
    assert!(fresh > *before.iter().max().unwrap());
    env.slack.send_event(fresh, "env-silent-1", &fake_slack::dm("T1", "EvSil1", "U1", "D2", "40.1", "still here"));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D2", "echo[1]: still here").is_empty()).await;
    assert!(env.slack.max_open_sockets() <= 3, "never more than max_socket_connections open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_closed_by_slack_is_reopened() {
    let env = env().await;
    let gone = env.slack.open_sockets()[0];
    env.slack.close_socket(gone);
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let open = env.slack.open_sockets();
        if !open.contains(&gone) && open.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "closed socket not reopened: open {open:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = *env.slack.open_sockets().iter().max().unwrap();
    env.slack.send_event(fresh, "env-re-1", &fake_slack::dm("T1", "EvRe1", "U1", "D2", "41.1", "back"));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D2", "echo[1]: back").is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_is_handled_without_losing_an_event() {
    let env = env().await;
    let before = env.slack.open_sockets();
    let old = before[0];
    assert!(env.slack.send_disconnect(old));
    // Slack may still deliver on the old socket until it is closed.
    assert!(env.slack.send_event(
        old,
        "env-disc-1",
        &fake_slack::dm("T1", "EvDisc1", "U1", "D3", "50.1", "in between")
    ));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D3", "echo[1]: in between").is_empty()).await;
    env.slack.wait_ack("env-disc-1", WAIT).await;
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let open = env.slack.open_sockets();
        if !open.contains(&old) && open.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "old socket not replaced: open {open:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.slack.max_open_sockets(), 3, "the replacement opened before the old socket closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_post_waits_for_retry_after() {
    let env = env().await;
    env.slack.rate_limit("chat.postMessage", 1, 1);
    env.slack.send_event(env.socket(), "env-429-1", &fake_slack::dm("T1", "Ev4291", "U1", "D4", "60.1", "patience"));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D4", "echo[1]: patience").is_empty()).await;
    let calls: Vec<_> = env.slack.calls().into_iter().filter(|c| c.method == "chat.postMessage").collect();
    let limited = calls.iter().position(|c| c.status == 429).expect("a 429 was answered");
    let next = &calls[limited + 1];
    assert_eq!(next.status, 200);
    assert!(next.at.duration_since(calls[limited].at) >= Duration::from_millis(950), "Retry-After: 1 was honoured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_user_gets_a_pairing_code_and_answers_after_approval() {
    let env = env().await;
    let s = env.socket();
    env.slack.send_event(s, "env-p-1", &fake_slack::dm("T1", "EvP1", "U9", "D5", "70.1", "let me in"));
    let posted =
        env.slack.wait_posted(WAIT, |p| p.iter().any(|m| m.channel == "D5" && m.text.contains("pairing code"))).await;
    let note = posted.iter().find(|m| m.channel == "D5").unwrap();
    let code = note.text.split('*').nth(1).expect("the code is in bold").to_string();
    assert_eq!(code.len(), 8, "{note:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.slack.posted_in("D5").len(), 1, "a pairing code and nothing else");
    assert_eq!(env.cluster.llm.request_count(), 0, "nothing reached the agent");

    // An admin approves it with the CLI, over the gateway's Admin API.
    let acme = TenantId::new("acme").unwrap();
    let root = UserId::new("root").unwrap();
    let _ = env.store.create_user(&acme, &root, &["admin".into()], &[], "").await;
    let token = env.store.issue_token(&acme, &root, None, "e2e").await.unwrap().token;
    let cli = tokio::task::spawn_blocking(|| binary("clawhive", "clawhive")).await.unwrap().expect("cli binary");
    let addr = format!("http://{}", env.cluster.gateway.grpc_addr);
    let out = tokio::process::Command::new(&cli)
        .args(["admin", "--addr", &addr, "--token", &token, "pairing", "list"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&code), "{out:?}");
    let out = tokio::process::Command::new(&cli)
        .args(["admin", "--addr", &addr, "--token", &token, "pairing", "approve", &code.to_lowercase()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("slack:T1:U9"), "{out:?}");
    // Single use.
    let again = tokio::process::Command::new(&cli)
        .args(["admin", "--addr", &addr, "--token", &token, "pairing", "approve", &code])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("NotFound"), "{again:?}");

    env.slack.send_event(s, "env-p-2", &fake_slack::dm("T1", "EvP2", "U9", "D5", "70.2", "now?"));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D5", "echo[1]: now?").is_empty()).await;

    // Slash command: status answers who the caller is.
    let cmd = serde_json::json!({"team_id": "T1", "user_id": "U9", "channel_id": "D5", "command": "/clawhive", "text": "status"});
    env.slack.send_command(s, "env-p-3", &cmd);
    env.slack.wait_ack("env-p-3", WAIT).await;
    let answers = env.slack.command_answers();
    assert!(answers.iter().any(|a| a.contains("slack:T1:U9") && a.contains("acme")), "{answers:?}");

    // A Slack admin approves another newcomer with the slash command; non-admins cannot.
    env.store.link_external(&acme, &root, "slack", "T1:U3").await.unwrap();
    env.slack.send_event(s, "env-p-4", &fake_slack::dm("T1", "EvP4", "U8", "D8", "71.1", "me too"));
    let posted =
        env.slack.wait_posted(WAIT, |p| p.iter().any(|m| m.channel == "D8" && m.text.contains("pairing code"))).await;
    let code8 = posted.iter().find(|m| m.channel == "D8").unwrap().text.split('*').nth(1).unwrap().to_string();
    let by = |user: &str| {
        serde_json::json!({"team_id": "T1", "user_id": user, "channel_id": "C1", "command": "/clawhive",
            "text": format!("pairing approve {code8}")})
    };
    env.slack.send_command(s, "env-p-5", &by("U9"));
    env.slack.wait_ack("env-p-5", WAIT).await;
    env.slack.send_command(s, "env-p-6", &by("U3"));
    env.slack.wait_ack("env-p-6", WAIT).await;
    let answers = env.slack.command_answers();
    assert!(answers.iter().any(|a| a.contains("Only Clawhive admins")), "{answers:?}");
    assert!(answers.iter().any(|a| a.contains("Approved") && a.contains("slack:T1:U8")), "{answers:?}");
    env.slack.send_event(s, "env-p-7", &fake_slack::dm("T1", "EvP7", "U8", "D8", "71.2", "in?"));
    env.slack.wait_posted(WAIT, |p| !finals(p, "D8", "echo[1]: in?").is_empty()).await;
}

fn now_secs() -> i64 {
    clawhive_core::time::now_unix_ms() / 1000
}

async fn signed_post(url: &str, body: &str, ts: i64, secret: &str, retry: Option<&str>) -> reqwest::Response {
    let ts = ts.to_string();
    let sig = clawhive_slack_bridge::signature::sign(secret.as_bytes(), &ts, body.as_bytes());
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sig);
    if let Some(n) = retry {
        req = req.header("x-slack-retry-num", n).header("x-slack-retry-reason", "http_timeout");
    }
    req.body(body.to_string()).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_events_api_checks_signatures_and_timestamps() {
    let env = env().await;
    let mut requests = env.cluster.bus.subscribe("clawhive.req.>").await.unwrap();
    let url = env.events_url();
    let ev = fake_slack::dm("T1", "EvHttp1", "U1", "D6", "80.1", "over http").to_string();

    let bad = signed_post(&url, &ev, now_secs(), "wrong-secret", None).await;
    assert_eq!(bad.status(), 401);
    let stale = signed_post(&url, &ev, now_secs() - 600, SIGNING_SECRET, None).await;
    assert_eq!(stale.status(), 401);
    let unsigned = reqwest::Client::new().post(&url).body(ev.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let nothing = tokio::time::timeout(Duration::from_millis(800), requests.next()).await;
    assert!(nothing.is_err(), "nothing was published: {nothing:?}");

    let challenge = serde_json::json!({"type": "url_verification", "challenge": "abc123", "token": "x"}).to_string();
    let resp = signed_post(&url, &challenge, now_secs(), SIGNING_SECRET, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["challenge"], "abc123");

    let ok = signed_post(&url, &ev, now_secs(), SIGNING_SECRET, None).await;
    assert_eq!(ok.status(), 200);
    let published = tokio::time::timeout(WAIT, requests.next()).await.unwrap().unwrap();
    let req = clawhive_bus::envelope::decode_request(&published.payload).unwrap();
    assert_eq!(req.request_id, "slack:T1:EvHttp1");
    env.slack.wait_posted(WAIT, |p| !finals(p, "D6", "echo[1]: over http").is_empty()).await;

    // The slash command over HTTP (form-encoded), signed the same way.
    let commands = url.replace("/slack/events", "/slack/commands");
    let form = "team_id=T1&user_id=U1&channel_id=D6&command=%2Fclawhive&text=status";
    let bad = signed_post(&commands, form, now_secs(), "wrong-secret", None).await;
    assert_eq!(bad.status(), 401);
    let ok = signed_post(&commands, form, now_secs(), SIGNING_SECRET, None).await;
    assert_eq!(ok.status(), 200);
    let answer: serde_json::Value = ok.json().await.unwrap();
    assert!(answer["text"].as_str().unwrap().contains("alice"), "{answer}");
    assert_eq!(answer["response_type"], "ephemeral");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_reply_is_posted_once_then_edited_into_the_final() {
    let env = env().await;
    // The LLM waits 2 s; meanwhile deltas for the request arrive (as a streaming worker sends them).
    env.slack.send_event(
        env.socket(),
        "env-st-1",
        &fake_slack::dm("T1", "EvSt1", "U1", "D8", "90.1", "#slow:2000 stream"),
    );
    env.slack.wait_ack("env-st-1", WAIT).await;
    let subject = clawhive_bus::Subjects::new("clawhive").slack_delta("T1");
    for (seq, text) in ["partial ", "answer"].iter().enumerate() {
        let delta = clawhive_proto::v1::ReplyDelta {
            request_id: "slack:T1:EvSt1".into(),
            call_id: String::new(),
            seq: seq as u32,
            text: text.to_string(),
        };
        env.cluster
            .bus
            .publish_ephemeral(&subject, Vec::new(), prost::Message::encode_to_vec(&delta).into())
            .await
            .unwrap();
    }
    let posted =
        env.slack.wait_posted(WAIT, |p| p.iter().any(|m| m.channel == "D8" && m.text.contains("partial answer"))).await;
    assert!(posted.iter().find(|m| m.channel == "D8").unwrap().text.ends_with('…'), "{posted:#?}");
    let posted = env.slack.wait_posted(WAIT, |p| !finals(p, "D8", "echo[1]: #slow:2000 stream").is_empty()).await;
    let in_d8: Vec<_> = posted.iter().filter(|m| m.channel == "D8").collect();
    assert_eq!(in_d8.len(), 1, "one message, edited into the final: {in_d8:#?}");
    assert!(in_d8[0].edits >= 1);
}

/// `clawhive up` (in-process bus, embedded store) runs the bridge when a
/// workspace is mapped and the bot token is set: pairing codes and markers
/// live in the redb file, and the whole loop works without NATS or Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clawhive_up_runs_the_bridge_on_the_embedded_backend() {
    use std::io::BufRead;
    let llm = clawhive_tests::fake_llm::FakeLlm::start().await;
    let slack = FakeSlack::start().await;
    let data = std::env::temp_dir().join(format!("clawhive-e2e-slack-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let cli = tokio::task::spawn_blocking(|| binary("clawhive", "clawhive")).await.unwrap().expect("cli binary");
    let log = data.with_extension("log");
    std::fs::create_dir_all(&data).unwrap();
    let mut child = std::process::Command::new(&cli)
        .args(["up", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--workers", "1"])
        .env("CLAWHIVE_DATA_DIR", &data)
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__KIND", "openai")
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__BASE_URL", llm.openai_base_url())
        .env("CLAWHIVE_LLM__PROVIDERS__FAKE__API_KEY_ENV", "\"\"")
        .env("CLAWHIVE_MODEL", "fake/echo")
        .env("CLAWHIVE_SLACK__API_BASE_URL", slack.api_base_url())
        .env("CLAWHIVE_SLACK__SOCKET_CONNECTIONS", "1")
        .env("CLAWHIVE_SLACK__TEAMS", r#"[{team_id = "T1", tenant = "local"}]"#)
        .env("SLACK_APP_TOKEN", APP_TOKEN)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let (grpc, token, status) = tokio::task::spawn_blocking(move || {
        let (mut grpc, mut token, mut status) = (None, None, None);
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("grpc: ") {
                grpc = Some(a.trim().to_string());
            } else if let Some(t) = line.strip_prefix("export CLAWHIVE_TOKEN=") {
                token = Some(t.trim().to_string());
            } else if let Some(s) = line.strip_prefix("slack: ") {
                status = Some(s.to_string());
            }
            if grpc.is_some() && token.is_some() && status.is_some() {
                break;
            }
        }
        (grpc, token, status)
    })
    .await
    .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let (grpc, token) = (grpc.unwrap_or_else(|| panic!("no ready block: {}", log_text())), token.unwrap());
    assert!(status.as_deref().unwrap_or("").starts_with("on"), "{status:?}");
    let s = slack.wait_sockets(1, WAIT).await[0];

    slack.send_event(s, "env-up-1", &fake_slack::dm("T1", "EvUp1", "U1", "D1", "1.1", "hi"));
    let posted = slack.wait_posted(WAIT, |p| p.iter().any(|m| m.text.contains("pairing code"))).await;
    let code = posted[0].text.split('*').nth(1).unwrap().to_string();
    let addr = format!("http://{grpc}");
    let out = tokio::process::Command::new(&cli)
        .args(["admin", "--addr", &addr, "--token", &token, "pairing", "approve", &code])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    slack.send_event(s, "env-up-2", &fake_slack::dm("T1", "EvUp2", "U1", "D1", "1.2", "hello up"));
    slack.wait_posted(WAIT, |p| !finals(p, "D1", "echo[1]: hello up").is_empty()).await;
    drop(_guard);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&log);
}
