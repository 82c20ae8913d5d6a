//! The `[slack]` section: how the Slack bridge reaches Slack and maps
//! workspaces to tenants. Tokens and the signing secret are read from the
//! environment variables named here, never from the file.

use crate::ids::{AgentId, TenantId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// Web API base URL (a local fake in tests).
    pub api_base_url: String,
    /// Env var holding the app-level token (`xapp-…`, Socket Mode).
    pub app_token_env: String,
    /// Env var holding the bot token (`xoxb-…`, Web API calls).
    pub bot_token_env: String,
    /// Env var holding the signing secret (Events API over HTTP).
    pub signing_secret_env: String,
    /// Socket Mode connections kept open; 0 = no Socket Mode.
    pub socket_connections: usize,
    /// Hard cap on sockets open at once, replacements included (Slack allows 10 per app).
    /// One above `socket_connections` lets a socket be replaced before it is closed.
    pub max_socket_connections: usize,
    /// A socket that receives nothing (not even a ping) for this long is replaced.
    pub socket_idle_timeout_ms: u64,
    /// First and largest pause between reconnect attempts.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// Where `/slack/events` (Events API over HTTP) listens; empty = not served.
    pub http_addr: String,
    /// How long a seen event id is remembered (at least 600 s).
    pub dedupe_ttl_secs: u64,
    /// How long a pairing code stays valid.
    pub pairing_ttl_secs: u64,
    /// Longest text of one posted message; longer replies are split.
    pub max_message_chars: usize,
    /// Stream replies by posting once and then editing at most this often; 0 = no streaming.
    pub stream_edit_interval_ms: u64,
    /// Turn deadline of a Slack request.
    pub timeout_ms: u64,
    /// Agent used when no channel binding names one.
    pub default_agent: String,
    /// Workspace → tenant.
    pub teams: Vec<SlackTeam>,
    /// Channel → agent bindings.
    pub channels: Vec<SlackChannel>,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            api_base_url: "https://slack.com/api".into(),
            app_token_env: "SLACK_APP_TOKEN".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            socket_connections: 2,
            max_socket_connections: 3,
            socket_idle_timeout_ms: 60_000,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 30_000,
            http_addr: String::new(),
            dedupe_ttl_secs: 3600,
            pairing_ttl_secs: 3600,
            max_message_chars: 3500,
            stream_edit_interval_ms: 1000,
            timeout_ms: 120_000,
            default_agent: "default".into(),
            teams: Vec::new(),
            channels: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackTeam {
    pub team_id: String,
    pub tenant: TenantId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    pub channel_id: String,
    pub agent: AgentId,
}

fn slack_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl SlackConfig {
    /// The tenant a workspace belongs to.
    pub fn tenant_of(&self, team_id: &str) -> Option<&TenantId> {
        self.teams.iter().find(|t| t.team_id == team_id).map(|t| &t.tenant)
    }

    /// The agent bound to a channel, else the default.
    pub fn agent_for(&self, channel_id: &str) -> &str {
        self.channels
            .iter()
            .find(|c| c.channel_id == channel_id)
            .map(|c| c.agent.as_str())
            .unwrap_or(&self.default_agent)
    }

    /// Checks the section; `agents` are the configured agent ids.
    pub fn validate(&self, agents: &[&str]) -> Result<(), String> {
        let url = &self.api_base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("slack.api_base_url {url:?} must start with http:// or https://"));
        }
        if self.max_socket_connections > 10 {
            return Err("slack.max_socket_connections must be at most 10 (Slack's limit per app)".into());
        }
        if self.socket_connections > self.max_socket_connections {
            return Err("slack.socket_connections must be at most slack.max_socket_connections".into());
        }
        if self.socket_idle_timeout_ms < 1000 {
            return Err("slack.socket_idle_timeout_ms must be at least 1000".into());
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err("slack.reconnect_initial_ms must be positive and at most slack.reconnect_max_ms".into());
        }
        if !self.http_addr.is_empty() && self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("slack.http_addr {:?} must be host:port with an IP address", self.http_addr));
        }
        if self.dedupe_ttl_secs < 600 {
            return Err("slack.dedupe_ttl_secs must be at least 600 (Slack retries for several minutes)".into());
        }
        if self.pairing_ttl_secs == 0 {
            return Err("slack.pairing_ttl_secs must be positive".into());
        }
        if !(100..=40_000).contains(&self.max_message_chars) {
            return Err("slack.max_message_chars must be between 100 and 40000".into());
        }
        if self.timeout_ms < 1000 {
            return Err("slack.timeout_ms must be at least 1000".into());
        }
        if !agents.contains(&self.default_agent.as_str()) {
            return Err(format!("slack.default_agent {:?} is not a configured agent", self.default_agent));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.teams {
            if !slack_id(&t.team_id) {
                return Err(format!("slack.teams: team_id {:?} must look like T0123ABCD", t.team_id));
            }
            if !seen.insert(&t.team_id) {
                return Err(format!("slack.teams: team {} is listed twice", t.team_id));
            }
        }
        for c in &self.channels {
            if !slack_id(&c.channel_id) {
                return Err(format!("slack.channels: channel_id {:?} must look like C0123ABCD", c.channel_id));
            }
            if !agents.contains(&c.agent.as_str()) {
                return Err(format!("slack.channels: channel {} names unknown agent {}", c.channel_id, c.agent));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let mut c = SlackConfig::default();
        c.validate(&["default"]).unwrap();
        c.max_socket_connections = 11;
        assert!(c.validate(&["default"]).unwrap_err().contains("max_socket_connections"));
        c = SlackConfig { socket_connections: 4, ..SlackConfig::default() };
        assert!(c.validate(&["default"]).unwrap_err().contains("at most slack.max_socket_connections"));
        c = SlackConfig::default();
        c.teams.push(SlackTeam { team_id: "t1".into(), tenant: TenantId::new("acme").unwrap() });
        assert!(c.validate(&["default"]).unwrap_err().contains("team_id"));
        c = SlackConfig { dedupe_ttl_secs: 10, ..SlackConfig::default() };
        assert!(c.validate(&["default"]).unwrap_err().contains("dedupe_ttl_secs"));
        c = SlackConfig { api_base_url: "slack.com".into(), ..SlackConfig::default() };
        assert!(c.validate(&["default"]).unwrap_err().contains("api_base_url"));
        c = SlackConfig::default();
        c.channels.push(SlackChannel { channel_id: "C1".into(), agent: AgentId::new("nope").unwrap() });
        assert!(c.validate(&["default"]).unwrap_err().contains("unknown agent"));
    }

    #[test]
    fn teams_map_to_tenants_and_channels_to_agents() {
        let mut c = SlackConfig::default();
        c.teams.push(SlackTeam { team_id: "T1".into(), tenant: TenantId::new("acme").unwrap() });
        c.channels.push(SlackChannel { channel_id: "C9".into(), agent: AgentId::new("claude").unwrap() });
        assert_eq!(c.tenant_of("T1").unwrap().as_str(), "acme");
        assert!(c.tenant_of("T2").is_none());
        assert_eq!(c.agent_for("C9"), "claude");
        assert_eq!(c.agent_for("C1"), "default");
    }
}
