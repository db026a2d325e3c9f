//! The API inventory: APIs registered from OpenAPI documents, their operations, and
//! re-imports applied as a diff in one transaction, audited with what they changed.

use crate::audit::{self, AuditContext, Change};
use crate::openapi::{ImportedOperation, ImportedSpec};
use crate::data_classes::{CustomRule, classes_of, classify_operation};
use crate::protection::ClassEdits;
use crate::{ApiDetail, ApiId, ApiSummary, DataClassHit, Db, Lifecycle, Operation, SpecDiff, StoreError, TeamId, now_millis};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

const MAX_NAME_CHARS: usize = 120;
const MAX_ENVIRONMENT_CHARS: usize = 32;
/// Operations named in one audit entry; the counts are always complete.
const MAX_LISTED_IN_AUDIT: usize = 50;

pub(crate) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

pub(crate) fn json_value<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

/// `GET /pets/{id}`: how an operation is named in diffs and the audit trail.
fn key(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

/// What re-import compares: everything the document says about an operation, and the
/// data classes found in it (which a change to a shared schema alone can move).
fn fingerprint(operation: &ImportedOperation, hits: &[DataClassHit]) -> String {
    json_text(&serde_json::json!([
        operation.operation_id,
        operation.summary,
        operation.parameters,
        operation.request_body,
        operation.responses,
        operation.security,
        operation.deprecated,
        hits,
    ]))
}

/// Each operation of `spec` with the data-class fields found in its schemas.
fn classified<'s>(spec: &'s ImportedSpec, custom: &[CustomRule]) -> Vec<(&'s ImportedOperation, Vec<DataClassHit>)> {
    spec.operations
        .iter()
        .map(|operation| {
            let hits = classify_operation(&operation.parameters, &operation.request_body, &operation.responses, &spec.components, custom);
            (operation, hits)
        })
        .collect()
}

fn all_classes(operations: &[(&ImportedOperation, Vec<DataClassHit>)]) -> Vec<String> {
    classes_of(&operations.iter().flat_map(|(_, hits)| hits.iter().cloned()).collect::<Vec<_>>())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds what an API takes from its document, as `$1`…`$9`: description, version, base
/// URLs, tags, contacts, OpenAPI version, digest, components, data classes.
fn bind_spec<'q>(query: AnyQuery<'q>, spec: &'q ImportedSpec, classes: &[String]) -> AnyQuery<'q> {
    query
        .bind(&spec.description)
        .bind(&spec.version)
        .bind(json_text(&spec.servers))
        .bind(json_text(&spec.tags))
        .bind(json_text(&spec.contacts))
        .bind(&spec.openapi_version)
        .bind(&spec.digest)
        .bind(json_text(&spec.components))
        .bind(json_text(&classes))
}

/// Binds what an operation takes from its document, as `$1`…`$8`: operationId, summary,
/// parameters, request body, responses, security, deprecated, data classes.
fn bind_operation<'q>(query: AnyQuery<'q>, operation: &'q ImportedOperation, hits: &[DataClassHit]) -> AnyQuery<'q> {
    query
        .bind(&operation.operation_id)
        .bind(&operation.summary)
        .bind(json_text(&operation.parameters))
        .bind(json_text(&operation.request_body))
        .bind(json_text(&operation.responses))
        .bind(json_text(&operation.security))
        .bind(i64::from(operation.deprecated))
        .bind(json_text(&hits))
}

/// Registers an API from its document, owned by `team`, with all its operations.
pub async fn create_api(
    db: &Db,
    team: TeamId,
    environment: &str,
    spec: &ImportedSpec,
    context: &AuditContext,
) -> Result<ApiDetail, StoreError> {
    let name = crate::text::clean_name("API name", &spec.title, MAX_NAME_CHARS)?;
    let environment = crate::text::clean_name("environment", environment, MAX_ENVIRONMENT_CHARS)?;
    let now = now_millis();
    let custom = crate::custom_classes::rules(&crate::custom_classes::list_custom_classes(db).await?);
    let operations = classified(spec, &custom);
    // Writing first (the team is checked by its foreign key) takes SQLite's write lock at
    // once, instead of upgrading a read mid-transaction, which fails under concurrency.
    let mut tx = db.pool().begin().await?;
    let insert = sqlx::query(
        "INSERT INTO api (description, version, base_urls, tags, contacts, openapi_version, spec_digest, \
         components, data_classes, team_id, name, environment, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING api_id",
    );
    let inserted = bind_spec(insert, spec, &all_classes(&operations))
        .bind(team.0)
        .bind(&name)
        .bind(&environment)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound("team"),
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { field: "API name" },
            _ => StoreError::from(error),
        })?;
    let api_id: i64 = inserted.try_get("api_id")?;
    for (operation, hits) in &operations {
        insert_operation(&mut tx, api_id, operation, hits).await?;
    }
    let details = serde_json::json!({"after": {
        "name": name, "team_id": team.0, "environment": environment, "version": spec.version,
        "operations": spec.operations.len(), "spec_digest": spec.digest,
    }});
    audit::append(&mut tx, context, Change::success("api.create", "api", api_id).with_details(details)).await?;
    tx.commit().await?;
    find_api(db, ApiId(api_id)).await
}

async fn insert_operation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    api_id: i64,
    operation: &ImportedOperation,
    hits: &[DataClassHit],
) -> Result<(), StoreError> {
    let insert = sqlx::query(
        "INSERT INTO api_operation (operation_id, summary, parameters, request_body, responses, security, \
         deprecated, data_classes, api_id, method, path) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    );
    bind_operation(insert, operation, hits)
        .bind(api_id)
        .bind(&operation.method)
        .bind(&operation.path)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Replaces an API's operations with a new document's, as a diff applied atomically:
/// unchanged operations are left alone, changed ones updated in place (keeping their
/// ids, and so anything attached to them), added ones inserted, removed ones deleted.
/// What Palisade holds beyond the document (name, team, environment, lifecycle) stays.
pub async fn reimport_spec(
    db: &Db,
    api: ApiId,
    spec: &ImportedSpec,
    context: &AuditContext,
) -> Result<(ApiDetail, SpecDiff), StoreError> {
    let custom = crate::custom_classes::rules(&crate::custom_classes::list_custom_classes(db).await?);
    let mut tx = db.pool().begin().await?;
    // A write first, so SQLite's write lock is taken at the start (see `create_api`).
    let before: Option<(String, String)> = sqlx::query_as(
        "UPDATE api SET updated_at = $1 WHERE api_id = $2 RETURNING version, spec_digest",
    )
    .bind(now_millis())
    .bind(api.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((old_version, old_digest)) = before else { return Err(StoreError::NotFound("API")) };
    let rows = sqlx::query(
        &format!("SELECT {OPERATION_COLUMNS} FROM api_operation WHERE api_id = $1"),
    )
    .bind(api.0)
    .fetch_all(&mut *tx)
    .await?;
    let mut existing: HashMap<String, (i64, String)> = HashMap::new();
    for row in &rows {
        let operation = operation_from_row(row)?;
        // Compared as detected, before the owner's corrections (which are kept anyway).
        let detected: Vec<DataClassHit> = json_value(&row.try_get::<String, _>("data_classes")?);
        let as_imported = ImportedOperation {
            method: operation.method.clone(),
            path: operation.path.clone(),
            operation_id: operation.operation_id.clone(),
            summary: operation.summary.clone(),
            parameters: operation.parameters.clone(),
            request_body: operation.request_body.clone(),
            responses: operation.responses.clone(),
            security: operation.security.clone(),
            deprecated: operation.deprecated,
        };
        existing.insert(
            key(&operation.method, &operation.path),
            (operation.id, fingerprint(&as_imported, &detected)),
        );
    }
    let operations = classified(spec, &custom);
    let mut diff = SpecDiff::default();
    for (operation, hits) in &operations {
        let name = key(&operation.method, &operation.path);
        match existing.remove(&name) {
            None => {
                insert_operation(&mut tx, api.0, operation, hits).await?;
                diff.added.push(name);
            }
            Some((_, old)) if old == fingerprint(operation, hits) => {}
            Some((id, _)) => {
                let update = sqlx::query(
                    "UPDATE api_operation SET operation_id = $1, summary = $2, parameters = $3, request_body = $4, \
                     responses = $5, security = $6, deprecated = $7, data_classes = $8 WHERE api_operation_id = $9",
                );
                bind_operation(update, operation, hits)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                diff.changed.push(name);
            }
        }
    }
    for (name, (id, _)) in existing {
        sqlx::query("DELETE FROM api_operation WHERE api_operation_id = $1").bind(id).execute(&mut *tx).await?;
        diff.removed.push(name);
    }
    diff.added.sort();
    diff.removed.sort();
    diff.changed.sort();
    let update = sqlx::query(
        "UPDATE api SET description = $1, version = $2, base_urls = $3, tags = $4, contacts = $5, \
         openapi_version = $6, spec_digest = $7, components = $8, data_classes = $9, updated_at = $10 WHERE api_id = $11",
    );
    bind_spec(update, spec, &all_classes(&operations))
        .bind(now_millis())
        .bind(api.0)
        .execute(&mut *tx)
        .await?;
    refresh_api_classes(&mut tx, api.0).await?;
    let listed = |names: &[String]| names.iter().take(MAX_LISTED_IN_AUDIT).cloned().collect::<Vec<_>>();
    let details = serde_json::json!({
        "before": {"version": old_version, "spec_digest": old_digest},
        "after": {"version": spec.version, "spec_digest": spec.digest},
        "added": listed(&diff.added), "removed": listed(&diff.removed), "changed": listed(&diff.changed),
        "counts": {"added": diff.added.len(), "removed": diff.removed.len(), "changed": diff.changed.len()},
    });
    audit::append(&mut tx, context, Change::success("api.reimport", "api", api.0).with_details(details)).await?;
    tx.commit().await?;
    Ok((find_api(db, api).await?, diff))
}

const SUMMARY_COLUMNS: &str = "a.api_id, a.name, a.team_id, t.name AS team_name, a.environment, a.version, a.lifecycle, \
     a.sunset_at, a.updated_at, a.data_classes, (SELECT COUNT(*) FROM api_operation o WHERE o.api_id = a.api_id) AS operation_count";

fn summary_from_row(row: &AnyRow) -> Result<ApiSummary, StoreError> {
    let lifecycle: String = row.try_get("lifecycle")?;
    Ok(ApiSummary {
        id: ApiId(row.try_get("api_id")?),
        name: row.try_get("name")?,
        team_id: TeamId(row.try_get("team_id")?),
        team_name: row.try_get("team_name")?,
        environment: row.try_get("environment")?,
        version: row.try_get("version")?,
        lifecycle: lifecycle.parse().unwrap_or(Lifecycle::Active),
        sunset_at: row.try_get("sunset_at")?,
        operation_count: row.try_get("operation_count")?,
        updated_at: row.try_get("updated_at")?,
        data_classes: json_value(&row.try_get::<String, _>("data_classes")?),
    })
}

pub(crate) const OPERATION_COLUMNS: &str = "api_operation_id, method, path, operation_id, summary, parameters, \
     request_body, responses, security, deprecated, data_classes, class_edits, protection";

pub(crate) fn operation_from_row(row: &AnyRow) -> Result<Operation, StoreError> {
    let text = |column: &str| -> Result<serde_json::Value, StoreError> {
        let text: String = row.try_get(column)?;
        Ok(json_value(&text))
    };
    let deprecated: i64 = row.try_get("deprecated")?;
    let detected: Vec<DataClassHit> = json_value(&row.try_get::<String, _>("data_classes")?);
    let class_edits: ClassEdits = json_value(&row.try_get::<String, _>("class_edits")?);
    Ok(Operation {
        id: row.try_get("api_operation_id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        operation_id: row.try_get("operation_id")?,
        summary: row.try_get("summary")?,
        parameters: text("parameters")?,
        request_body: text("request_body")?,
        responses: text("responses")?,
        security: text("security")?,
        deprecated: deprecated != 0,
        data_classes: class_edits.apply(&detected),
        class_edits,
        protection: json_value(&row.try_get::<String, _>("protection")?),
    })
}

/// Every API, by name and environment.
pub async fn list_apis(db: &Db) -> Result<Vec<ApiSummary>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM api a JOIN team t ON t.team_id = a.team_id ORDER BY a.name, a.environment"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(summary_from_row).collect()
}

/// One API with its operations, ordered by path then method.
/// The API's OpenAPI `components` as imported, which schemas refer into (`null` when
/// the document has none).
pub async fn find_components(db: &Db, api: ApiId) -> Result<serde_json::Value, StoreError> {
    let text: String = sqlx::query_scalar("SELECT components FROM api WHERE api_id = $1")
        .bind(api.0)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("API"))?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

pub async fn find_api(db: &Db, api: ApiId) -> Result<ApiDetail, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS}, a.description, a.base_urls, a.tags, a.contacts, a.openapi_version, \
         a.spec_digest, a.created_at, a.protection FROM api a JOIN team t ON t.team_id = a.team_id WHERE a.api_id = $1"
    ))
    .bind(api.0)
    .fetch_optional(db.pool())
    .await?
    .ok_or(StoreError::NotFound("API"))?;
    let operations = sqlx::query(
        &format!("SELECT {OPERATION_COLUMNS} FROM api_operation WHERE api_id = $1 ORDER BY path, method"),
    )
    .bind(api.0)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(operation_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    let list = |column: &str| -> Result<Vec<String>, StoreError> {
        let text: String = row.try_get(column)?;
        Ok(json_value(&text))
    };
    Ok(ApiDetail {
        summary: summary_from_row(&row)?,
        description: row.try_get("description")?,
        base_urls: list("base_urls")?,
        tags: list("tags")?,
        contacts: list("contacts")?,
        openapi_version: row.try_get("openapi_version")?,
        spec_digest: row.try_get("spec_digest")?,
        created_at: row.try_get("created_at")?,
        protection: json_value(&row.try_get::<String, _>("protection")?),
        operations,
    })
}

/// Sets an API's class list to the distinct classes of its operations, corrections
/// included: after a re-import, a correction or a change of custom classes.
pub(crate) async fn refresh_api_classes(tx: &mut sqlx::Transaction<'_, sqlx::Any>, api_id: i64) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT data_classes, class_edits FROM api_operation WHERE api_id = $1").bind(api_id).fetch_all(&mut **tx).await?;
    let hits: Vec<DataClassHit> = rows
        .iter()
        .flat_map(|(detected, edits)| json_value::<ClassEdits>(edits).apply(&json_value::<Vec<DataClassHit>>(detected)))
        .collect();
    sqlx::query("UPDATE api SET data_classes = $1 WHERE api_id = $2")
        .bind(json_text(&classes_of(&hits)))
        .bind(api_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The team that owns `api`, for ownership checks before a change.
pub async fn find_owner(db: &Db, api: ApiId) -> Result<TeamId, StoreError> {
    let team: Option<i64> =
        sqlx::query_scalar("SELECT team_id FROM api WHERE api_id = $1").bind(api.0).fetch_optional(db.pool()).await?;
    team.map(TeamId).ok_or(StoreError::NotFound("API"))
}

async fn team_members(db: &Db, team: TeamId) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM team_member WHERE team_id = $1").bind(team.0).fetch_one(db.pool()).await?)
}

/// One API's posture findings and score.
pub async fn find_posture(db: &Db, api: ApiId) -> Result<crate::ApiPosture, StoreError> {
    posture_of(db, &find_api(db, api).await?).await
}

/// The posture of an API already loaded, so callers that hold it do not load it twice.
pub async fn posture_of(db: &Db, detail: &ApiDetail) -> Result<crate::ApiPosture, StoreError> {
    posture_with(db, detail, &crate::client_apps::list_client_apps(db).await?).await
}

/// The posture of an API, given every client application (loaded once for the estate).
async fn posture_with(db: &Db, detail: &ApiDetail, all_apps: &[crate::ClientApp]) -> Result<crate::ApiPosture, StoreError> {
    let members = team_members(db, detail.summary.team_id).await?;
    let now = now_millis();
    // Keys matter where they can be used: the applications L2 admits, else any.
    let admitted = detail.protection.requestor.as_ref().map(|r| r.client_apps.as_slice()).filter(|apps| !apps.is_empty());
    let apps: Vec<crate::ClientApp> =
        all_apps.iter().filter(|app| admitted.is_none_or(|ids| ids.contains(&app.id))).cloned().collect();
    let keys_due = crate::client_apps::keys_due_for_rotation(&apps, now);
    let findings = crate::findings::check_api(detail, members, &keys_due, now);
    let score = crate::findings::score(&findings, detail.operations.len());
    Ok(crate::ApiPosture { api: detail.summary.clone(), score, findings })
}

/// Every API's score and finding counts, worst first, and the estate's mean score.
pub async fn estate_posture(db: &Db) -> Result<crate::EstatePosture, StoreError> {
    let mut apis = Vec::new();
    let all_apps = crate::client_apps::list_client_apps(db).await?;
    for summary in list_apis(db).await? {
        let posture = posture_with(db, &find_api(db, summary.id).await?, &all_apps).await?;
        let count = |severity| posture.findings.iter().filter(|f| f.severity == severity).count();
        apis.push(crate::ApiScore {
            score: posture.score,
            high: count(crate::Severity::High),
            medium: count(crate::Severity::Medium),
            low: count(crate::Severity::Low),
            api: posture.api,
        });
    }
    apis.sort_by(|a, b| a.score.cmp(&b.score).then_with(|| a.api.name.cmp(&b.api.name)));
    let score = (!apis.is_empty())
        .then(|| (apis.iter().map(|a| f64::from(a.score)).sum::<f64>() / apis.len() as f64).round() as u8);
    Ok(crate::EstatePosture { score, apis })
}

/// Sets where an API is in its life. A sunset date belongs to a deprecated API only.
pub async fn update_lifecycle(
    db: &Db,
    api: ApiId,
    lifecycle: Lifecycle,
    sunset_at: Option<i64>,
    context: &AuditContext,
) -> Result<ApiSummary, StoreError> {
    if sunset_at.is_some() && lifecycle != Lifecycle::Deprecated {
        return Err(StoreError::invalid("sunset", "only a deprecated API has a sunset date"));
    }
    let mut tx = db.pool().begin().await?;
    // The old values come from before the write, in the same transaction, which the
    // UPDATE's row lock (or SQLite's write lock) keeps consistent.
    let before: Option<(String, Option<i64>)> = sqlx::query_as(
        "UPDATE api SET updated_at = $1 WHERE api_id = $2 RETURNING lifecycle, sunset_at",
    )
    .bind(now_millis())
    .bind(api.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((old_lifecycle, old_sunset)) = before else { return Err(StoreError::NotFound("API")) };
    sqlx::query("UPDATE api SET lifecycle = $1, sunset_at = $2 WHERE api_id = $3")
        .bind(lifecycle.as_str())
        .bind(sunset_at)
        .bind(api.0)
        .execute(&mut *tx)
        .await?;
    let details = serde_json::json!({
        "before": {"lifecycle": old_lifecycle, "sunset_at": old_sunset},
        "after": {"lifecycle": lifecycle.as_str(), "sunset_at": sunset_at},
    });
    audit::append(&mut tx, context, Change::success("api.lifecycle", "api", api.0).with_details(details)).await?;
    tx.commit().await?;
    Ok(find_api(db, api).await?.summary)
}
