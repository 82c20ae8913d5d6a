//! One error taxonomy for the whole system.
//!
//! Every failure that reaches a caller carries an [`ErrorCode`]; the code maps
//! once to an HTTP status, a gRPC status (in the gateway, which owns tonic) and
//! a proto code on the bus.

use clawhive_proto::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    DeadlineExceeded,
    ResourceExhausted,
    Unavailable,
    Conflict,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
        }
    }

    /// Whether a request that failed with this code is worth retrying later.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Internal)
    }
}

impl From<ErrorCode> for pb::ErrorCode {
    fn from(c: ErrorCode) -> Self {
        match c {
            ErrorCode::InvalidArgument => pb::ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated => pb::ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied => pb::ErrorCode::PermissionDenied,
            ErrorCode::NotFound => pb::ErrorCode::NotFound,
            ErrorCode::DeadlineExceeded => pb::ErrorCode::DeadlineExceeded,
            ErrorCode::ResourceExhausted => pb::ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable => pb::ErrorCode::Unavailable,
            ErrorCode::Conflict => pb::ErrorCode::Conflict,
            ErrorCode::Internal => pb::ErrorCode::Internal,
        }
    }
}

impl From<pb::ErrorCode> for ErrorCode {
    fn from(c: pb::ErrorCode) -> Self {
        match c {
            pb::ErrorCode::InvalidArgument => ErrorCode::InvalidArgument,
            pb::ErrorCode::Unauthenticated => ErrorCode::Unauthenticated,
            pb::ErrorCode::PermissionDenied => ErrorCode::PermissionDenied,
            pb::ErrorCode::NotFound => ErrorCode::NotFound,
            pb::ErrorCode::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            pb::ErrorCode::ResourceExhausted => ErrorCode::ResourceExhausted,
            pb::ErrorCode::Unavailable => ErrorCode::Unavailable,
            pb::ErrorCode::Conflict => ErrorCode::Conflict,
            pb::ErrorCode::Internal | pb::ErrorCode::Unspecified => ErrorCode::Internal,
        }
    }
}

/// An error meant for the caller: a code and a one-line, human-readable reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{code:?}: {message}")]
pub struct ClawError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClawError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn deadline(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::DeadlineExceeded, message)
    }
}

impl From<&ClawError> for pb::Error {
    fn from(e: &ClawError) -> Self {
        pb::Error { code: pb::ErrorCode::from(e.code) as i32, message: e.message.clone() }
    }
}

impl From<&pb::Error> for ClawError {
    fn from(e: &pb::Error) -> Self {
        let code = pb::ErrorCode::try_from(e.code).unwrap_or(pb::ErrorCode::Internal);
        ClawError { code: code.into(), message: e.message.clone() }
    }
}

impl From<crate::ids::IdError> for ClawError {
    fn from(e: crate::ids::IdError) -> Self {
        ClawError::invalid(e.to_string())
    }
}
