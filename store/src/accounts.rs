//! Accounts: creation, lookup for login and for permission checks, role and team changes,
//! disabling, passwords and one-time password set-up links (invitations and resets).

use crate::audit::{self, AuditContext, Change};
use crate::error::ResultExt;
use crate::{Account, AccountId, Db, Principal, Role, StoreError, TeamId, TeamRef, now_millis};
use crate::{sessions, tokens};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

const MAX_EMAIL_CHARS: usize = 254;
const MAX_NAME_CHARS: usize = 100;

/// An account to create. The password, when given, is already hashed.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub team_ids: Vec<TeamId>,
    pub password_hash: Option<String>,
}

/// What a login needs to know about an account, and no more.
#[derive(Clone, Debug)]
pub struct LoginRecord {
    pub account_id: AccountId,
    pub role: Role,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub session_generation: i64,
}

/// Trims and lower-cases an email address and checks its shape.
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
    let email = email.trim().to_lowercase();
    let invalid = |message: &str| Err(StoreError::invalid("email", message));
    if email.is_empty() {
        return invalid("is required");
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return invalid("is too long");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return invalid("must look like name@example.com");
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return invalid("must look like name@example.com");
    }
    Ok(email)
}

/// Trims a display name, falling back to the email's local part.
pub fn normalize_display_name(name: &str, email: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid("display name", "must not contain control characters"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::invalid("display name", "is too long"));
    }
    if name.is_empty() {
        return Ok(email.split('@').next().unwrap_or(email).to_owned());
    }
    Ok(name.to_owned())
}

pub async fn create_account(db: &Db, new: NewAccount, context: &AuditContext) -> Result<Account, StoreError> {
    let email = normalize_email(&new.email)?;
    let display_name = normalize_display_name(&new.display_name, &email)?;
    let now = now_millis();
    let invited = new.password_hash.is_none();
    let mut tx = db.pool().begin().await?;
    let account_id: i64 = sqlx::query_scalar(
        "INSERT INTO account (email, display_name, role, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING account_id",
    )
    .bind(&email)
    .bind(&display_name)
    .bind(new.role.as_str())
    .bind(new.password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .on_unique("email")?;
    insert_memberships(&mut tx, AccountId(account_id), &new.team_ids).await?;
    let details = json!({"after": {"email": email, "display_name": display_name, "role": new.role,
        "team_ids": new.team_ids, "invited": invited}});
    audit::append(&mut tx, context, Change::success("account.create", "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    find_account(db, AccountId(account_id)).await
}

async fn insert_memberships(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: AccountId,
    team_ids: &[TeamId],
) -> Result<(), StoreError> {
    let mut seen = Vec::with_capacity(team_ids.len());
    for team_id in team_ids {
        if seen.contains(team_id) {
            continue;
        }
        seen.push(*team_id);
        sqlx::query("INSERT INTO team_member (team_id, account_id) VALUES ($1, $2)")
            .bind(team_id.0)
            .bind(account_id.0)
            .execute(&mut **tx)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::invalid("team", format!("team {team_id} does not exist"))
                }
                _ => StoreError::Database(error),
            })?;
    }
    Ok(())
}

const ACCOUNT_COLUMNS: &str = "account_id, email, display_name, role, \
     password_hash IS NOT NULL AS has_password, disabled_at, created_at";

fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    let role: String = row.try_get("role")?;
    // SQLite answers `IS NOT NULL` with an integer, PostgreSQL with a boolean.
    let has_password = row
        .try_get::<bool, _>("has_password")
        .or_else(|_| row.try_get::<i64, _>("has_password").map(|n| n != 0))?;
    Ok(Account {
        id: AccountId(row.try_get("account_id")?),
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: role.parse().map_err(|error: crate::UnknownRole| {
            StoreError::Database(sqlx::Error::Decode(error.into()))
        })?,
        teams: Vec::new(),
        has_password,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The teams of each given account (all accounts when `only` is `None`).
async fn memberships(
    db: &Db,
    only: Option<AccountId>,
) -> Result<HashMap<AccountId, Vec<TeamRef>>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.account_id, t.team_id, t.name FROM team_member m \
         JOIN team t ON t.team_id = m.team_id \
         WHERE $1 IS NULL OR m.account_id = $1 ORDER BY t.name",
    )
    .bind(only.map(|id| id.0))
    .fetch_all(db.pool())
    .await?;
    let mut teams: HashMap<AccountId, Vec<TeamRef>> = HashMap::new();
    for row in rows {
        teams.entry(AccountId(row.try_get("account_id")?)).or_default().push(TeamRef {
            id: TeamId(row.try_get("team_id")?),
            name: row.try_get("name")?,
        });
    }
    Ok(teams)
}

pub async fn find_account(db: &Db, account_id: AccountId) -> Result<Account, StoreError> {
    let row = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM account WHERE account_id = $1"))
        .bind(account_id.0)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    let mut account = account_from_row(&row)?;
    account.teams = memberships(db, Some(account_id)).await?.remove(&account_id).unwrap_or_default();
    Ok(account)
}

pub async fn find_account_by_email(db: &Db, email: &str) -> Result<Account, StoreError> {
    let email = normalize_email(email)?;
    let account_id: i64 = sqlx::query_scalar("SELECT account_id FROM account WHERE email = $1")
        .bind(email)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    find_account(db, AccountId(account_id)).await
}

pub async fn list_accounts(db: &Db) -> Result<Vec<Account>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {ACCOUNT_COLUMNS} FROM account ORDER BY email"))
        .fetch_all(db.pool())
        .await?;
    let mut teams = memberships(db, None).await?;
    rows.iter()
        .map(|row| {
            let mut account = account_from_row(row)?;
            account.teams = teams.remove(&account.id).unwrap_or_default();
            Ok(account)
        })
        .collect()
}

pub async fn count_accounts(db: &Db) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM account").fetch_one(db.pool()).await?)
}

/// The login view of an account, by (unnormalised) email. `None` for unknown addresses
/// and for input that is not an email at all.
pub async fn find_login(db: &Db, email: &str) -> Result<Option<LoginRecord>, StoreError> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let row = sqlx::query(
        "SELECT account_id, role, password_hash, disabled_at, session_generation \
         FROM account WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(login_from_row).transpose()
}

/// The principal behind a session: `None` when the account is gone, disabled, or its
/// sessions were ended after this one began (`generation` differs).
pub async fn find_session_principal(
    db: &Db,
    account_id: AccountId,
    generation: i64,
) -> Result<Option<Principal>, StoreError> {
    let Some(login) = find_login_by_id(db, account_id).await? else { return Ok(None) };
    if login.disabled || login.session_generation != generation {
        return Ok(None);
    }
    find_principal(db, account_id).await
}

async fn find_login_by_id(db: &Db, account_id: AccountId) -> Result<Option<LoginRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT account_id, role, password_hash, disabled_at, session_generation FROM account WHERE account_id = $1",
    )
    .bind(account_id.0)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(login_from_row).transpose()
}

fn login_from_row(row: &sqlx::any::AnyRow) -> Result<LoginRecord, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(LoginRecord {
        account_id: AccountId(row.try_get("account_id")?),
        role: role.parse().map_err(|error: crate::UnknownRole| StoreError::Invalid { field: "role", message: error.to_string() })?,
        password_hash: row.try_get("password_hash")?,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        session_generation: row.try_get("session_generation")?,
    })
}

/// The principal for an active account (`None` when missing or disabled).
pub async fn find_principal(db: &Db, account_id: AccountId) -> Result<Option<Principal>, StoreError> {
    let account = match find_account(db, account_id).await {
        Ok(account) => account,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(error) => return Err(error),
    };
    if account.is_disabled() {
        return Ok(None);
    }
    Ok(Some(Principal {
        account_id: account.id,
        email: account.email,
        display_name: account.display_name,
        role: account.role,
        teams: account.teams,
    }))
}

/// Changes an account's name, role and teams. The last active administrator cannot be
/// demoted, so that nobody is locked out of user administration.
pub async fn update_account(
    db: &Db,
    account_id: AccountId,
    display_name: &str,
    role: Role,
    team_ids: &[TeamId],
    context: &AuditContext,
) -> Result<Account, StoreError> {
    let current = find_account(db, account_id).await?;
    let display_name = normalize_display_name(display_name, &current.email)?;
    if current.role == Role::Admin && role != Role::Admin && !current.is_disabled() {
        ensure_another_active_admin(db, account_id, "role").await?;
    }
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "UPDATE account SET display_name = $1, role = $2, updated_at = $3 WHERE account_id = $4",
    )
    .bind(&display_name)
    .bind(role.as_str())
    .bind(now_millis())
    .bind(account_id.0)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM team_member WHERE account_id = $1")
        .bind(account_id.0)
        .execute(&mut *tx)
        .await?;
    insert_memberships(&mut tx, account_id, team_ids).await?;
    let before_teams: Vec<TeamId> = current.teams.iter().map(|t| t.id).collect();
    let details = json!({
        "before": {"display_name": current.display_name, "role": current.role, "team_ids": before_teams},
        "after": {"display_name": display_name, "role": role, "team_ids": team_ids},
    });
    audit::append(&mut tx, context, Change::success("account.update", "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    find_account(db, account_id).await
}

async fn ensure_another_active_admin(
    db: &Db,
    account_id: AccountId,
    field: &'static str,
) -> Result<(), StoreError> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM account \
         WHERE role = 'admin' AND disabled_at IS NULL AND account_id <> $1",
    )
    .bind(account_id.0)
    .fetch_one(db.pool())
    .await?;
    if others == 0 {
        return Err(StoreError::invalid(field, "the last active administrator must stay one"));
    }
    Ok(())
}

/// Disables (ending every session and revoking nothing else) or re-enables an account.
pub async fn set_disabled(
    db: &Db,
    account_id: AccountId,
    disabled: bool,
    context: &AuditContext,
) -> Result<Account, StoreError> {
    let current = find_account(db, account_id).await?;
    if disabled && current.role == Role::Admin && !current.is_disabled() {
        ensure_another_active_admin(db, account_id, "account").await?;
    }
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "UPDATE account SET disabled_at = $1, updated_at = $2, \
         session_generation = session_generation + 1 WHERE account_id = $3",
    )
    .bind(disabled.then_some(now))
    .bind(now)
    .bind(account_id.0)
    .execute(&mut *tx)
    .await?;
    let ended = sessions::delete_sessions_of(&mut tx, account_id).await?;
    let action = if disabled { "account.disable" } else { "account.enable" };
    let details = json!({"before": {"disabled": current.is_disabled()}, "after": {"disabled": disabled}, "sessions_ended": ended});
    audit::append(&mut tx, context, Change::success(action, "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    find_account(db, account_id).await
}

/// Sets a new password hash and ends every session of the account.
pub async fn set_password_hash(
    db: &Db,
    account_id: AccountId,
    hash: &str,
    context: &AuditContext,
) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE account SET password_hash = $1, password_setup_digest = NULL, \
         password_setup_expires_at = NULL, updated_at = $2, \
         session_generation = session_generation + 1 WHERE account_id = $3",
    )
    .bind(hash)
    .bind(now_millis())
    .bind(account_id.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("account"));
    }
    let ended = sessions::delete_sessions_of(&mut tx, account_id).await?;
    // The hash is a secret too: the entry says only that the password changed.
    let details = json!({"sessions_ended": ended});
    audit::append(&mut tx, context, Change::success("account.set_password", "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}

/// Issues a one-time password set-up token valid for `ttl_millis` (an invitation for a
/// new account, or a reset link), replacing any earlier one. Returns the token.
pub async fn create_password_setup(
    db: &Db,
    account_id: AccountId,
    ttl_millis: i64,
    context: &AuditContext,
) -> Result<String, StoreError> {
    let token = tokens::generate_secret("pps_");
    let expires_at = now_millis() + ttl_millis;
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE account SET password_setup_digest = $1, password_setup_expires_at = $2, \
         updated_at = $3 WHERE account_id = $4",
    )
    .bind(tokens::digest(&token))
    .bind(expires_at)
    .bind(now_millis())
    .bind(account_id.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("account"));
    }
    let details = json!({"expires_at": expires_at});
    audit::append(&mut tx, context, Change::success("account.issue_setup_link", "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    Ok(token)
}

/// The account a live set-up token belongs to.
pub async fn find_password_setup(db: &Db, token: &str) -> Result<Account, StoreError> {
    let account_id: Option<i64> = sqlx::query_scalar(
        "SELECT account_id FROM account WHERE password_setup_digest = $1 \
         AND password_setup_expires_at > $2 AND disabled_at IS NULL",
    )
    .bind(tokens::digest(token))
    .bind(now_millis())
    .fetch_optional(db.pool())
    .await?;
    let account_id = account_id.ok_or(StoreError::NotFound("password set-up link"))?;
    find_account(db, AccountId(account_id)).await
}

/// Uses a set-up token once: sets the password and invalidates the token.
pub async fn complete_password_setup(
    db: &Db,
    token: &str,
    hash: &str,
    context: &AuditContext,
) -> Result<Account, StoreError> {
    let account = find_password_setup(db, token).await?;
    // The link holder acts as the account the link was made for.
    let context = AuditContext {
        actor: audit::Actor { kind: "user", id: Some(account.id.0), label: account.email.clone() },
        ..context.clone()
    };
    set_password_hash(db, account.id, hash, &context).await?;
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in ["", "alice", "@example.com", "alice@", "a b@example.com", "a@b@c", "a@.com"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn display_names_default_to_the_local_part() {
        assert_eq!(normalize_display_name("  ", "bob@example.com").unwrap(), "bob");
        assert_eq!(normalize_display_name(" Bob ", "bob@example.com").unwrap(), "Bob");
        assert!(normalize_display_name("a\u{0}b", "bob@example.com").is_err());
    }
}
