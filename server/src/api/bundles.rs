//! `/api/v1/bundles`: compile the inventory into a signed draft (for every agent or a
//! canary label group), publish it with a reason, promote a canary, roll back, pin a label
//! group, rotate the bundle key; read the history, the pins, the trusted keys, the signed
//! artifacts and which revision agents with given labels run. Security and admins make
//! and publish; everyone signed in reads.

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
use store::bundles::{self, BundlePin, BundleRecord, Labels};
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
    pub target: Labels,
    /// `compiled`, or how it re-issues `reissue_of`: `rollback`, `promotion`, `pin`,
    /// `key_announcement`, `credentials`.
    pub origin: String,
    /// For a re-issue: the revision whose policy it carries.
    pub reissue_of: Option<i64>,
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
            origin: r.origin,
            reissue_of: r.reissue_of,
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

/// What a draft is for.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    /// Agent labels (a canary); absent or `{}`: every agent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub target: Labels,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The label group: agents with all of these labels.
    #[schema(value_type = Object)]
    pub labels: Labels,
    /// A published revision whose policy the group keeps.
    pub revision: i64,
    pub reason: String,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    pub reason: String,
    /// How long agents keep trusting the retiring key (hours; default 168, at most 720).
    pub overlap_hours: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedBody {
    pub key_id: String,
    /// The re-issues, signed by the retiring key, that announce the new one.
    pub announcements: Vec<BundleBody>,
}

#[derive(Serialize, ToSchema)]
pub struct PinBody {
    pub pin_id: i64,
    #[schema(value_type = Object)]
    pub labels: Labels,
    /// The re-issue the group's agents take.
    pub revision: i64,
    /// The revision whose policy it carries.
    pub pinned_to: i64,
    pub created_at: i64,
    pub created_by: String,
    pub reason: String,
}

impl From<BundlePin> for PinBody {
    fn from(p: BundlePin) -> Self {
        PinBody {
            pin_id: p.pin_id,
            labels: p.labels,
            revision: p.revision,
            pinned_to: p.pinned_to,
            created_at: p.created_at,
            created_by: p.created_by,
            reason: p.reason,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams, Debug)]
pub struct LabelsQuery {
    /// `k=v,k2=v2`: an agent's labels.
    #[serde(default)]
    pub labels: String,
}

#[derive(Deserialize, utoipa::IntoParams, Debug)]
pub struct ReasonQuery {
    #[serde(default)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeantForBody {
    /// `None` until something published reaches these labels.
    pub revision: Option<i64>,
    pub bundle: Option<BundleBody>,
}

/// Longest overlap a rotation may give the retiring key.
use publishing::{DEFAULT_OVERLAP_HOURS, MAX_OVERLAP_HOURS};

fn publisher(caller: Caller) -> Result<Principal, ApiError> {
    caller.require(|p| matches!(p.role, Role::Admin | Role::Security))
}

/// The reason a publish, rollback or promotion carries.
fn publication(body: Result<Json<Publication>, JsonRejection>) -> Result<Publication, ApiError> {
    body.map(|Json(publication)| publication).map_err(|rejection| ApiError::Invalid(rejection.body_text()))
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
    body: Option<Json<DraftRequest>>,
) -> Result<(StatusCode, Json<DraftBody>), ApiError> {
    let principal = publisher(caller)?;
    let target = body.map(|Json(request)| request.target).unwrap_or_default();
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    match publishing::create_draft(&state.db, &state.master, &target, &context).await? {
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
        (status = 200, description = "`{\"signature\":\"<hex>\",\"signed\":<canonical bundle>}`, byte for byte", content_type = "application/json"),
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
    let publication = publication(body)?;
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
    let publication = publication(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let record = publishing::rollback(&state.db, &state.master, revision, &publication.reason, &context).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}


/// Promotes a published canary to every agent: a new revision with its policy.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{revision}/promote",
    tag = "bundles",
    params(("revision" = i64, Path, description = "The published canary")),
    request_body = Publication,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The new revision, for every agent", body = BundleBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins promote", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
        (status = 422, description = "No reason, a draft, or not a canary", body = ErrorBody),
    )
)]
pub async fn promote_bundle(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<Publication>, JsonRejection>,
) -> Result<(StatusCode, Json<BundleBody>), ApiError> {
    let principal = publisher(caller)?;
    let revision = revision(path)?;
    let publication = publication(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let record = publishing::promote(&state.db, &state.master, revision, &publication.reason, &context).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Label pins, most specific group first.
#[utoipa::path(
    get,
    path = "/api/v1/bundles/pins",
    tag = "bundles",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Every pin", body = Vec<PinBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_pins(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<PinBody>>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(bundles::list_pins(&state.db).await?.into_iter().map(Into::into).collect()))
}

/// Pins a label group to a published revision's policy: re-issued for the group as a new
/// revision, kept whatever is published later until the pin is released. Pinning a group
/// again moves its pin.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/pins",
    tag = "bundles",
    request_body = PinRequest,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The re-issue the group now runs", body = BundleBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins pin", body = ErrorBody),
        (status = 404, description = "No such revision", body = ErrorBody),
        (status = 422, description = "No labels, bad labels, a draft, or no reason", body = ErrorBody),
    )
)]
pub async fn create_pin(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<PinRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BundleBody>), ApiError> {
    let principal = publisher(caller)?;
    let Json(pin) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let record = publishing::pin(&state.db, &state.master, &pin.labels, pin.revision, &pin.reason, &context).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Releases a pin: the group's agents follow the next publish that reaches them.
#[utoipa::path(
    delete,
    path = "/api/v1/bundles/pins/{pin_id}",
    tag = "bundles",
    params(("pin_id" = i64, Path, description = "The pin"), ReasonQuery),
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "The released pin", body = PinBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins release pins", body = ErrorBody),
        (status = 404, description = "No such pin", body = ErrorBody),
        (status = 422, description = "No reason", body = ErrorBody),
    )
)]
pub async fn release_pin(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    query: Result<axum::extract::Query<ReasonQuery>, axum::extract::rejection::QueryRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<Json<PinBody>, ApiError> {
    let principal = publisher(caller)?;
    let pin_id = path.map(|Path(id)| id).map_err(|_| ApiError::NotFound("pin".into()))?;
    let axum::extract::Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    Ok(Json(bundles::unpin(&state.db, pin_id, &query.reason, &context).await?.into()))
}

/// Which published revision an agent with these labels runs: its group's pin, else the
/// newest bundle whose target it matches.
#[utoipa::path(
    get,
    path = "/api/v1/bundles/meant-for",
    tag = "bundles",
    params(LabelsQuery),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The revision, if any", body = MeantForBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 422, description = "Labels not written as k=v,k2=v2", body = ErrorBody),
    )
)]
pub async fn meant_for(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<LabelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MeantForBody>, ApiError> {
    caller.require(|_| true)?;
    let axum::extract::Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let labels = store::parse_labels(&query.labels).map_err(|message| ApiError::Invalid(format!("labels: {message}")))?;
    let record = bundles::revision_for(&state.db, &labels).await?;
    Ok(Json(MeantForBody { revision: record.as_ref().map(|r| r.revision), bundle: record.map(Into::into) }))
}

/// The bundle keys agents should trust now (the active key, and retiring keys until their
/// overlap ends).
#[utoipa::path(
    get,
    path = "/api/v1/bundles/keys",
    tag = "bundles",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "`[{\"key_id\", \"public_key\", \"trusted_until\"}]`", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn bundle_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<policy::bundle::AnnouncedKey>>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(publishing::announced_keys(&state.db).await?))
}

/// Rotates the bundle-signing key without restarting agents: what each agent group runs
/// now is re-issued, signed by the retiring key, announcing the new one; the retiring key
/// stays trusted for the overlap.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/keys/rotate",
    tag = "bundles",
    request_body = KeyRotation,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The new key and the announcements", body = RotatedBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins rotate the bundle key", body = ErrorBody),
        (status = 422, description = "No reason, or an overlap out of range", body = ErrorBody),
    )
)]
pub async fn rotate_bundle_key(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<KeyRotation>, JsonRejection>,
) -> Result<(StatusCode, Json<RotatedBody>), ApiError> {
    let principal = publisher(caller)?;
    let Json(rotation) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let hours = rotation.overlap_hours.unwrap_or(DEFAULT_OVERLAP_HOURS);
    if !(1..=MAX_OVERLAP_HOURS).contains(&hours) {
        return Err(ApiError::Invalid(format!("overlap_hours: from 1 to {MAX_OVERLAP_HOURS}")));
    }
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let (key_id, announced) = publishing::rotate_key(&state.db, &state.master, hours * 3_600_000, &rotation.reason, &context).await?;
    Ok((StatusCode::CREATED, Json(RotatedBody { key_id, announcements: announced.into_iter().map(Into::into).collect() })))
}
