//! `ApiError`: every REST error as JSON `{code, message}`, with generic text for server
//! faults (logged, never shown) and `WWW-Authenticate` on 401.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Serialize, ToSchema, Debug)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `forbidden`, `not_found`, `invalid`,
    /// `invalid_document`, `invalid_settings`, `conflict`, `too_large`, `unsupported_media_type`, `internal`.
    pub code: &'static str,
    /// For humans; never contains internals.
    pub message: String,
    /// For `invalid_document` and `invalid_settings`: every problem found, each with
    /// where it is (a JSON pointer, or a settings path like `authentication.methods[0].issuer`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemBody>,
}

/// One problem in a submitted document.
#[derive(Serialize, ToSchema, Debug)]
pub struct ProblemBody {
    /// JSON pointer into the document; empty for the document as a whole.
    pub pointer: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound(String),
    Invalid(String),
    Conflict(String),
    TooLarge(String),
    UnsupportedMediaType(&'static str),
    /// A document (OpenAPI) with located problems.
    InvalidDocument(Vec<store::openapi::ImportProblem>),
    /// A settings document (protection, class corrections) with problems at their paths.
    InvalidSettings(Vec<store::protection::SettingProblem>),
    Internal,
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        use store::StoreError;
        match error {
            StoreError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            StoreError::Conflict { field } => ApiError::Conflict(format!("{field} is already taken")),
            StoreError::Invalid { field, message } => ApiError::Invalid(format!("{field}: {message}")),
            StoreError::Settings(problems) => ApiError::InvalidSettings(problems),
            internal => {
                tracing::error!(error = %internal, "REST request failed");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problems = Vec::new();
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API token is required: Authorization: Bearer <token>".to_owned(),
            ),
            ApiError::Forbidden => {
                (StatusCode::FORBIDDEN, "forbidden", "your role does not allow this".to_owned())
            }
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            ApiError::Invalid(message) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "conflict", message),
            ApiError::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", message),
            ApiError::UnsupportedMediaType(message) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message.to_owned())
            }
            ApiError::InvalidDocument(found) => {
                let message = match found.first() {
                    Some(first) => format!("the document has {} problem(s); the first: {first}", found.len()),
                    None => "the document is not valid".to_owned(),
                };
                problems = found
                    .into_iter()
                    .map(|p| ProblemBody { pointer: p.pointer, line: p.line, column: p.column, message: p.message })
                    .collect();
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", message)
            }
            ApiError::InvalidSettings(found) => {
                let message = match found.first() {
                    Some(first) => format!("the settings have {} problem(s); the first: {first}", found.len()),
                    None => "the settings are not valid".to_owned(),
                };
                problems = found
                    .into_iter()
                    .map(|p| ProblemBody { pointer: p.path, line: None, column: None, message: p.message })
                    .collect();
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_settings", message)
            }
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged".to_owned(),
            ),
        };
        let mut response = (status, Json(ErrorBody { code, message, problems })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static(r#"Bearer realm="palisade""#));
        }
        response
    }
}
