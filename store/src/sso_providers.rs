//! The OpenID Connect providers admins configure: stored with the client secret sealed
//! under the master key, listed without it, opened only for a sign-in.

use crate::audit::{self, AuditContext, Change};
use crate::error::ResultExt;
use crate::signing::MasterKey;
use crate::sso::{SsoButton, SsoProvider, SsoProviderInput};
use crate::{Db, StoreError, now_millis};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "provider_id, slug, display_name, issuer_url, client_id, scopes, groups_claim, mapping, \
     create_accounts, link_by_email, enabled, created_at, updated_at";

/// Binds the secret to its provider: a sealed secret copied onto another row is refused.
fn sealing_context(provider_id: i64) -> Vec<u8> {
    format!("palisade sso client secret v1|{provider_id}").into_bytes()
}

fn provider_from_row(row: &AnyRow) -> Result<SsoProvider, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    let mapping: String = row.try_get("mapping")?;
    let flag = |name: &str| row.try_get::<i64, _>(name).map(|value| value != 0);
    Ok(SsoProvider {
        id: row.try_get("provider_id")?,
        slug: row.try_get("slug")?,
        display_name: row.try_get("display_name")?,
        issuer_url: row.try_get("issuer_url")?,
        client_id: row.try_get("client_id")?,
        scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        groups_claim: row.try_get("groups_claim")?,
        mapping: serde_json::from_str(&mapping).map_err(|error| StoreError::Database(sqlx::Error::Decode(error.into())))?,
        create_accounts: flag("create_accounts")?,
        link_by_email: flag("link_by_email")?,
        enabled: flag("enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn list(db: &Db) -> Result<Vec<SsoProvider>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM sso_provider ORDER BY display_name, slug")).fetch_all(db.pool()).await?;
    rows.iter().map(provider_from_row).collect()
}

/// The buttons of the sign-in page: enabled providers only.
pub async fn buttons(db: &Db) -> Result<Vec<SsoButton>, StoreError> {
    Ok(list(db)
        .await?
        .into_iter()
        .filter(|provider| provider.enabled)
        .map(|provider| SsoButton { slug: provider.slug, display_name: provider.display_name })
        .collect())
}

pub async fn find(db: &Db, provider_id: i64) -> Result<SsoProvider, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sso_provider WHERE provider_id = $1"))
        .bind(provider_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("sign-in provider"))?;
    provider_from_row(&row)
}

/// An enabled provider by the short name in its sign-in URL.
pub async fn find_enabled(db: &Db, slug: &str) -> Result<Option<SsoProvider>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sso_provider WHERE slug = $1 AND enabled = 1"))
        .bind(slug)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(provider_from_row).transpose()
}

/// The provider's client secret, for the token request of a sign-in. Never logged.
pub async fn client_secret(db: &Db, master: &MasterKey, provider_id: i64) -> Result<String, StoreError> {
    let sealed: String = sqlx::query_scalar("SELECT sealed_client_secret FROM sso_provider WHERE provider_id = $1")
        .bind(provider_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("sign-in provider"))?;
    let opened = hex::decode(sealed).ok().and_then(|sealed| master.open(&sealing_context(provider_id), &sealed));
    let secret = opened.and_then(|bytes| String::from_utf8(bytes).ok());
    secret.ok_or_else(|| StoreError::invalid("client secret", "cannot be opened with this server's master key; set it again"))
}

/// Creates or changes a provider (audited without the secret, noting whether it changed).
/// Teams named in the mapping must exist.
pub async fn save(db: &Db, master: &MasterKey, input: &SsoProviderInput, context: &AuditContext) -> Result<SsoProvider, StoreError> {
    let checked = input.check()?;
    for rule in &checked.mapping.teams {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT team_id FROM team WHERE name = $1").bind(&rule.team).fetch_optional(db.pool()).await?;
        if exists.is_none() {
            return Err(StoreError::invalid("team mapping", format!("there is no team named {:?}", rule.team)));
        }
    }
    let mapping = serde_json::to_string(&checked.mapping).unwrap_or_else(|_| "{}".to_owned());
    let scopes = checked.scopes.join(" ");
    let flag = |value: bool| i64::from(value);
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let (provider_id, action, before) = match input.id {
        Some(provider_id) => {
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sso_provider WHERE provider_id = $1"))
                .bind(provider_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("sign-in provider"))?;
            let before = provider_from_row(&row)?;
            sqlx::query(
                "UPDATE sso_provider SET slug = $1, display_name = $2, issuer_url = $3, client_id = $4, scopes = $5, \
                 groups_claim = $6, mapping = $7, create_accounts = $8, link_by_email = $9, enabled = $10, updated_at = $11 \
                 WHERE provider_id = $12",
            )
            .bind(&checked.slug)
            .bind(&checked.display_name)
            .bind(&checked.issuer_url)
            .bind(&checked.client_id)
            .bind(&scopes)
            .bind(&checked.groups_claim)
            .bind(&mapping)
            .bind(flag(input.create_accounts))
            .bind(flag(input.link_by_email))
            .bind(flag(input.enabled))
            .bind(now)
            .bind(provider_id)
            .execute(&mut *tx)
            .await
            .on_unique("slug")?;
            (provider_id, "sso_provider.update", Some(before))
        }
        None => {
            // The secret is sealed against the row's id, which exists only after the insert.
            let provider_id: i64 = sqlx::query_scalar(
                "INSERT INTO sso_provider (slug, display_name, issuer_url, client_id, sealed_client_secret, scopes, groups_claim, \
                 mapping, create_accounts, link_by_email, enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $10, $11, $11) RETURNING provider_id",
            )
            .bind(&checked.slug)
            .bind(&checked.display_name)
            .bind(&checked.issuer_url)
            .bind(&checked.client_id)
            .bind(&scopes)
            .bind(&checked.groups_claim)
            .bind(&mapping)
            .bind(flag(input.create_accounts))
            .bind(flag(input.link_by_email))
            .bind(flag(input.enabled))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .on_unique("slug")?;
            (provider_id, "sso_provider.create", None)
        }
    };
    if let Some(secret) = &checked.client_secret {
        let sealed = hex::encode(master.seal(&sealing_context(provider_id), secret.as_bytes()));
        sqlx::query("UPDATE sso_provider SET sealed_client_secret = $1 WHERE provider_id = $2")
            .bind(sealed)
            .bind(provider_id)
            .execute(&mut *tx)
            .await?;
    }
    let after = json!({"slug": checked.slug, "display_name": checked.display_name, "issuer_url": checked.issuer_url,
        "client_id": checked.client_id, "scopes": checked.scopes, "groups_claim": checked.groups_claim,
        "mapping": checked.mapping, "create_accounts": input.create_accounts, "link_by_email": input.link_by_email,
        "enabled": input.enabled});
    let details = json!({"before": before, "after": after, "client_secret_changed": checked.client_secret.is_some()});
    audit::append(&mut tx, context, Change::success(action, "sso_provider", provider_id).with_details(details)).await?;
    tx.commit().await?;
    find(db, provider_id).await
}

/// Removes a provider and every identity linked through it; the accounts stay.
pub async fn delete(db: &Db, provider_id: i64, context: &AuditContext) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sso_provider WHERE provider_id = $1"))
        .bind(provider_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("sign-in provider"))?;
    let before = provider_from_row(&row)?;
    // SQLite enforces the cascade only with foreign keys on; say it explicitly.
    sqlx::query("DELETE FROM sso_identity WHERE provider_id = $1").bind(provider_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM sso_provider WHERE provider_id = $1").bind(provider_id).execute(&mut *tx).await?;
    let details = json!({"before": before});
    audit::append(&mut tx, context, Change::success("sso_provider.delete", "sso_provider", provider_id).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}
