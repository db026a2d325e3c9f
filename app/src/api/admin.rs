//! User and team administration: admins change, auditors read.

use crate::error::AppError;
use leptos::prelude::*;
use store::{Account, Team};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_recent, state, store_error};
#[cfg(feature = "ssr")]
use store::{AccountId, Principal, Role, TeamId, accounts};

/// A user just created or reset, with the one-time link to set a password, if one was made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountWithLink {
    pub account: Account,
    pub setup_link: Option<String>,
    /// What the admin is told, with the link.
    pub flash: crate::flash::Flash,
}

#[cfg(feature = "ssr")]
fn setup_link(token: &str) -> Result<String, AppError> {
    let state = state()?;
    let origin = state.auth.public_origin.clone().unwrap_or_default();
    Ok(format!("{origin}/setup-password?token={token}"))
}

/// Tells the admin what happened, with the link; a no-JavaScript admin gets it after the
/// redirect.
#[cfg(feature = "ssr")]
async fn with_link(account: Account, setup_link: Option<String>, what: &str) -> Result<AccountWithLink, AppError> {
    let message = match &setup_link {
        Some(_) => format!(
            "{} {what}. Send them this one-time link to set their password; it is shown only now.",
            account.email
        ),
        None => format!("{} {what}.", account.email),
    };
    let flash = crate::flash::Flash { message, secret: setup_link.clone(), command: None };
    crate::flash::keep_for_plain_form(flash.clone()).await?;
    Ok(AccountWithLink { account, setup_link, flash })
}

#[cfg(feature = "ssr")]
fn parse_role(role: &str) -> Result<Role, AppError> {
    role.parse().map_err(|_| fail(AppError::invalid("role", "choose one of the four roles")))
}

/// Admins and auditors: every account with its teams.
#[server(prefix = "/rpc", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<Account>, AppError> {
    require(Principal::can_read_users)?;
    accounts::list_accounts(&state()?.db).await.map_err(store_error)
}

/// Admins and auditors: one account.
#[server(prefix = "/rpc", endpoint = "get_user")]
pub async fn get_user(account_id: i64) -> Result<Account, AppError> {
    require(Principal::can_read_users)?;
    accounts::find_account(&state()?.db, AccountId(account_id)).await.map_err(store_error)
}

/// Admins: creates a user, with a password or (empty password) an invitation link.
#[server(prefix = "/rpc", endpoint = "create_user")]
pub async fn create_user(
    email: String,
    display_name: String,
    role: String,
    team_id: Option<String>,
    password: Option<String>,
) -> Result<AccountWithLink, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let audit = audit_context(&principal);
    let state = state()?;
    let role = parse_role(&role)?;
    let team_ids = match super::non_empty(team_id) {
        Some(id) => vec![TeamId(id.parse().map_err(|_| fail(AppError::invalid("team", "is not a team")))?)],
        None => Vec::new(),
    };
    let password_hash = match super::non_empty(password) {
        Some(password) => Some(state.passwords.hash(&password).await.map_err(store_error)?),
        None => None,
    };
    let invited = password_hash.is_none();
    let new = accounts::NewAccount { email, display_name, role, team_ids, password_hash };
    let account = accounts::create_account(&state.db, new, &audit).await.map_err(store_error)?;
    let setup_link = if invited {
        let ttl = state.auth.setup_link_ttl.as_millis() as i64;
        let token = accounts::create_password_setup(&state.db, account.id, ttl, &audit).await.map_err(store_error)?;
        Some(setup_link(&token)?)
    } else {
        None
    };
    with_link(account, setup_link, "created").await
}

/// Admins: changes a user's name and role.
#[server(prefix = "/rpc", endpoint = "update_user")]
pub async fn update_user(account_id: i64, display_name: String, role: String) -> Result<Account, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let db = state()?.db;
    let current = accounts::find_account(&db, AccountId(account_id)).await.map_err(store_error)?;
    let team_ids: Vec<TeamId> = current.teams.iter().map(|t| t.id).collect();
    accounts::update_account(&db, current.id, &display_name, parse_role(&role)?, &team_ids, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// Admins: adds a user to a team, or removes them from it.
#[server(prefix = "/rpc", endpoint = "set_user_team")]
pub async fn set_user_team(account_id: i64, team_id: i64, member: bool) -> Result<Account, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let db = state()?.db;
    let current = accounts::find_account(&db, AccountId(account_id)).await.map_err(store_error)?;
    let mut team_ids: Vec<TeamId> =
        current.teams.iter().map(|t| t.id).filter(|id| *id != TeamId(team_id)).collect();
    if member {
        team_ids.push(TeamId(team_id));
    }
    accounts::update_account(&db, current.id, &current.display_name, current.role, &team_ids, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// Admins: disables a user (ending their sessions) or enables them again. Admins cannot
/// disable themselves.
#[server(prefix = "/rpc", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(account_id: i64, disabled: bool) -> Result<Account, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    if disabled && principal.account_id == AccountId(account_id) {
        return Err(fail(AppError::invalid("account", "you cannot disable your own account")));
    }
    accounts::set_disabled(&state()?.db, AccountId(account_id), disabled, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// Admins: resets a user's password, either to a given one or (empty) by issuing a
/// one-time link. Either way the user's sessions end.
#[server(prefix = "/rpc", endpoint = "reset_user_password")]
pub async fn reset_user_password(account_id: i64, password: Option<String>) -> Result<AccountWithLink, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let audit = audit_context(&principal);
    let state = state()?;
    let account_id = AccountId(account_id);
    let setup_link = match super::non_empty(password) {
        Some(password) => {
            let hash = state.passwords.hash(&password).await.map_err(store_error)?;
            accounts::set_password_hash(&state.db, account_id, &hash, &audit).await.map_err(store_error)?;
            None
        }
        None => {
            let ttl = state.auth.setup_link_ttl.as_millis() as i64;
            let token = accounts::create_password_setup(&state.db, account_id, ttl, &audit).await.map_err(store_error)?;
            Some(setup_link(&token)?)
        }
    };
    let account = accounts::find_account(&state.db, account_id).await.map_err(store_error)?;
    with_link(account, setup_link, "had their password reset; their sessions have ended").await
}

/// Admins: removes a user's second factor (a lost device with no recovery codes left). If
/// their role requires one, they set up a new one at their next sign-in.
#[server(prefix = "/rpc", endpoint = "reset_user_mfa")]
pub async fn reset_user_mfa(account_id: i64) -> Result<(), AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    store::mfa::remove(&state()?.db, AccountId(account_id), &audit_context(&principal)).await.map_err(store_error)
}

/// Which roles must have a second factor, and whether that is still the configured default
/// (no admin has set it in the dashboard).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignInPolicy {
    pub mfa_required_roles: Vec<store::Role>,
    pub configured_default: bool,
}

#[cfg(feature = "ssr")]
async fn sign_in_policy() -> Result<SignInPolicy, AppError> {
    let state = state()?;
    Ok(match store::sign_in_policy::mfa_required_roles(&state.db).await.map_err(store_error)? {
        Some(roles) => SignInPolicy { mfa_required_roles: roles, configured_default: false },
        None => SignInPolicy { mfa_required_roles: state.auth.mfa_required_roles.clone(), configured_default: true },
    })
}

/// Admins and auditors: the sign-in policy.
#[server(prefix = "/rpc", endpoint = "get_sign_in_policy")]
pub async fn get_sign_in_policy() -> Result<SignInPolicy, AppError> {
    require(Principal::can_read_users)?;
    sign_in_policy().await
}

/// Admins: sets which roles must have a second factor (a checkbox per role; a role left
/// out is not required). Applies from each user's next sign-in.
#[server(prefix = "/rpc", endpoint = "set_sign_in_policy")]
pub async fn set_sign_in_policy(
    admin: Option<String>,
    security: Option<String>,
    developer: Option<String>,
    auditor: Option<String>,
) -> Result<SignInPolicy, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let chosen = [(Role::Admin, admin), (Role::Security, security), (Role::Developer, developer), (Role::Auditor, auditor)];
    let roles: Vec<Role> = chosen.into_iter().filter(|(_, on)| on.is_some()).map(|(role, _)| role).collect();
    store::sign_in_policy::set_mfa_required_roles(&state()?.db, &roles, &audit_context(&principal)).await.map_err(store_error)?;
    sign_in_policy().await
}

/// Signed in: every team (developers see which teams exist; nothing secret here).
#[server(prefix = "/rpc", endpoint = "list_teams")]
pub async fn list_teams() -> Result<Vec<Team>, AppError> {
    require(|_| true)?;
    store::teams::list_teams(&state()?.db).await.map_err(store_error)
}

/// Admins: creates a team.
#[server(prefix = "/rpc", endpoint = "create_team")]
pub async fn create_team(name: String) -> Result<Team, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    store::teams::create_team(&state()?.db, &name, &audit_context(&principal)).await.map_err(store_error)
}
