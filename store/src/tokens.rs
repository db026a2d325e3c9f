//! Personal API tokens: random secrets shown once, stored only as SHA-256 digests, with
//! expiry, revocation and last-used time.

use crate::audit::{self, AuditContext, Change};
use crate::error::ResultExt;
use crate::{AccountId, ApiToken, ApiTokenId, Db, Principal, StoreError, accounts, now_millis};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What every API token starts with, so secret scanners can recognise leaked ones.
pub const TOKEN_PREFIX: &str = "pal_";
const SHOWN_PREFIX_CHARS: usize = 12;
const MAX_TOKEN_NAME_CHARS: usize = 64;
/// `last_used_at` is written at most this often per token, not on every request.
const LAST_USED_RESOLUTION_MILLIS: i64 = 60_000;

/// A random secret: `prefix` followed by 256 bits in hex.
pub fn generate_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a high-entropy secret. A fast hash is enough: these secrets are
/// random, so there is nothing to guess, unlike passwords.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn validate_name(name: &str) -> Result<String, StoreError> {
    crate::text::clean_name("name", name, MAX_TOKEN_NAME_CHARS)
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: ApiTokenId(row.try_get("api_token_id")?),
        account_id: AccountId(row.try_get("account_id")?),
        name: row.try_get("name")?,
        prefix: row.try_get("token_prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TOKEN_COLUMNS: &str =
    "api_token_id, account_id, name, token_prefix, created_at, expires_at, last_used_at, revoked_at";

/// Creates a token and returns it with its secret, which is not stored and cannot be
/// shown again.
pub async fn create_token(
    db: &Db,
    account_id: AccountId,
    name: &str,
    expires_at: Option<i64>,
    context: &AuditContext,
) -> Result<(ApiToken, String), StoreError> {
    let name = validate_name(name)?;
    let now = now_millis();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(StoreError::invalid("expiry", "must be in the future"));
    }
    let secret = generate_secret(TOKEN_PREFIX);
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO api_token (account_id, name, token_digest, token_prefix, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(account_id.0)
    .bind(&name)
    .bind(digest(&secret))
    .bind(&secret[..SHOWN_PREFIX_CHARS])
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await
    .on_unique("name")?;
    let token = token_from_row(&row)?;
    let details = serde_json::json!({"after": {"account_id": account_id, "name": token.name, "prefix": token.prefix, "expires_at": expires_at}});
    audit::append(&mut tx, context, Change::success("api_token.create", "api_token", token.id).with_details(details)).await?;
    tx.commit().await?;
    Ok((token, secret))
}

/// The tokens of one account, newest first, revoked ones included (they are history).
pub async fn list_tokens(db: &Db, account_id: AccountId) -> Result<Vec<ApiToken>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_token WHERE account_id = $1 ORDER BY created_at DESC, api_token_id DESC"
    ))
    .bind(account_id.0)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(token_from_row).collect()
}

/// Revokes a token. With `owner`, only that account's token is touched: a token of
/// someone else is reported as not found, revealing nothing.
pub async fn revoke_token(
    db: &Db,
    token_id: ApiTokenId,
    owner: Option<AccountId>,
    context: &AuditContext,
) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let revoked = sqlx::query(
        "UPDATE api_token SET revoked_at = $1 \
         WHERE api_token_id = $2 AND ($3 IS NULL OR account_id = $3) AND revoked_at IS NULL",
    )
    .bind(now_millis())
    .bind(token_id.0)
    .bind(owner.map(|id| id.0))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(StoreError::NotFound("API token"));
    }
    audit::append(&mut tx, context, Change::success("api_token.revoke", "api_token", token_id)).await?;
    tx.commit().await?;
    Ok(())
}

/// The principal behind a presented secret, when the token is live and its account active.
pub async fn authenticate_token(db: &Db, secret: &str) -> Result<Option<Principal>, StoreError> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_digest = $1"))
        .bind(digest(secret))
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let token = token_from_row(&row)?;
    let now = now_millis();
    if !token.is_active(now) {
        return Ok(None);
    }
    if token.last_used_at.is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MILLIS) {
        sqlx::query("UPDATE api_token SET last_used_at = $1 WHERE api_token_id = $2")
            .bind(now)
            .bind(token.id.0)
            .execute(db.pool())
            .await?;
    }
    accounts::find_principal(db, token.account_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = generate_secret(TOKEN_PREFIX);
        let b = generate_secret(TOKEN_PREFIX);
        assert!(a.starts_with("pal_"));
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(a, b);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), a);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("  ").is_err());
        assert!(validate_name(&"n".repeat(65)).is_err());
        assert!(validate_name("ci\n").is_ok(), "trimmed");
        assert!(validate_name("c\u{7}i").is_err());
        assert_eq!(validate_name(" deploy ").unwrap(), "deploy");
    }
}
