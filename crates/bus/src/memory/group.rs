//! A durable consumer group: where it is in its stream, and the messages it
//! has handed out and not yet seen acked (JetStream's "ack pending").

use super::pattern;
use super::stream::Stream;
use crate::port::{BusMessage, ConsumerSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) struct Group {
    pub spec: ConsumerSpec,
    /// The next stream sequence this group has not looked at.
    cursor: u64,
    /// Delivered and unfinished, by stream sequence.
    pending: BTreeMap<u64, Pending>,
    /// Wakes the members waiting in `next` (new message, nak, ack, close).
    pub notify: Arc<Notify>,
}

struct Pending {
    deliveries: u64,
    /// When the message may go out again: the ack deadline while a member
    /// holds it, the end of the nak delay after a nak.
    due: Instant,
    held: bool,
}

/// How a member settles a delivery.
#[derive(Clone, Copy, Debug)]
pub(super) enum Settle {
    Ack,
    Term,
    Nak(Option<Duration>),
    Progress,
}

/// What a member waiting in `next` gets.
pub(super) enum Poll {
    Deliver {
        seq: u64,
        message: BusMessage,
        attempt: u64,
    },
    /// Nothing now; something may become due at this instant (else wait for a wake-up).
    Wait(Option<Instant>),
}

impl Group {
    /// A new group starts at the first stored message (`DeliverPolicy::All`).
    pub fn new(spec: ConsumerSpec) -> Group {
        Group { spec, cursor: 0, pending: BTreeMap::new(), notify: Arc::new(Notify::new()) }
    }

    fn exhausted(&self, deliveries: u64) -> bool {
        u64::try_from(self.spec.max_deliver).is_ok_and(|max| deliveries >= max)
    }

    fn may_take_more(&self) -> bool {
        usize::try_from(self.spec.max_ack_pending).map_or(true, |max| self.pending.len() < max)
    }
}

impl Stream {
    /// One delivery for a member of `durable`, if any is due: redeliveries
    /// first (oldest first), then the next new message within `max_ack_pending`.
    pub fn poll(&mut self, durable: &str, now: Instant) -> Poll {
        let Stream { messages, groups, work_queue, .. } = self;
        let Some(group) = groups.get_mut(durable) else { return Poll::Wait(None) };
        while let Some((seq, deliveries)) =
            group.pending.iter().find(|(_, p)| p.due <= now).map(|(&seq, p)| (seq, p.deliveries))
        {
            let exhausted = group.exhausted(deliveries);
            match messages.get(&seq) {
                Some(stored) if !exhausted => {
                    let p = group.pending.get_mut(&seq).expect("just found");
                    p.deliveries += 1;
                    p.due = now + group.spec.ack_wait;
                    p.held = true;
                    return Poll::Deliver { seq, message: stored.message.clone(), attempt: p.deliveries };
                }
                _ => {
                    // Given up after max_deliver (a work queue forgets it), or aged out.
                    group.pending.remove(&seq);
                    if exhausted && *work_queue {
                        messages.remove(&seq);
                    }
                }
            }
        }
        if group.may_take_more() {
            let found = messages
                .range(group.cursor..)
                .find(|(_, m)| pattern::matches(&group.spec.filter_subject, &m.message.subject))
                .map(|(&seq, m)| (seq, m.message.clone()));
            match found {
                Some((seq, message)) => {
                    group.cursor = seq + 1;
                    group.pending.insert(seq, Pending { deliveries: 1, due: now + group.spec.ack_wait, held: true });
                    return Poll::Deliver { seq, message, attempt: 1 };
                }
                None => group.cursor = group.cursor.max(messages.last_key_value().map_or(0, |(&k, _)| k + 1)),
            }
        }
        Poll::Wait(group.pending.values().map(|p| p.due).min())
    }

    /// Applies an ack, nak, heartbeat or term of delivery `attempt` of `seq`.
    /// A nak or heartbeat of an older delivery (the message went out again
    /// since) is ignored, as JetStream does; an ack or term applies.
    pub fn settle(&mut self, durable: &str, seq: u64, attempt: u64, how: Settle, now: Instant) {
        let Stream { messages, groups, work_queue, .. } = self;
        let Some(group) = groups.get_mut(durable) else { return };
        let Some(p) = group.pending.get_mut(&seq) else { return };
        match how {
            Settle::Ack | Settle::Term => {
                group.pending.remove(&seq);
                if *work_queue {
                    messages.remove(&seq);
                }
            }
            Settle::Nak(delay) if p.deliveries == attempt => {
                p.due = now + delay.unwrap_or_default();
                p.held = false;
            }
            Settle::Progress if p.deliveries == attempt && p.held => {
                p.due = now + group.spec.ack_wait;
                // A later deadline: nobody needs to wake up for it.
                return;
            }
            Settle::Nak(_) | Settle::Progress => return,
        }
        group.notify.notify_waiters();
    }
}
