//! `/api/v1/agents`: enrollment tokens (made and revoked by security and admins; the secret
//! shown once), the fleet with what each agent runs against what it is meant to run,
//! revocation, and how a publish converged. Everyone signed in reads the fleet.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::agents::{self, EnrollmentToken};
use store::audit::Actor;
use store::{Convergence, FleetAgent, Labels, Principal, Role, agent_reports};
use utoipa::ToSchema;

type PathRejection = axum::extract::rejection::PathRejection;
type JsonRejection = axum::extract::rejection::JsonRejection;

/// An hour unless said otherwise.
const DEFAULT_TOKEN_MINUTES: i64 = 60;

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenRequest {
    /// Labels the enrolled agent gets, e.g. `{"env": "prod", "region": "eu"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub labels: Labels,
    /// The agent's name; otherwise the one it asks for, else `agent-<id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// How long the token stays usable: 1 to 10,080 minutes (7 days); 60 by default.
    #[serde(default)]
    pub expires_minutes: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentTokenBody {
    pub id: i64,
    #[schema(value_type = Object)]
    pub labels: Labels,
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub agent_id: Option<i64>,
}

impl From<EnrollmentToken> for EnrollmentTokenBody {
    fn from(t: EnrollmentToken) -> Self {
        EnrollmentTokenBody {
            id: t.id,
            labels: t.labels,
            name: t.name,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            used_at: t.used_at,
            revoked_at: t.revoked_at,
            agent_id: t.agent_id,
        }
    }
}

/// A new token: `token` is shown this once and never stored.
#[derive(Serialize, ToSchema)]
pub struct CreatedEnrollmentToken {
    pub token: String,
    pub enrollment_token: EnrollmentTokenBody,
}

#[derive(Serialize, ToSchema)]
pub struct AgentBody {
    pub id: i64,
    pub name: String,
    #[schema(value_type = Object)]
    pub labels: Labels,
    pub version: String,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `healthy`, `degraded` (reports an error), `pending` (no heartbeat yet), `offline`
    /// (silent for 30 s) or `revoked`.
    pub health: String,
    /// The revision it reports running.
    pub active_revision: Option<i64>,
    /// The revision meant for its labels.
    pub meant_revision: Option<i64>,
    /// Runs something other than what is meant for it.
    pub drift: bool,
    /// Its last heartbeat: bundle hash, last error, uptime, counters, spooled decisions.
    #[schema(value_type = Option<Object>)]
    pub status: Option<store::AgentStatus>,
}

impl From<FleetAgent> for AgentBody {
    fn from(fleet: FleetAgent) -> Self {
        let drift = fleet.drifted();
        let a = fleet.agent;
        AgentBody {
            id: a.id,
            name: a.name,
            labels: a.labels,
            version: a.version,
            enrolled_at: a.enrolled_at,
            last_seen_at: a.last_seen_at,
            revoked_at: a.revoked_at,
            health: fleet.health.as_str().to_owned(),
            active_revision: a.status.as_ref().and_then(|status| status.active_revision),
            meant_revision: fleet.meant_revision,
            drift,
            status: a.status,
        }
    }
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Why the agent is cut off; kept in the audit trail.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConvergenceBody {
    pub revision: i64,
    pub published_at: i64,
    /// Agents it was meant for when published.
    pub targets: u64,
    /// Milliseconds after the publish at which each target agent first ran it.
    pub reached_after: Vec<i64>,
    /// Percent of targets running it 1 s, 5 s, 30 s and 5 min after the publish, and now.
    pub percent_1s: u8,
    pub percent_5s: u8,
    pub percent_30s: u8,
    pub percent_5min: u8,
    pub percent_now: u8,
}

impl From<Convergence> for ConvergenceBody {
    fn from(c: Convergence) -> Self {
        ConvergenceBody {
            percent_1s: c.percent_within(1_000),
            percent_5s: c.percent_within(5_000),
            percent_30s: c.percent_within(30_000),
            percent_5min: c.percent_within(300_000),
            percent_now: c.percent_within(i64::MAX),
            revision: c.revision,
            published_at: c.published_at,
            targets: c.targets,
            reached_after: c.reached_after,
        }
    }
}

fn fleet_manager(caller: Caller) -> Result<Principal, ApiError> {
    caller.require(|p| matches!(p.role, Role::Admin | Role::Security))
}

fn id_of(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(id)| id).map_err(|_| ApiError::Invalid("the id must be a number".into()))
}

fn body_of<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body).map_err(|rejection| ApiError::Invalid(rejection.body_text()))
}

/// Makes an enrollment token (single use, expiring). Security and admins.
#[utoipa::path(
    post,
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    request_body = EnrollmentTokenRequest,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The token (shown once) and its record", body = CreatedEnrollmentToken),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins enroll agents", body = ErrorBody),
        (status = 422, description = "Bad labels, name or expiry", body = ErrorBody),
    )
)]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<EnrollmentTokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let principal = fleet_manager(caller)?;
    let request = body_of(body)?;
    let minutes = request.expires_minutes.unwrap_or(DEFAULT_TOKEN_MINUTES);
    if !(1..=10_080).contains(&minutes) {
        return Err(ApiError::Invalid("expires_minutes: from 1 to 10080 (7 days)".into()));
    }
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let (token, secret) =
        agents::create_enrollment_token(&state.db, &request.labels, request.name.as_deref(), minutes * 60_000, &context).await?;
    Ok((StatusCode::CREATED, Json(CreatedEnrollmentToken { token: secret, enrollment_token: token.into() })).into_response())
}

/// Every enrollment token, newest first (never the secrets). Security and admins.
#[utoipa::path(
    get,
    path = "/api/v1/agents/enrollment-tokens",
    tag = "agents",
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "The tokens", body = Vec<EnrollmentTokenBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins see enrollment tokens", body = ErrorBody),
    )
)]
pub async fn list_enrollment_tokens(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<EnrollmentTokenBody>>, ApiError> {
    fleet_manager(caller)?;
    Ok(Json(agents::list_enrollment_tokens(&state.db).await?.into_iter().map(Into::into).collect()))
}

/// Revokes an unused enrollment token. Security and admins.
#[utoipa::path(
    post,
    path = "/api/v1/agents/enrollment-tokens/{id}/revoke",
    tag = "agents",
    params(("id" = i64, Path, description = "The token's id")),
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "The revoked token", body = EnrollmentTokenBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins revoke tokens", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 422, description = "Already used or revoked", body = ErrorBody),
    )
)]
pub async fn revoke_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<Json<EnrollmentTokenBody>, ApiError> {
    let principal = fleet_manager(caller)?;
    let id = id_of(path)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    Ok(Json(agents::revoke_enrollment_token(&state.db, id, &context).await?.into()))
}

/// Every agent: labels, version, last seen, health, the revision it runs and the one meant
/// for it.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The fleet", body = Vec<AgentBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_agents(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<AgentBody>>, ApiError> {
    caller.require(|_| true)?;
    let fleet = agent_reports::fleet(&state.db, store::now_millis()).await?;
    Ok(Json(fleet.into_iter().map(Into::into).collect()))
}

/// Revokes an agent: it is refused from its next call on. Security and admins.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/revoke",
    tag = "agents",
    params(("id" = i64, Path, description = "The agent's id")),
    request_body = Revocation,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "The revoked agent", body = AgentBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins revoke agents", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 422, description = "No reason, or already revoked", body = ErrorBody),
    )
)]
pub async fn revoke_agent(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<Revocation>, JsonRejection>,
) -> Result<Json<AgentBody>, ApiError> {
    let principal = fleet_manager(caller)?;
    let id = id_of(path)?;
    let revocation = body_of(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    agents::revoke_agent(&state.db, id, &revocation.reason, &context).await?;
    let fleet = agent_reports::fleet(&state.db, store::now_millis()).await?;
    let agent = fleet.into_iter().find(|fleet| fleet.agent.id == id).ok_or_else(|| ApiError::NotFound("agent".into()))?;
    Ok(Json(agent.into()))
}

/// How a published revision reached the agents it was meant for.
#[utoipa::path(
    get,
    path = "/api/v1/bundles/{revision}/convergence",
    tag = "agents",
    params(("revision" = i64, Path, description = "A published revision")),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "When each target agent first ran it", body = ConvergenceBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
        (status = 422, description = "A draft", body = ErrorBody),
    )
)]
pub async fn bundle_convergence(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<ConvergenceBody>, ApiError> {
    caller.require(|_| true)?;
    let revision = id_of(path)?;
    Ok(Json(agent_reports::convergence(&state.db, revision).await?.into()))
}

#[derive(Deserialize, utoipa::IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct DecisionQuery {
    /// Only this agent's decisions.
    agent: Option<i64>,
    /// The `decision_log_id` of the last decision of the previous page.
    before: Option<i64>,
    /// Decisions per page, 1 to 1,000 (default 100).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionBody {
    pub id: i64,
    pub agent_id: i64,
    /// When the agent decided and when the control plane received it (Unix ms).
    pub decided_at: i64,
    pub received_at: i64,
    pub revision: Option<i64>,
    pub method: String,
    pub path: String,
    pub api_id: Option<i64>,
    pub operation_id: Option<i64>,
    /// `allow`, `deny` or `monitor`.
    pub outcome: String,
    pub status: i64,
    /// A denial's reason code.
    pub reason: Option<String>,
    pub source: String,
    pub caller: Option<String>,
    pub decision_micros: i64,
}

impl From<agent_reports::StoredDecision> for DecisionBody {
    fn from(d: agent_reports::StoredDecision) -> Self {
        DecisionBody {
            id: d.decision_log_id,
            agent_id: d.agent_id,
            decided_at: d.row.decided_at,
            received_at: d.received_at,
            revision: d.row.revision,
            method: d.row.method,
            path: d.row.path,
            api_id: d.row.api_id,
            operation_id: d.row.operation_id,
            outcome: d.row.outcome,
            status: d.row.status,
            reason: d.row.reason,
            source: d.row.source,
            caller: d.row.caller,
            decision_micros: d.row.decision_micros,
        }
    }
}

fn decision_reader(caller: Caller) -> Result<Principal, ApiError> {
    // Decisions name callers and their addresses: for security, auditors and admins.
    caller.require(|p| matches!(p.role, Role::Admin | Role::Security | Role::Auditor))
}

/// The decisions agents reported, newest first. Security, auditors and admins.
#[utoipa::path(
    get,
    path = "/api/v1/decisions",
    tag = "agents",
    params(DecisionQuery),
    security(("bearer" = ["admin", "security", "auditor"])),
    responses(
        (status = 200, description = "A page of decisions", body = Vec<DecisionBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Developers do not read decision logs", body = ErrorBody),
        (status = 422, description = "A filter is out of range", body = ErrorBody),
    )
)]
pub async fn list_decisions(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<DecisionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<DecisionBody>>, ApiError> {
    decision_reader(caller)?;
    let axum::extract::Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::Invalid("limit must be between 1 and 1000".into()));
    }
    let decisions = agent_reports::list_decisions(&state.db, query.agent, query.before, limit).await?;
    Ok(Json(decisions.into_iter().map(Into::into).collect()))
}

/// Routes callers used that no API declares (denied by agents as `undeclared_route`) in
/// the last 7 days, most requested first: candidate shadow APIs to register or shut.
#[utoipa::path(
    get,
    path = "/api/v1/decisions/undeclared-routes",
    tag = "agents",
    security(("bearer" = ["admin", "security", "auditor"])),
    responses(
        (status = 200, description = "Undeclared routes with request and agent counts", body = Vec<Object>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Developers do not read decision logs", body = ErrorBody),
    )
)]
pub async fn list_undeclared_routes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<agent_reports::UndeclaredRoute>>, ApiError> {
    decision_reader(caller)?;
    let since = store::now_millis() - 7 * 24 * 3_600_000;
    Ok(Json(agent_reports::list_undeclared_routes(&state.db, since, 200).await?))
}
