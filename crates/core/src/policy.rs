//! Who may use which agent, tool and named secret. Pure: parsing and rules only.
//!
//! A policy document (TOML) is a list of grants:
//!
//! ```toml
//! [[grants]]
//! users   = ["alice"]          # who: users, groups, roles (any one matches); all empty = everyone
//! groups  = ["eng-*"]
//! roles   = ["admin"]
//! tenants = ["acme"]           # and in which tenants; empty = any tenant
//! agents  = ["default", "*"]   # which agents the grant covers; empty = none
//! tools   = ["current_time", "linkedin.*"]
//! secrets = ["linkedin-token"]
//! daily_tokens = 200000        # optional: per-user daily token budget for matching principals
//!
//! [budgets]
//! daily_tokens_per_user = 50000      # optional default; absent = unlimited
//! daily_tokens_per_tenant = 1000000  # optional, the whole tenant per day
//! requests_per_minute_per_user = 20  # optional rate limit on turns
//! ```
//!
//! Budgets: a principal's daily token budget is the largest `daily_tokens` among the
//! grants that match it; if none sets one, `budgets.daily_tokens_per_user`; else unlimited.
//!
//! Every pattern is a glob where `*` matches any run of characters (also none).
//!
//! Rules, when a policy file is set (default deny):
//! - a principal may use an agent only if some grant that matches the principal lists it;
//! - a principal may call a tool on an agent only if some matching grant lists both the
//!   agent and the tool, *and* the agent's config lists the tool;
//! - a principal may read a secret on an agent only if some matching grant lists both.
//!
//! Without a policy file, [`Policy::default_open`] applies: everyone may use every agent
//! and the tools its config lists (but no secrets are granted).
//!
//! Decisions carry a reason naming only identifiers (user, agent, tool, grant index),
//! never arguments or secret values, so they are safe to log and audit.

use crate::config::AgentConfig;
use crate::principal::Principal;
use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy is not valid TOML: {0}")]
    Parse(String),
    #[error("policy is invalid: {0}")]
    Invalid(String),
}

/// The outcome of one authorization check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    fn allow(reason: impl Into<String>) -> Self {
        Self { allowed: true, reason: reason.into() }
    }
    fn deny(reason: impl Into<String>) -> Self {
        Self { allowed: false, reason: reason.into() }
    }
}

/// One grant: who (users/groups/roles, tenants) gets what (agents, tools, secrets).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Grant {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub tenants: Vec<String>,
    pub agents: Vec<String>,
    pub tools: Vec<String>,
    pub secrets: Vec<String>,
    /// Per-user daily token budget override for principals this grant matches.
    pub daily_tokens: Option<u64>,
}

impl Grant {
    /// Whether the grant applies to `p`: its tenant is listed (or none are) and, if any
    /// users, groups or roles are listed, one of them names `p`.
    pub fn matches(&self, p: &Principal) -> bool {
        if !self.tenants.is_empty() && !any_match(&self.tenants, p.tenant.as_str()) {
            return false;
        }
        if self.users.is_empty() && self.groups.is_empty() && self.roles.is_empty() {
            return true;
        }
        any_match(&self.users, p.user.as_str())
            || p.groups.iter().any(|g| any_match(&self.groups, g))
            || p.roles.iter().any(|r| any_match(&self.roles, r))
    }

    fn covers_agent(&self, agent: &str) -> bool {
        any_match(&self.agents, agent)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    grants: Vec<Grant>,
    #[serde(default)]
    budgets: Budgets,
}

/// The optional `[budgets]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// Daily token budget per user; `None` = unlimited.
    pub daily_tokens_per_user: Option<u64>,
    /// Daily token budget of the whole tenant (every tenant); `None` = unlimited.
    pub daily_tokens_per_tenant: Option<u64>,
    /// Turns a user may start per minute; `None` = unlimited.
    pub requests_per_minute_per_user: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// No policy file: every agent, the agent's configured tools, no secrets.
    Open,
    /// A policy file: default deny.
    Grants(Vec<Grant>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    mode: Mode,
    budgets: Budgets,
}

impl Policy {
    /// What applies when `security.policy_file` is empty.
    pub fn default_open() -> Self {
        Self { mode: Mode::Open, budgets: Budgets::default() }
    }

    /// A policy with no grants: every agent, tool and secret denied.
    pub fn deny_all() -> Self {
        Self { mode: Mode::Grants(Vec::new()), budgets: Budgets::default() }
    }

    /// Parses a policy document; rejects unknown keys and empty patterns.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let doc: Document = toml::from_str(text).map_err(|e| PolicyError::Parse(e.message().to_string()))?;
        for (i, g) in doc.grants.iter().enumerate() {
            let fields: [(&str, &Vec<String>); 7] = [
                ("users", &g.users),
                ("groups", &g.groups),
                ("roles", &g.roles),
                ("tenants", &g.tenants),
                ("agents", &g.agents),
                ("tools", &g.tools),
                ("secrets", &g.secrets),
            ];
            for (name, patterns) in fields {
                if patterns.iter().any(|p| p.trim().is_empty()) {
                    return Err(PolicyError::Invalid(format!("grant #{} has an empty pattern in {name}", i + 1)));
                }
            }
        }
        Ok(Self { mode: Mode::Grants(doc.grants), budgets: doc.budgets })
    }

    pub fn is_default_open(&self) -> bool {
        self.mode == Mode::Open
    }

    /// Grants matching `p` that cover `agent`, with their 1-based index.
    fn grants_for<'a>(&'a self, p: &'a Principal, agent: &'a str) -> impl Iterator<Item = (usize, &'a Grant)> + 'a {
        let grants: &[Grant] = match &self.mode {
            Mode::Open => &[],
            Mode::Grants(g) => g,
        };
        grants.iter().enumerate().filter(move |(_, g)| g.matches(p) && g.covers_agent(agent)).map(|(i, g)| (i + 1, g))
    }

    /// The daily token budget of `p`: the largest `daily_tokens` among grants matching `p`,
    /// else `[budgets] daily_tokens_per_user`, else `None` (unlimited).
    pub fn daily_token_budget(&self, p: &Principal) -> Option<u64> {
        let grants: &[Grant] = match &self.mode {
            Mode::Open => &[],
            Mode::Grants(g) => g,
        };
        grants
            .iter()
            .filter(|g| g.matches(p))
            .filter_map(|g| g.daily_tokens)
            .max()
            .or(self.budgets.daily_tokens_per_user)
    }

    /// The whole tenant's daily token budget (`[budgets] daily_tokens_per_tenant`).
    pub fn daily_tenant_budget(&self) -> Option<u64> {
        self.budgets.daily_tokens_per_tenant
    }

    /// How many turns a user may start per minute (`[budgets] requests_per_minute_per_user`).
    pub fn requests_per_minute(&self) -> Option<u32> {
        self.budgets.requests_per_minute_per_user
    }

    pub fn may_use_agent(&self, p: &Principal, agent: &AgentConfig) -> Decision {
        let agent = agent.id.as_str();
        if self.is_default_open() {
            return Decision::allow(format!("no policy file: agent {agent} is open to everyone"));
        }
        match self.grants_for(p, agent).next() {
            Some((i, _)) => Decision::allow(format!("grant #{i} allows agent {agent}")),
            None => Decision::deny(format!("no grant gives user {} agent {agent}", p.user)),
        }
    }

    pub fn may_call_tool(&self, p: &Principal, agent: &AgentConfig, tool: &str) -> Decision {
        let agent_id = agent.id.as_str();
        if !agent.tools.iter().any(|t| t == tool) {
            return Decision::deny(format!("tool {tool} is not configured for agent {agent_id}"));
        }
        if self.is_default_open() {
            return Decision::allow(format!("no policy file: tool {tool} is configured for agent {agent_id}"));
        }
        match self.grants_for(p, agent_id).find(|(_, g)| any_match(&g.tools, tool)) {
            Some((i, _)) => Decision::allow(format!("grant #{i} allows tool {tool} on agent {agent_id}")),
            None => Decision::deny(format!("no grant gives user {} tool {tool} on agent {agent_id}", p.user)),
        }
    }

    pub fn may_use_secret(&self, p: &Principal, agent: &AgentConfig, secret: &str) -> Decision {
        let agent_id = agent.id.as_str();
        match self.grants_for(p, agent_id).find(|(_, g)| any_match(&g.secrets, secret)) {
            Some((i, _)) => Decision::allow(format!("grant #{i} allows secret {secret} on agent {agent_id}")),
            None => Decision::deny(format!("no grant gives user {} secret {secret} on agent {agent_id}", p.user)),
        }
    }
}

fn any_match(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, value))
}

/// Glob match where `*` matches any run of characters (also none); everything else is literal.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    // Position of the last `*` seen and the value index it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            // Let the last star swallow one more character and retry.
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Hex SHA-256 of a tool call's raw arguments: lets an audit tie calls together
/// without ever recording the arguments themselves.
pub fn arguments_digest(arguments: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(arguments.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, TenantId, UserId};

    fn who(tenant: &str, user: &str, groups: &[&str], roles: &[&str]) -> Principal {
        let mut p = Principal::new(TenantId::new(tenant).unwrap(), UserId::new(user).unwrap());
        p.groups = groups.iter().map(|s| s.to_string()).collect();
        p.roles = roles.iter().map(|s| s.to_string()).collect();
        p
    }

    fn agent(id: &str, tools: &[&str]) -> AgentConfig {
        AgentConfig {
            id: AgentId::new(id).unwrap(),
            tools: tools.iter().map(|s| s.to_string()).collect(),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("current_time", "current_time"));
        assert!(!glob_match("current_time", "current_time2"));
        assert!(!glob_match("current_time", "current_tim"));
        assert!(glob_match("linkedin.*", "linkedin.search"));
        assert!(glob_match("linkedin.*", "linkedin."));
        assert!(!glob_match("linkedin.*", "linkedin"));
        assert!(!glob_match("linkedin.*", "xlinkedin.search"));
        assert!(glob_match("*.search", "linkedin.search"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
        assert!(!glob_match("a*b*c", "aXXbYYbZ"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("é*", "été"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn default_open_allows_agents_and_configured_tools_only() {
        let p = Policy::default_open();
        let bob = who("acme", "bob", &[], &[]);
        let a = agent("default", &["current_time"]);
        assert!(p.may_use_agent(&bob, &a).allowed);
        assert!(p.may_call_tool(&bob, &a, "current_time").allowed);
        let d = p.may_call_tool(&bob, &a, "shell");
        assert!(!d.allowed);
        assert!(d.reason.contains("not configured"), "{}", d.reason);
        assert!(!p.may_use_secret(&bob, &a, "anything").allowed);
    }

    #[test]
    fn empty_policy_denies_everything() {
        let p = Policy::parse("").unwrap();
        assert!(!p.is_default_open());
        let alice = who("acme", "alice", &[], &["admin"]);
        let a = agent("default", &["current_time"]);
        assert!(!p.may_use_agent(&alice, &a).allowed);
        assert!(!p.may_call_tool(&alice, &a, "current_time").allowed);
    }

    const DOC: &str = r#"
        [[grants]]
        agents = ["default"]

        [[grants]]
        users = ["alice"]
        agents = ["*"]
        tools = ["current_time", "linkedin.*"]
        secrets = ["linkedin-token"]

        [[grants]]
        groups = ["eng-*"]
        agents = ["claude"]
        tools = ["current_time"]

        [[grants]]
        roles = ["admin"]
        tenants = ["globex"]
        agents = ["*"]
        tools = ["*"]
    "#;

    #[test]
    fn tools_are_default_deny_and_need_a_matching_grant() {
        let p = Policy::parse(DOC).unwrap();
        let a = agent("default", &["current_time", "linkedin.search"]);
        let alice = who("acme", "alice", &[], &[]);
        let bob = who("acme", "bob", &[], &[]);
        assert!(p.may_use_agent(&bob, &a).allowed);
        let d = p.may_call_tool(&bob, &a, "current_time");
        assert!(!d.allowed);
        assert!(d.reason.contains("no grant"), "{}", d.reason);
        assert!(p.may_call_tool(&alice, &a, "current_time").allowed);
        assert!(p.may_call_tool(&alice, &a, "linkedin.search").allowed);
        // Granted by policy but not configured on the agent: still denied.
        assert!(!p.may_call_tool(&alice, &a, "linkedin.post").allowed);
        assert!(p.may_use_secret(&alice, &a, "linkedin-token").allowed);
        assert!(!p.may_use_secret(&bob, &a, "linkedin-token").allowed);
    }

    #[test]
    fn agents_need_a_grant_by_user_group_or_role() {
        let p = Policy::parse(DOC).unwrap();
        let claude = agent("claude", &["current_time"]);
        assert!(!p.may_use_agent(&who("acme", "bob", &[], &[]), &claude).allowed);
        assert!(p.may_use_agent(&who("acme", "alice", &[], &[]), &claude).allowed);
        let eng = who("acme", "dave", &["eng-backend"], &[]);
        assert!(p.may_use_agent(&eng, &claude).allowed);
        assert!(p.may_call_tool(&eng, &claude, "current_time").allowed);
        // The group grant covers only claude.
        assert!(!p.may_call_tool(&eng, &agent("default", &["current_time"]), "current_time").allowed);
        assert!(!p.may_use_agent(&who("acme", "erin", &["sales"], &[]), &claude).allowed);
    }

    #[test]
    fn tenants_restrict_a_grant() {
        let p = Policy::parse(DOC).unwrap();
        let a = agent("ops", &["current_time"]);
        assert!(p.may_call_tool(&who("globex", "carol", &[], &["admin"]), &a, "current_time").allowed);
        assert!(!p.may_call_tool(&who("acme", "carol", &[], &["admin"]), &a, "current_time").allowed);
        assert!(!p.may_call_tool(&who("globex", "carol", &[], &["viewer"]), &a, "current_time").allowed);
        assert!(!p.may_use_agent(&who("acme", "carol", &[], &["admin"]), &a).allowed);
    }

    #[test]
    fn bad_documents_are_rejected() {
        assert!(matches!(Policy::parse("[[grants]]\nuser = [\"alice\"]"), Err(PolicyError::Parse(_))));
        assert!(matches!(Policy::parse("grants = 3"), Err(PolicyError::Parse(_))));
        assert!(matches!(Policy::parse("[[grants]\n"), Err(PolicyError::Parse(_))));
        assert!(matches!(Policy::parse("[[grants]]\ntools = [\"\"]"), Err(PolicyError::Invalid(_))));
    }

    #[test]
    fn daily_token_budgets() {
        assert_eq!(Policy::default_open().daily_token_budget(&who("acme", "bob", &[], &[])), None);
        assert_eq!(Policy::parse(DOC).unwrap().daily_token_budget(&who("acme", "bob", &[], &[])), None);
        let p = Policy::parse(
            r#"
            [budgets]
            daily_tokens_per_user = 100

            [[grants]]
            agents = ["*"]

            [[grants]]
            groups = ["eng-*"]
            agents = ["*"]
            daily_tokens = 1000

            [[grants]]
            roles = ["admin"]
            agents = ["*"]
            daily_tokens = 5000

            [[grants]]
            users = ["tiny"]
            agents = ["*"]
            daily_tokens = 10
            "#,
        )
        .unwrap();
        assert_eq!(p.daily_token_budget(&who("acme", "bob", &[], &[])), Some(100));
        assert_eq!(p.daily_token_budget(&who("acme", "dave", &["eng-x"], &[])), Some(1000));
        assert_eq!(p.daily_token_budget(&who("acme", "dave", &["eng-x"], &["admin"])), Some(5000));
        // A grant override replaces the default, even when smaller.
        assert_eq!(p.daily_token_budget(&who("acme", "tiny", &[], &[])), Some(10));
        let only_grant = Policy::parse("[[grants]]\nusers = [\"alice\"]\nagents = [\"*\"]\ndaily_tokens = 7").unwrap();
        assert_eq!(only_grant.daily_token_budget(&who("acme", "alice", &[], &[])), Some(7));
        assert_eq!(only_grant.daily_token_budget(&who("acme", "bob", &[], &[])), None);
        assert!(matches!(Policy::parse("[budgets]\ndaily_tokens = 3"), Err(PolicyError::Parse(_))));
        assert!(matches!(Policy::parse("[budgets]\ndaily_tokens_per_user = -1"), Err(PolicyError::Parse(_))));
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(arguments_digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(arguments_digest("{}").len(), 64);
    }
}
