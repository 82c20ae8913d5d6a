//! What the agent loop hands to a model and gets back.

use clawhive_core::chat::{Message, ToolCall, ToolSpec, Usage};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    /// Overrides the provider's configured `max_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatResponse {
    /// The whole answer text (the concatenation of the streamed deltas).
    pub text: String,
    /// Tool calls the model asked for, in the order it produced them.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The full `provider/model` string that answered.
    pub model: String,
    /// Normalised to the OpenAI vocabulary for both protocols: `stop`,
    /// `tool_calls`, `length`, or the provider's own word for anything else.
    pub finish_reason: String,
}
