//! What every part of the bridge shares: config, the Slack client, the bus,
//! the stores, and the table of replies streaming from this replica.

use crate::stream::Streams;
use crate::web::SlackWeb;
use clawhive_bus::envelope::Envelopes;
use clawhive_core::config::Config;
use clawhive_core::signing::EnvelopeSigner;
use clawhive_store::{IdentityStore, MarkerStore, PairingStore, SessionStore};
use std::sync::Arc;
use std::time::Duration;

/// The adapters the bridge runs on (one `RedisStore` or `EmbeddedStore` serves all four stores).
#[derive(Clone)]
pub struct Deps {
    pub bus: Arc<dyn clawhive_bus::Bus>,
    pub sessions: Arc<dyn SessionStore>,
    pub identity: Arc<dyn IdentityStore>,
    pub pairings: Arc<dyn PairingStore>,
    pub markers: Arc<dyn MarkerStore>,
}

/// Secrets, read from the environment variables the config names.
#[derive(Clone, Default)]
pub struct SlackSecrets {
    pub app_token: String,
    pub bot_token: String,
    pub signing_secret: String,
}

impl std::fmt::Debug for SlackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackSecrets(<redacted>)")
    }
}

impl SlackSecrets {
    /// Reads the variables named by `[slack]`; empty when unset.
    pub fn from_env(cfg: &clawhive_core::config::SlackConfig) -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_default().trim().to_string();
        Self {
            app_token: var(&cfg.app_token_env),
            bot_token: var(&cfg.bot_token_env),
            signing_secret: var(&cfg.signing_secret_env),
        }
    }
}

pub struct Bridge {
    pub cfg: Config,
    pub web: SlackWeb,
    pub envelopes: Envelopes,
    pub signer: Option<EnvelopeSigner>,
    pub deps: Deps,
    /// The bot's own user id (from `auth.test`), so its messages are ignored.
    pub bot_user: String,
    pub streams: Streams,
}

/// How long the bot remembers that it is in a thread.
pub const THREAD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a posted reply is remembered (JetStream keeps replies for less).
pub const POSTED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn thread_key(team: &str, channel: &str, thread_ts: &str) -> String {
    format!("slack:thread:{team}:{channel}:{thread_ts}")
}

pub fn event_key(team: &str, event_id: &str) -> String {
    format!("slack:event:{team}:{event_id}")
}

/// The Slack message (channel + ts) a streamed reply lives in.
pub fn message_key(request_id: &str) -> String {
    format!("slack:msg:{request_id}")
}

/// Piece `i` of a reply was posted.
pub fn piece_key(request_id: &str, i: usize) -> String {
    format!("slack:posted:{request_id}:{i}")
}

/// The whole reply was posted.
pub fn posted_key(request_id: &str) -> String {
    format!("slack:posted:{request_id}")
}
