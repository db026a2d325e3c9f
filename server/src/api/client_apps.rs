//! `/api/v1/client-apps`: the applications that call APIs, and one credential per
//! instance of each. Everyone signed in reads (never a secret); the owning team's
//! developers, security and admins register, issue, rotate and revoke.

use super::{ApiError, Caller, ErrorBody};
use app::auth::ssr::audit_context_for;
use app::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use store::audit::Actor;
use store::client_apps::{self, DEFAULT_ROTATION_DAYS};
use store::{ClientApp, ClientAppId, Credential, CredentialId, IssuedCredential, Principal};
use utoipa::{IntoParams, ToSchema};

type PathRejection = axum::extract::rejection::PathRejection;
type JsonRejection = axum::extract::rejection::JsonRejection;

#[derive(Serialize, ToSchema)]
pub struct CredentialBody {
    pub id: i64,
    /// `api_key`, `hmac` or `mtls`.
    pub kind: String,
    /// The instance of the caller that holds it.
    pub instance: String,
    /// The first characters of an API key, or an HMAC key's id.
    pub prefix: Option<String>,
    /// An mTLS credential's certificate subject or SAN.
    pub identity: Option<String>,
    pub created_at: i64,
    /// When a rotated key stops working.
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<Credential> for CredentialBody {
    fn from(c: Credential) -> Self {
        CredentialBody {
            id: c.id.0,
            kind: c.kind.as_str().to_owned(),
            instance: c.instance,
            prefix: c.prefix,
            identity: c.identity,
            created_at: c.created_at,
            expires_at: c.expires_at,
            revoked_at: c.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ClientAppBody {
    pub id: i64,
    pub name: String,
    pub team_id: i64,
    pub team_name: String,
    /// `service`, `partner`, `mobile` or `web`.
    pub kind: String,
    pub description: String,
    /// API keys older than this many days are reported for rotation.
    pub rotation_days: i64,
    pub created_at: i64,
    pub credentials: Vec<CredentialBody>,
}

impl From<ClientApp> for ClientAppBody {
    fn from(app: ClientApp) -> Self {
        ClientAppBody {
            id: app.id.0,
            name: app.name,
            team_id: app.team_id.0,
            team_name: app.team_name,
            kind: app.kind.as_str().to_owned(),
            description: app.description,
            rotation_days: app.rotation_days,
            created_at: app.created_at,
            credentials: app.credentials.into_iter().map(Into::into).collect(),
        }
    }
}

/// A credential just issued. `secret` (an API key, or an HMAC key as 64 hex characters)
/// is shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedBody {
    pub credential: CredentialBody,
    pub secret: Option<String>,
}

impl From<IssuedCredential> for IssuedBody {
    fn from(issued: IssuedCredential) -> Self {
        IssuedBody { credential: issued.credential.into(), secret: issued.secret }
    }
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewClientApp {
    pub name: String,
    /// `service`, `partner`, `mobile` or `web`.
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// Default 90.
    pub rotation_days: Option<i64>,
}

#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct TeamQuery {
    /// Owning team, by id or name. Defaults to the token owner's team when they have one.
    team: Option<String>,
}

#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// `api_key`, `hmac` or `mtls`.
    pub kind: String,
    /// Which instance holds it (`orders-7f9c`): one credential per instance.
    pub instance: String,
    /// For `mtls`: the certificate subject or SAN.
    pub identity: Option<String>,
}

#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old key keeps working; default 3600, at most a week.
    pub overlap_seconds: Option<i64>,
}

fn parse_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|rejection| ApiError::Invalid(rejection.body_text()))
}

/// The caller, when they may change the client application.
async fn owner_of(state: &AppState, caller: Caller, app: ClientAppId) -> Result<Principal, ApiError> {
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let owner = client_apps::find_client_owner(&state.db, app).await?;
    if principal.can_change_owned_by(owner) { Ok(principal) } else { Err(ApiError::Forbidden) }
}

fn app_id(id: Result<Path<i64>, PathRejection>) -> Result<ClientAppId, ApiError> {
    id.map(|Path(id)| ClientAppId(id)).map_err(|_| ApiError::NotFound("client application".into()))
}

fn credential_ids(ids: Result<Path<(i64, i64)>, PathRejection>) -> Result<(ClientAppId, CredentialId), ApiError> {
    ids.map(|Path((app, credential))| (ClientAppId(app), CredentialId(credential)))
        .map_err(|_| ApiError::NotFound("credential".into()))
}

/// Every client application with its credentials (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/client-apps",
    tag = "client applications",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Every client application", body = Vec<ClientAppBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_client_apps(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<ClientAppBody>>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(client_apps::list_client_apps(&state.db).await?.into_iter().map(Into::into).collect()))
}

/// Registers a client application for a team.
#[utoipa::path(
    post,
    path = "/api/v1/client-apps",
    tag = "client applications",
    params(TeamQuery),
    request_body = NewClientApp,
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 201, description = "The registered application", body = ClientAppBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not allowed for that team", body = ErrorBody),
        (status = 404, description = "No such team", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong", body = ErrorBody),
    )
)]
pub async fn create_client_app(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<TeamQuery>, axum::extract::rejection::QueryRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<NewClientApp>, JsonRejection>,
) -> Result<(StatusCode, Json<ClientAppBody>), ApiError> {
    let principal = caller.require(|p| p.role != store::Role::Auditor)?;
    let Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    let team = super::owning_team(&state, &principal, query.team.as_deref()).await?;
    if !principal.can_change_owned_by(team) {
        return Err(ApiError::Forbidden);
    }
    let new = parse_body(body)?;
    let kind = new.kind.parse().map_err(ApiError::Invalid)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let rotation = new.rotation_days.unwrap_or(DEFAULT_ROTATION_DAYS);
    let app = client_apps::create_client_app(&state.db, team, &new.name, kind, &new.description, rotation, &context).await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// One client application with its credentials.
#[utoipa::path(
    get,
    path = "/api/v1/client-apps/{id}",
    tag = "client applications",
    params(("id" = i64, Path, description = "The client application's id")),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The application", body = ClientAppBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such client application", body = ErrorBody),
    )
)]
pub async fn get_client_app(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ClientAppBody>, ApiError> {
    caller.require(|_| true)?;
    Ok(Json(client_apps::find_client_app(&state.db, app_id(id)?).await?.into()))
}

/// Deletes a client application that no API's protection names, with its credentials.
#[utoipa::path(
    delete,
    path = "/api/v1/client-apps/{id}",
    tag = "client applications",
    params(("id" = i64, Path, description = "The client application's id")),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "It belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such client application", body = ErrorBody),
        (status = 422, description = "An API's protection still names it", body = ErrorBody),
    )
)]
pub async fn delete_client_app(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<StatusCode, ApiError> {
    let app = app_id(id)?;
    let principal = owner_of(&state, caller, app).await?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    client_apps::delete_client_app(&state.db, app, &context).await?;
    credentials_changed(&state, &format!("client application {app} deleted with its credentials"), &context).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a credential for one instance: an API key or HMAC key (its secret in this
/// response only) or a registered mTLS certificate identity.
#[utoipa::path(
    post,
    path = "/api/v1/client-apps/{id}/credentials",
    tag = "client applications",
    params(("id" = i64, Path, description = "The client application's id")),
    request_body = NewCredential,
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 201, description = "The credential, with an API key's secret shown this once", body = IssuedBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "It belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such client application", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong", body = ErrorBody),
    )
)]
pub async fn issue_credential(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<NewCredential>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedBody>), ApiError> {
    let app = app_id(id)?;
    let principal = owner_of(&state, caller, app).await?;
    let new = parse_body(body)?;
    let kind = new.kind.parse().map_err(ApiError::Invalid)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let issued = client_apps::issue_credential(&state.db, &state.master, app, kind, &new.instance, new.identity.as_deref(), &context).await?;
    credentials_changed(&state, &format!("credential issued for {}", new.instance.trim()), &context).await;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// Rotates an API or HMAC key: a successor for the same instance (its secret in this
/// response only); the old key keeps working for the overlap, then expires.
#[utoipa::path(
    post,
    path = "/api/v1/client-apps/{id}/credentials/{credential_id}/rotate",
    tag = "client applications",
    params(("id" = i64, Path, description = "The client application's id"), ("credential_id" = i64, Path, description = "The key to rotate")),
    request_body = Rotation,
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 201, description = "The successor key, with its secret shown this once", body = IssuedBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "It belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such credential of that application", body = ErrorBody),
        (status = 422, description = "Not an active key, or a bad overlap", body = ErrorBody),
    )
)]
pub async fn rotate_credential(
    State(state): State<AppState>,
    caller: Caller,
    ids: Result<Path<(i64, i64)>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Result<Json<Rotation>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedBody>), ApiError> {
    let (app, credential) = credential_ids(ids)?;
    let principal = owner_of(&state, caller, app).await?;
    let rotation = parse_body(body)?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let issued = client_apps::rotate_credential(&state.db, &state.master, app, credential, rotation.overlap_seconds, &context).await?;
    credentials_changed(&state, &format!("credential {credential} rotated"), &context).await;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// Revokes a credential at once.
#[utoipa::path(
    delete,
    path = "/api/v1/client-apps/{id}/credentials/{credential_id}",
    tag = "client applications",
    params(("id" = i64, Path, description = "The client application's id"), ("credential_id" = i64, Path, description = "The credential")),
    security(("bearer" = ["admin", "security", "developer"])),
    responses(
        (status = 200, description = "The revoked credential", body = CredentialBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "It belongs to a team you are not in", body = ErrorBody),
        (status = 404, description = "No such credential of that application", body = ErrorBody),
        (status = 422, description = "Already revoked", body = ErrorBody),
    )
)]
pub async fn revoke_credential(
    State(state): State<AppState>,
    caller: Caller,
    ids: Result<Path<(i64, i64)>, PathRejection>,
    headers: http::HeaderMap,
    extensions: http::Extensions,
) -> Result<Json<CredentialBody>, ApiError> {
    let (app, credential) = credential_ids(ids)?;
    let principal = owner_of(&state, caller, app).await?;
    let context = audit_context_for(&headers, &extensions, Actor::token(&principal));
    let revoked = client_apps::revoke_credential(&state.db, app, credential, &context).await?;
    credentials_changed(&state, &format!("credential {credential} revoked"), &context).await;
    Ok(Json(revoked.into()))
}

/// Agents hear of a credential change at once (see `publishing::ssr::reissue_for_credentials`).
async fn credentials_changed(state: &AppState, why: &str, context: &store::audit::AuditContext) {
    app::publishing::ssr::credentials_changed(&state.db, &state.master, why, context).await;
}
