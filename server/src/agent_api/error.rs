//! `AgentError`: every agent-API refusal as JSON `{code, message}`, the same shape as the
//! REST API's, with a stable code the agent acts on (`agent_revoked`, `replayed_call`, …)
//! and `Retry-After` on backpressure.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

#[derive(Debug)]
pub struct AgentError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl AgentError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> AgentError {
        AgentError { status, code, message: message.into(), retry_after: None }
    }

    /// A signed call that does not authenticate. One answer for an unknown agent and a bad
    /// signature, so the answer tells a prober nothing.
    pub fn bad_signature() -> AgentError {
        AgentError::new(StatusCode::UNAUTHORIZED, "bad_signature", "the call is not signed by an enrolled agent")
    }

    pub fn invalid(message: impl Into<String>) -> AgentError {
        AgentError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn busy(retry_after: u64) -> AgentError {
        AgentError {
            retry_after: Some(retry_after),
            ..AgentError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "the control plane is busy: retry later")
        }
    }

    pub fn internal() -> AgentError {
        AgentError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; it has been logged")
    }
}

impl From<store::StoreError> for AgentError {
    fn from(error: store::StoreError) -> Self {
        use store::StoreError;
        match error {
            StoreError::NotFound(what) => AgentError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            StoreError::Conflict { field } => AgentError::new(StatusCode::CONFLICT, "conflict", format!("{field} is already taken")),
            StoreError::Invalid { field, message } => AgentError::invalid(format!("{field}: {message}")),
            internal => {
                tracing::error!(error = %internal, "agent API request failed");
                AgentError::internal()
            }
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Body { code: self.code, message: &self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(policy::agent_api::SCHEME));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
