//! The LLM ↔ tool loop of one turn.
//!
//! The model is offered only the agent's tools that the principal may call; every
//! call is checked against the policy in force at that moment and audited. A call
//! to any other tool (a model talked into it, or hallucinating) gets a refusal as
//! its result, never an execution. The loop is bounded by `max_steps` and the
//! request deadline.

use crate::policy::TurnGuard;
use crate::tools::Registry;
use clawhive_core::chat::{Message, Usage};
use clawhive_core::config::AgentConfig;
use clawhive_core::{ClawError, ErrorCode};
use clawhive_llm::{ChatRequest, LlmRouter};
use tokio::time::Instant;

/// What a successful loop produced.
#[derive(Debug)]
pub struct LoopOutcome {
    pub text: String,
    pub usage: Usage,
    pub model: String,
    /// Assistant tool-call messages, tool results and the final answer, in order.
    pub messages: Vec<Message>,
    /// Time spent waiting on the LLM (every step's call, request to last byte).
    pub llm_elapsed: std::time::Duration,
}

pub struct LoopInput<'a> {
    pub agent: &'a AgentConfig,
    pub history: Vec<Message>,
    pub user_message: Message,
    pub max_steps: u32,
    pub deadline: Instant,
    pub request_id: &'a str,
    pub session_id: &'a str,
    /// Policy checks and audit of this turn's tool calls.
    pub guard: &'a TurnGuard<'a>,
    /// Named secrets for tools, resolved for this turn's principal.
    pub secrets: &'a (dyn crate::tools::SecretResolver + Sync),
}

pub async fn run_loop(
    llm: &LlmRouter,
    tools: &Registry,
    input: LoopInput<'_>,
    on_delta: &(dyn Fn(&str) + Send + Sync),
) -> Result<LoopOutcome, ClawError> {
    let agent = input.agent;
    let mut models = vec![agent.model.clone()];
    models.extend(agent.fallbacks.iter().cloned());
    let specs: Vec<_> = tools.specs_for(&agent.tools).into_iter().filter(|s| input.guard.may_offer(&s.name)).collect();

    let mut conversation = Vec::with_capacity(input.history.len() + 4);
    if !agent.system_prompt.is_empty() {
        conversation.push(Message::system(agent.system_prompt.clone()));
    }
    conversation.extend(input.history);
    conversation.push(input.user_message);
    let first_new = conversation.len();

    let mut usage = Usage::default();
    let mut llm_elapsed = std::time::Duration::ZERO;
    for step in 0..input.max_steps {
        // The conversation moves into the request and back: no copy per step.
        let req = ChatRequest {
            messages: std::mem::take(&mut conversation),
            tools: specs.clone(),
            max_tokens: None,
            temperature: None,
        };
        let called = std::time::Instant::now();
        let resp = llm.chat(&models, &req, input.deadline, on_delta).await;
        llm_elapsed += called.elapsed();
        conversation = req.messages;
        let resp = resp.map_err(|e| ClawError::new(e.code(), format!("LLM call failed: {e}")))?;
        usage += resp.usage;
        let now = clawhive_core::time::now_unix_ms();
        if resp.tool_calls.is_empty() {
            let mut answer = Message::assistant(resp.text.clone());
            answer.request_id = Some(input.request_id.to_string());
            answer.created_unix_ms = now;
            conversation.push(answer);
            return Ok(LoopOutcome {
                text: resp.text,
                usage,
                model: resp.model,
                messages: conversation.split_off(first_new),
                llm_elapsed,
            });
        }
        tracing::debug!(step, calls = resp.tool_calls.len(), "model asked for tools");
        let mut asking = Message::assistant(resp.text);
        asking.tool_calls = resp.tool_calls.clone();
        asking.request_id = Some(input.request_id.to_string());
        asking.created_unix_ms = now;
        conversation.push(asking);
        for call in &resp.tool_calls {
            let configured = agent.tools.iter().any(|t| t == &call.name);
            // Re-checked at every call: the model may ask for a tool it was never offered.
            let decision = input.guard.check_tool_call(&call.name, &call.arguments).await;
            // Label by registry name only: the model may invent any name.
            let known = if tools.get(&call.name).is_some() { call.name.as_str() } else { "unknown" };
            let verdict = match (configured, decision.allowed) {
                (false, _) => "not_offered",
                (true, true) => "allow",
                (true, false) => "deny",
            };
            clawhive_telemetry::metrics::tool_call(known, verdict);
            let result = match (configured, decision.allowed, tools.get(&call.name)) {
                (true, false, _) => crate::policy::tool_denied_result(&call.name),
                (true, true, Some(tool)) => {
                    let remaining = input.deadline.saturating_duration_since(Instant::now());
                    let ctx = crate::tools::ToolContext {
                        principal: input.guard.principal(),
                        agent: &agent.id,
                        session_id: input.session_id,
                        request_id: input.request_id,
                        secrets: input.secrets,
                    };
                    match tokio::time::timeout(remaining, tool.call_as(&ctx, &call.arguments)).await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => format!("error: {e}"),
                        Err(_) => return Err(ClawError::deadline("the turn's deadline passed during a tool call")),
                    }
                }
                _ => {
                    tracing::warn!(tool = %call.name, agent = %agent.id, "model called a tool it was not offered; refused");
                    format!("error: tool {:?} is not available to this agent", call.name)
                }
            };
            let mut msg = Message::tool_result(call, result);
            msg.request_id = Some(input.request_id.to_string());
            msg.created_unix_ms = clawhive_core::time::now_unix_ms();
            conversation.push(msg);
        }
    }
    Err(ClawError::new(
        ErrorCode::ResourceExhausted,
        format!("the agent used its {} tool steps without a final answer", input.max_steps),
    ))
}
