//! Typed envelopes on the bus: where each protobuf message goes, which id
//! dedupes it, and the trace context that travels with it.

use crate::port::{Bus, BusError, BusMessage, Headers, PublishOutcome};
use crate::subject::Subjects;
use bytes::Bytes;
use clawhive_core::{AgentId, TenantId};
use clawhive_proto::v1 as pb;
use clawhive_telemetry::TraceContext;
use prost::Message;
use std::sync::Arc;

/// The header carrying the W3C trace context.
pub const TRACEPARENT: &str = clawhive_telemetry::trace_context::HEADER;

pub fn decode_request(payload: &[u8]) -> Result<pb::AgentRequest, BusError> {
    pb::AgentRequest::decode(payload).map_err(|e| BusError::Decode(format!("AgentRequest: {e}")))
}

pub fn decode_reply(payload: &[u8]) -> Result<pb::Reply, BusError> {
    pb::Reply::decode(payload).map_err(|e| BusError::Decode(format!("Reply: {e}")))
}

pub fn decode_delta(payload: &[u8]) -> Result<pb::ReplyDelta, BusError> {
    pb::ReplyDelta::decode(payload).map_err(|e| BusError::Decode(format!("ReplyDelta: {e}")))
}

/// The trace context of a received message, if it carried a valid one.
pub fn trace_of(msg: &BusMessage) -> Option<TraceContext> {
    msg.header(TRACEPARENT).and_then(TraceContext::parse)
}

fn trace_headers(trace: Option<&TraceContext>) -> Headers {
    trace.map(|t| vec![(TRACEPARENT.to_string(), t.to_header())]).unwrap_or_default()
}

/// The dedupe id of a final reply; a redelivered turn re-sends the same one.
pub fn reply_msg_id(request_id: &str) -> String {
    format!("reply:{request_id}")
}

/// The dedupe id of the `seq`-th audit record of a request; a redelivered turn
/// re-publishes the same ids, so its records are not stored twice.
pub fn audit_msg_id(request_id: &str, seq: u32) -> String {
    format!("audit:{request_id}:{seq}")
}

pub fn decode_audit(payload: &[u8]) -> Result<pb::AuditRecord, BusError> {
    pb::AuditRecord::decode(payload).map_err(|e| BusError::Decode(format!("AuditRecord: {e}")))
}

/// Typed publishing on top of any [`Bus`].
#[derive(Clone)]
pub struct Envelopes {
    bus: Arc<dyn Bus>,
    subjects: Subjects,
}

impl Envelopes {
    pub fn new(bus: Arc<dyn Bus>, subjects: Subjects) -> Self {
        Self { bus, subjects }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Publishes a request on `clawhive.req.<tenant>.<agent>` with `Nats-Msg-Id` = request id.
    pub async fn publish_request(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        req: &pb::AgentRequest,
        trace: Option<&TraceContext>,
    ) -> Result<PublishOutcome, BusError> {
        let subject = self.subjects.request(tenant, agent);
        self.bus
            .publish_durable(&subject, &req.request_id, trace_headers(trace), Bytes::from(req.encode_to_vec()))
            .await
    }

    /// Where the final reply for `route` goes.
    pub fn reply_subject(&self, route: Option<&pb::ReplyRoute>, tenant: &TenantId) -> String {
        match route.and_then(|r| r.target.as_ref()) {
            Some(pb::reply_route::Target::Gateway(g)) => self.subjects.gateway_reply(&g.instance_id),
            Some(pb::reply_route::Target::Slack(s)) => self.subjects.slack_reply(&s.team_id),
            Some(pb::reply_route::Target::SessionOnly(_)) | None => self.subjects.session_reply(tenant),
        }
    }

    /// Where deltas for `route` go, if the route streams.
    pub fn delta_subject(&self, route: Option<&pb::ReplyRoute>) -> Option<String> {
        match route.and_then(|r| r.target.as_ref()) {
            Some(pb::reply_route::Target::Gateway(g)) => Some(self.subjects.gateway_delta(&g.instance_id)),
            Some(pb::reply_route::Target::Slack(s)) => Some(self.subjects.slack_delta(&s.team_id)),
            _ => None,
        }
    }

    /// Publishes the final reply durably, deduplicated by request id.
    pub async fn publish_reply(
        &self,
        tenant: &TenantId,
        reply: &pb::Reply,
        trace: Option<&TraceContext>,
    ) -> Result<PublishOutcome, BusError> {
        let subject = self.reply_subject(reply.reply_route.as_ref(), tenant);
        self.bus
            .publish_durable(
                &subject,
                &reply_msg_id(&reply.request_id),
                trace_headers(trace),
                Bytes::from(reply.encode_to_vec()),
            )
            .await
    }

    /// Publishes a streaming delta, best effort.
    pub async fn publish_delta(
        &self,
        route: Option<&pb::ReplyRoute>,
        delta: &pb::ReplyDelta,
        trace: Option<&TraceContext>,
    ) -> Result<(), BusError> {
        let Some(subject) = self.delta_subject(route) else {
            return Ok(());
        };
        self.bus.publish_ephemeral(&subject, trace_headers(trace), Bytes::from(delta.encode_to_vec())).await
    }

    /// Publishes an audit record durably on `clawhive.audit.<tenant>`, deduplicated by
    /// `audit:<request_id>:<seq>` (`seq` numbers the records of one request).
    pub async fn publish_audit(
        &self,
        tenant: &TenantId,
        seq: u32,
        record: &pb::AuditRecord,
    ) -> Result<PublishOutcome, BusError> {
        let subject = self.subjects.audit(tenant);
        self.bus
            .publish_durable(
                &subject,
                &audit_msg_id(&record.request_id, seq),
                Headers::new(),
                Bytes::from(record.encode_to_vec()),
            )
            .await
    }
}
