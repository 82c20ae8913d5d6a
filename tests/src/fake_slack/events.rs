//! Builders of `event_callback` payloads as Slack sends them.

use serde_json::{Value, json};

fn callback(team: &str, event_id: &str, event: Value) -> Value {
    json!({
        "token": "legacy", "team_id": team, "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000, "event": event,
        "authorizations": [{"team_id": team, "user_id": super::BOT_USER, "is_bot": true}],
    })
}

/// A direct message from `user` in DM channel `channel`.
pub fn dm(team: &str, event_id: &str, user: &str, channel: &str, ts: &str, text: &str) -> Value {
    callback(
        team,
        event_id,
        json!({
            "type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text, "ts": ts,
        }),
    )
}

/// `@bot text` in `channel`, in `thread_ts` when not empty.
pub fn mention(team: &str, event_id: &str, user: &str, channel: &str, ts: &str, thread_ts: &str, text: &str) -> Value {
    let mut ev = json!({
        "type": "app_mention", "channel": channel, "user": user, "ts": ts,
        "text": format!("<@{}> {text}", super::BOT_USER),
    });
    if !thread_ts.is_empty() {
        ev["thread_ts"] = json!(thread_ts);
    }
    callback(team, event_id, ev)
}

/// A plain message in a thread of `channel`.
pub fn thread_message(
    team: &str,
    event_id: &str,
    user: &str,
    channel: &str,
    ts: &str,
    thread_ts: &str,
    text: &str,
) -> Value {
    callback(
        team,
        event_id,
        json!({
            "type": "message", "channel_type": "channel", "channel": channel, "user": user, "text": text,
            "ts": ts, "thread_ts": thread_ts,
        }),
    )
}
