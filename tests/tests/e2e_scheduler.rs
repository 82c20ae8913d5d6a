//! The scheduler end to end, firing: replicas fire each slot once, a leader
//! dying mid-fire does not double or lose the slot, downtime yields one
//! catch-up fire, a job that keeps failing is paused with a notice to its
//! owner, outcomes count once per slot, and single-process mode fires too.
//! Managing jobs (API, CLI, the `schedule` tool, Slack delivery) is in
//! `e2e_scheduler_api.rs`.

mod scheduler_support;

use scheduler_support::*;

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
