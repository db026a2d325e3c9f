//! Bundle revisions as stored: the exact signed bytes, who made and published each, and
//! why; label pins; and which revision an agent with given labels is meant to run.
//! Revision numbers are taken in the inserting transaction, so they only grow; a draft
//! older than the newest published revision can no longer be published (agents would
//! refuse it as stale).

use crate::audit::{self, AuditContext, Change};
use crate::{Db, StoreError, now_millis};
pub use crate::{BundlePin, BundleRecord, Labels, labels_match};
use sqlx::Row;
use sqlx::any::AnyRow;

const MAX_REASON_CHARS: usize = 1_000;

/// What a new revision is made of; the revision number is given by `insert_bundle`.
pub struct NewBundle<'a> {
    pub content_hash: &'a str,
    pub signing_key_id: &'a str,
    pub target: &'a Labels,
    /// `compiled`, `rollback`, `promotion`, `pin` (which also pins the target group to
    /// this revision), `key_announcement` or `credentials`.
    pub origin: &'a str,
    pub reissue_of: Option<i64>,
    pub summary: &'a serde_json::Value,
}

const COLUMNS: &str =
    "revision, created_at, created_by, content_hash, signing_key_id, target, origin, reissue_of, summary, published_at, published_by, reason";
const ORIGINS: [&str; 6] = ["compiled", "rollback", "promotion", "pin", "key_announcement", "credentials"];

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
        target: serde_json::from_value(json("target")?).unwrap_or_default(),
        origin: row.try_get("origin")?,
        reissue_of: row.try_get("reissue_of")?,
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
    if !ORIGINS.contains(&new.origin) || (new.origin == "compiled") != new.reissue_of.is_none() {
        return Err(StoreError::invalid("origin", "a re-issue names the revision it re-issues; a compiled bundle does not"));
    }
    if new.origin != "compiled" && reason.is_none() {
        return Err(StoreError::invalid("reason", "a re-issue is published at once, with a reason"));
    }
    for (key, value) in new.target {
        crate::check_label(key, value).map_err(|message| StoreError::Invalid { field: "target", message })?;
    }
    let target = labels_text(new.target);
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
        "INSERT INTO bundle (revision, created_at, created_by, content_hash, signing_key_id, target, origin, reissue_of, summary, signed, \
         published_at, published_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(revision)
    .bind(now)
    .bind(&context.actor.label)
    .bind(new.content_hash)
    .bind(new.signing_key_id)
    .bind(&target)
    .bind(new.origin)
    .bind(new.reissue_of)
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
    if new.origin == "pin" {
        pin_group(&mut tx, &target, revision, new.reissue_of.unwrap_or(revision), reason.as_deref().unwrap_or_default(), now, context).await?;
    }
    let action = match (new.origin, reason.is_some()) {
        ("compiled", false) => "bundle.draft",
        ("compiled", true) => "bundle.publish",
        ("rollback", _) => "bundle.rollback",
        ("promotion", _) => "bundle.promote",
        ("pin", _) => "bundle.pin",
        ("credentials", _) => "bundle.credentials",
        _ => "bundle.key_announcement",
    };
    let details = serde_json::json!({
        "content_hash": new.content_hash,
        "target": new.target,
        "origin": new.origin,
        "reissue_of": new.reissue_of,
        "summary": new.summary,
    });
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

/// The newest revision published to every agent, if any: what previews compare against.
pub async fn active_bundle(db: &Db) -> Result<Option<BundleRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM bundle WHERE published_at IS NOT NULL AND target = '{{}}' ORDER BY revision DESC LIMIT 1"
    ))
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Labels as stored: a JSON object with sorted keys, so one group has one text.
fn labels_text(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

async fn pin_group(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    labels: &str,
    revision: i64,
    pinned_to: i64,
    reason: &str,
    now: i64,
    context: &AuditContext,
) -> Result<(), StoreError> {
    if labels == "{}" {
        return Err(StoreError::invalid("labels", "name the label group to pin; to hold every agent, roll back instead"));
    }
    let updated = sqlx::query(
        "UPDATE bundle_pin SET revision = $1, pinned_to = $2, created_at = $3, created_by = $4, reason = $5 WHERE labels = $6",
    )
    .bind(revision)
    .bind(pinned_to)
    .bind(now)
    .bind(&context.actor.label)
    .bind(reason)
    .bind(labels)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query("INSERT INTO bundle_pin (labels, revision, pinned_to, created_at, created_by, reason) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(labels)
            .bind(revision)
            .bind(pinned_to)
            .bind(now)
            .bind(&context.actor.label)
            .bind(reason)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn pin_from_row(row: &AnyRow) -> Result<BundlePin, StoreError> {
    Ok(BundlePin {
        pin_id: row.try_get("pin_id")?,
        labels: serde_json::from_str(&row.try_get::<String, _>("labels")?).unwrap_or_default(),
        revision: row.try_get("revision")?,
        pinned_to: row.try_get("pinned_to")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        reason: row.try_get("reason")?,
    })
}

/// Every pin, most specific group first.
pub async fn list_pins(db: &Db) -> Result<Vec<BundlePin>, StoreError> {
    let rows = sqlx::query("SELECT pin_id, labels, revision, pinned_to, created_at, created_by, reason FROM bundle_pin ORDER BY pin_id DESC")
        .fetch_all(db.pool())
        .await?;
    let mut pins = rows.iter().map(pin_from_row).collect::<Result<Vec<_>, _>>()?;
    pins.sort_by_key(|pin| std::cmp::Reverse(pin.labels.len()));
    Ok(pins)
}

/// Releases a pinned group: its agents follow the next publish that reaches them.
pub async fn unpin(db: &Db, pin_id: i64, reason: &str, context: &AuditContext) -> Result<BundlePin, StoreError> {
    let reason = check_reason(reason)?;
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query("DELETE FROM bundle_pin WHERE pin_id = $1 RETURNING pin_id, labels, revision, pinned_to, created_at, created_by, reason")
        .bind(pin_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("pin"))?;
    let pin = pin_from_row(&row)?;
    let details = serde_json::json!({"labels": pin.labels, "revision": pin.revision, "pinned_to": pin.pinned_to});
    let change = Change { reason: Some(reason), ..Change::success("bundle.unpin", "bundle_pin", pin_id).with_details(details) };
    audit::append(&mut tx, context, change).await?;
    tx.commit().await?;
    Ok(pin)
}

/// For each target group that has published bundles, its newest published revision.
pub async fn newest_by_target(db: &Db) -> Result<Vec<(Labels, i64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT target, MAX(revision) FROM bundle WHERE published_at IS NOT NULL GROUP BY target ORDER BY MAX(revision)")
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|(target, revision)| (serde_json::from_str(&target).unwrap_or_default(), revision)).collect())
}

/// The revision an agent with `labels` is meant to run: its group's pin (the most specific
/// one when several match), else the newest published bundle whose target it matches.
pub fn meant_for(labels: &Labels, pins: &[BundlePin], newest_by_target: &[(Labels, i64)]) -> Option<i64> {
    if let Some(pin) = pins.iter().filter(|pin| labels_match(&pin.labels, labels)).max_by_key(|pin| (pin.labels.len(), pin.pin_id)) {
        return Some(pin.revision);
    }
    newest_by_target.iter().filter(|(target, _)| labels_match(target, labels)).map(|(_, revision)| *revision).max()
}

/// [`meant_for`], read from the database.
pub async fn revision_for(db: &Db, labels: &Labels) -> Result<Option<BundleRecord>, StoreError> {
    let pins = list_pins(db).await?;
    let newest = newest_by_target(db).await?;
    match meant_for(labels, &pins, &newest) {
        Some(revision) => Ok(Some(find_bundle(db, revision).await?)),
        None => Ok(None),
    }
}
