//! The `ScheduleStore` conformance suite: the port's semantics, checked against
//! every adapter through `Arc<dyn ScheduleStore>` only.
//!
//! A runner (`schedules_<adapter>.rs`) invokes [`schedule_tests!`] with an async
//! function returning a fresh [`Fixture`]; the macro expands to one test per case.
#![allow(dead_code, unused_macros)]

use clawhive_core::schedule::{Delivery, Job, JobId, LastRun, RunOutcome, Schedule};
use clawhive_core::time::now_unix_ms;
use clawhive_core::{AgentId, TenantId, UserId};
use clawhive_store::{ScheduleStore, StoreError, UpdateOutcome};
use std::sync::Arc;
use std::time::Duration;

pub struct Fixture {
    pub store: Arc<dyn ScheduleStore>,
    pub guard: Box<dyn Send>,
}

macro_rules! schedule_tests {
    ($fresh:path) => {
        schedule_tests!(@cases $fresh;
            create_get_list_delete,
            owners_and_tenants_are_isolated,
            per_owner_limit,
            updates_compare_revisions,
            due_index_follows_updates,
            leadership_is_exclusive_and_fenced,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: schedule_conformance::Fixture = $fresh().await;
                schedule_conformance::$case(&fixture).await;
                drop(fixture);
            }
        )*
    };
}

pub fn job(tenant: &str, owner: &str, id: &str, next: Option<i64>) -> Job {
    let now = now_unix_ms();
    Job {
        id: JobId::new(id).unwrap(),
        tenant: TenantId::new(tenant).unwrap(),
        owner: UserId::new(owner).unwrap(),
        schedule: Schedule::Every { interval_secs: 60 },
        prompt: "digest".into(),
        agent: AgentId::new("default").unwrap(),
        delivery: Delivery::Session,
        enabled: true,
        paused_reason: String::new(),
        created_unix_ms: now,
        updated_unix_ms: now,
        next_run_unix_ms: next,
        last_run: None,
        last_fired_slot_ms: None,
        pending: None,
        consecutive_failures: 0,
        last_outcome_slot_ms: None,
        revision: 0,
    }
}

fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

pub async fn create_get_list_delete(f: &Fixture) {
    let s = &f.store;
    let created = s.create_job(&job("acme", "alice", "j1", Some(1_000)), 10).await.unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(s.get_job(&t("acme"), &JobId::new("j1").unwrap()).await.unwrap(), Some(created.clone()));
    let e = s.create_job(&job("acme", "alice", "j1", None), 10).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    s.create_job(&job("acme", "alice", "j0", None), 10).await.unwrap();
    assert_eq!(ids(&s.list_jobs(&t("acme"), None).await.unwrap()), ["j0", "j1"]);
    assert!(s.delete_job(&t("acme"), &JobId::new("j1").unwrap()).await.unwrap());
    assert!(!s.delete_job(&t("acme"), &JobId::new("j1").unwrap()).await.unwrap());
    assert_eq!(s.get_job(&t("acme"), &JobId::new("j1").unwrap()).await.unwrap(), None);
    assert_eq!(ids(&s.list_jobs(&t("acme"), None).await.unwrap()), ["j0"]);
    assert!(s.due_jobs(i64::MAX, 10).await.unwrap().is_empty(), "a deleted job is not due");
}

pub async fn owners_and_tenants_are_isolated(f: &Fixture) {
    let s = &f.store;
    s.create_job(&job("acme", "alice", "a1", None), 10).await.unwrap();
    s.create_job(&job("acme", "bob", "b1", None), 10).await.unwrap();
    s.create_job(&job("globex", "alice", "a1", None), 10).await.unwrap();
    let alice = UserId::new("alice").unwrap();
    assert_eq!(ids(&s.list_jobs(&t("acme"), Some(&alice)).await.unwrap()), ["a1"]);
    assert_eq!(ids(&s.list_jobs(&t("acme"), None).await.unwrap()), ["a1", "b1"]);
    assert_eq!(ids(&s.list_jobs(&t("globex"), None).await.unwrap()), ["a1"]);
    assert!(s.get_job(&t("globex"), &JobId::new("b1").unwrap()).await.unwrap().is_none());
    assert!(s.delete_job(&t("globex"), &JobId::new("a1").unwrap()).await.unwrap());
    assert!(s.get_job(&t("acme"), &JobId::new("a1").unwrap()).await.unwrap().is_some());
}

pub async fn per_owner_limit(f: &Fixture) {
    let s = &f.store;
    s.create_job(&job("acme", "alice", "a1", None), 2).await.unwrap();
    s.create_job(&job("acme", "alice", "a2", None), 2).await.unwrap();
    let e = s.create_job(&job("acme", "alice", "a3", None), 2).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(ref m) if m.contains("limit")), "{e}");
    s.create_job(&job("acme", "bob", "b1", None), 2).await.unwrap();
}

pub async fn updates_compare_revisions(f: &Fixture) {
    let s = &f.store;
    let v1 = s.create_job(&job("acme", "alice", "j1", Some(5)), 10).await.unwrap();
    let mut edit = v1.clone();
    edit.prompt = "new prompt".into();
    let UpdateOutcome::Updated(v2) = s.update_job(&edit, None).await.unwrap() else { panic!("not updated") };
    assert_eq!(v2.revision, 2);
    assert_eq!(s.get_job(&v1.tenant, &v1.id).await.unwrap().unwrap().prompt, "new prompt");
    // A writer that read revision 1 is stale now.
    assert_eq!(s.update_job(&v1, None).await.unwrap(), UpdateOutcome::Stale);
    s.delete_job(&v1.tenant, &v1.id).await.unwrap();
    assert_eq!(s.update_job(&v2, None).await.unwrap(), UpdateOutcome::Gone);
}

pub async fn due_index_follows_updates(f: &Fixture) {
    let s = &f.store;
    let a = s.create_job(&job("acme", "alice", "a", Some(100)), 10).await.unwrap();
    s.create_job(&job("acme", "alice", "b", Some(50)), 10).await.unwrap();
    s.create_job(&job("globex", "carol", "c", Some(500)), 10).await.unwrap();
    s.create_job(&job("acme", "alice", "never", None), 10).await.unwrap();
    let due = s.due_jobs(200, 10).await.unwrap();
    let names: Vec<String> = due.iter().map(|(t, j)| format!("{t}/{j}")).collect();
    assert_eq!(names, ["acme/b", "acme/a"]);
    assert_eq!(s.due_jobs(200, 1).await.unwrap().len(), 1);
    // Paused: not due. A pending outcome's deadline makes it due again.
    let mut paused = a.clone();
    paused.enabled = false;
    let UpdateOutcome::Updated(paused) = s.update_job(&paused, None).await.unwrap() else { panic!() };
    assert_eq!(s.due_jobs(200, 10).await.unwrap().len(), 1);
    let mut waiting = paused.clone();
    waiting.last_run = Some(LastRun {
        slot_unix_ms: 100,
        at_unix_ms: 100,
        outcome: RunOutcome::Pending,
        detail: String::new(),
        deadline_unix_ms: 150,
    });
    s.update_job(&waiting, None).await.unwrap();
    assert_eq!(s.due_jobs(149, 10).await.unwrap().len(), 1);
    assert_eq!(s.due_jobs(150, 10).await.unwrap().len(), 2);
    assert_eq!(s.due_jobs(i64::MAX, 10).await.unwrap().len(), 3);
}

pub async fn leadership_is_exclusive_and_fenced(f: &Fixture) {
    let s = &f.store;
    let ttl = Duration::from_millis(400);
    let t1 = s.acquire_leadership("replica-a", ttl).await.unwrap().expect("a leads");
    assert_eq!(s.acquire_leadership("replica-b", ttl).await.unwrap(), None);
    assert_eq!(s.acquire_leadership("replica-a", ttl).await.unwrap(), Some(t1), "a renewal keeps the token");
    let j = s.create_job(&job("acme", "alice", "j", Some(1)), 10).await.unwrap();
    let UpdateOutcome::Updated(j) = s.update_job(&j, Some(t1)).await.unwrap() else { panic!("leader write") };
    // The lease lapses; b takes over with a larger token; a's writes are fenced.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t2 = s.acquire_leadership("replica-b", ttl).await.unwrap().expect("b leads");
    assert!(t2 > t1);
    assert_eq!(s.update_job(&j, Some(t1)).await.unwrap(), UpdateOutcome::Fenced);
    assert!(matches!(s.update_job(&j, Some(t2)).await.unwrap(), UpdateOutcome::Updated(_)));
    // Release by a non-holder does nothing; by the holder frees the lease.
    s.release_leadership("replica-a", t1).await.unwrap();
    assert_eq!(s.acquire_leadership("replica-a", ttl).await.unwrap(), None);
    s.release_leadership("replica-b", t2).await.unwrap();
    let t3 = s.acquire_leadership("replica-a", ttl).await.unwrap().expect("a leads again");
    assert!(t3 > t2);
    assert!(s.acquire_leadership("bad holder", ttl).await.is_err());
}
