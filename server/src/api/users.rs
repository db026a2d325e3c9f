//! `GET /api/v1/users` and `GET /api/v1/teams`.

use super::me::TeamBody;
use super::{ApiError, Caller, ErrorBody};
use app::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use store::Principal;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct UserBody {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub teams: Vec<TeamBody>,
    /// `active`, `invited` (no password set yet) or `disabled`.
    pub status: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TeamListItem {
    pub id: i64,
    pub name: String,
    pub member_count: i64,
    pub created_at: i64,
}

/// Every account (admins and auditors).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer" = ["admin", "auditor"])),
    responses(
        (status = 200, description = "Every account", body = [UserBody]),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Role not allowed", body = ErrorBody),
    )
)]
pub async fn list_users(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<UserBody>>, ApiError> {
    caller.require(Principal::can_read_users)?;
    let accounts = store::accounts::list_accounts(&state.db).await?;
    Ok(Json(
        accounts
            .into_iter()
            .map(|account| UserBody {
                status: if account.is_disabled() {
                    "disabled"
                } else if account.has_password {
                    "active"
                } else {
                    "invited"
                }
                .to_owned(),
                id: account.id.0,
                email: account.email,
                display_name: account.display_name,
                role: account.role.to_string(),
                teams: account.teams.into_iter().map(|t| TeamBody { id: t.id.0, name: t.name }).collect(),
                created_at: account.created_at,
            })
            .collect(),
    ))
}

/// Every team.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "users",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Every team", body = [TeamListItem]),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_teams(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TeamListItem>>, ApiError> {
    caller.require(|_| true)?;
    let teams = store::teams::list_teams(&state.db).await?;
    Ok(Json(
        teams
            .into_iter()
            .map(|t| TeamListItem { id: t.id.0, name: t.name, member_count: t.member_count, created_at: t.created_at })
            .collect(),
    ))
}
