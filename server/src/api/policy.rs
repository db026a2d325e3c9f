//! `/api/v1/policy`: the whole policy (every API's protection, each operation's override
//! and data-class corrections, custom data classes) as the document policy files are
//! written from, and back. Everyone signed in reads it, as they read the inventory;
//! security and admins apply it (it reaches every team's APIs). `palisade policy export`
//! and `push` are its clients.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::policy_code::ssr as policy_code;
use app::state::AppState;
use axum::Json;
use axum::extract::State;
use policy::files::PolicyDocument;
use store::audit::Actor;
use store::protection::SettingProblem;
use store::settings::ImportSummary;
use store::Role;

type JsonRejection = axum::extract::rejection::JsonRejection;

/// The whole policy, client applications by name.
#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "policy",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "`{client_apps, data_classes, apis: [{name, environment, protection, operations}]}`", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn export_policy(State(state): State<AppState>, caller: Caller) -> Result<Json<PolicyDocument>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(policy_code::export(&state.db).await?))
}

/// Applies a whole policy in one transaction. Every API must be registered, every
/// operation declared, every client application present; problems come back all at once
/// with their places and nothing changes.
#[utoipa::path(
    post,
    path = "/api/v1/policy",
    tag = "policy",
    request_body(content = Object, description = "The document `GET /api/v1/policy` returns, edited"),
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 200, description = "What changed: `{classes_created, classes_updated, apis_changed, operations_changed}`", content_type = "application/json"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins apply a policy", body = ErrorBody),
        (status = 422, description = "Problems, each at its place", body = ErrorBody),
    )
)]
pub async fn import_policy(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<PolicyDocument>, JsonRejection>,
) -> Result<Json<ImportSummary>, ApiError> {
    let principal = caller.require(|p| matches!(p.role, Role::Admin | Role::Security))?;
    let Json(document) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    match policy_code::import(&state.db, &document, &context).await? {
        Ok(summary) => Ok(Json(summary)),
        Err(problems) => Err(ApiError::InvalidSettings(problems.into_iter().map(|d| SettingProblem { path: d.path, message: d.message }).collect())),
    }
}
