//! Slack payloads → what the bridge does with them. Pure functions, so the
//! routing rules are unit-tested without Slack.
//!
//! - a DM (`message` in a `channel_type: im`) → the user's own session;
//! - an `app_mention` → the thread's shared session (the mention starts the
//!   thread when it is not in one);
//! - a `message` in a thread (not mentioning the bot; that one arrives as an
//!   `app_mention` too) → the thread's session, if the bot is in the thread;
//! - anything from a bot (the bridge's own posts included), edits, joins and
//!   other subtypes → ignored, so the bridge never answers itself.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dm,
    Mention,
    /// A plain message in a thread; only answered when the bot is in the thread.
    ThreadReply,
}

/// A user's message the bridge may answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackMessage {
    pub kind: Kind,
    pub team: String,
    pub event_id: String,
    pub channel: String,
    pub user: String,
    /// With the bot's mention removed.
    pub text: String,
    pub ts: String,
    /// The thread's root; empty for a top-level DM.
    pub thread_ts: String,
}

impl SlackMessage {
    /// The thread the answer goes to: the thread, or for a mention the message itself.
    pub fn reply_thread(&self) -> &str {
        match self.kind {
            Kind::Dm => &self.thread_ts,
            Kind::Mention | Kind::ThreadReply => {
                if self.thread_ts.is_empty() {
                    &self.ts
                } else {
                    &self.thread_ts
                }
            }
        }
    }

    /// The session: the user's own for DMs, the thread's shared one otherwise.
    pub fn session_id(&self) -> String {
        match self.kind {
            Kind::Dm => format!("slack-dm:{}:{}", self.team, self.user),
            Kind::Mention | Kind::ThreadReply => format!(
                "{}slack:{}:{}:{}",
                clawhive_core::session::SHARED_PREFIX,
                self.team,
                self.channel,
                self.reply_thread().replace('.', "-")
            ),
        }
    }

    /// The request id: derived from the event, so a redelivered event is the same request.
    pub fn request_id(&self) -> String {
        format!("slack:{}:{}", self.team, self.event_id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    Message(SlackMessage),
    Ignore(&'static str),
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Slack ids are upper-case letters and digits; anything else is not one.
fn is_slack_id(x: &str) -> bool {
    !x.is_empty() && x.len() <= 32 && x.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_event_id(x: &str) -> bool {
    !x.is_empty() && x.len() <= 64 && x.chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_ts(x: &str) -> bool {
    !x.is_empty() && x.len() <= 32 && x.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Removes `<@BOT>` (and `<@BOT|name>`) from `text`.
pub fn strip_mention(text: &str, bot_user: &str) -> String {
    let mut out = text.to_string();
    if !bot_user.is_empty() {
        let plain = format!("<@{bot_user}>");
        out = out.replace(&plain, "");
        let named = format!("<@{bot_user}|");
        while let Some(start) = out.find(&named) {
            match out[start..].find('>') {
                Some(end) => out.replace_range(start..start + end + 1, ""),
                None => break,
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Classifies an Events API `event_callback` body (the Socket Mode `events_api` payload).
pub fn classify(body: &Value, bot_user: &str) -> Inbound {
    if s(body, "type") != "event_callback" {
        return Inbound::Ignore("not an event callback");
    }
    let Some(ev) = body.get("event") else { return Inbound::Ignore("no event") };
    let team = match s(body, "team_id") {
        "" => s(ev, "team"),
        t => t,
    };
    let event_id = s(body, "event_id");
    if !is_slack_id(team) || !is_event_id(event_id) {
        return Inbound::Ignore("missing or malformed team or event id");
    }
    if ev.get("bot_id").is_some() || ev.get("bot_profile").is_some() {
        return Inbound::Ignore("a bot's message");
    }
    let user = s(ev, "user");
    if user.is_empty() || user == bot_user {
        return Inbound::Ignore("the bot's own message");
    }
    if !s(ev, "subtype").is_empty() {
        return Inbound::Ignore("a message subtype (edit, join, …)");
    }
    let (channel, ts, thread_ts) = (s(ev, "channel"), s(ev, "ts"), s(ev, "thread_ts"));
    if !is_slack_id(user) || !is_slack_id(channel) || !is_ts(ts) || !(thread_ts.is_empty() || is_ts(thread_ts)) {
        return Inbound::Ignore("malformed user, channel or timestamp");
    }
    let raw_text = s(ev, "text");
    let kind = match s(ev, "type") {
        "app_mention" => Kind::Mention,
        "message" if s(ev, "channel_type") == "im" => Kind::Dm,
        "message" if !thread_ts.is_empty() && thread_ts != ts => {
            if !bot_user.is_empty() && raw_text.contains(&format!("<@{bot_user}")) {
                return Inbound::Ignore("a mention; answered through its app_mention event");
            }
            Kind::ThreadReply
        }
        "message" => return Inbound::Ignore("a channel message outside a thread"),
        _ => return Inbound::Ignore("an event type the bridge does not handle"),
    };
    let text = strip_mention(raw_text, bot_user);
    if text.is_empty() {
        return Inbound::Ignore("no text");
    }
    Inbound::Message(SlackMessage {
        kind,
        team: team.to_string(),
        event_id: event_id.to_string(),
        channel: channel.to_string(),
        user: user.to_string(),
        text,
        ts: ts.to_string(),
        thread_ts: thread_ts.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(event: Value) -> Value {
        json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event})
    }

    #[test]
    fn dms_mentions_and_thread_replies_are_routed() {
        let dm = classify(
            &body(
                json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "hi", "ts": "1.1"}),
            ),
            "UB",
        );
        let Inbound::Message(m) = dm else { panic!("{dm:?}") };
        assert_eq!((m.kind, m.session_id().as_str(), m.reply_thread()), (Kind::Dm, "slack-dm:T1:U1", ""));
        assert_eq!(m.request_id(), "slack:T1:Ev1");

        let mention = classify(
            &body(
                json!({"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UB> hello  there", "ts": "5.5"}),
            ),
            "UB",
        );
        let Inbound::Message(m) = mention else { panic!("{mention:?}") };
        assert_eq!(m.text, "hello there");
        assert_eq!(m.reply_thread(), "5.5");
        assert_eq!(m.session_id(), "shared:slack:T1:C1:5-5");

        let reply = classify(
            &body(
                json!({"type": "message", "channel_type": "channel", "channel": "C1", "user": "U2", "text": "more", "ts": "6.6", "thread_ts": "5.5"}),
            ),
            "UB",
        );
        let Inbound::Message(m) = reply else { panic!("{reply:?}") };
        assert_eq!((m.kind, m.session_id().as_str()), (Kind::ThreadReply, "shared:slack:T1:C1:5-5"));
    }

    #[test]
    fn bots_edits_and_noise_are_ignored() {
        let cases = [
            json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "UB", "text": "me", "ts": "1.1"}),
            json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "bot_id": "B1", "text": "bot", "ts": "1.1"}),
            json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "subtype": "message_changed", "text": "x", "ts": "1.1"}),
            json!({"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1", "text": "top level", "ts": "1.1"}),
            json!({"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1", "text": "<@UB> hi", "ts": "2.2", "thread_ts": "1.1"}),
            json!({"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UB>", "ts": "1.1"}),
            json!({"type": "reaction_added", "user": "U1"}),
            json!({"type": "message", "channel_type": "im", "channel": "d1; drop", "user": "U1", "text": "x", "ts": "1.1"}),
        ];
        for ev in cases {
            assert!(matches!(classify(&body(ev.clone()), "UB"), Inbound::Ignore(_)), "{ev}");
        }
        assert!(matches!(classify(&json!({"type": "url_verification"}), "UB"), Inbound::Ignore(_)));
        let no_team = json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}});
        assert!(matches!(classify(&no_team, "UB"), Inbound::Ignore(_)));
    }

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(strip_mention("<@UB|claw> do it <@UB>", "UB"), "do it");
        assert_eq!(strip_mention("<@U2> hi", "UB"), "<@U2> hi");
    }
}
