//! `/clawhive …` slash commands: `help`, `status`, `reset`, and for admins
//! `pairing list` / `pairing approve CODE [USER]`. The answer is shown only to
//! the caller (ephemeral).

use crate::bridge::Bridge;
use clawhive_core::{Principal, SessionId, SessionKey, UserId};
use clawhive_store::approve_pairing;
use serde_json::Value;

const HELP: &str = "*Clawhive* — mention me in a channel or write to me directly.\n\
• `/clawhive status` — who you are to Clawhive\n\
• `/clawhive reset` — forget our direct-message conversation\n\
• `/clawhive pairing list` — pending pairing codes (admins)\n\
• `/clawhive pairing approve CODE [user]` — let a new Slack user in (admins)";

impl Bridge {
    /// Runs a slash command payload; the text to show the caller.
    pub async fn handle_command(&self, payload: &Value) -> String {
        let s = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (team, user, text) = (s("team_id"), s("user_id"), s("text"));
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some(tenant) = self.cfg.slack.tenant_of(&team).cloned() else {
            return "This Slack workspace is not connected to Clawhive.".into();
        };
        let who = match self.deps.identity.resolve_external("slack", &format!("{team}:{user}")).await {
            Ok(Some(p)) if p.tenant == tenant => Some(p),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Store unavailable for a slash command.");
                return "Clawhive cannot reach its store right now; try again shortly.".into();
            }
        };
        match (words.first().copied().unwrap_or("help"), who) {
            ("help", _) => HELP.into(),
            (_, None) => "You are not linked to Clawhive yet: write to me and I will give you a pairing code.".into(),
            ("status", Some(p)) => self.status(&team, &user, &p).await,
            ("reset", Some(p)) => self.reset(&team, &user, &p).await,
            ("pairing", Some(p)) if p.is_admin() => self.pairing(&p, &words[1..]).await,
            ("pairing", Some(_)) => "Only Clawhive admins can manage pairing codes.".into(),
            (other, _) => format!("Unknown command `{other}`.\n{HELP}"),
        }
    }

    fn dm_session(&self, team: &str, user: &str, p: &Principal) -> Option<SessionKey> {
        SessionId::new(format!("slack-dm:{team}:{user}")).ok().map(|s| SessionKey::new(p.tenant.clone(), s))
    }

    async fn status(&self, team: &str, user: &str, p: &Principal) -> String {
        let count = match self.dm_session(team, user, p) {
            Some(k) => self.deps.sessions.session_meta(&k).await.ok().flatten().map(|m| m.message_count).unwrap_or(0),
            None => 0,
        };
        let roles = if p.roles.is_empty() { "none".to_string() } else { p.roles.join(", ") };
        format!(
            "You are *{}* in tenant *{}* (roles: {roles}). Our direct conversation has {count} messages.",
            p.user, p.tenant
        )
    }

    async fn reset(&self, team: &str, user: &str, p: &Principal) -> String {
        let Some(key) = self.dm_session(team, user, p) else { return "Nothing to reset.".into() };
        match self.deps.sessions.reset_session(&key).await {
            Ok(true) => "Done: I forgot our direct-message conversation.".into(),
            Ok(false) => "There was nothing to forget.".into(),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot reset a session.");
                "Clawhive cannot reach its store right now; try again shortly.".into()
            }
        }
    }

    async fn pairing(&self, admin: &Principal, args: &[&str]) -> String {
        let d = &self.deps;
        match args {
            ["list"] | [] => match d.pairings.list_pairings(&admin.tenant).await {
                Ok(list) if list.is_empty() => "No pending pairing codes.".into(),
                Ok(list) => list
                    .iter()
                    .map(|p| format!("• `{}` — {} ({})", p.code, p.external_id, p.display_name))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => format!("Cannot list pairing codes: {e}"),
            },
            ["approve", code, rest @ ..] if rest.len() <= 1 => {
                let user = match rest.first().map(|u| UserId::new(*u)).transpose() {
                    Ok(u) => u,
                    Err(e) => return format!("Bad user id: {e}"),
                };
                match approve_pairing(d.identity.as_ref(), d.pairings.as_ref(), &admin.tenant, code, user).await {
                    Ok((p, u)) => {
                        tracing::info!(tenant = %admin.tenant, admin = %admin.user, user = %u.user, "Pairing approved in Slack.");
                        format!("Approved: {} is now Clawhive user *{}*.", p.external_id, u.user)
                    }
                    Err(e) => format!("Cannot approve: {e}"),
                }
            }
            _ => "Usage: `/clawhive pairing list` or `/clawhive pairing approve CODE [user]`".into(),
        }
    }
}
