//! Policy enforcement and the audit trail of one worker.
//!
//! - [`PolicyWatch`]: the policy from `security.policy_file` (or the built-in open
//!   default), reloaded when the file's modification time changes; a bad new file
//!   keeps the old policy and logs an error.
//! - [`TurnGuard`]: the checks of one turn (agent access, every tool call). Each
//!   decision is published as an `AuditRecord` on `clawhive.audit.<tenant>`,
//!   deduplicated per request and sequence number; a failed publish is logged and
//!   never fails the turn. Records and logs carry names and an arguments digest,
//!   never argument values or secrets.

use clawhive_bus::envelope::Envelopes;
use clawhive_core::config::AgentConfig;
use clawhive_core::policy::{Decision, Policy, arguments_digest};
use clawhive_core::{ClawError, ErrorCode, Principal, TenantId};
use clawhive_proto::v1 as pb;
use clawhive_store::SessionStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the policy file's modification time is checked.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("policy file {path}: {message}")]
pub struct PolicyLoadError {
    pub path: String,
    pub message: String,
}

/// File identity used to notice a change: modification time and length.
type Stamp = (Option<SystemTime>, u64);

/// The current policy, shared by every turn of a worker.
#[derive(Clone)]
pub struct PolicyWatch {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    current: RwLock<Arc<Policy>>,
    stamp: Mutex<Stamp>,
    /// Tenants' own policies (Admin API), fetched from the store at most every
    /// [`RELOAD_INTERVAL`]; `None` = the tenant has none and the file applies.
    tenants: Mutex<HashMap<TenantId, TenantPolicy>>,
}

struct TenantPolicy {
    fetched: std::time::Instant,
    doc: Option<(u64, Arc<Policy>)>,
}

fn read(path: &Path) -> Result<(Policy, Stamp), PolicyLoadError> {
    let err = |message: String| PolicyLoadError { path: path.display().to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    // One line: TOML errors may span several.
    let policy =
        Policy::parse(&text).map_err(|e| err(e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")))?;
    Ok((policy, (meta.modified().ok(), meta.len())))
}

impl PolicyWatch {
    /// Loads `policy_file`; empty means the built-in open default.
    pub fn load(policy_file: &str) -> Result<Self, PolicyLoadError> {
        let (path, policy, stamp) = if policy_file.trim().is_empty() {
            (None, Policy::default_open(), (None, 0))
        } else {
            let path = PathBuf::from(policy_file);
            let (policy, stamp) = read(&path)?;
            (Some(path), policy, stamp)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                current: RwLock::new(Arc::new(policy)),
                stamp: Mutex::new(stamp),
                tenants: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The policy in force for `tenant`: its own document if it has one (see
    /// [`PolicyWatch::refresh_tenant`]), else the deployment's.
    pub fn current_for(&self, tenant: &TenantId) -> Arc<Policy> {
        let tenants = self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner());
        match tenants.get(tenant).and_then(|t| t.doc.as_ref()) {
            Some((_, p)) => p.clone(),
            None => self.current(),
        }
    }

    /// Fetches `tenant`'s own policy from the store unless fetched within
    /// [`RELOAD_INTERVAL`]. On a store failure the last fetched state is kept; with
    /// none, the error is returned (the turn is retried rather than run under a
    /// policy that may be laxer than the tenant's).
    pub async fn refresh_tenant(&self, store: &dyn SessionStore, tenant: &TenantId) -> Result<(), ClawError> {
        let known_version = {
            let tenants = self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner());
            match tenants.get(tenant) {
                Some(t) if t.fetched.elapsed() < RELOAD_INTERVAL => return Ok(()),
                Some(t) => Some(t.doc.as_ref().map(|(v, _)| *v)),
                None => None,
            }
        };
        let doc = match store.policy_doc(tenant).await {
            Ok(doc) => doc,
            Err(e) if known_version.is_some() => {
                tracing::warn!(tenant = %tenant, error = %e, "tenant policy not refreshed; keeping the last one");
                return Ok(());
            }
            Err(e) => return Err(ClawError::unavailable(format!("tenant policy unavailable: {e}"))),
        };
        let doc = match doc {
            None => None,
            Some(d) if known_version == Some(Some(d.version)) => {
                // Unchanged: keep the parsed policy, just note the fetch.
                let mut tenants = self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = tenants.get_mut(tenant) {
                    t.fetched = std::time::Instant::now();
                }
                return Ok(());
            }
            Some(d) => match Policy::parse(&d.text) {
                Ok(p) => {
                    tracing::info!(tenant = %tenant, version = d.version, "tenant policy loaded");
                    Some((d.version, Arc::new(p)))
                }
                Err(e) => {
                    // Validated on the way in; a bad stored one denies rather than falls back.
                    tracing::error!(tenant = %tenant, error = %e, "stored tenant policy is invalid; denying");
                    Some((d.version, Arc::new(Policy::deny_all())))
                }
            },
        };
        let mut tenants = self.inner.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.insert(tenant.clone(), TenantPolicy { fetched: std::time::Instant::now(), doc });
        Ok(())
    }

    /// Re-reads the file if its modification time or length changed. Returns whether a new
    /// policy took effect; a bad or unreadable file keeps the old one.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.inner.path else { return false };
        let stamp = match std::fs::metadata(path) {
            Ok(m) => (m.modified().ok(), m.len()),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "policy file unreadable; keeping the current policy");
                return false;
            }
        };
        let mut last = self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == stamp {
            return false;
        }
        // Remember the stamp even on failure, so a bad file is reported once, not every tick.
        *last = stamp;
        match read(path) {
            Ok((policy, stamp)) => {
                *last = stamp;
                *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
                tracing::info!(file = %path.display(), "policy reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "new policy rejected; keeping the current policy");
                false
            }
        }
    }

    /// Checks the file every [`RELOAD_INTERVAL`] until `shutdown` (nothing to do without a file).
    pub fn spawn_reloader(&self, shutdown: CancellationToken) {
        if self.inner.path.is_none() {
            return;
        }
        let watch = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
                }
                let w = watch.clone();
                let _ = tokio::task::spawn_blocking(move || w.reload_if_changed()).await;
            }
        });
    }
}

pub const KIND_AGENT_ACCESS: &str = "agent_access";
pub const KIND_TOOL_CALL: &str = "tool_call";
pub const KIND_BUDGET: &str = "budget";
pub const KIND_SECRET_ACCESS: &str = "secret_access";
pub const KIND_RATE_LIMIT: &str = "rate_limit";

/// Audit sequence numbers of the once-per-request checks (tool calls count up from 1).
const SEQ_RATE: u32 = u32::MAX - 1;
const SEQ_BUDGET: u32 = u32::MAX - 2;

/// The message a model sees when it calls a tool the principal lacks.
pub fn tool_denied_result(tool: &str) -> String {
    format!("error: permission denied: tool {tool} is not granted to you")
}

/// The authorization checks of one turn, each audited.
pub struct TurnGuard<'a> {
    policy: &'a PolicyWatch,
    envelopes: Option<&'a Envelopes>,
    principal: &'a Principal,
    agent: &'a AgentConfig,
    request_id: &'a str,
    session_id: &'a str,
    /// Sequence of the next record; 0 is the agent-access record.
    seq: AtomicU32,
}

impl<'a> TurnGuard<'a> {
    pub fn new(
        policy: &'a PolicyWatch,
        envelopes: Option<&'a Envelopes>,
        principal: &'a Principal,
        agent: &'a AgentConfig,
        request: &'a pb::AgentRequest,
    ) -> Self {
        Self {
            policy,
            envelopes,
            principal,
            agent,
            request_id: &request.request_id,
            session_id: &request.session_id,
            seq: AtomicU32::new(1),
        }
    }

    pub fn agent(&self) -> &AgentConfig {
        self.agent
    }

    /// Checks that the principal may use the agent; audited as record 0.
    pub async fn authorize_agent(&self) -> Result<(), ClawError> {
        let d = self.agent_decision();
        self.audit_agent_access(&d).await;
        self.agent_verdict(&d)
    }

    /// [`Self::authorize_agent`] in parts, so the audit record's publish can
    /// overlap other work: the decision (no I/O) …
    pub fn agent_decision(&self) -> Decision {
        self.policy.current_for(&self.principal.tenant).may_use_agent(self.principal, self.agent)
    }

    /// … its audit record (always published, allowed or not) …
    pub async fn audit_agent_access(&self, d: &Decision) {
        self.audit(0, KIND_AGENT_ACCESS, "", d, "").await;
    }

    /// … and the caller's answer.
    pub fn agent_verdict(&self, d: &Decision) -> Result<(), ClawError> {
        if d.allowed {
            Ok(())
        } else {
            tracing::warn!(user = %self.principal.user, agent = %self.agent.id, reason = %d.reason, "agent access denied");
            Err(ClawError::new(ErrorCode::PermissionDenied, format!("agent {} is not granted to you", self.agent.id)))
        }
    }

    /// Counts the turn against `[budgets] requests_per_minute_per_user`; audited when denied.
    /// Only a request's first delivery counts, so redeliveries are not punished.
    pub async fn check_rate(&self, store: &dyn SessionStore, first_delivery: bool) -> Result<(), ClawError> {
        let Some(limit) = self.policy.current_for(&self.principal.tenant).requests_per_minute() else { return Ok(()) };
        if !first_delivery {
            return Ok(());
        }
        let minute = clawhive_core::time::now_unix_ms() / 60_000;
        let count = store
            .count_turn(&self.principal.tenant, &self.principal.user, minute)
            .await
            .map_err(|e| ClawError::unavailable(format!("rate limit check failed: {e}")))?;
        if count <= u64::from(limit) {
            return Ok(());
        }
        let reason = format!("rate limit of {limit} requests per minute reached");
        tracing::warn!(user = %self.principal.user, limit, "rate limit reached");
        self.audit(SEQ_RATE, KIND_RATE_LIMIT, "", &Decision { allowed: false, reason: reason.clone() }, "").await;
        Err(ClawError::new(ErrorCode::ResourceExhausted, format!("{reason}; try again in a minute")))
    }

    /// Checks the principal's and the tenant's daily token budgets before any LLM call.
    /// Usage counts what the providers reported for committed turns (UTC days).
    pub async fn check_budget(&self, store: &dyn SessionStore) -> Result<(), ClawError> {
        let policy = self.policy.current_for(&self.principal.tenant);
        let (user_budget, tenant_budget) = (policy.daily_token_budget(self.principal), policy.daily_tenant_budget());
        if user_budget.is_none() && tenant_budget.is_none() {
            return Ok(());
        }
        let day = clawhive_core::time::utc_day(clawhive_core::time::now_unix_ms());
        let used = store
            .usage(&self.principal.tenant, &self.principal.user, &day)
            .await
            .map_err(|e| ClawError::unavailable(format!("token budget check failed: {e}")))?;
        let reason = match (user_budget, tenant_budget) {
            (Some(b), _) if used.user >= b => {
                format!("daily token budget exhausted: {} of {b} tokens used today (UTC)", used.user)
            }
            (_, Some(b)) if used.tenant >= b => {
                format!(
                    "your organisation's daily token budget is exhausted: {} of {b} tokens used today (UTC)",
                    used.tenant
                )
            }
            _ => return Ok(()),
        };
        tracing::warn!(user = %self.principal.user, used_user = used.user, used_tenant = used.tenant, "token budget exhausted");
        self.audit(SEQ_BUDGET, KIND_BUDGET, "", &Decision { allowed: false, reason: reason.clone() }, "").await;
        Err(ClawError::new(ErrorCode::ResourceExhausted, format!("{reason}; it resets at 00:00 UTC")))
    }

    /// Checks that the principal may read secret `name` on this agent, and audits it
    /// (the record names the secret in its `tool` field; never the value).
    pub async fn check_secret(&self, name: &str) -> Decision {
        let d = self.policy.current_for(&self.principal.tenant).may_use_secret(self.principal, self.agent, name);
        if !d.allowed {
            tracing::warn!(user = %self.principal.user, agent = %self.agent.id, secret = %name, reason = %d.reason,
                "secret access denied");
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.audit(seq, KIND_SECRET_ACCESS, name, &d, "").await;
        d
    }

    pub fn principal(&self) -> &Principal {
        self.principal
    }

    /// Whether a tool may be offered to the model (not audited: nothing was called).
    pub fn may_offer(&self, tool: &str) -> bool {
        self.policy.current_for(&self.principal.tenant).may_call_tool(self.principal, self.agent, tool).allowed
    }

    /// Checks one tool call against the policy in force now, and audits it.
    pub async fn check_tool_call(&self, tool: &str, arguments: &str) -> Decision {
        let d = self.policy.current_for(&self.principal.tenant).may_call_tool(self.principal, self.agent, tool);
        if !d.allowed {
            tracing::warn!(user = %self.principal.user, agent = %self.agent.id, tool = %tool, reason = %d.reason,
                "tool call denied");
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.audit(seq, KIND_TOOL_CALL, tool, &d, &arguments_digest(arguments)).await;
        d
    }

    async fn audit(&self, seq: u32, kind: &str, tool: &str, d: &Decision, digest: &str) {
        let Some(envelopes) = self.envelopes else { return };
        let record = pb::AuditRecord {
            tenant_id: self.principal.tenant.to_string(),
            user_id: self.principal.user.to_string(),
            agent_id: self.agent.id.to_string(),
            request_id: self.request_id.to_string(),
            session_id: self.session_id.to_string(),
            kind: kind.to_string(),
            tool: tool.to_string(),
            allowed: d.allowed,
            reason: d.reason.clone(),
            arguments_sha256: digest.to_string(),
            at_unix_ms: clawhive_core::time::now_unix_ms(),
        };
        if let Err(e) = envelopes.publish_audit(&self.principal.tenant, seq, &record).await {
            tracing::error!(error = %e, kind, tool, allowed = d.allowed, "audit record not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clawhive-policy-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn principal(user: &str) -> Principal {
        Principal::new(clawhive_core::TenantId::new("acme").unwrap(), clawhive_core::UserId::new(user).unwrap())
    }

    const ALICE_ONLY: &str =
        "[[grants]]\nagents=[\"*\"]\n[[grants]]\nusers=[\"alice\"]\nagents=[\"*\"]\ntools=[\"current_time\"]\n";

    #[test]
    fn empty_path_is_the_open_default() {
        let w = PolicyWatch::load("").unwrap();
        assert!(w.current().is_default_open());
        assert!(!w.reload_if_changed());
    }

    #[test]
    fn a_bad_file_fails_start_with_one_line_naming_it() {
        let p = temp_file("bad.toml", "[[grants]]\nusers = [\"alice\"\n");
        let err = PolicyWatch::load(p.to_str().unwrap()).err().expect("bad file rejected").to_string();
        assert!(err.contains(p.to_str().unwrap()), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let missing = PolicyWatch::load("/nonexistent/policy.toml").err().unwrap().to_string();
        assert!(missing.contains("/nonexistent/policy.toml"), "{missing}");
    }

    #[test]
    fn reloads_on_change_and_keeps_the_old_policy_when_the_new_one_is_bad() {
        let p = temp_file("policy.toml", ALICE_ONLY);
        let w = PolicyWatch::load(p.to_str().unwrap()).unwrap();
        let agent = AgentConfig::default();
        assert!(!w.current().may_call_tool(&principal("bob"), &agent, "current_time").allowed);
        assert!(!w.reload_if_changed(), "unchanged file is not reloaded");

        std::fs::write(&p, ALICE_ONLY.replace("alice", "bob")).unwrap();
        assert!(w.reload_if_changed());
        assert!(w.current().may_call_tool(&principal("bob"), &agent, "current_time").allowed);

        std::fs::write(&p, "this is not toml [").unwrap();
        assert!(!w.reload_if_changed());
        assert!(w.current().may_call_tool(&principal("bob"), &agent, "current_time").allowed);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[tokio::test]
    async fn the_guard_denies_ungranted_tools() {
        let p = temp_file("policy.toml", ALICE_ONLY);
        let w = PolicyWatch::load(p.to_str().unwrap()).unwrap();
        let agent = AgentConfig::default();
        let req = pb::AgentRequest { request_id: "r1".into(), ..Default::default() };
        let (alice, bob) = (principal("alice"), principal("bob"));
        let g = TurnGuard::new(&w, None, &bob, &agent, &req);
        assert!(g.authorize_agent().await.is_ok());
        assert!(!g.may_offer("current_time"));
        assert!(!g.check_tool_call("current_time", "{}").await.allowed);
        let g = TurnGuard::new(&w, None, &alice, &agent, &req);
        assert!(g.may_offer("current_time"));
        assert!(g.check_tool_call("current_time", "{}").await.allowed);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}
