//! Authenticating a signed agent call: the signature must be the enrolled agent's, the
//! agent not revoked, the time close to ours, the nonce never seen, and the agent the one
//! the path names. Checked in that order so nothing is revealed before the signature holds.

use super::AgentError;
use app::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use policy::agent_api::{MAX_CLOCK_SKEW_MILLIS, SignedCall};
use store::agents::{self, Agent};
use store::{Db, StoreError, agent_reports, now_millis};

/// The agent behind a signed call to `/agent/v1/agents/{path_agent}/…`.
async fn authenticate(
    db: &Db,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    path_agent: i64,
) -> Result<Agent, AgentError> {
    let call = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(SignedCall::parse)
        .ok_or_else(|| {
            AgentError::new(StatusCode::UNAUTHORIZED, "unsigned_call", "sign the call: Authorization: Palisade-Agent id=…,ts=…,nonce=…,sig=…")
        })?;
    let agent = match agents::find_agent(db, call.agent_id).await {
        Ok(agent) => agent,
        Err(StoreError::NotFound(_)) => return Err(AgentError::bad_signature()),
        Err(error) => return Err(error.into()),
    };
    let target = uri.path_and_query().map_or_else(|| uri.path(), |target| target.as_str());
    if !call.verify(&agent.public_key, method.as_str(), target, body) {
        return Err(AgentError::bad_signature());
    }
    if agent.revoked_at.is_some() {
        return Err(AgentError::new(StatusCode::UNAUTHORIZED, "agent_revoked", "this agent has been revoked: enroll it again"));
    }
    if (now_millis() - call.timestamp_millis).abs() > MAX_CLOCK_SKEW_MILLIS {
        return Err(AgentError::new(
            StatusCode::UNAUTHORIZED,
            "stale_call",
            "the call's time is more than 5 minutes from the control plane's: check the agent's clock",
        ));
    }
    if !agent_reports::spend_nonce(db, agent.id, &call.nonce).await? {
        return Err(AgentError::new(StatusCode::UNAUTHORIZED, "replayed_call", "this call was made before"));
    }
    if agent.id != path_agent {
        return Err(AgentError::new(StatusCode::FORBIDDEN, "not_your_agent", "an agent may only act as itself"));
    }
    Ok(agent)
}

/// A signed call to `/agent/v1/agents/{id}/…`, authenticated: the agent, the request's
/// headers and its body (read whole, up to the batch bound, since the signature covers it).
pub struct SignedRequest {
    pub agent: Agent,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = AgentError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AgentError> {
        let (mut parts, body) = request.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| AgentError::invalid("the agent id must be a positive number"))?;
        let id = id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| AgentError::invalid("the agent id must be a positive number"))?;
        let body = axum::body::to_bytes(body, policy::agent_api::MAX_BATCH_BYTES)
            .await
            .map_err(|_| AgentError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is over 1 MiB"))?;
        let agent = authenticate(&state.db, &parts.method, &parts.uri, &parts.headers, &body, id).await?;
        Ok(SignedRequest { agent, headers: parts.headers, body })
    }
}
