//! The errors of an LLM call, and how they map onto the system's error codes.

use clawhive_core::ErrorCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The caller's deadline passed before a model finished answering.
    #[error("deadline passed before the model finished answering")]
    DeadlineExceeded,
    /// The provider answered with a non-success HTTP status.
    #[error("provider answered HTTP {status}: {body}")]
    Status {
        status: u16,
        /// A short, single-line excerpt of the response body.
        body: String,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider reported an error inside an otherwise successful stream.
    #[error("provider reported an error mid-stream: {message}")]
    Stream { message: String, retryable: bool },
    /// Connecting, sending or receiving failed, or one attempt took too long.
    #[error("transport error: {0}")]
    Transport(String),
    /// The provider's answer did not follow its protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request cannot be expressed in the provider's wire format.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A model string is not written `provider/model`.
    #[error("model {0:?} must be written provider/model")]
    InvalidModel(String),
    /// A model string names a provider that is not configured.
    #[error("model {model:?} names provider {provider:?}, which is not configured")]
    UnknownProvider { provider: String, model: String },
    /// The provider needs an API key and its environment variable is unset or empty.
    #[error("provider {provider:?} needs an API key in the environment variable {env_var}, which is not set")]
    MissingApiKey { provider: String, env_var: String },
    /// An HTTP client could not be built.
    #[error("cannot build the HTTP client for provider {provider:?}: {reason}")]
    Client { provider: String, reason: String },
}

impl LlmError {
    /// The system-wide code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            LlmError::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            LlmError::Status { status, .. } => match status {
                429 => ErrorCode::ResourceExhausted,
                400 | 413 | 422 => ErrorCode::InvalidArgument,
                408 | 500.. => ErrorCode::Unavailable,
                // 401/403/404 and the rest mean our configuration (key, model
                // name) is wrong; that is not the caller's fault.
                _ => ErrorCode::Internal,
            },
            LlmError::Stream { .. } | LlmError::Transport(_) | LlmError::Protocol(_) => ErrorCode::Unavailable,
            LlmError::InvalidRequest(_) => ErrorCode::InvalidArgument,
            LlmError::InvalidModel(_)
            | LlmError::UnknownProvider { .. }
            | LlmError::MissingApiKey { .. }
            | LlmError::Client { .. } => ErrorCode::Internal,
        }
    }

    /// Whether the same request to the same model may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => matches!(status, 408 | 429 | 500..),
            LlmError::Stream { retryable, .. } => *retryable,
            LlmError::Transport(_) => true,
            _ => false,
        }
    }

    /// Whether the router should move on to the next model after this error
    /// (once retries of the current one are used up).
    pub(crate) fn allows_fallback(&self) -> bool {
        self.is_retryable() || matches!(self, LlmError::MissingApiKey { .. })
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn transport(e: reqwest::Error) -> Self {
        // reqwest's Display omits the cause ("error sending request"); keep the chain.
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        LlmError::Transport(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> LlmError {
        LlmError::Status { status, body: String::new(), retry_after: None }
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 529] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(!LlmError::DeadlineExceeded.is_retryable());
        let missing = LlmError::MissingApiKey { provider: "p".into(), env_var: "P_KEY".into() };
        assert!(!missing.is_retryable() && missing.allows_fallback());
        assert!(missing.to_string().contains("P_KEY"));
    }

    #[test]
    fn codes() {
        assert_eq!(status(429).code(), ErrorCode::ResourceExhausted);
        assert_eq!(status(503).code(), ErrorCode::Unavailable);
        assert_eq!(status(400).code(), ErrorCode::InvalidArgument);
        assert_eq!(status(401).code(), ErrorCode::Internal);
        assert_eq!(LlmError::DeadlineExceeded.code(), ErrorCode::DeadlineExceeded);
    }
}
