//! Reply fan-in: this instance's reply and delta subjects, routed by call id
//! to the calls waiting here.
//!
//! Both subscriptions are read by one task that prefers deltas when both have
//! something ready: a worker sends its deltas before its final reply, and the
//! client library queues them in that order, so a call never sees its final
//! before a delta that preceded it.

use clawhive_bus::envelope::{decode_delta, decode_reply};
use clawhive_bus::{Bus, BusError, Subjects};
use clawhive_proto::v1 as pb;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the fan-in hands to a waiting call.
#[derive(Debug)]
pub enum Incoming {
    Delta(pb::ReplyDelta),
    Final(pb::Reply),
}

type Pending = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Incoming>>>>;

/// The table of calls waiting on this instance.
#[derive(Clone, Default)]
pub struct FanIn {
    pending: Pending,
}

/// Unregisters its call when dropped (reply, deadline, or the client went away).
pub struct Registration {
    pending: Pending,
    call_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(&self.call_id);
        }
    }
}

impl FanIn {
    /// Registers `call_id`; messages for it arrive on the returned receiver.
    pub fn register(&self, call_id: &str) -> (Registration, mpsc::UnboundedReceiver<Incoming>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(call_id.to_string(), tx);
        (Registration { pending: self.pending.clone(), call_id: call_id.to_string() }, rx)
    }

    /// Calls waiting now.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn route_delta(&self, delta: pb::ReplyDelta) {
        let map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&delta.call_id) {
            Some(tx) => {
                let _ = tx.send(Incoming::Delta(delta));
            }
            None => tracing::debug!(call_id = %delta.call_id, "Dropping a delta for a call not waiting here."),
        }
    }

    fn route_reply(&self, reply: pb::Reply) {
        let call_id = match reply.reply_route.as_ref().and_then(|r| r.target.as_ref()) {
            Some(pb::reply_route::Target::Gateway(g)) => g.call_id.clone(),
            _ => {
                tracing::warn!(request_id = %reply.request_id, "Dropping a reply without a gateway route.");
                return;
            }
        };
        // A final ends the call: a second one (a redelivered turn re-sending) finds nothing.
        let tx = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_id);
        match tx {
            Some(tx) => {
                let _ = tx.send(Incoming::Final(reply));
            }
            None => {
                tracing::debug!(%call_id, request_id = %reply.request_id, "Ignoring a reply for a call not waiting here.")
            }
        }
    }

    /// Subscribes to both subjects (before returning) and spawns the routing task.
    pub async fn spawn(
        &self,
        bus: &Arc<dyn Bus>,
        subjects: &Subjects,
        instance_id: &str,
    ) -> Result<JoinHandle<()>, BusError> {
        let reply_subject = subjects.gateway_reply(instance_id);
        let delta_subject = subjects.gateway_delta(instance_id);
        let mut replies = bus.subscribe(&reply_subject).await?;
        let mut deltas = bus.subscribe(&delta_subject).await?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let (mut replies_open, mut deltas_open) = (true, true);
            while replies_open || deltas_open {
                tokio::select! {
                    biased;
                    msg = deltas.next(), if deltas_open => match msg {
                        Some(m) => match decode_delta(&m.payload) {
                            Ok(d) => this.route_delta(d),
                            Err(e) => tracing::warn!(subject = %m.subject, error = %e, "Dropping a malformed delta."),
                        },
                        None => deltas_open = false,
                    },
                    msg = replies.next(), if replies_open => match msg {
                        Some(m) => match decode_reply(&m.payload) {
                            Ok(r) => {
                                // The last hop of the turn's trace: the reply reaching its caller.
                                let span = tracing::info_span!("reply", request_id = %r.request_id, otel.kind = "consumer");
                                if let Some(t) = clawhive_bus::envelope::trace_of(&m) {
                                    clawhive_telemetry::otel::set_parent(&span, &t);
                                }
                                span.in_scope(|| this.route_reply(r));
                            }
                            Err(e) => tracing::warn!(subject = %m.subject, error = %e, "Dropping a malformed reply."),
                        },
                        None => replies_open = false,
                    },
                }
            }
            tracing::info!("Reply subscriptions ended.");
        }))
    }
}
