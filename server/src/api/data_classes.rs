//! `/api/v1/data-classes`: the built-in data classes and the organisation's own. Everyone
//! signed in reads; security and admins define and delete custom classes (they apply to
//! every API, so no single team owns them).

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::audit::Actor;
use store::{CustomClass, Role, custom_classes, data_classes};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct CustomClassBody {
    pub name: String,
    pub description: String,
    /// Field names that carry the class (any case; `_` and `-` ignored).
    pub keywords: Vec<String>,
    /// Regular expressions over field names at import and over values in responses.
    pub patterns: Vec<String>,
    pub created_at: i64,
}

impl From<CustomClass> for CustomClassBody {
    fn from(class: CustomClass) -> Self {
        CustomClassBody {
            name: class.name,
            description: class.description,
            keywords: class.keywords,
            patterns: class.patterns,
            created_at: class.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DataClassesBody {
    pub built_in: Vec<String>,
    pub custom: Vec<CustomClassBody>,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewCustomClass {
    /// Lower-case letters, digits and `_`: `loyalty_number`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
}

fn may_define(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Security)
}

/// The built-in classes and every custom one.
#[utoipa::path(
    get,
    path = "/api/v1/data-classes",
    tag = "data classes",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Built-in and custom classes", body = DataClassesBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_data_classes(State(state): State<AppState>, caller: Caller) -> Result<Json<DataClassesBody>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(DataClassesBody {
        built_in: data_classes::BUILT_IN.iter().map(|c| (*c).to_owned()).collect(),
        custom: custom_classes::list_custom_classes(&state.db).await?.into_iter().map(Into::into).collect(),
    }))
}

/// Defines a custom class; every stored operation is classified again with it.
#[utoipa::path(
    post,
    path = "/api/v1/data-classes",
    tag = "data classes",
    request_body = NewCustomClass,
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 201, description = "The new class", body = CustomClassBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins define classes", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "A bad name, keyword or pattern", body = ErrorBody),
    )
)]
pub async fn create_data_class(
    State(state): State<AppState>,
    caller: Caller,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<NewCustomClass>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CustomClassBody>), ApiError> {
    let principal = caller.require(|p| may_define(p.role))?;
    let Json(new) = body.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let class =
        custom_classes::create_custom_class(&state.db, &new.name, &new.description, &new.keywords, &new.patterns, &context).await?;
    Ok((StatusCode::CREATED, Json(class.into())))
}

/// Deletes a custom class that no L3 rule grants; operations are classified again.
#[utoipa::path(
    delete,
    path = "/api/v1/data-classes/{name}",
    tag = "data classes",
    params(("name" = String, Path, description = "The custom class")),
    security(("bearer" = ["admin", "security"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only security and admins delete classes", body = ErrorBody),
        (status = 404, description = "No such custom class", body = ErrorBody),
        (status = 422, description = "An L3 rule still grants it", body = ErrorBody),
    )
)]
pub async fn delete_data_class(
    State(state): State<AppState>,
    caller: Caller,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require(|p| may_define(p.role))?;
    let Path(name) = name.map_err(|_| ApiError::NotFound("data class".into()))?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    custom_classes::delete_custom_class(&state.db, &name, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
