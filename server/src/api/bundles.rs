//! `/api/v1/bundles`: compile the inventory into a signed draft, publish it with a
//! reason, roll back, and read the history and the signed artifacts. Security and admins
//! make and publish; everyone signed in reads.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::publishing::ssr as publishing;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::audit::Actor;
use store::bundles::{self, BundleRecord};
use store::protection::SettingProblem;
use store::{Principal, Role};
use utoipa::ToSchema;

type PathRejection = axum::extract::rejection::PathRejection;
type JsonRejection = axum::extract::rejection::JsonRejection;

#[derive(Serialize, ToSchema)]
pub struct BundleBody {
    pub revision: i64,
    pub created_at: i64,
    pub created_by: String,
    /// SHA-256 of the policy's canonical encoding.
    pub content_hash: String,
    pub signing_key_id: String,
    /// Agent labels it is meant for; `{}` is every agent.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// For a rollback: the revision it re-issues.
    pub rollback_of: Option<i64>,
    /// `{"apis": n, "routes": n}`.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// `None` for a draft.
    pub published_at: Option<i64>,
    pub published_by: Option<String>,
    pub reason: Option<String>,
}

impl From<BundleRecord> for BundleBody {
    fn from(r: BundleRecord) -> Self {
        BundleBody {
            revision: r.revision,
            created_at: r.created_at,
            created_by: r.created_by,
            content_hash: r.content_hash,
            signing_key_id: r.signing_key_id,
            target: r.target,
            rollback_of: r.rollback_of,
            summary: r.summary,
            published_at: r.published_at,
            published_by: r.published_by,
            reason: r.reason,
        }
    }
}

/// A new draft and what it changes against the active revision.
#[derive(Serialize, ToSchema)]
pub struct DraftBody {
    pub bundle: BundleBody,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// Why: kept in the revision history and the audit trail.
    pub reason: String,
}

fn publisher(caller: Caller) -> Result<Principal, ApiError> {
    caller.require(|p| matches!(p.role, Role::Admin | Role::Security))
}

fn revision(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(revision)| revision).map_err(|_| ApiError::NotFound("bundle revision".into()))
}

/// Compiles the inventory into a signed draft revision. Problems come back all at once,
/// each at the path of the setting that causes it, and nothing is stored.
#[utoipa::path(
    post,
    path = "/api/v1/bundles",
    tag = "bundles",
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The draft and its diff against the active revision", body = DraftBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins make bundles", body = ErrorBody),
        (status = 422, description = "The settings have problems; each has its path", body = ErrorBody),
    )
)]
pub async fn create_bundle(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<(StatusCode, Json<DraftBody>), ApiError> {
    let principal = publisher(caller)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    match publishing::create_draft(&state.db, &state.master, &context).await? {
        Ok((record, diff)) => Ok((
            StatusCode::CREATED,
            Json(DraftBody { bundle: record.into(), added: diff.added, removed: diff.removed, changed: diff.changed }),
        )),
        Err(diagnostics) => Err(ApiError::InvalidSettings(
            diagnostics.into_iter().map(|d| SettingProblem { path: d.path, message: d.message }).collect(),
        )),
    }
}

/// Every revision, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/bundles",
    tag = "bundles",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The revision history", body = Vec<BundleBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_bundles(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<BundleBody>>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(bundles::list_bundles(&state.db).await?.into_iter().map(Into::into).collect()))
}

/// The signed artifact of a revision, exactly as agents receive it.
#[utoipa::path(
    get,
    path = "/api/v1/bundles/{revision}",
    tag = "bundles",
    params(("revision" = i64, Path, description = "The revision")),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "`{\"signed\": \"<canonical bundle>\", \"signature\": \"<hex>\"}`", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
    )
)]
pub async fn get_bundle(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(|_| true)?;
    let signed = bundles::find_signed(&state.db, revision(path)?).await?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], signed).into_response())
}

/// Publishes a draft to every agent. A draft older than the active revision is refused.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{revision}/publish",
    tag = "bundles",
    params(("revision" = i64, Path, description = "The draft's revision")),
    request_body = Publication,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "The published revision", body = BundleBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins publish", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
        (status = 422, description = "No reason, already published, or older than the active revision", body = ErrorBody),
    )
)]
pub async fn publish_bundle(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<Publication>, JsonRejection>,
) -> Result<Json<BundleBody>, ApiError> {
    let principal = publisher(caller)?;
    let revision = revision(path)?;
    let Json(publication) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    Ok(Json(bundles::publish_bundle(&state.db, revision, &publication.reason, &context).await?.into()))
}

/// Rolls back: re-issues an earlier revision's policy as a new published revision (so
/// agents, which refuse older revisions, take it).
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{revision}/rollback",
    tag = "bundles",
    params(("revision" = i64, Path, description = "The revision to return to")),
    request_body = Publication,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The new revision", body = BundleBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins roll back", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
        (status = 422, description = "No reason given", body = ErrorBody),
    )
)]
pub async fn rollback_bundle(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<Publication>, JsonRejection>,
) -> Result<(StatusCode, Json<BundleBody>), ApiError> {
    let principal = publisher(caller)?;
    let revision = revision(path)?;
    let Json(publication) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let record = publishing::rollback(&state.db, &state.master, revision, &publication.reason, &context).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}
