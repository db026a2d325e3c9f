//! The bearer-token extractor: who is calling the REST API.

use super::ApiError;
use app::state::AppState;
use axum::extract::FromRequestParts;
use http::header;
use http::request::Parts;
use store::{Principal, tokens};

/// The principal behind a valid `Authorization: Bearer` API token.
pub struct Caller(pub Principal);

impl Caller {
    /// The caller, if `allowed` admits them; 403 otherwise.
    pub fn require(self, allowed: impl Fn(&Principal) -> bool) -> Result<Principal, ApiError> {
        if allowed(&self.0) { Ok(self.0) } else { Err(ApiError::Forbidden) }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        tokens::authenticate_token(&state.db, token.trim())
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}
