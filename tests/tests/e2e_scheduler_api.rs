//! The scheduler end to end, managing jobs: the `schedule` tool from chat,
//! users only see their own jobs (gRPC and HTTP), bad input gets clear errors,
//! the `clawhive schedule` CLI, and delivery to a Slack DM through the bridge.

mod scheduler_support;

use scheduler_support::*;

/// `GET /v1/schedules` as `user`.
async fn list_jobs(http: &reqwest::Client, sys: &Sys, user: &str) -> Value {
    let resp = http.get(format!("{}/v1/schedules", sys.http())).bearer_auth(sys.t(user)).send().await.unwrap();
    resp.json().await.unwrap()
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
    let list = list_jobs(&http, &sys, ALICE).await;
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
    let bob = list_jobs(&http, &sys, BOB).await;
    assert_eq!(bob["jobs"], json!([]));
    let text = format!(r#"stop it #tool:schedule:{{"action":"delete","job_id":"{job_id}"}}"#);
    let fin = chat_final(&mut chat, sys.t(ALICE), "tool-session", &text).await;
    assert!(fin.contains(&format!("Deleted job {job_id}")), "{fin}");
    let list = list_jobs(&http, &sys, ALICE).await;
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
