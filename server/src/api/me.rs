//! `GET /api/v1/me`: who the token belongs to.

use super::{ApiError, Caller, ErrorBody};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct TeamBody {
    pub id: i64,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeBody {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// The account's roles (one today: admin, security, developer or auditor).
    pub roles: Vec<String>,
    pub teams: Vec<TeamBody>,
}

/// The token's user, roles and teams.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "account",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "The calling user", body = MeBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn me(caller: Caller) -> Result<Json<MeBody>, ApiError> {
    let principal = caller.require(|_| true)?;
    Ok(Json(MeBody {
        id: principal.account_id.0,
        email: principal.email,
        display_name: principal.display_name,
        roles: vec![principal.role.to_string()],
        teams: principal.teams.into_iter().map(|t| TeamBody { id: t.id.0, name: t.name }).collect(),
    }))
}
