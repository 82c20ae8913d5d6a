//! The `clawhive.v1.Assistant` gRPC service. Errors become a `tonic::Status`
//! here, once, from their [`ErrorCode`].

use crate::chat::{ChatEvent, ChatInput};
use crate::state::Gateway;
use clawhive_core::{ClawError, ErrorCode, Principal};
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::assistant_server::Assistant;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The one mapping from the error taxonomy to gRPC codes.
pub fn status_of(e: &ClawError) -> Status {
    clawhive_telemetry::metrics::error("gateway", e.code.as_str());
    let code = match e.code {
        ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Conflict => tonic::Code::Aborted,
        ErrorCode::Internal => tonic::Code::Internal,
    };
    Status::new(code, e.message.clone())
}

/// The caller of a gRPC request (see [`Gateway::authenticate`]).
pub async fn authenticate<T>(gw: &Gateway, req: &Request<T>) -> Result<Principal, Status> {
    let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
    gw.authenticate(header).await.map_err(|e| status_of(&e))
}

pub struct AssistantService {
    gw: Arc<Gateway>,
}

impl AssistantService {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        authenticate(&self.gw, req).await
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ChatEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Assistant for AssistantService {
    type ChatStream = EventStream;

    async fn chat(&self, req: Request<pb::ChatRequest>) -> Result<Response<EventStream>, Status> {
        let who = self.principal(&req).await?;
        let traceparent = req.metadata().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_string);
        let r = req.into_inner();
        let input = ChatInput {
            session_id: r.session_id,
            text: r.text,
            agent_id: r.agent_id,
            idempotency_key: Some(r.idempotency_key).filter(|k| !k.is_empty()),
            timeout_ms: Some(u64::from(r.timeout_ms)).filter(|t| *t > 0),
            traceparent,
        };
        let stream = self.gw.chat(&who, input).await.map_err(|e| status_of(&e))?;
        let events = futures::stream::unfold(stream, |mut s| async move {
            let item = s.next().await?;
            let item = match item {
                Ok(ChatEvent::Delta(text)) => {
                    Ok(pb::ChatEvent { event: Some(pb::chat_event::Event::Delta(pb::ChatDelta { text })) })
                }
                Ok(ChatEvent::Final(f)) => Ok(pb::ChatEvent { event: Some(pb::chat_event::Event::Final(f.into())) }),
                Err(e) => Err(status_of(&e)),
            };
            Some((item, s))
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let who = self.principal(&req).await?;
        self.gw.list_sessions(&who).await.map(Response::new).map_err(|e| status_of(&e))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let who = self.principal(&req).await?;
        self.gw.get_session(&who, &req.get_ref().session_id).await.map(Response::new).map_err(|e| status_of(&e))
    }

    async fn reset_session(
        &self,
        req: Request<pb::ResetSessionRequest>,
    ) -> Result<Response<pb::ResetSessionResponse>, Status> {
        let who = self.principal(&req).await?;
        let existed = self.gw.reset_session(&who, &req.get_ref().session_id).await.map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::ResetSessionResponse { existed }))
    }
}
