//! `/api/v1/apis`: the API inventory for CI and tools. Registration and re-import take the
//! OpenAPI document itself as the request body (JSON or YAML by `Content-Type`). Everyone
//! signed in reads the inventory; developers change only their teams' APIs, security and
//! admins any, auditors none.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::audit::Actor;
use store::openapi::{self, Format, ImportedSpec};
use store::{ApiDetail, ApiId, ApiSummary, Operation, SpecDiff, apis};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ApiSummaryBody {
    pub id: i64,
    pub name: String,
    pub team_id: i64,
    pub team_name: String,
    pub environment: String,
    pub version: String,
    /// `active`, `deprecated` or `retired`.
    pub lifecycle: String,
    /// Unix milliseconds.
    pub sunset_at: Option<i64>,
    pub operation_count: i64,
    pub updated_at: i64,
    /// Every data class its operations receive or return.
    pub data_classes: Vec<String>,
}

impl From<ApiSummary> for ApiSummaryBody {
    fn from(api: ApiSummary) -> Self {
        ApiSummaryBody {
            id: api.id.0,
            name: api.name,
            team_id: api.team_id.0,
            team_name: api.team_name,
            environment: api.environment,
            version: api.version,
            lifecycle: api.lifecycle.as_str().to_owned(),
            sunset_at: api.sunset_at,
            operation_count: api.operation_count,
            updated_at: api.updated_at,
            data_classes: api.data_classes,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OperationBody {
    pub id: i64,
    /// Upper case: `GET`.
    pub method: String,
    /// The path template: `/pets/{id}`.
    pub path: String,
    pub operation_id: Option<String>,
    pub summary: String,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    #[schema(value_type = Object)]
    pub request_body: serde_json::Value,
    #[schema(value_type = Object)]
    pub responses: serde_json::Value,
    /// The effective security requirement (the operation's, else the document's).
    #[schema(value_type = Object)]
    pub security: serde_json::Value,
    pub deprecated: bool,
    /// Fields that carry a data class: found in the schemas, with the owner's corrections.
    pub data_classes: Vec<DataClassBody>,
    /// The owner's corrections: `{added, removed}`.
    #[schema(value_type = Object)]
    pub class_edits: serde_json::Value,
    /// This operation's override of the API's protection (`{}`: all inherited).
    #[schema(value_type = Object)]
    pub protection: serde_json::Value,
}

/// A field of an operation that carries a data class.
#[derive(Serialize, ToSchema)]
pub struct DataClassBody {
    /// `email`, `payment_card`, … or a custom class from `x-data-class`.
    pub class: String,
    /// `request` or `response`.
    pub direction: String,
    /// Where: `query.phone`, `body.customer.email`, `200.body.items[].iban`.
    pub field: String,
}

impl From<Operation> for OperationBody {
    fn from(operation: Operation) -> Self {
        OperationBody {
            id: operation.id,
            method: operation.method,
            path: operation.path,
            operation_id: operation.operation_id,
            summary: operation.summary,
            parameters: operation.parameters,
            request_body: operation.request_body,
            responses: operation.responses,
            security: operation.security,
            deprecated: operation.deprecated,
            data_classes: operation
                .data_classes
                .into_iter()
                .map(|hit| DataClassBody { class: hit.class, direction: hit.direction, field: hit.field })
                .collect(),
            class_edits: serde_json::to_value(&operation.class_edits).unwrap_or_default(),
            protection: serde_json::to_value(&operation.protection).unwrap_or_default(),
        }
    }
}

/// A posture finding (OWASP API Security Top 10, 2023).
#[derive(Serialize, ToSchema)]
pub struct FindingBody {
    /// Stable id of the check: `object-id-without-object-rule`.
    pub rule: String,
    /// `API1:2023` …
    pub owasp: String,
    /// `high`, `medium` or `low`.
    pub severity: String,
    /// The operation concerned; absent for the API as a whole.
    pub operation: Option<String>,
    pub title: String,
    /// Dashboard path of the setting that fixes it.
    pub fix: String,
}

impl From<store::Finding> for FindingBody {
    fn from(finding: store::Finding) -> Self {
        FindingBody {
            rule: finding.rule,
            owasp: finding.owasp,
            severity: finding.severity.as_str().to_owned(),
            operation: finding.operation,
            title: finding.title,
            fix: finding.fix,
        }
    }
}

/// An API in the list, with its posture.
#[derive(Serialize, ToSchema)]
pub struct ApiListItem {
    #[serde(flatten)]
    pub summary: ApiSummaryBody,
    /// Posture score, 0–100.
    pub score: u8,
    pub high_findings: usize,
    pub medium_findings: usize,
    pub low_findings: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ApiBody {
    #[serde(flatten)]
    pub summary: ApiSummaryBody,
    /// Posture score, 0–100.
    pub score: u8,
    pub findings: Vec<FindingBody>,
    pub description: String,
    pub base_urls: Vec<String>,
    pub tags: Vec<String>,
    pub contacts: Vec<String>,
    pub openapi_version: String,
    /// SHA-256 of the imported document.
    pub spec_digest: String,
    pub created_at: i64,
    /// How the API is protected: `{authentication, network, requestor, data, consent,
    /// rate_limits, enforcement}`, each optional (see `/api/v1/apis/{id}/protection`).
    #[schema(value_type = Object)]
    pub protection: serde_json::Value,
    pub operations: Vec<OperationBody>,
}

impl ApiBody {
    fn new(api: ApiDetail, posture: store::ApiPosture) -> Self {
        ApiBody {
            summary: api.summary.into(),
            score: posture.score,
            findings: posture.findings.into_iter().map(Into::into).collect(),
            description: api.description,
            base_urls: api.base_urls,
            tags: api.tags,
            contacts: api.contacts,
            openapi_version: api.openapi_version,
            spec_digest: api.spec_digest,
            created_at: api.created_at,
            protection: serde_json::to_value(&api.protection).unwrap_or_default(),
            operations: api.operations.into_iter().map(Into::into).collect(),
        }
    }
}

/// What a re-import changed, by operation (`GET /pets/{id}`).
#[derive(Serialize, ToSchema)]
pub struct DiffBody {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl From<SpecDiff> for DiffBody {
    fn from(diff: SpecDiff) -> Self {
        DiffBody { added: diff.added, removed: diff.removed, changed: diff.changed }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReimportBody {
    pub diff: DiffBody,
    pub api: ApiBody,
}

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// Owning team, by id or name. Defaults to the token owner's team when they have one.
    team: Option<String>,
    /// `production` unless given.
    environment: Option<String>,
}

/// Reads the document body (up to the import limit, past the server's usual 1 MiB) and
/// parses it off the async runtime.
async fn read_document(request: Request) -> Result<(http::request::Parts, ImportedSpec), ApiError> {
    let (parts, body) = request.into_parts();
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let format = Format::from_content_type(content_type).ok_or(ApiError::UnsupportedMediaType(
        "send the OpenAPI document as application/json or application/yaml",
    ))?;
    let bytes = axum::body::to_bytes(body, openapi::MAX_DOCUMENT_BYTES).await.map_err(|_| {
        ApiError::TooLarge(format!("the document is larger than {} bytes", openapi::MAX_DOCUMENT_BYTES))
    })?;
    let spec = tokio::task::spawn_blocking(move || openapi::parse(&bytes, format))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(ApiError::InvalidDocument)?;
    Ok((parts, spec))
}

/// Registers an API from its OpenAPI document. Developers may register for their own
/// teams; security and admins for any.
#[utoipa::path(
    post,
    path = "/api/v1/apis",
    tag = "inventory",
    params(CreateQuery),
    request_body(description = "The OpenAPI 3.0 or 3.1 document", content((String = "application/json"), (String = "application/yaml"))),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 201, description = "The registered API with its operations", body = ApiBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not allowed to register APIs for that team", body = ErrorBody),
        (status = 404, description = "No such team", body = ErrorBody),
        (status = 409, description = "An API with that name exists in that environment", body = ErrorBody),
        (status = 413, description = "The document is over the size limit", body = ErrorBody),
        (status = 415, description = "Not JSON or YAML", body = ErrorBody),
        (status = 422, description = "The document has problems; each is located", body = ErrorBody),
    )
)]
pub async fn create_api(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<(StatusCode, Json<ApiBody>), ApiError> {
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let team = super::owning_team(&state, &principal, query.team.as_deref()).await?;
    if !principal.can_change_owned_by(team) {
        return Err(ApiError::Forbidden);
    }
    let (parts, spec) = read_document(request).await?;
    let context = audit_context_for(&parts.headers, &parts.extensions, Actor::token(&principal));
    let environment = query.environment.unwrap_or_else(|| "production".to_owned());
    let api = apis::create_api(&state.db, team, &environment, &spec, &context).await?;
    let posture = apis::posture_of(&state.db, &api).await?;
    Ok((StatusCode::CREATED, Json(ApiBody::new(api, posture))))
}

/// Re-imports an API's document: the operations are replaced by a diff, atomically;
/// settings made in Palisade stay.
#[utoipa::path(
    put,
    path = "/api/v1/apis/{id}/spec",
    tag = "inventory",
    params(("id" = i64, Path, description = "The API's id")),
    request_body(description = "The OpenAPI 3.0 or 3.1 document", content((String = "application/json"), (String = "application/yaml"))),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "What changed, and the API as it is now", body = ReimportBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The API belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such API", body = ErrorBody),
        (status = 413, description = "The document is over the size limit", body = ErrorBody),
        (status = 415, description = "Not JSON or YAML", body = ErrorBody),
        (status = 422, description = "The document has problems; each is located", body = ErrorBody),
    )
)]
pub async fn reimport_spec(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Result<Json<ReimportBody>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::NotFound("API".into()))?;
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let owner = apis::find_owner(&state.db, ApiId(id)).await?;
    if !principal.can_change_owned_by(owner) {
        return Err(ApiError::Forbidden);
    }
    let (parts, spec) = read_document(request).await?;
    let context = audit_context_for(&parts.headers, &parts.extensions, Actor::token(&principal));
    let (api, diff) = apis::reimport_spec(&state.db, ApiId(id), &spec, &context).await?;
    let posture = apis::posture_of(&state.db, &api).await?;
    Ok(Json(ReimportBody { diff: diff.into(), api: ApiBody::new(api, posture) }))
}

/// Every API in the inventory.
#[utoipa::path(
    get,
    path = "/api/v1/apis",
    tag = "inventory",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Every API with its posture, worst score first", body = Vec<ApiListItem>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_apis(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ApiListItem>>, ApiError> {
    caller.require(|_| true)?;
    let estate = apis::estate_posture(&state.db).await?;
    Ok(Json(
        estate
            .apis
            .into_iter()
            .map(|scored| ApiListItem {
                summary: scored.api.into(),
                score: scored.score,
                high_findings: scored.high,
                medium_findings: scored.medium,
                low_findings: scored.low,
            })
            .collect(),
    ))
}

/// One API with its operations.
#[utoipa::path(
    get,
    path = "/api/v1/apis/{id}",
    tag = "inventory",
    params(("id" = i64, Path, description = "The API's id")),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The API with its operations, data classes and posture findings", body = ApiBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such API", body = ErrorBody),
    )
)]
pub async fn get_api(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ApiBody>, ApiError> {
    caller.require(|_| true)?;
    let Path(id) = id.map_err(|_| ApiError::NotFound("API".into()))?;
    let api = apis::find_api(&state.db, ApiId(id)).await?;
    let posture = apis::posture_of(&state.db, &api).await?;
    Ok(Json(ApiBody::new(api, posture)))
}

/// A change to what Palisade holds about an API beyond its document.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct ApiChange {
    /// `active`, `deprecated` or `retired`.
    pub lifecycle: String,
    /// Unix milliseconds; only for a deprecated API.
    pub sunset_at: Option<i64>,
}

/// Sets an API's lifecycle: active, deprecated (with an optional sunset date) or retired.
#[utoipa::path(
    patch,
    path = "/api/v1/apis/{id}",
    tag = "inventory",
    params(("id" = i64, Path, description = "The API's id")),
    request_body = ApiChange,
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "The API as it is now", body = ApiSummaryBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The API belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such API", body = ErrorBody),
        (status = 422, description = "Not a lifecycle, or a sunset date on an API that is not deprecated", body = ErrorBody),
    )
)]
pub async fn update_api(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    change: Result<Json<ApiChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ApiSummaryBody>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::NotFound("API".into()))?;
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let owner = apis::find_owner(&state.db, ApiId(id)).await?;
    if !principal.can_change_owned_by(owner) {
        return Err(ApiError::Forbidden);
    }
    let Json(change) = change.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let lifecycle: store::Lifecycle = change.lifecycle.parse().map_err(ApiError::Invalid)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let api = apis::update_lifecycle(&state.db, ApiId(id), lifecycle, change.sunset_at, &context).await?;
    Ok(Json(api.into()))
}
