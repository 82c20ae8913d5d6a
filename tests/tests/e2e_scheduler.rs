//! The scheduler end to end, against real nats-server and redis-server: replicas
//! fire each slot once, a leader dying mid-fire does not double or lose the
//! slot, downtime yields one catch-up fire, the `schedule` tool works from
//! chat, users only see their own jobs, bad input gets clear errors, and a
//! job that keeps failing is paused with a notice to its owner.

use clawhive_bus::nats::NatsBus;
use clawhive_bus::{Bus, ConsumerSpec, StreamKind};
use clawhive_core::config::Config;
use clawhive_core::schedule::{Delivery, Job, JobId, RunOutcome, Schedule};
use clawhive_core::{AgentId, TenantId, UserId};
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::assistant_client::AssistantClient;
use clawhive_proto::v1::schedules_client::SchedulesClient;
use clawhive_scheduler::{Clock, ManualClock, Scheduler, SchedulerHandle, SystemClock};
use clawhive_store::{IdentityStore, Jobs, RedisStore, ScheduleStore};
use clawhive_tests::fake_llm::FakeLlm;
use clawhive_tests::nats_server::NatsServer;
use clawhive_tests::redis_server::RedisServer;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Users (tenant, user, roles); each gets an issued API token.
const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const DAVE: &str = "dave";
const USERS: [(&str, &str, &[&str]); 4] =
    [("acme", ALICE, &[]), ("acme", BOB, &[]), ("globex", CAROL, &[]), ("acme", DAVE, &["admin"])];
const ENVELOPE_KEY: &str = "scheduler-e2e-envelope-key-0123456789abcdef";

struct Sys {
    _nats: NatsServer,
    _redis: RedisServer,
    llm: FakeLlm,
    cfg: Config,
    bus: Arc<dyn Bus>,
    store: Arc<RedisStore>,
    gateway: Option<clawhive_gateway::GatewayHandle>,
    shutdown: CancellationToken,
    key_file: std::path::PathBuf,
    tokens: std::collections::HashMap<&'static str, String>,
    /// The config as a file, for service processes.
    config_path: std::path::PathBuf,
}

fn config_toml(nats: &str, redis: &str, llm: &FakeLlm, key_file: &std::path::Path, max_failures: u32) -> String {
    format!(
        r#"
[bus]
nats_url = "{nats}"
ack_wait_ms = 2000
max_attempts = 2

[store]
redis_url = "{redis}"

[worker]
concurrency = 4
lease_ttl_ms = 3000

[gateway]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
default_timeout_ms = 20000





[llm.providers.fake]
kind = "openai"
base_url = "{openai}"
initial_backoff_ms = 20
max_retries = 1

[[agents]]
id = "default"
model = "fake/echo-model"
tools = ["current_time", "schedule"]
system_prompt = "You are a test agent."

[scheduler]
tick_ms = 100
lease_ttl_ms = 1000
grace_ms = 30000
min_interval_secs = 120
max_consecutive_failures = {max_failures}
run_timeout_ms = 15000

[scheduler.tenant_min_interval_secs]
acme = 1

[security]
envelope_key_file = "{key_file}"
require_signed_envelopes = true
"#,
        openai = llm.openai_base_url(),
        key_file = key_file.display(),
    )
}

impl Sys {
    /// NATS, Redis, a fake LLM and the gateway (with the Schedules API); no
    /// workers and no scheduler yet.
    async fn start() -> Sys {
        Self::start_with(3).await
    }

    async fn start_with(max_failures: u32) -> Sys {
        Self::start_full(max_failures, "").await
    }

    /// [`Sys::start_with`], appending `extra` to the config (e.g. a `[slack]` section).
    async fn start_full(max_failures: u32, extra: &str) -> Sys {
        clawhive_telemetry::install_crypto_provider();
        let nats = NatsServer::start().expect("nats-server");
        let redis = RedisServer::start().expect("redis-server");
        let llm = FakeLlm::start().await;
        let key_file = std::env::temp_dir().join(format!("clawhive-sched-key-{}-{}", std::process::id(), nats.port()));
        std::fs::write(&key_file, ENVELOPE_KEY).unwrap();
        let toml = config_toml(&nats.url(), &redis.url(), &llm, &key_file, max_failures) + extra;
        let cfg = Config::from_sources(Some(&toml), Vec::new()).expect("test config is valid");
        let config_path = key_file.with_extension("toml");
        std::fs::write(&config_path, &toml).unwrap();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&cfg.bus).await.expect("bus"));
        bus.ensure_topology().await.expect("topology");
        let store = Arc::new(RedisStore::connect(&cfg.store).await.expect("store"));
        let mut tokens = std::collections::HashMap::new();
        for (tenant, user, roles) in USERS {
            let (t, u) = (TenantId::new(tenant).unwrap(), UserId::new(user).unwrap());
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            store.create_user(&t, &u, &roles, &[], "").await.unwrap();
            tokens.insert(user, store.issue_token(&t, &u, None, "e2e").await.unwrap().token);
        }
        let shutdown = CancellationToken::new();
        let gateway = clawhive_gateway::start_with(
            &cfg,
            clawhive_gateway::Deps { bus: bus.clone(), store: store.clone(), identity: store.clone(), secrets: None },
            clawhive_gateway::Extras { schedules: Some(store.clone()) },
            shutdown.clone(),
        )
        .await
        .expect("gateway");
        Sys {
            _nats: nats,
            _redis: redis,
            llm,
            cfg,
            bus,
            store,
            gateway: Some(gateway),
            shutdown,
            key_file,
            tokens,
            config_path,
        }
    }

    /// The API token of `user`.
    fn t(&self, user: &str) -> &str {
        &self.tokens[user]
    }

    fn jobs(&self) -> Jobs {
        Jobs::new(self.store.clone(), self.store.clone(), Arc::new(self.cfg.clone()))
    }

    fn deps(&self, clock: Arc<dyn Clock>) -> clawhive_scheduler::Deps {
        clawhive_scheduler::Deps {
            bus: self.bus.clone(),
            store: self.store.clone(),
            identity: self.store.clone(),
            sessions: self.store.clone(),
            clock,
        }
    }

    async fn scheduler(&self, clock: Arc<dyn Clock>, stop: &CancellationToken) -> SchedulerHandle {
        clawhive_scheduler::start(&self.cfg, self.deps(clock), stop.clone()).await.expect("scheduler")
    }

    async fn worker(&self) {
        let llm = clawhive_llm::LlmRouter::from_config(&self.cfg.llm, &|_| None).expect("llm");
        clawhive_agent_worker::start_with(
            &self.cfg,
            clawhive_agent_worker::Deps { bus: self.bus.clone(), store: self.store.clone(), llm, secrets: None },
            clawhive_agent_worker::Extras { jobs: Some(self.jobs()) },
            self.shutdown.clone(),
        )
        .await
        .expect("worker");
    }

    fn http(&self) -> String {
        format!("http://{}", self.gateway.as_ref().unwrap().http_addr)
    }

    async fn grpc(&self) -> SchedulesClient<Channel> {
        let addr = format!("http://{}", self.gateway.as_ref().unwrap().grpc_addr);
        SchedulesClient::new(Channel::from_shared(addr).unwrap().connect().await.unwrap())
    }

    async fn assistant(&self) -> AssistantClient<Channel> {
        let addr = format!("http://{}", self.gateway.as_ref().unwrap().grpc_addr);
        AssistantClient::new(Channel::from_shared(addr).unwrap().connect().await.unwrap())
    }

    /// Every request stored in the requests stream (no worker runs), as request ids.
    async fn stored_requests(&self) -> Vec<String> {
        let mut consumer = self
            .bus
            .consume(ConsumerSpec {
                stream: StreamKind::Requests,
                durable: format!("count{}", rand_suffix()),
                filter_subject: "clawhive.req.>".into(),
                ack_wait: Duration::from_secs(30),
                max_deliver: 1,
                max_ack_pending: 10_000,
            })
            .await
            .unwrap();
        let mut ids = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(700), consumer.next()).await {
            ids.push(clawhive_bus::envelope::decode_request(&d.message.payload).unwrap().request_id);
            // Not acked: the requests stay for later counts.
        }
        ids
    }
}

impl Drop for Sys {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.key_file);
        let _ = std::fs::remove_file(&self.config_path);
    }
}

fn rand_suffix() -> String {
    clawhive_core::RequestId::random().as_str().replace('-', "")[..12].to_string()
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn every(secs: u64) -> Option<pb::JobSchedule> {
    Some(pb::JobSchedule { kind: Some(pb::job_schedule::Kind::Every(pb::EverySchedule { interval_secs: secs })) })
}

fn cron(expr: &str, tz: &str) -> Option<pb::JobSchedule> {
    Some(pb::JobSchedule {
        kind: Some(pb::job_schedule::Kind::Cron(pb::CronSchedule { expr: expr.into(), timezone: tz.into() })),
    })
}

/// A job written straight into the store, with chosen times (for a manual clock).
fn raw_job(id: &str, schedule: Schedule, created: i64, next: Option<i64>) -> Job {
    Job {
        id: JobId::new(id).unwrap(),
        tenant: TenantId::new("acme").unwrap(),
        owner: UserId::new("alice").unwrap(),
        schedule,
        prompt: "daily digest".into(),
        agent: AgentId::new("default").unwrap(),
        delivery: Delivery::Session,
        enabled: true,
        paused_reason: String::new(),
        created_unix_ms: created,
        updated_unix_ms: created,
        next_run_unix_ms: next,
        last_run: None,
        last_fired_slot_ms: None,
        pending: None,
        consecutive_failures: 0,
        last_outcome_slot_ms: None,
        revision: 0,
    }
}

fn slot_of(request_id: &str) -> i64 {
    clawhive_core::schedule::parse_fire_request_id(request_id).expect("a fire request id").2
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job_of(sys: &Sys, id: &str) -> Job {
    sys.store.get_job(&TenantId::new("acme").unwrap(), &JobId::new(id).unwrap()).await.unwrap().expect("job exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_fire_each_slot_exactly_once_across_a_handover() {
    let sys = Sys::start().await;
    let mut grpc = sys.grpc().await;
    let req = pb::CreateJobRequest { schedule: every(2), prompt: "tick".into(), ..Default::default() };
    let job = grpc.create_job(authed(req, sys.t(ALICE))).await.unwrap().into_inner();

    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = sys.scheduler(Arc::new(SystemClock), &stop_a).await;
    let b = sys.scheduler(Arc::new(SystemClock), &stop_b).await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    // The leader shuts down (releasing its lease); the other replica takes over.
    let (leader, follower, stop_leader) =
        if a.scheduler.leader_token().is_some() { (a, b, stop_a.clone()) } else { (b, a, stop_b.clone()) };
    assert!(follower.scheduler.leader_token().is_none(), "only one replica leads");
    stop_leader.cancel();
    let leader_sched = leader.scheduler.clone();
    leader.wait().await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    grpc.pause_job(authed(pb::PauseJobRequest { job_id: job.job_id.clone() }, sys.t(ALICE))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_a.cancel();
    stop_b.cancel();
    let follower_sched = follower.scheduler.clone();
    follower.wait().await;

    let ids = sys.stored_requests().await;
    let mut slots: Vec<i64> = ids.iter().map(|r| slot_of(r)).collect();
    slots.sort();
    let distinct: std::collections::BTreeSet<_> = slots.iter().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot was stored twice: {slots:?}");
    assert!(slots.len() >= 3, "too few fires in ~9 s: {slots:?}");
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 2_000, "a slot was skipped or repeated: {slots:?}");
    }
    let published = leader_sched.stats().published.load(Ordering::Relaxed)
        + follower_sched.stats().published.load(Ordering::Relaxed);
    assert_eq!(published as usize, slots.len(), "every publish was a new slot (no double fires to drop)");
    assert!(leader_sched.stats().published.load(Ordering::Relaxed) > 0);
    assert!(follower_sched.stats().published.load(Ordering::Relaxed) > 0, "the follower took over");
}

/// Two `clawhive-scheduler` processes; the leader is SIGKILLed while firing
/// every second. The other takes over once the lease lapses: the schedule
/// goes on, the takeover gap is caught up with one fire, and no slot is
/// stored or even published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilling_the_leader_process_neither_doubles_nor_stops_the_schedule() {
    use clawhive_tests::procs::{ServiceProcess, binary};
    let sys = Sys::start().await;
    let mut grpc = sys.grpc().await;
    let req = pb::CreateJobRequest { schedule: every(1), prompt: "tick".into(), ..Default::default() };
    let job = grpc.create_job(authed(req, sys.t(ALICE))).await.unwrap().into_inner();
    let bin =
        tokio::task::spawn_blocking(|| binary("clawhive-scheduler", "clawhive-scheduler")).await.unwrap().unwrap();
    let config = sys.config_path.to_str().unwrap().to_string();
    let mut procs = Vec::new();
    for _ in 0..2 {
        let p = ServiceProcess::spawn(&bin, &["--config", &config], &[]).expect("spawn scheduler");
        p.wait_for_log("scheduler started", Duration::from_secs(20)).await.expect("scheduler ready");
        procs.push(p);
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let leads = |p: &ServiceProcess| p.log().contains("This replica leads the scheduler.");
    assert_eq!(procs.iter().filter(|p| leads(p)).count(), 1, "exactly one process leads");
    let idx = procs.iter().position(leads).unwrap();
    procs[idx].kill();
    let survivor = &procs[1 - idx];
    wait_for("the survivor to lead", Duration::from_secs(10), || async {
        survivor.log().contains("This replica leads the scheduler.").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    grpc.pause_job(authed(pb::PauseJobRequest { job_id: job.job_id.clone() }, sys.t(ALICE))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired_logs: usize = procs.iter().map(|p| p.log().matches("Job fired.").count()).sum();
    let dropped_logs: usize = procs.iter().map(|p| p.log().matches("JetStream dropped the copy").count()).sum();
    assert!(survivor.log().contains("Job fired."), "the survivor fires after the takeover");
    for p in &mut procs {
        p.kill();
    }
    let mut slots: Vec<i64> = sys.stored_requests().await.iter().map(|r| slot_of(r)).collect();
    slots.sort();
    let distinct: std::collections::BTreeSet<_> = slots.iter().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot was stored twice: {slots:?}");
    // (A process killed right after publishing may not have logged its last fire.)
    assert!(fired_logs <= slots.len() && fired_logs + 1 >= slots.len(), "every stored fire was published once");
    assert!(dropped_logs <= 1, "at most the in-flight slot is re-sent after the kill");
    assert!(slots.len() >= 4, "the schedule went on: {slots:?}");
    for w in slots.windows(2) {
        assert!(w[1] - w[0] >= 1_000 && (w[1] - w[0]) % 1_000 == 0, "slots are whole seconds apart: {slots:?}");
    }
}

/// Replica A claims a due slot and publishes it, then dies before confirming
/// (its lease still held); replica B takes over after the lease expires and
/// re-publishes the pending slot under the same id: JetStream drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_mid_fire_fires_the_slot_once() {
    let sys = Sys::start().await;
    let t0 = 1_800_000_000_000;
    let clock = ManualClock::new(t0);
    for id in ["published", "claimed"] {
        let job = raw_job(id, Schedule::Every { interval_secs: 3600 }, t0 - 3_600_000, Some(t0));
        sys.store.create_job(&job, 10).await.unwrap();
    }
    clock.set(t0 + 500);

    let a = Scheduler::new(&sys.cfg, sys.deps(Arc::new(clock.clone())), "replica-a").unwrap();
    let fence = a.lead().await.unwrap().expect("a leads");
    // Job "published": claimed and published, not confirmed.
    let job = job_of(&sys, "published").await;
    let (job, slot, owner) = a.claim(fence, job, clock.now_ms()).await.unwrap().expect("claimed");
    assert_eq!(slot, t0);
    a.publish(&job, &owner, slot, clock.now_ms()).await.unwrap();
    // Job "claimed": claimed only; the process dies before publishing.
    let job = job_of(&sys, "claimed").await;
    a.claim(fence, job, clock.now_ms()).await.unwrap().expect("claimed");
    drop(a);

    let stop = CancellationToken::new();
    let b = sys.scheduler(Arc::new(clock.clone()), &stop).await;
    for id in ["published", "claimed"] {
        wait_for("the takeover to finish the pending fire", Duration::from_secs(10), || async {
            let j = job_of(&sys, id).await;
            j.pending.is_none().then_some(())
        })
        .await;
    }
    assert_eq!(b.scheduler.stats().duplicates.load(Ordering::Relaxed), 1, "the re-publish was dropped");
    assert_eq!(b.scheduler.stats().published.load(Ordering::Relaxed), 1, "the unpublished claim was published");
    stop.cancel();
    b.wait().await;

    let mut ids = sys.stored_requests().await;
    ids.sort();
    assert_eq!(
        ids,
        [format!("job:acme:claimed:{t0}"), format!("job:acme:published:{t0}")],
        "each slot is stored exactly once"
    );
    for id in ["published", "claimed"] {
        let j = job_of(&sys, id).await;
        assert_eq!(j.last_fired_slot_ms, Some(t0));
        assert_eq!(j.next_run_unix_ms, Some(t0 + 3_600_000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downtime_over_three_slots_gives_one_catch_up_fire_and_old_slots_are_missed() {
    let sys = Sys::start().await;
    let t0 = 1_800_000_000_000;
    let minute = 60_000;
    let job = raw_job("digest", Schedule::Every { interval_secs: 60 }, t0, Some(t0 + minute));
    sys.store.create_job(&job, 10).await.unwrap();
    // A one-off job whose time passed long before the scheduler came back.
    let once = raw_job("once", Schedule::At { at_unix_ms: t0 + minute }, t0, Some(t0 + minute));
    sys.store.create_job(&once, 10).await.unwrap();
    // Down over the slots t0+1m, +2m, +3m (grace 30 s): back at t0 + 3m 5s.
    let clock = ManualClock::new(t0 + 3 * minute + 5_000);
    let stop = CancellationToken::new();
    let s = sys.scheduler(Arc::new(clock.clone()), &stop).await;
    wait_for("the catch-up fire", Duration::from_secs(10), || async {
        (s.scheduler.stats().published.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(s.scheduler.stats().published.load(Ordering::Relaxed), 1, "one fire, not one per missed slot");
    let j = job_of(&sys, "digest").await;
    let run = j.last_run.clone().unwrap();
    assert_eq!(run.slot_unix_ms, t0 + 3 * minute, "the latest slot fires");
    assert!(run.detail.contains("2 earlier slot(s) skipped"), "{}", run.detail);
    assert_eq!(j.next_run_unix_ms, Some(t0 + 4 * minute));
    let o = job_of(&sys, "once").await;
    assert_eq!(o.last_run.as_ref().unwrap().outcome, RunOutcome::Missed);
    assert_eq!(o.next_run_unix_ms, None);
    assert_eq!(s.scheduler.stats().missed.load(Ordering::Relaxed), 1);
    // The next slot fires normally once its time comes.
    clock.set(t0 + 4 * minute + 10);
    wait_for("the next slot", Duration::from_secs(10), || async {
        (s.scheduler.stats().published.load(Ordering::Relaxed) == 2).then_some(())
    })
    .await;
    stop.cancel();
    s.wait().await;
    let mut slots: Vec<i64> = sys.stored_requests().await.iter().map(|r| slot_of(r)).collect();
    slots.sort();
    assert_eq!(slots, [t0 + 3 * minute, t0 + 4 * minute]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_created_by_the_schedule_tool_is_listed_fires_and_can_be_deleted() {
    let sys = Sys::start().await;
    sys.worker().await;
    let stop = CancellationToken::new();
    let sched = sys.scheduler(Arc::new(SystemClock), &stop).await;
    let mut chat = sys.assistant().await;
    let text = r##"remind me every second #tool:schedule:{"action":"create","every_secs":1,"prompt":"ping from the schedule"}"##;
    let fin = chat_final(&mut chat, sys.t(ALICE), "tool-session", text).await;
    assert!(fin.contains("Created job j"), "{fin}");
    let job_id = fin.split("Created job ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();

    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!("{}/v1/schedules", sys.http()))
        .bearer_auth(sys.t(ALICE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{list}");
    assert_eq!(jobs[0]["job_id"], job_id.as_str());
    assert_eq!(jobs[0]["owner_id"], "alice");
    assert_eq!(jobs[0]["schedule"], json!({"kind": "every", "interval_secs": 1}));

    // It fires; the worker answers into the job's session; the outcome is recorded.
    let session = jobs[0]["session_id"].as_str().unwrap().to_string();
    let history = wait_for("a fired turn in the job's session", Duration::from_secs(20), || async {
        let r =
            http.get(format!("{}/v1/sessions/{session}", sys.http())).bearer_auth(sys.t(ALICE)).send().await.unwrap();
        if !r.status().is_success() {
            return None;
        }
        let v: Value = r.json().await.unwrap();
        let text = v.to_string();
        text.contains("echo[1]: ping from the schedule").then_some(v)
    })
    .await;
    assert!(history.to_string().contains("ping from the schedule"));
    let j = wait_for("a succeeded run", Duration::from_secs(10), || async {
        let j = job_of(&sys, &job_id).await;
        (j.last_run.as_ref().is_some_and(|r| r.outcome == RunOutcome::Succeeded)).then_some(j)
    })
    .await;
    assert_eq!(j.consecutive_failures, 0);

    // Bob's list does not show it; the tool deletes it for alice.
    let bob: Value = http
        .get(format!("{}/v1/schedules", sys.http()))
        .bearer_auth(sys.t(BOB))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob["jobs"], json!([]));
    let text = format!(r#"stop it #tool:schedule:{{"action":"delete","job_id":"{job_id}"}}"#);
    let fin = chat_final(&mut chat, sys.t(ALICE), "tool-session", &text).await;
    assert!(fin.contains(&format!("Deleted job {job_id}")), "{fin}");
    let list: Value = http
        .get(format!("{}/v1/schedules", sys.http()))
        .bearer_auth(sys.t(ALICE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"], json!([]));
    // Bad tool input: a clear error the model can read.
    let fin = chat_final(
        &mut chat,
        sys.t(ALICE),
        "tool-session",
        r#"x #tool:schedule:{"action":"create","cron":"0 25 * * *","prompt":"p"}"#,
    )
    .await;
    assert!(fin.contains("invalid cron expression"), "{fin}");
    let fin = chat_final(&mut chat, sys.t(ALICE), "tool-session", r#"x #tool:schedule:{"action":"explode"}"#).await;
    assert!(fin.contains("unknown action"), "{fin}");
    stop.cancel();
    sched.wait().await;
}

async fn chat_final(client: &mut AssistantClient<Channel>, token: &str, session: &str, text: &str) -> String {
    let req = pb::ChatRequest {
        session_id: session.into(),
        text: text.into(),
        agent_id: String::new(),
        idempotency_key: String::new(),
        timeout_ms: 15_000,
    };
    let mut stream = client.chat(authed(req, token)).await.unwrap().into_inner();
    while let Some(ev) = stream.message().await.unwrap() {
        if let Some(pb::chat_event::Event::Final(f)) = ev.event {
            return f.text;
        }
    }
    panic!("no final event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_manage_only_their_own_jobs_over_grpc_and_http() {
    let sys = Sys::start().await;
    let mut grpc = sys.grpc().await;
    let http = reqwest::Client::new();
    let base = sys.http();
    let req = pb::CreateJobRequest {
        schedule: cron("0 7 * * 1-5", "Europe/Paris"),
        prompt: "alice's digest".into(),
        ..Default::default()
    };
    let a1 = grpc.create_job(authed(req, sys.t(ALICE))).await.unwrap().into_inner();
    assert_eq!(a1.owner_id, "alice");
    assert!(a1.next_run_unix_ms > 0);
    let r = http
        .post(format!("{base}/v1/schedules"))
        .bearer_auth(sys.t(ALICE))
        .json(&json!({"schedule": {"kind": "every", "interval_secs": 3600}, "prompt": "hourly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a2: Value = r.json().await.unwrap();
    let a2_id = a2["job_id"].as_str().unwrap().to_string();
    let bob_job = grpc
        .create_job(authed(
            pb::CreateJobRequest { schedule: every(60), prompt: "bob's".into(), ..Default::default() },
            sys.t(BOB),
        ))
        .await
        .unwrap()
        .into_inner();

    // Lists: own jobs only; an admin may list the whole tenant.
    let ids = |jobs: Vec<pb::Job>| jobs.into_iter().map(|j| j.job_id).collect::<std::collections::BTreeSet<_>>();
    let alice_jobs =
        grpc.list_jobs(authed(pb::ListJobsRequest::default(), sys.t(ALICE))).await.unwrap().into_inner().jobs;
    assert_eq!(ids(alice_jobs), [a1.job_id.clone(), a2_id.clone()].into());
    let bob_jobs = grpc.list_jobs(authed(pb::ListJobsRequest::default(), sys.t(BOB))).await.unwrap().into_inner().jobs;
    assert_eq!(ids(bob_jobs), [bob_job.job_id.clone()].into());
    let carol_jobs =
        grpc.list_jobs(authed(pb::ListJobsRequest::default(), sys.t(CAROL))).await.unwrap().into_inner().jobs;
    assert!(carol_jobs.is_empty());
    let e = grpc.list_jobs(authed(pb::ListJobsRequest { all_users: true }, sys.t(ALICE))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let all =
        grpc.list_jobs(authed(pb::ListJobsRequest { all_users: true }, sys.t(DAVE))).await.unwrap().into_inner().jobs;
    assert_eq!(all.len(), 3);

    // Bob and Carol cannot read, edit, pause, resume or delete Alice's jobs: not found.
    for token in [sys.t(BOB), sys.t(CAROL)] {
        for id in [&a1.job_id, &a2_id] {
            let nf = |r: Result<tonic::Response<pb::Job>, tonic::Status>| {
                assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
            };
            nf(grpc.get_job(authed(pb::GetJobRequest { job_id: id.clone() }, token)).await);
            nf(grpc
                .update_job(authed(
                    pb::UpdateJobRequest { job_id: id.clone(), prompt: "mine now".into(), ..Default::default() },
                    token,
                ))
                .await);
            nf(grpc.pause_job(authed(pb::PauseJobRequest { job_id: id.clone() }, token)).await);
            nf(grpc.resume_job(authed(pb::ResumeJobRequest { job_id: id.clone() }, token)).await);
            let e = grpc.delete_job(authed(pb::DeleteJobRequest { job_id: id.clone() }, token)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound);
            for (method, path, body) in [
                ("GET", format!("/v1/schedules/{id}"), None),
                ("PATCH", format!("/v1/schedules/{id}"), Some(json!({"prompt": "mine now"}))),
                ("DELETE", format!("/v1/schedules/{id}"), None),
                ("POST", format!("/v1/schedules/{id}/pause"), None),
                ("POST", format!("/v1/schedules/{id}/resume"), None),
            ] {
                let mut rb = http.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(token);
                if let Some(b) = body {
                    rb = rb.json(&b);
                }
                let r = rb.send().await.unwrap();
                assert_eq!(r.status(), 404, "{method} {path} as another user");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "not_found");
            }
        }
    }
    // A job id that does not exist answers the same.
    let e = grpc.get_job(authed(pb::GetJobRequest { job_id: "jnope".into() }, sys.t(ALICE))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Nothing changed; Alice herself can edit, pause, resume and delete.
    let j =
        grpc.get_job(authed(pb::GetJobRequest { job_id: a1.job_id.clone() }, sys.t(ALICE))).await.unwrap().into_inner();
    assert_eq!(j.prompt, "alice's digest");
    assert!(j.enabled);
    let r = http
        .patch(format!("{base}/v1/schedules/{a2_id}"))
        .bearer_auth(sys.t(ALICE))
        .json(&json!({"prompt": "every hour, the news"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["prompt"], "every hour, the news");
    let p = grpc
        .pause_job(authed(pb::PauseJobRequest { job_id: a1.job_id.clone() }, sys.t(ALICE)))
        .await
        .unwrap()
        .into_inner();
    assert!(!p.enabled);
    let r =
        http.post(format!("{base}/v1/schedules/{}/resume", a1.job_id)).bearer_auth(sys.t(ALICE)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["enabled"], true);
    // The admin may manage a tenant member's job.
    grpc.pause_job(authed(pb::PauseJobRequest { job_id: bob_job.job_id.clone() }, sys.t(DAVE))).await.unwrap();
    let r = http.delete(format!("{base}/v1/schedules/{a2_id}")).bearer_auth(sys.t(ALICE)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    grpc.delete_job(authed(pb::DeleteJobRequest { job_id: a1.job_id.clone() }, sys.t(ALICE))).await.unwrap();
    let left = grpc.list_jobs(authed(pb::ListJobsRequest::default(), sys.t(ALICE))).await.unwrap().into_inner().jobs;
    assert!(left.is_empty());
    // No token: unauthenticated.
    let r = http.get(format!("{base}/v1/schedules")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_get_clear_errors() {
    let sys = Sys::start().await;
    let http = reqwest::Client::new();
    let base = sys.http();
    let post = |token: String, body: String| {
        let http = http.clone();
        let url = format!("{base}/v1/schedules");
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v["error"]["message"].as_str().unwrap_or("").to_string())
        }
    };
    let future_at = clawhive_core::time::now_unix_ms() + 3_600_000;
    let cases: Vec<(String, String, &str)> = vec![
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "cron", "expr": "0 25 * * *"}, "prompt": "p"}).to_string(), "invalid cron expression \"0 25 * * *\""),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "cron", "expr": "0 7 * *"}, "prompt": "p"}).to_string(), "it has 4 fields"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "cron", "expr": "0 7 * * *", "timezone": "Europe/Atlantis"}, "prompt": "p"}).to_string(), "unknown time zone \"Europe/Atlantis\""),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 0}, "prompt": "p"}).to_string(), "below the minimum of 1 s"),
        (sys.t(CAROL).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 30}, "prompt": "p"}).to_string(), "below the minimum of 120 s"),
        (sys.t(CAROL).to_string(), json!({"schedule": {"kind": "cron", "expr": "* * * * *"}, "prompt": "p"}).to_string(), "fires every 60 s at times, below the minimum of 120 s"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "at", "at_unix_ms": 1000}, "prompt": "p"}).to_string(), "is in the past"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 60}, "prompt": "  "}).to_string(), "prompt must not be empty"),
        (sys.t(ALICE).to_string(), json!({"prompt": "p"}).to_string(), "schedule is required"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 60}, "prompt": "p", "agent_id": "nope"}).to_string(), "agent \"nope\" is not a configured agent"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "hourly"}, "prompt": "p"}).to_string(), "invalid JSON body"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "at", "at_unix_ms": future_at}, "prompt": "p", "colour": "red"}).to_string(), "unknown field `colour`"),
        (sys.t(ALICE).to_string(), "{\"schedule\": ".to_string(), "invalid JSON body"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 60}, "prompt": "p", "delivery": {"kind": "slack_dm", "team_id": "T1", "user_id": "U1"}}).to_string(), "is not linked to user alice"),
        (sys.t(ALICE).to_string(), json!({"schedule": {"kind": "every", "interval_secs": 60}, "prompt": "p", "delivery": {"kind": "slack_dm", "team_id": "T 1", "user_id": "U1"}}).to_string(), "must be 1-32 letters and digits"),
    ];
    for (token, body, want) in cases {
        let (status, message) = post(token, body.clone()).await;
        assert_eq!(status, 400, "{body} → {message}");
        assert!(message.contains(want), "{body}: {message:?} should contain {want:?}");
    }
    // A malformed query.
    let r = http.get(format!("{base}/v1/schedules?all=maybe")).bearer_auth(sys.t(ALICE)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid query"), "{v}");
    // Wrong content type.
    let r = http.post(format!("{base}/v1/schedules")).bearer_auth(sys.t(ALICE)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // gRPC: the same rules, as InvalidArgument.
    let mut grpc = sys.grpc().await;
    let e = grpc
        .create_job(authed(
            pb::CreateJobRequest { schedule: cron("61 * * * *", "UTC"), prompt: "p".into(), ..Default::default() },
            sys.t(ALICE),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("invalid cron expression"), "{}", e.message());
    let e = grpc
        .create_job(authed(
            pb::CreateJobRequest {
                schedule: cron("0 7 * * *", "Mars/Olympus"),
                prompt: "p".into(),
                ..Default::default()
            },
            sys.t(ALICE),
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("unknown time zone"), "{}", e.message());
    let e = grpc
        .create_job(authed(
            pb::CreateJobRequest { schedule: None, prompt: "p".into(), ..Default::default() },
            sys.t(ALICE),
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("schedule is required"), "{}", e.message());
    // A Slack identity linked to its owner makes the DM delivery valid, and it becomes the reply route.
    let acme = TenantId::new("acme").unwrap();
    let erin = UserId::new("erin").unwrap();
    sys.store.create_user(&acme, &erin, &[], &[], "").await.unwrap();
    let token = sys.store.issue_token(&acme, &erin, None, "test").await.unwrap().token;
    sys.store.link_external(&acme, &erin, "slack", "T1:U9").await.unwrap();
    let dm = json!({"schedule": {"kind": "every", "interval_secs": 60}, "prompt": "p",
        "delivery": {"kind": "slack_dm", "team_id": "T1", "user_id": "U9"}});
    let (status, message) = post(sys.t(ALICE).to_string(), dm.to_string()).await;
    assert_eq!(status, 400);
    assert!(message.contains("Slack user T1:U9 is not linked to user alice"), "{message}");
    let r = http.post(format!("{base}/v1/schedules")).bearer_auth(&token).json(&dm).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["delivery"], json!({"kind": "slack_dm", "team_id": "T1", "user_id": "U9"}));
    let job =
        sys.store.get_job(&acme, &JobId::new(created["job_id"].as_str().unwrap()).unwrap()).await.unwrap().unwrap();
    let owner = clawhive_scheduler::owner::resolve(&*sys.store, &sys.cfg, &acme, &erin).await.unwrap().unwrap();
    let req = clawhive_scheduler::request::build(&sys.cfg, None, &job, &owner, 60_000, 0);
    let route = req.reply_route.unwrap().target.unwrap();
    assert_eq!(
        route,
        pb::reply_route::Target::Slack(pb::SlackRoute {
            team_id: "T1".into(),
            channel_id: "U9".into(),
            thread_ts: String::new()
        })
    );
    assert_eq!(req.request_id, format!("job:acme:{}:60000", job.id));
    // A deleted owner's jobs stop: the owner no longer resolves.
    sys.store.delete_user(&acme, &erin).await.unwrap();
    assert!(clawhive_scheduler::owner::resolve(&*sys.store, &sys.cfg, &acme, &erin).await.unwrap().is_none());
}

/// A job whose runs keep failing is paused after `max_consecutive_failures`
/// (2 here) and its owner finds a notice in the job's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_failures_pause_the_job_and_tell_the_owner() {
    let sys = Sys::start_with(2).await;
    sys.worker().await;
    let stop = CancellationToken::new();
    let sched = sys.scheduler(Arc::new(SystemClock), &stop).await;
    let mut grpc = sys.grpc().await;
    let req = pb::CreateJobRequest {
        schedule: every(1),
        prompt: "#fail:500:1000:always broken".into(),
        ..Default::default()
    };
    let job = grpc.create_job(authed(req, sys.t(ALICE))).await.unwrap().into_inner();
    let paused = wait_for("the job to be paused", Duration::from_secs(30), || async {
        let j = job_of(&sys, &job.job_id).await;
        (!j.enabled).then_some(j)
    })
    .await;
    assert!(paused.consecutive_failures >= 2, "{paused:?}");
    assert!(paused.paused_reason.contains("failed runs in a row"), "{}", paused.paused_reason);
    assert_eq!(sched.scheduler.stats().paused.load(Ordering::Relaxed), 1);
    let session = paused.session_id();
    let http = reqwest::Client::new();
    let v: Value = wait_for("the notice in the session", Duration::from_secs(10), || async {
        let r =
            http.get(format!("{}/v1/sessions/{session}", sys.http())).bearer_auth(sys.t(ALICE)).send().await.unwrap();
        let v: Value = r.json().await.ok()?;
        v.to_string().contains("was paused").then_some(v)
    })
    .await;
    assert!(v.to_string().contains("clawhive schedule resume"), "{v}");
    // Paused means no more fires.
    let fired = sched.scheduler.stats().published.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(sched.scheduler.stats().published.load(Ordering::Relaxed), fired);
    // Resuming clears the guard.
    let r = grpc
        .resume_job(authed(pb::ResumeJobRequest { job_id: job.job_id.clone() }, sys.t(ALICE)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.enabled && r.paused_reason.is_empty() && r.consecutive_failures == 0);
    grpc.delete_job(authed(pb::DeleteJobRequest { job_id: job.job_id }, sys.t(ALICE))).await.unwrap();
    stop.cancel();
    sched.wait().await;
    let _ = &sys.llm;
}

/// Single-process mode (`clawhive up`): the in-process bus and the embedded
/// store (redb) run the same scheduler; a job created over HTTP fires and the
/// worker's answer lands in the job's session; its outcome is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_process_mode_fires_jobs_from_the_embedded_store() {
    clawhive_telemetry::install_crypto_provider();
    let llm = FakeLlm::start().await;
    let dir = std::env::temp_dir().join(format!("clawhive-sched-embedded-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("envelope.key");
    std::fs::write(&key_file, ENVELOPE_KEY).unwrap();
    let toml = config_toml("nats://unused:1", "redis://unused:1", &llm, &key_file, 3);
    let cfg = Config::from_sources(Some(&toml), Vec::new()).unwrap();
    let bus: Arc<dyn Bus> = Arc::new(clawhive_bus::MemoryBus::new(&cfg.bus));
    bus.ensure_topology().await.unwrap();
    let store = Arc::new(clawhive_store::EmbeddedStore::open(&dir.join("sessions.redb")).unwrap());
    let (acme, alice) = (TenantId::new("acme").unwrap(), UserId::new(ALICE).unwrap());
    store.create_user(&acme, &alice, &[], &[], "").await.unwrap();
    let token = store.issue_token(&acme, &alice, None, "e2e").await.unwrap().token;
    let shutdown = CancellationToken::new();
    let jobs = Jobs::new(store.clone(), store.clone(), Arc::new(cfg.clone()));
    let llm_router = clawhive_llm::LlmRouter::from_config(&cfg.llm, &|_| None).unwrap();
    clawhive_agent_worker::start_with(
        &cfg,
        clawhive_agent_worker::Deps { bus: bus.clone(), store: store.clone(), llm: llm_router, secrets: None },
        clawhive_agent_worker::Extras { jobs: Some(jobs) },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let gateway = clawhive_gateway::start_with(
        &cfg,
        clawhive_gateway::Deps { bus: bus.clone(), store: store.clone(), identity: store.clone(), secrets: None },
        clawhive_gateway::Extras { schedules: Some(store.clone()) },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let deps = clawhive_scheduler::Deps {
        bus: bus.clone(),
        store: store.clone(),
        identity: store.clone(),
        sessions: store.clone(),
        clock: Arc::new(SystemClock),
    };
    let sched = clawhive_scheduler::start(&cfg, deps, shutdown.clone()).await.unwrap();

    let http = reqwest::Client::new();
    let base = format!("http://{}", gateway.http_addr);
    let r = http
        .post(format!("{base}/v1/schedules"))
        .bearer_auth(&token)
        .json(&json!({"schedule": {"kind": "every", "interval_secs": 1}, "prompt": "hello from redb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    let session = job["session_id"].as_str().unwrap().to_string();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    wait_for("a fired turn in the job's session", Duration::from_secs(20), || async {
        let r = http.get(format!("{base}/v1/sessions/{session}")).bearer_auth(&token).send().await.unwrap();
        let v: Value = r.json().await.ok()?;
        v.to_string().contains("echo[1]: hello from redb").then_some(())
    })
    .await;
    wait_for("a succeeded outcome", Duration::from_secs(10), || async {
        let v: Value = http
            .get(format!("{base}/v1/schedules/{job_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .ok()?;
        (v["last_run"]["outcome"] == "succeeded").then_some(())
    })
    .await;
    shutdown.cancel();
    sched.wait().await;
    let _ = gateway.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Delivery to Slack: a job with a Slack DM delivery (the owner's linked Slack
/// user) fires, the worker answers, and the Slack bridge posts the answer in
/// the owner's DM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_delivers_to_the_owners_slack_dm_through_the_bridge() {
    use clawhive_tests::fake_slack::{APP_TOKEN, BOT_TOKEN, FakeSlack};
    let slack = FakeSlack::start().await;
    let slack_toml = format!(
        "\n[slack]\napi_base_url = \"{}\"\nsocket_connections = 1\nhttp_addr = \"127.0.0.1:0\"\ntimeout_ms = 20000\n\n[[slack.teams]]\nteam_id = \"T1\"\ntenant = \"acme\"\n",
        slack.api_base_url()
    );
    let sys = Sys::start_full(3, &slack_toml).await;
    sys.worker().await;
    let (acme, alice) = (TenantId::new("acme").unwrap(), UserId::new(ALICE).unwrap());
    sys.store.link_external(&acme, &alice, "slack", "T1:U1").await.unwrap();
    let stop = CancellationToken::new();
    let deps = clawhive_slack_bridge::Deps {
        bus: sys.bus.clone(),
        sessions: sys.store.clone(),
        identity: sys.store.clone(),
        pairings: sys.store.clone(),
        markers: sys.store.clone(),
    };
    let secrets = clawhive_slack_bridge::SlackSecrets {
        app_token: APP_TOKEN.into(),
        bot_token: BOT_TOKEN.into(),
        signing_secret: "unused-signing-secret".into(),
    };
    let bridge = clawhive_slack_bridge::start(&sys.cfg, deps, secrets, stop.clone()).await.expect("bridge");
    let sched = sys.scheduler(Arc::new(SystemClock), &stop).await;

    let mut grpc = sys.grpc().await;
    let delivery = pb::JobDelivery {
        target: Some(pb::job_delivery::Target::SlackDm(pb::SlackDmDelivery {
            team_id: "T1".into(),
            user_id: "U1".into(),
        })),
    };
    let req = pb::CreateJobRequest {
        schedule: every(1),
        prompt: "morning digest please".into(),
        delivery: Some(delivery),
        ..Default::default()
    };
    let job = grpc.create_job(authed(req, sys.t(ALICE))).await.unwrap().into_inner();
    let posted = slack
        .wait_posted(Duration::from_secs(20), |p| {
            p.iter().any(|m| {
                m.channel == "U1" && m.text.contains("echo[1]: morning digest please") && !m.text.ends_with('…')
            })
        })
        .await;
    let dm: Vec<_> = posted.iter().filter(|m| m.channel == "U1").collect();
    assert!(dm.iter().all(|m| m.thread_ts.is_empty()), "a DM is posted top-level: {dm:#?}");
    grpc.delete_job(authed(pb::DeleteJobRequest { job_id: job.job_id }, sys.t(ALICE))).await.unwrap();
    stop.cancel();
    sched.wait().await;
    bridge.wait().await;
}

/// `clawhive schedule …` against the gateway: create, list, pause, resume,
/// delete; bad input and another user's job id are clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_manages_jobs() {
    use clawhive_tests::procs::binary;
    let sys = Sys::start().await;
    let cli = tokio::task::spawn_blocking(|| binary("clawhive", "clawhive")).await.unwrap().expect("cli binary");
    let addr = format!("http://{}", sys.gateway.as_ref().unwrap().grpc_addr);
    let run = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(&cli)
            .arg("schedule")
            .args(args)
            .env("CLAWHIVE_ADDR", &addr)
            .env("CLAWHIVE_TOKEN", token)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    };
    let alice = sys.t(ALICE).to_string();
    let (code, out, err) =
        run(&alice, &["create", "--cron", "0 7 * * 1-5", "--timezone", "America/New_York", "weekday digest"]);
    assert_eq!(code, 0, "{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(out.contains("cron \"0 7 * * 1-5\" America/New_York") && out.contains("active"), "{out}");
    let (code, out, _) = run(&alice, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("weekday digest"), "{out}");
    let (code, out, _) = run(&alice, &["pause", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("paused"), "{out}");
    let (code, out, _) = run(&alice, &["resume", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("active"), "{out}");
    // Bob cannot see or delete it.
    let (code, _, err) = run(sys.t(BOB), &["delete", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("NotFound"), "{err}");
    let (_, out, _) = run(sys.t(BOB), &["list"]);
    assert!(!out.contains(&id), "{out}");
    // Bad input.
    let (code, _, err) = run(&alice, &["create", "--cron", "0 7 * *", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid cron expression") && err.contains("4 fields"), "{err}");
    let (code, _, err) = run(&alice, &["create", "--every", "60", "--cron", "0 7 * * *", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("exactly one of --cron, --every or --at"), "{err}");
    let (code, _, err) = run(&alice, &["create", "--every", "60", "--slack-dm", "U1", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("TEAM:USER"), "{err}");
    let (code, out, _) = run(&alice, &["delete", &id]);
    assert_eq!(code, 0, "{out}");
    let (_, out, err) = run(&alice, &["list"]);
    assert!(out.is_empty() && err.contains("no jobs"), "{out} {err}");
}

/// The failure guard counts each slot's outcome once, in slot order, also for
/// a run overtaken by a newer fire, and a run without a reply by its deadline fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_count_once_per_slot_and_overtaken_runs_still_count() {
    let sys = Sys::start_with(3).await;
    let t0 = 1_800_000_000_000;
    let clock = ManualClock::new(t0);
    sys.store
        .create_job(&raw_job("g", Schedule::Every { interval_secs: 60 }, t0 - 60_000, Some(t0)), 10)
        .await
        .unwrap();
    let s = Scheduler::new(&sys.cfg, sys.deps(Arc::new(clock.clone())), "replica-g").unwrap();
    let (acme, g) = (TenantId::new("acme").unwrap(), JobId::new("g").unwrap());
    let fence = s.lead().await.unwrap().unwrap();
    let fire = |at: i64| {
        let (s, clock, sys) = (&s, clock.clone(), &sys);
        async move {
            clock.set(at);
            let job = job_of(sys, "g").await;
            let (job, slot, owner) = s.claim(fence, job, at).await.unwrap().expect("claimed");
            s.publish(&job, &owner, slot, at).await.unwrap();
            s.confirm(fence, job).await.unwrap();
            slot
        }
    };
    let s1 = fire(t0 + 10).await;
    let s2 = fire(t0 + 60_010).await;
    // Slot 1's failure arrives after slot 2 fired: it still counts, once.
    s.record_outcome(&acme, &g, s1, Err("boom".into())).await.unwrap();
    s.record_outcome(&acme, &g, s1, Err("boom".into())).await.unwrap();
    let j = job_of(&sys, "g").await;
    assert_eq!(j.consecutive_failures, 1);
    assert_eq!(j.last_run.as_ref().unwrap().outcome, RunOutcome::Pending, "slot 2 is still running");
    s.record_outcome(&acme, &g, s2, Err("boom again".into())).await.unwrap();
    let j = job_of(&sys, "g").await;
    assert_eq!((j.consecutive_failures, j.last_run.as_ref().unwrap().outcome), (2, RunOutcome::Failed));
    // A success resets the count; an older late outcome is then ignored.
    let s3 = fire(t0 + 120_010).await;
    s.record_outcome(&acme, &g, s3, Ok(())).await.unwrap();
    s.record_outcome(&acme, &g, s2, Err("stale".into())).await.unwrap();
    let j = job_of(&sys, "g").await;
    assert_eq!((j.consecutive_failures, j.last_run.as_ref().unwrap().outcome), (0, RunOutcome::Succeeded));
    assert!(j.enabled);
    // No reply by the deadline counts as a failure (the tick finds it due).
    let s4 = fire(t0 + 180_010).await;
    let deadline = job_of(&sys, "g").await.last_run.unwrap().deadline_unix_ms;
    clock.set(deadline + 1);
    s.tick().await.unwrap();
    let j = job_of(&sys, "g").await;
    let run = j.last_run.unwrap();
    assert_eq!((run.slot_unix_ms, run.outcome), (s4, RunOutcome::Failed));
    assert!(run.detail.contains("no reply before the run's deadline"), "{}", run.detail);
    assert_eq!(j.consecutive_failures, 1);
}
