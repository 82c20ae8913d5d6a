//! Drives a streamed HTTP response through the SSE parser into a protocol decoder.

use crate::error::LlmError;
use crate::sse::{SseEvent, SseParser};
use crate::types::ChatResponse;
use futures::StreamExt;

/// Whether the decoder has seen the end of the answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    More,
    Done,
}

/// Turns one provider's stream events into deltas and, at the end, an answer.
pub trait Decoder: Send {
    /// Handles one event, passing any new answer text to `emit`.
    fn event(&mut self, ev: &SseEvent, emit: &dyn Fn(&str)) -> Result<Flow, LlmError>;
    /// The complete answer (`model` left empty), or an error if the stream was cut short.
    fn finish(self: Box<Self>) -> Result<ChatResponse, LlmError>;
}

/// Reads `resp` until the decoder says the answer is done or the body ends.
pub async fn decode(
    resp: reqwest::Response,
    mut decoder: Box<dyn Decoder>,
    emit: &(dyn Fn(&str) + Send + Sync),
) -> Result<ChatResponse, LlmError> {
    let mut parser = SseParser::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(LlmError::transport)?;
        let events = parser.push(&chunk).map_err(|e| LlmError::Protocol(e.to_string()))?;
        for ev in &events {
            if decoder.event(ev, emit)? == Flow::Done {
                return decoder.finish();
            }
        }
    }
    decoder.finish()
}

/// Tool arguments as JSON text; a call with no arguments gets `{}`.
pub fn non_empty_args(args: String) -> String {
    if args.trim().is_empty() { "{}".into() } else { args }
}
