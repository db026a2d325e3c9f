//! Bundle revisions as stored: the exact signed bytes, who made and published each, and
//! why. Revision numbers are taken in the inserting transaction, so they only grow; a
//! draft older than the active revision can no longer be published (agents would refuse
//! it as stale).

use crate::audit::{self, AuditContext, Change};
use crate::{Db, StoreError, now_millis};
pub use crate::BundleRecord;
use sqlx::Row;
use sqlx::any::AnyRow;

const MAX_REASON_CHARS: usize = 1_000;

/// What a new revision is made of; the revision number is given by `insert_bundle`.
pub struct NewBundle<'a> {
    pub content_hash: &'a str,
    pub signing_key_id: &'a str,
    pub target: &'a serde_json::Value,
    pub rollback_of: Option<i64>,
    pub summary: &'a serde_json::Value,
}

const COLUMNS: &str =
    "revision, created_at, created_by, content_hash, signing_key_id, target, rollback_of, summary, published_at, published_by, reason";

fn record_from_row(row: &AnyRow) -> Result<BundleRecord, StoreError> {
    let json = |column: &str| -> Result<serde_json::Value, StoreError> {
        Ok(serde_json::from_str(&row.try_get::<String, _>(column)?).unwrap_or_default())
    };
    Ok(BundleRecord {
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        content_hash: row.try_get("content_hash")?,
        signing_key_id: row.try_get("signing_key_id")?,
        target: json("target")?,
        rollback_of: row.try_get("rollback_of")?,
        summary: json("summary")?,
        published_at: row.try_get("published_at")?,
        published_by: row.try_get("published_by")?,
        reason: row.try_get("reason")?,
    })
}

fn check_reason(reason: &str) -> Result<String, StoreError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(StoreError::invalid("reason", "say why: it is kept in the revision history and the audit trail"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(StoreError::invalid("reason", "is too long"));
    }
    Ok(reason.to_owned())
}

/// Stores a new revision. `sign` gets the revision number and returns the signed bytes
/// (the revision is inside what is signed). With `publish_reason`, it is published at
/// once (a rollback); otherwise it is a draft.
pub async fn insert_bundle(
    db: &Db,
    new: NewBundle<'_>,
    sign: impl FnOnce(i64) -> Vec<u8>,
    publish_reason: Option<&str>,
    context: &AuditContext,
) -> Result<BundleRecord, StoreError> {
    let reason = publish_reason.map(check_reason).transpose()?;
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    // Takes the write lock (SQLite) before reading the last revision; on PostgreSQL the
    // primary key refuses a concurrent twin, which surfaces as a conflict.
    sqlx::query("UPDATE bundle SET revision = revision WHERE revision = -1").execute(&mut *tx).await?;
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(revision) FROM bundle").fetch_one(&mut *tx).await?;
    let revision = last.unwrap_or(0) + 1;
    let signed = String::from_utf8(sign(revision)).map_err(|_| StoreError::invalid("bundle", "the signed bundle is not text"))?;
    let published_by = reason.as_ref().map(|_| context.actor.label.clone());
    sqlx::query(
        "INSERT INTO bundle (revision, created_at, created_by, content_hash, signing_key_id, target, rollback_of, summary, signed, \
         published_at, published_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(revision)
    .bind(now)
    .bind(&context.actor.label)
    .bind(new.content_hash)
    .bind(new.signing_key_id)
    .bind(new.target.to_string())
    .bind(new.rollback_of)
    .bind(new.summary.to_string())
    .bind(&signed)
    .bind(reason.as_ref().map(|_| now))
    .bind(&published_by)
    .bind(&reason)
    .execute(&mut *tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict { field: "revision" },
        _ => StoreError::from(error),
    })?;
    let action = match (reason.is_some(), new.rollback_of) {
        (true, Some(_)) => "bundle.rollback",
        (true, None) => "bundle.publish",
        (false, _) => "bundle.draft",
    };
    let details = serde_json::json!({"content_hash": new.content_hash, "target": new.target, "rollback_of": new.rollback_of, "summary": new.summary});
    let change = Change { reason: reason.clone(), ..Change::success(action, "bundle", revision).with_details(details) };
    audit::append(&mut tx, context, change).await?;
    tx.commit().await?;
    find_bundle(db, revision).await
}

/// Publishes a draft, with the reason. A draft older than the active revision is refused.
pub async fn publish_bundle(db: &Db, revision: i64, reason: &str, context: &AuditContext) -> Result<BundleRecord, StoreError> {
    let reason = check_reason(reason)?;
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE bundle SET published_at = $1, published_by = $2, reason = $3 WHERE revision = $4 AND published_at IS NULL \
         AND revision > COALESCE((SELECT MAX(revision) FROM bundle WHERE published_at IS NOT NULL), 0)",
    )
    .bind(now)
    .bind(&context.actor.label)
    .bind(&reason)
    .bind(revision)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT published_at FROM bundle WHERE revision = $1").bind(revision).fetch_optional(&mut *tx).await?;
        return Err(match exists {
            None => StoreError::NotFound("bundle revision"),
            Some(Some(_)) => StoreError::invalid("revision", "is already published"),
            Some(None) => StoreError::invalid("revision", "is older than the active revision; compile a new draft"),
        });
    }
    audit::append(&mut tx, context, Change { reason: Some(reason), ..Change::success("bundle.publish", "bundle", revision) }).await?;
    tx.commit().await?;
    find_bundle(db, revision).await
}

/// Every revision, newest first.
pub async fn list_bundles(db: &Db) -> Result<Vec<BundleRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM bundle ORDER BY revision DESC")).fetch_all(db.pool()).await?;
    rows.iter().map(record_from_row).collect()
}

pub async fn find_bundle(db: &Db, revision: i64) -> Result<BundleRecord, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM bundle WHERE revision = $1"))
        .bind(revision)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("bundle revision"))?;
    record_from_row(&row)
}

/// The signed bytes of a revision, exactly as agents receive them.
pub async fn find_signed(db: &Db, revision: i64) -> Result<String, StoreError> {
    let signed: Option<String> =
        sqlx::query_scalar("SELECT signed FROM bundle WHERE revision = $1").bind(revision).fetch_optional(db.pool()).await?;
    signed.ok_or(StoreError::NotFound("bundle revision"))
}

/// The newest published revision, if any.
pub async fn active_bundle(db: &Db) -> Result<Option<BundleRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM bundle WHERE published_at IS NOT NULL ORDER BY revision DESC LIMIT 1"))
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(record_from_row).transpose()
}
