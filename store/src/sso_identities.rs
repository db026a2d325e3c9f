//! Who a verified single sign-on identity is in Palisade: the account linked to the
//! provider's subject, else the local account with the same verified email (when the
//! provider allows linking), else a new account (when it allows creating them). Each
//! sign-in brings the account's role, and its teams when the provider maps teams, in line
//! with the groups the provider sent.

use crate::accounts::normalize_email;
use crate::audit::{self, Actor, AuditContext, Change};
use crate::sso::{LinkedIdentity, SsoProvider};
use crate::{AccountId, Db, Role, StoreError, now_millis};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

/// What the provider vouched for in a verified ID token (and its userinfo).
#[derive(Clone, Debug, Default)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// Why a verified identity still may not sign in. Each has a message for the sign-in page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// None of the caller's groups maps to a role.
    NoRole,
    /// Unknown identity, and the provider may neither create nor link accounts.
    NoAccount,
    /// A local account has this email, and linking is off or the email is not verified.
    EmailTaken,
    /// An account would have to be created or linked, but the provider sent no email.
    NoEmail,
    Disabled,
}

impl Refusal {
    /// The code carried to the sign-in page (`/login?error=<code>`).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoRole => "sso-no-role",
            Refusal::NoAccount => "sso-no-account",
            Refusal::EmailTaken => "sso-email-taken",
            Refusal::NoEmail => "sso-no-email",
            Refusal::Disabled => "sso-disabled",
        }
    }
}

/// A signed-in account, with what a session needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoAccount {
    pub account_id: AccountId,
    pub email: String,
    pub role: Role,
    pub session_generation: i64,
}

/// Resolves (and when allowed creates or links) the account of a verified identity and
/// brings its role and teams in line with the provider's groups, all in one transaction.
/// Refusals are audited and change nothing. `context` is the request's, its actor is
/// replaced by the account once known.
pub async fn sign_in(
    db: &Db,
    provider: &SsoProvider,
    identity: &VerifiedIdentity,
    context: &AuditContext,
) -> Result<Result<SsoAccount, Refusal>, StoreError> {
    let outcome = resolve(db, provider, identity, context).await?;
    if let Err(refusal) = outcome {
        let label = identity.email.clone().unwrap_or_else(|| format!("{}:{}", provider.slug, identity.subject));
        let context = AuditContext { actor: Actor::anonymous(&label), ..context.clone() };
        let details = json!({"method": "oidc", "provider": provider.slug, "subject": identity.subject,
            "groups": identity.groups, "refusal": refusal});
        audit::record(db, &context, Change::failure("session.login", "sso_provider", provider.id).with_details(details)).await?;
    }
    Ok(outcome)
}

async fn resolve(
    db: &Db,
    provider: &SsoProvider,
    identity: &VerifiedIdentity,
    context: &AuditContext,
) -> Result<Result<SsoAccount, Refusal>, StoreError> {
    let Some((role, team_names)) = provider.mapping.resolve(&identity.groups) else {
        return Ok(Err(Refusal::NoRole));
    };
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    // Writing first takes SQLite's write lock at once, so two first sign-ins of one
    // identity cannot both create an account.
    let linked: Option<i64> = sqlx::query_scalar(
        "UPDATE sso_identity SET last_login_at = $1 WHERE provider_id = $2 AND subject = $3 RETURNING account_id",
    )
    .bind(now)
    .bind(provider.id)
    .bind(&identity.subject)
    .fetch_optional(&mut *tx)
    .await?;
    let account_id = match linked {
        Some(account_id) => AccountId(account_id),
        None => {
            let Some(email) = identity.email.as_deref().and_then(|email| normalize_email(email).ok()) else {
                return Ok(Err(if provider.create_accounts || provider.link_by_email { Refusal::NoEmail } else { Refusal::NoAccount }));
            };
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT account_id FROM account WHERE email = $1").bind(&email).fetch_optional(&mut *tx).await?;
            let account_id = match existing {
                Some(account_id) => {
                    // Taking over a local account needs the admin's leave and an email
                    // the provider verified; and the account must not already be
                    // another subject's at this provider.
                    let other: Option<String> =
                        sqlx::query_scalar("SELECT subject FROM sso_identity WHERE provider_id = $1 AND account_id = $2")
                            .bind(provider.id)
                            .bind(account_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if !provider.link_by_email || !identity.email_verified || other.is_some() {
                        return Ok(Err(if provider.link_by_email || provider.create_accounts { Refusal::EmailTaken } else { Refusal::NoAccount }));
                    }
                    AccountId(account_id)
                }
                None if provider.create_accounts => create_account(&mut tx, provider, identity, &email, role, context).await?,
                None => return Ok(Err(Refusal::NoAccount)),
            };
            sqlx::query("INSERT INTO sso_identity (provider_id, subject, account_id, linked_at, last_login_at) VALUES ($1, $2, $3, $4, $4)")
                .bind(provider.id)
                .bind(&identity.subject)
                .bind(account_id.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let context = AuditContext { actor: Actor { kind: "user", id: Some(account_id.0), label: email.clone() }, ..context.clone() };
            let details = json!({"provider": provider.slug, "subject": identity.subject, "email": email,
                "email_verified": identity.email_verified});
            audit::append(&mut tx, &context, Change::success("sso_identity.link", "account", account_id).with_details(details)).await?;
            account_id
        }
    };
    let row = sqlx::query("SELECT email, role, disabled_at, session_generation FROM account WHERE account_id = $1")
        .bind(account_id.0)
        .fetch_one(&mut *tx)
        .await?;
    if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
        return Ok(Err(Refusal::Disabled));
    }
    let email: String = row.try_get("email")?;
    let current: String = row.try_get("role")?;
    let current: Role = current.parse().map_err(|error: crate::UnknownRole| StoreError::invalid("role", error.to_string()))?;
    let context = AuditContext { actor: Actor { kind: "user", id: Some(account_id.0), label: email.clone() }, ..context.clone() };
    let role = sync_role(&mut tx, account_id, current, role, &context, &provider.slug).await?;
    if !provider.mapping.teams.is_empty() {
        sync_teams(&mut tx, account_id, &team_names, &context, &provider.slug).await?;
    }
    tx.commit().await?;
    Ok(Ok(SsoAccount { account_id, email, role, session_generation: row.try_get("session_generation")? }))
}

async fn create_account(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    provider: &SsoProvider,
    identity: &VerifiedIdentity,
    email: &str,
    role: Role,
    context: &AuditContext,
) -> Result<AccountId, StoreError> {
    let display_name = identity
        .name
        .as_deref()
        .and_then(|name| crate::accounts::normalize_display_name(name, email).ok())
        .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
    let now = now_millis();
    let account_id: i64 = sqlx::query_scalar(
        "INSERT INTO account (email, display_name, role, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, NULL, $4, $4) RETURNING account_id",
    )
    .bind(email)
    .bind(&display_name)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let context = AuditContext { actor: Actor { kind: "user", id: Some(account_id), label: email.to_owned() }, ..context.clone() };
    let details = json!({"after": {"email": email, "display_name": display_name, "role": role, "team_ids": []},
        "via": {"provider": provider.slug, "subject": identity.subject}});
    audit::append(tx, &context, Change::success("account.create", "account", account_id).with_details(details)).await?;
    Ok(AccountId(account_id))
}

/// Sets the mapped role, except that the last active administrator stays one (as in
/// user administration): a provider's group change must not lock everyone out.
async fn sync_role(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: AccountId,
    current: Role,
    mapped: Role,
    context: &AuditContext,
    provider: &str,
) -> Result<Role, StoreError> {
    if current == mapped {
        return Ok(current);
    }
    if current == Role::Admin {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM account WHERE role = 'admin' AND disabled_at IS NULL AND account_id <> $1",
        )
        .bind(account_id.0)
        .fetch_one(&mut **tx)
        .await?;
        if others == 0 {
            tracing::warn!(account = %account_id, %provider, "the provider maps the last administrator to another role; kept as administrator");
            return Ok(current);
        }
    }
    sqlx::query("UPDATE account SET role = $1, updated_at = $2 WHERE account_id = $3")
        .bind(mapped.as_str())
        .bind(now_millis())
        .bind(account_id.0)
        .execute(&mut **tx)
        .await?;
    let details = json!({"before": {"role": current}, "after": {"role": mapped}, "via": {"provider": provider}});
    audit::append(tx, context, Change::success("account.update", "account", account_id).with_details(details)).await?;
    Ok(mapped)
}

/// Makes the account's teams exactly the mapped ones that exist.
async fn sync_teams(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: AccountId,
    team_names: &[String],
    context: &AuditContext,
    provider: &str,
) -> Result<(), StoreError> {
    let mut wanted: Vec<i64> = Vec::new();
    for name in team_names {
        let team: Option<i64> = sqlx::query_scalar("SELECT team_id FROM team WHERE name = $1").bind(name).fetch_optional(&mut **tx).await?;
        match team {
            Some(team_id) => wanted.push(team_id),
            None => tracing::warn!(team = %name, %provider, "the provider's team mapping names a team that no longer exists"),
        }
    }
    wanted.sort_unstable();
    let rows = sqlx::query("SELECT team_id FROM team_member WHERE account_id = $1 ORDER BY team_id")
        .bind(account_id.0)
        .fetch_all(&mut **tx)
        .await?;
    let current: Vec<i64> = rows.iter().map(|row| row.try_get("team_id")).collect::<Result<_, _>>()?;
    if current == wanted {
        return Ok(());
    }
    sqlx::query("DELETE FROM team_member WHERE account_id = $1").bind(account_id.0).execute(&mut **tx).await?;
    for team_id in &wanted {
        sqlx::query("INSERT INTO team_member (team_id, account_id) VALUES ($1, $2)").bind(team_id).bind(account_id.0).execute(&mut **tx).await?;
    }
    let details = json!({"before": {"team_ids": current}, "after": {"team_ids": wanted}, "via": {"provider": provider}});
    audit::append(tx, context, Change::success("account.update", "account", account_id).with_details(details)).await?;
    Ok(())
}

/// The identities an account signs in with, by provider name.
pub async fn identities_of(db: &Db, account_id: AccountId) -> Result<Vec<LinkedIdentity>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.provider_id, p.display_name, i.subject, i.linked_at, i.last_login_at \
         FROM sso_identity i JOIN sso_provider p ON p.provider_id = i.provider_id \
         WHERE i.account_id = $1 ORDER BY p.display_name, i.subject",
    )
    .bind(account_id.0)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LinkedIdentity {
                provider_id: row.try_get("provider_id")?,
                provider: row.try_get("display_name")?,
                subject: row.try_get("subject")?,
                linked_at: row.try_get("linked_at")?,
                last_login_at: row.try_get("last_login_at")?,
            })
        })
        .collect()
}

/// Removes an account's link to a provider (a wrong link, or a person who left): the next
/// sign-in through it is treated as a first one. Audited.
pub async fn unlink(db: &Db, account_id: AccountId, provider_id: i64, context: &AuditContext) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let subject: Option<String> =
        sqlx::query_scalar("DELETE FROM sso_identity WHERE account_id = $1 AND provider_id = $2 RETURNING subject")
            .bind(account_id.0)
            .bind(provider_id)
            .fetch_optional(&mut *tx)
            .await?;
    let subject = subject.ok_or(StoreError::NotFound("linked identity"))?;
    let details = json!({"provider_id": provider_id, "subject": subject});
    audit::append(&mut tx, context, Change::success("sso_identity.unlink", "account", account_id).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}
