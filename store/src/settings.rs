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
    let problems = edit_problems(edits, &known);
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

/// What is wrong with a set of data-class corrections, at its paths.
fn edit_problems(edits: &ClassEdits, known: &BTreeSet<String>) -> Vec<SettingProblem> {
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
    problems
}

/// One API's settings as a policy import states them: the API's protection, and for every
/// operation its override and corrections (operations left out are reset to none).
pub struct ApiSettings {
    pub api: ApiId,
    /// Where the settings came from, for problems: `apis[Pets (production)]`.
    pub place: String,
    pub protection: Protection,
    /// Operation id → its place, override and corrections.
    pub operations: Vec<(i64, String, Protection, ClassEdits)>,
}

/// What an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    pub classes_created: Vec<String>,
    pub classes_updated: Vec<String>,
    pub apis_changed: Vec<String>,
    pub operations_changed: usize,
}

/// Applies a whole policy in one transaction: custom data classes (created or redefined;
/// none deleted), then each API's settings. Everything is checked first and all problems
/// come back at their places; then nothing or everything is written, each change audited
/// as if made by hand, and one `policy.import` entry sums it up.
pub async fn import_policy(
    db: &Db,
    classes: &[crate::CustomClass],
    apis: &[ApiSettings],
    context: &AuditContext,
) -> Result<ImportSummary, StoreError> {
    let mut problems = Vec::new();
    let mut checked_classes = Vec::new();
    for (index, class) in classes.iter().enumerate() {
        match crate::custom_classes::checked(&class.name, &class.description, &class.keywords, &class.patterns) {
            Ok(class) => checked_classes.push(class),
            Err(StoreError::Invalid { field, message }) => problems.push(problem(format!("data_classes[{index}].{field}"), message)),
            Err(error) => return Err(error),
        }
    }
    let mut known = crate::custom_classes::known_classes(db).await?;
    known.extend(checked_classes.iter().map(|class| class.name.clone()));
    let named: Vec<ClientAppId> = apis
        .iter()
        .flat_map(|api| std::iter::once(&api.protection).chain(api.operations.iter().map(|(_, _, protection, _)| protection)))
        .flat_map(Protection::client_apps)
        .collect();
    let existing = crate::client_apps::existing_ids(db, &named).await?;
    for api in apis {
        let detail = find_api(db, api.api).await?;
        let check_one = |protection: &Protection, parameters: Option<&[String]>, at: &str| {
            let mut found: Vec<SettingProblem> =
                protection.problems(parameters).into_iter().map(|p| problem(format!("{at}.protection.{}", p.path), p.message)).collect();
            for missing in protection.client_apps().iter().filter(|id| !existing.contains(id)) {
                found.push(problem(format!("{at}.protection"), format!("no client application has id {missing}")));
            }
            for class in protection.data_classes().difference(&known) {
                found.push(problem(format!("{at}.protection.data.grants"), format!("{class:?} is not a data class (built-in or custom)")));
            }
            found
        };
        problems.extend(check_one(&api.protection, None, &api.place));
        for (operation, place, protection, edits) in &api.operations {
            let Some(declared) = detail.operations.iter().find(|o| o.id == *operation) else {
                return Err(StoreError::NotFound("operation"));
            };
            problems.extend(check_one(protection, Some(&path_parameters(&declared.path)), place));
            problems.extend(edit_problems(edits, &known).into_iter().map(|found| problem(format!("{place}.class_edits.{}", found.path), found.message)));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(StoreError::Settings(problems));
    }

    let mut tx = db.pool().begin().await?;
    let now = now_millis();
    // Written first: takes SQLite's write lock before anything is read.
    sqlx::query("UPDATE api SET updated_at = updated_at WHERE api_id = -1").execute(&mut *tx).await?;
    let mut summary = ImportSummary::default();
    for class in &checked_classes {
        let stored: Option<(String, String, String)> =
            sqlx::query_as("SELECT description, keywords, patterns FROM data_class WHERE name = $1").bind(&class.name).fetch_optional(&mut *tx).await?;
        let (keywords, patterns) = (json_text(&class.keywords), json_text(&class.patterns));
        match stored {
            Some(stored) if stored == (class.description.clone(), keywords.clone(), patterns.clone()) => continue,
            Some(_) => {
                sqlx::query("UPDATE data_class SET description = $1, keywords = $2, patterns = $3 WHERE name = $4")
                    .bind(&class.description)
                    .bind(&keywords)
                    .bind(&patterns)
                    .bind(&class.name)
                    .execute(&mut *tx)
                    .await?;
                summary.classes_updated.push(class.name.clone());
            }
            None => {
                sqlx::query("INSERT INTO data_class (name, description, keywords, patterns, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&class.name)
                    .bind(&class.description)
                    .bind(&keywords)
                    .bind(&patterns)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                summary.classes_created.push(class.name.clone());
            }
        }
        let action = if summary.classes_created.last() == Some(&class.name) { "data_class.create" } else { "data_class.update" };
        let details = serde_json::json!({"after": {"keywords": class.keywords, "patterns": class.patterns}, "source": "policy import"});
        audit::append(&mut tx, context, Change::success(action, "data_class", &class.name).with_details(details)).await?;
    }
    if !summary.classes_created.is_empty() || !summary.classes_updated.is_empty() {
        crate::custom_classes::reclassify_all(&mut tx).await?;
    }
    for api in apis {
        let mut changed = false;
        let before: String = sqlx::query_scalar("SELECT protection FROM api WHERE api_id = $1").bind(api.api.0).fetch_one(&mut *tx).await?;
        if json_value::<Protection>(&before) != api.protection {
            sqlx::query("UPDATE api SET protection = $1 WHERE api_id = $2").bind(json_text(&api.protection)).bind(api.api.0).execute(&mut *tx).await?;
            let details = serde_json::json!({"before": json_value::<serde_json::Value>(&before), "after": api.protection, "source": "policy import"});
            audit::append(&mut tx, context, Change::success("api.protection", "api", api.api.0).with_details(details)).await?;
            changed = true;
        }
        let stored: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT api_operation_id, path, protection, class_edits FROM api_operation WHERE api_id = $1 ORDER BY api_operation_id")
                .bind(api.api.0)
                .fetch_all(&mut *tx)
                .await?;
        let mut edits_changed = false;
        for (operation, path, before, before_edits) in stored {
            let (protection, edits) = api
                .operations
                .iter()
                .find(|(id, ..)| *id == operation)
                .map(|(_, _, protection, edits)| (protection.clone(), edits.clone()))
                .unwrap_or_default();
            if json_value::<Protection>(&before) != protection {
                sqlx::query("UPDATE api_operation SET protection = $1 WHERE api_operation_id = $2")
                    .bind(json_text(&protection))
                    .bind(operation)
                    .execute(&mut *tx)
                    .await?;
                let details = serde_json::json!({"operation": operation, "path": path, "before": json_value::<serde_json::Value>(&before), "after": protection, "source": "policy import"});
                audit::append(&mut tx, context, Change::success("api.operation_protection", "api", api.api.0).with_details(details)).await?;
                summary.operations_changed += 1;
                changed = true;
            }
            if json_value::<ClassEdits>(&before_edits) != edits {
                sqlx::query("UPDATE api_operation SET class_edits = $1 WHERE api_operation_id = $2").bind(json_text(&edits)).bind(operation).execute(&mut *tx).await?;
                let details = serde_json::json!({"operation": operation, "before": json_value::<serde_json::Value>(&before_edits), "after": edits, "source": "policy import"});
                audit::append(&mut tx, context, Change::success("api.data_classes", "api", api.api.0).with_details(details)).await?;
                summary.operations_changed += 1;
                edits_changed = true;
                changed = true;
            }
        }
        if edits_changed {
            refresh_api_classes(&mut tx, api.api.0).await?;
        }
        if changed {
            sqlx::query("UPDATE api SET updated_at = $1 WHERE api_id = $2").bind(now).bind(api.api.0).execute(&mut *tx).await?;
            summary.apis_changed.push(api.place.clone());
        }
    }
    let details = serde_json::to_value(&summary).unwrap_or_default();
    audit::append(&mut tx, context, Change::success("policy.import", "policy", "all").with_details(details)).await?;
    tx.commit().await?;
    Ok(summary)
}

/// Every client application that any protection names, for refusing to delete one in use.
pub async fn client_apps_in_use(db: &Db) -> Result<BTreeSet<ClientAppId>, StoreError> {
    let documents: Vec<String> = sqlx::query_scalar("SELECT protection FROM api UNION ALL SELECT protection FROM api_operation")
        .fetch_all(db.pool())
        .await?;
    Ok(documents.iter().flat_map(|text| json_value::<Protection>(text).client_apps()).collect())
}
