//! One in-memory stream: its stored messages, the message ids seen within
//! the duplicate window, and the consumer groups reading it.

use super::group::Group;
use crate::port::{BusError, BusMessage, StreamKind};
use crate::subject::Subjects;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Messages a limits stream (replies, audit) keeps; the oldest go first.
pub(crate) const LIMITS_MAX_MESSAGES: usize = 10_000;
/// Unfinished requests the work queue holds; beyond that a publish is refused.
pub(crate) const WORK_QUEUE_MAX_MESSAGES: usize = 100_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) struct Stored {
    pub message: BusMessage,
    at: Instant,
    /// Wall-clock time of storing, for reads by start time.
    pub at_unix_ms: i64,
}

pub(super) struct Stream {
    pub name: String,
    /// The subjects it captures (`ns.req.>`).
    pub captures: String,
    /// A work queue removes a message once its group acks or terminates it.
    pub work_queue: bool,
    max_age: Option<Duration>,
    duplicate_window: Duration,
    next_seq: u64,
    pub messages: BTreeMap<u64, Stored>,
    /// Message id → when it was stored, and the same in order, for expiry.
    seen: HashMap<String, Instant>,
    seen_order: VecDeque<(Instant, String)>,
    pub groups: HashMap<String, Group>,
}

impl Stream {
    /// The same settings the NATS topology gives the stream.
    pub fn new(subjects: &Subjects, kind: StreamKind, duplicate_window: Duration) -> Stream {
        let (work_queue, max_age) = match kind {
            StreamKind::Requests => (true, None),
            StreamKind::Replies => (false, Some(DAY)),
            StreamKind::Audit => (false, Some(30 * DAY)),
        };
        Stream {
            name: subjects.stream_name(kind),
            captures: subjects.stream_subjects(kind),
            work_queue,
            max_age,
            duplicate_window: max_age.map_or(duplicate_window, |age| duplicate_window.min(age)),
            next_seq: 1,
            messages: BTreeMap::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            groups: HashMap::new(),
        }
    }

    /// Stores `message` unless `msg_id` was seen within the window:
    /// `Ok(true)` stored, `Ok(false)` duplicate.
    pub fn store(&mut self, msg_id: &str, message: BusMessage, now: Instant) -> Result<bool, BusError> {
        self.expire(now);
        if self.seen.contains_key(msg_id) {
            return Ok(false);
        }
        if self.work_queue && self.messages.len() >= WORK_QUEUE_MAX_MESSAGES {
            return Err(BusError::Publish(format!(
                "{} (msg id {msg_id}): stream {} is full ({WORK_QUEUE_MAX_MESSAGES} unfinished messages)",
                message.subject, self.name
            )));
        }
        if !self.work_queue {
            while self.messages.len() >= LIMITS_MAX_MESSAGES {
                self.messages.pop_first();
            }
        }
        self.seen.insert(msg_id.to_string(), now);
        self.seen_order.push_back((now, msg_id.to_string()));
        self.messages
            .insert(self.next_seq, Stored { message, at: now, at_unix_ms: clawhive_core::time::now_unix_ms() });
        self.next_seq += 1;
        Ok(true)
    }

    /// Forgets message ids older than the window and messages older than the max age.
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.seen_order.front() {
            if now.saturating_duration_since(*at) < self.duplicate_window {
                break;
            }
            if let Some((at, id)) = self.seen_order.pop_front()
                && self.seen.get(&id) == Some(&at)
            {
                self.seen.remove(&id);
            }
        }
        if let Some(max_age) = self.max_age {
            while self.messages.first_key_value().is_some_and(|(_, m)| now.saturating_duration_since(m.at) >= max_age) {
                self.messages.pop_first();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(subject: &str) -> BusMessage {
        BusMessage { subject: subject.into(), headers: vec![], payload: Bytes::new() }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn duplicates_are_dropped_within_the_window_only() {
        let s = Subjects::new("ns");
        let mut stream = Stream::new(&s, StreamKind::Requests, Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(stream.store("a", msg("ns.req.x.y"), t0).unwrap());
        assert!(!stream.store("a", msg("ns.req.x.y"), t0 + Duration::from_secs(1)).unwrap());
        assert!(stream.store("a", msg("ns.req.x.y"), t0 + Duration::from_secs(2)).unwrap());
        assert_eq!(stream.messages.len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn limits_streams_are_bounded() {
        let s = Subjects::new("ns");
        let mut stream = Stream::new(&s, StreamKind::Replies, Duration::from_secs(120));
        let now = Instant::now();
        for i in 0..LIMITS_MAX_MESSAGES + 5 {
            assert!(stream.store(&i.to_string(), msg("ns.reply.gw.x"), now).unwrap());
        }
        assert_eq!(stream.messages.len(), LIMITS_MAX_MESSAGES);
        assert_eq!(stream.messages.first_key_value().map(|(k, _)| *k), Some(6));
        // Older than the max age: gone at the next publish.
        assert!(stream.store("late", msg("ns.reply.gw.x"), now + DAY).unwrap());
        assert_eq!(stream.messages.len(), 1);
    }
}
