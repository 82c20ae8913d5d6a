//! Members of a consumer group and the ackers of their deliveries.
//!
//! A member takes a message only while its owner waits in [`Consumer::next`],
//! like the NATS adapter's one-at-a-time pull. A waiting member sleeps until
//! its group is woken (publish, nak, ack, close) or until the earliest ack
//! deadline or nak delay of the group, whichever comes first; no polling.

use super::group::{Poll, Settle};
use super::{Inner, stream_index};
use crate::port::{Acker, BusError, Consumer, ConsumerSpec, Delivery, StreamKind};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) struct MemoryConsumer {
    pub inner: Arc<Inner>,
    pub spec: ConsumerSpec,
    pub notify: Arc<Notify>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            // Registered before looking, so a wake-up between the look and the wait is not lost.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let due = {
                let mut state = self.inner.lock();
                if state.closed {
                    return None;
                }
                // Created when the group was joined; streams are never removed.
                let stream = state.streams[stream_index(self.spec.stream)].as_mut()?;
                match stream.poll(&self.spec.durable, Instant::now()) {
                    Poll::Deliver { seq, message, attempt } => {
                        let acker = MemoryAcker {
                            inner: self.inner.clone(),
                            stream: self.spec.stream,
                            durable: self.spec.durable.clone(),
                            seq,
                            attempt,
                        };
                        return Some(Ok(Delivery { message, attempt, acker: Arc::new(acker) }));
                    }
                    Poll::Wait(due) => due,
                }
            };
            match due {
                Some(due) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

struct MemoryAcker {
    inner: Arc<Inner>,
    stream: StreamKind,
    durable: String,
    seq: u64,
    attempt: u64,
}

impl MemoryAcker {
    fn settle(&self, how: Settle) -> Result<(), BusError> {
        let mut state = self.inner.lock();
        if state.closed {
            return Err(BusError::Ack(format!("{how:?}: the in-process bus is closed")));
        }
        if let Some(stream) = state.streams[stream_index(self.stream)].as_mut() {
            stream.settle(&self.durable, self.seq, self.attempt, how, Instant::now());
        }
        Ok(())
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle(Settle::Ack)
    }

    async fn nak(&self, delay: Option<Duration>) -> Result<(), BusError> {
        self.settle(Settle::Nak(delay))
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.settle(Settle::Progress)
    }

    async fn term(&self) -> Result<(), BusError> {
        self.settle(Settle::Term)
    }
}
