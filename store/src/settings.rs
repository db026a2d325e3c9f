//! Stores what developers declare about an API beyond its document: its protection,
//! each operation's override, and corrections to the detected data classes. Every
//! change is checked whole (all problems at once, with their paths), then written with
//! its audit entry in one transaction.

use crate::apis::{find_api, json_text, json_value, refresh_api_classes};
use crate::audit::{self, AuditContext, Change};
use crate::protection::{ClassEdits, SettingProblem, path_parameters};
use crate::{ApiDetail, ApiId, ClientAppId, Db, Protection, StoreError, now_millis};
use std::collections::BTreeSet;

/// Corrections kept per operation at most.
const MAX_CLASS_EDITS: usize = 200;
const MAX_FIELD_CHARS: usize = 300;

fn problem(path: impl Into<String>, message: impl Into<String>) -> SettingProblem {
    SettingProblem { path: path.into(), message: message.into() }
}

/// The document's own problems plus those only the database can tell: client
/// applications that do not exist, data classes nobody defined.
async fn check(db: &Db, protection: &Protection, path_parameters: Option<&[String]>) -> Result<(), StoreError> {
    let mut problems = protection.problems(path_parameters);
    let named: Vec<ClientAppId> = protection.client_apps().into_iter().collect();
    let existing = crate::client_apps::existing_ids(db, &named).await?;
    for missing in named.iter().filter(|id| !existing.contains(id)) {
        problems.push(problem("client_app", format!("no client application has id {missing}")));
    }
    let known = crate::custom_classes::known_classes(db).await?;
    for class in protection.data_classes().difference(&known) {
        problems.push(problem("data.grants", format!("{class:?} is not a data class (built-in or custom)")));
    }
    problems.sort();
    if problems.is_empty() { Ok(()) } else { Err(StoreError::Settings(problems)) }
}

/// Replaces an API's protection.
pub async fn update_api_protection(
    db: &Db,
    api: ApiId,
    protection: &Protection,
    context: &AuditContext,
) -> Result<ApiDetail, StoreError> {
    check(db, protection, None).await?;
    let mut tx = db.pool().begin().await?;
    let before: Option<String> = sqlx::query_scalar(
        "UPDATE api SET updated_at = $1 WHERE api_id = $2 RETURNING protection",
    )
    .bind(now_millis())
    .bind(api.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else { return Err(StoreError::NotFound("API")) };
    sqlx::query("UPDATE api SET protection = $1 WHERE api_id = $2").bind(json_text(protection)).bind(api.0).execute(&mut *tx).await?;
    let details = serde_json::json!({"before": json_value::<serde_json::Value>(&before), "after": protection});
    audit::append(&mut tx, context, Change::success("api.protection", "api", api.0).with_details(details)).await?;
    tx.commit().await?;
    find_api(db, api).await
}

/// Replaces one operation's override (an empty document inherits everything).
pub async fn update_operation_protection(
    db: &Db,
    api: ApiId,
    operation: i64,
    protection: &Protection,
    context: &AuditContext,
) -> Result<ApiDetail, StoreError> {
    let path = operation_path(db, api, operation).await?;
    check(db, protection, Some(&path_parameters(&path))).await?;
    let mut tx = db.pool().begin().await?;
    // The API's row is written first: that takes SQLite's write lock at once.
    sqlx::query("UPDATE api SET updated_at = $1 WHERE api_id = $2").bind(now_millis()).bind(api.0).execute(&mut *tx).await?;
    let before: Option<String> = sqlx::query_scalar("SELECT protection FROM api_operation WHERE api_operation_id = $1 AND api_id = $2")
        .bind(operation)
        .bind(api.0)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(before) = before else { return Err(StoreError::NotFound("operation")) };
    sqlx::query("UPDATE api_operation SET protection = $1 WHERE api_operation_id = $2")
        .bind(json_text(protection))
        .bind(operation)
        .execute(&mut *tx)
        .await?;
    let details = serde_json::json!({"operation": operation, "path": path, "before": json_value::<serde_json::Value>(&before), "after": protection});
    audit::append(&mut tx, context, Change::success("api.operation_protection", "api", api.0).with_details(details)).await?;
    tx.commit().await?;
    find_api(db, api).await
}

/// The path template of an operation of `api`.
async fn operation_path(db: &Db, api: ApiId, operation: i64) -> Result<String, StoreError> {
    let path: Option<String> = sqlx::query_scalar("SELECT path FROM api_operation WHERE api_operation_id = $1 AND api_id = $2")
        .bind(operation)
        .bind(api.0)
        .fetch_optional(db.pool())
        .await?;
    path.ok_or(StoreError::NotFound("operation"))
}

/// Replaces one operation's data-class corrections.
pub async fn update_class_edits(
    db: &Db,
    api: ApiId,
    operation: i64,
    edits: &ClassEdits,
    context: &AuditContext,
) -> Result<ApiDetail, StoreError> {
    operation_path(db, api, operation).await?;
    let known = crate::custom_classes::known_classes(db).await?;
    let mut problems = Vec::new();
    if edits.added.len() + edits.removed.len() > MAX_CLASS_EDITS {
        problems.push(problem("added", format!("at most {MAX_CLASS_EDITS} corrections")));
    }
    for (list, hits) in [("added", &edits.added), ("removed", &edits.removed)] {
        for (index, hit) in hits.iter().enumerate() {
            let at = |field: &str| format!("{list}[{index}].{field}");
            if !known.contains(&hit.class) {
                problems.push(problem(at("class"), format!("{:?} is not a data class (built-in or custom)", hit.class)));
            }
            if hit.direction != "request" && hit.direction != "response" {
                problems.push(problem(at("direction"), "request or response"));
            }
            if hit.field.trim().is_empty() || hit.field.chars().count() > MAX_FIELD_CHARS || hit.field.chars().any(char::is_control) {
                problems.push(problem(at("field"), "name the field, like 200.body.email or query.phone"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Settings(problems));
    }
    let mut tx = db.pool().begin().await?;
    // The API's row is written first: that takes SQLite's write lock at once.
    sqlx::query("UPDATE api SET updated_at = $1 WHERE api_id = $2").bind(now_millis()).bind(api.0).execute(&mut *tx).await?;
    let before: Option<String> = sqlx::query_scalar("SELECT class_edits FROM api_operation WHERE api_operation_id = $1 AND api_id = $2")
        .bind(operation)
        .bind(api.0)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(before) = before else { return Err(StoreError::NotFound("operation")) };
    sqlx::query("UPDATE api_operation SET class_edits = $1 WHERE api_operation_id = $2")
        .bind(json_text(edits))
        .bind(operation)
        .execute(&mut *tx)
        .await?;
    refresh_api_classes(&mut tx, api.0).await?;
    let details = serde_json::json!({"operation": operation, "before": json_value::<serde_json::Value>(&before), "after": edits});
    audit::append(&mut tx, context, Change::success("api.data_classes", "api", api.0).with_details(details)).await?;
    tx.commit().await?;
    find_api(db, api).await
}

/// Every client application that any protection names, for refusing to delete one in use.
pub async fn client_apps_in_use(db: &Db) -> Result<BTreeSet<ClientAppId>, StoreError> {
    let documents: Vec<String> = sqlx::query_scalar("SELECT protection FROM api UNION ALL SELECT protection FROM api_operation")
        .fetch_all(db.pool())
        .await?;
    Ok(documents.iter().flat_map(|text| json_value::<Protection>(text).client_apps()).collect())
}
