//! `/api/v1/apis/{id}/protection` and the per-operation routes under it: how an API and
//! each operation are protected (authentication, L1–L4, rate limits), and owners'
//! corrections to detected data classes. Everyone signed in reads; the owning team's
//! developers, security and admins change.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use store::audit::Actor;
use store::protection::ClassEdits;
use store::{ApiDetail, ApiId, Principal, Protection, apis, settings};
use utoipa::ToSchema;

type PathRejection = axum::extract::rejection::PathRejection;
type JsonRejection = axum::extract::rejection::JsonRejection;

/// One operation's override and what applies to it.
#[derive(Serialize, ToSchema)]
pub struct OperationProtectionBody {
    pub id: i64,
    pub method: String,
    pub path: String,
    /// The operation's own settings; parts it leaves out come from the API.
    #[serde(rename = "override")]
    #[schema(value_type = Object)]
    pub overrides: serde_json::Value,
    /// What applies: each part of the override, else the API's.
    #[schema(value_type = Object)]
    pub effective: serde_json::Value,
}

/// An API's protection and each operation's.
#[derive(Serialize, ToSchema)]
pub struct ProtectionBody {
    pub api_id: i64,
    /// `{authentication, network, requestor, data, consent, rate_limits, enforcement}`, each optional.
    #[schema(value_type = Object)]
    pub protection: serde_json::Value,
    pub operations: Vec<OperationProtectionBody>,
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl From<ApiDetail> for ProtectionBody {
    fn from(api: ApiDetail) -> Self {
        let operations = api
            .operations
            .iter()
            .map(|operation| OperationProtectionBody {
                id: operation.id,
                method: operation.method.clone(),
                path: operation.path.clone(),
                overrides: json(&operation.protection),
                effective: json(&Protection::effective(&api.protection, &operation.protection)),
            })
            .collect();
        ProtectionBody { api_id: api.summary.id.0, protection: json(&api.protection), operations }
    }
}

/// Reads a JSON body as `T`, naming the offending place when it does not fit.
fn document<T: serde::de::DeserializeOwned>(body: Result<Json<serde_json::Value>, JsonRejection>) -> Result<T, ApiError> {
    let Json(value) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    serde_json::from_value(value).map_err(|error| ApiError::Invalid(format!("the document does not fit: {error}")))
}

/// The caller, when they may change what the API's team owns.
async fn owner_of(state: &AppState, caller: Caller, api: ApiId) -> Result<Principal, ApiError> {
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let owner = apis::find_owner(&state.db, api).await?;
    if principal.can_change_owned_by(owner) { Ok(principal) } else { Err(ApiError::Forbidden) }
}

fn api_id(id: Result<Path<i64>, PathRejection>) -> Result<ApiId, ApiError> {
    id.map(|Path(id)| ApiId(id)).map_err(|_| ApiError::NotFound("API".into()))
}

fn ids(ids: Result<Path<(i64, i64)>, PathRejection>) -> Result<(ApiId, i64), ApiError> {
    ids.map(|Path((api, operation))| (ApiId(api), operation)).map_err(|_| ApiError::NotFound("operation".into()))
}

/// An API's protection and every operation's override and effective settings.
#[utoipa::path(
    get,
    path = "/api/v1/apis/{id}/protection",
    tag = "protection",
    params(("id" = i64, Path, description = "The API's id")),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The API's protection", body = ProtectionBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such API", body = ErrorBody),
    )
)]
pub async fn get_protection(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ProtectionBody>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(apis::find_api(&state.db, api_id(id)?).await?.into()))
}

/// Replaces an API's protection. The document is checked whole: every problem comes
/// back at once, with its path, and nothing changes.
#[utoipa::path(
    put,
    path = "/api/v1/apis/{id}/protection",
    tag = "protection",
    params(("id" = i64, Path, description = "The API's id")),
    request_body(description = "`{authentication, network, requestor, data, consent, rate_limits, enforcement}`, each optional", content = Object),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "The API's protection as it is now", body = ProtectionBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The API belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such API", body = ErrorBody),
        (status = 422, description = "The document has problems; each has its path", body = ErrorBody),
    )
)]
pub async fn put_protection(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ProtectionBody>, ApiError> {
    let api = api_id(id)?;
    let principal = owner_of(&state, caller, api).await?;
    let protection: Protection = document(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    Ok(Json(settings::update_api_protection(&state.db, api, &protection, &context).await?.into()))
}

/// Replaces one operation's override of the API's protection (`{}` inherits all).
#[utoipa::path(
    put,
    path = "/api/v1/apis/{id}/operations/{operation_id}/protection",
    tag = "protection",
    params(("id" = i64, Path, description = "The API's id"), ("operation_id" = i64, Path, description = "The operation's id")),
    request_body(description = "The same shape as the API's protection; parts left out are inherited", content = Object),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "The API's protection as it is now", body = ProtectionBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The API belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such API or operation", body = ErrorBody),
        (status = 422, description = "The document has problems; each has its path", body = ErrorBody),
    )
)]
pub async fn put_operation_protection(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(i64, i64)>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ProtectionBody>, ApiError> {
    let (api, operation) = ids(path)?;
    let principal = owner_of(&state, caller, api).await?;
    let protection: Protection = document(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    Ok(Json(settings::update_operation_protection(&state.db, api, operation, &protection, &context).await?.into()))
}

/// One operation's data-class corrections and the classes that result.
#[derive(Serialize, ToSchema)]
pub struct ClassEditsBody {
    #[schema(value_type = Object)]
    pub class_edits: serde_json::Value,
    pub data_classes: Vec<super::apis::DataClassBody>,
}

/// Replaces one operation's corrections to its detected data classes: `added` and
/// `removed` lists of `{class, direction, field}`. They survive re-imports.
#[utoipa::path(
    put,
    path = "/api/v1/apis/{id}/operations/{operation_id}/data-classes",
    tag = "protection",
    params(("id" = i64, Path, description = "The API's id"), ("operation_id" = i64, Path, description = "The operation's id")),
    request_body(description = "`{added: [{class, direction, field}], removed: [...]}`", content = Object),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "The corrections and the operation's classes with them applied", body = ClassEditsBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The API belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such API or operation", body = ErrorBody),
        (status = 422, description = "Unknown classes, directions or empty fields; each has its path", body = ErrorBody),
    )
)]
pub async fn put_class_edits(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(i64, i64)>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ClassEditsBody>, ApiError> {
    let (api, operation) = ids(path)?;
    let principal = owner_of(&state, caller, api).await?;
    let edits: ClassEdits = document(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let detail = settings::update_class_edits(&state.db, api, operation, &edits, &context).await?;
    let operation = detail.operations.into_iter().find(|o| o.id == operation).ok_or(ApiError::NotFound("operation".into()))?;
    Ok(Json(ClassEditsBody {
        class_edits: json(&operation.class_edits),
        data_classes: operation
            .data_classes
            .into_iter()
            .map(|hit| super::apis::DataClassBody { class: hit.class, direction: hit.direction, field: hit.field })
            .collect(),
    }))
}
