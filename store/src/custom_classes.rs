//! An organisation's own data classes (a loyalty number, a patient id), defined by field
//! keywords and patterns. Defining or deleting one re-classifies every stored operation
//! in the same transaction, so the inventory never shows a stale picture.

use crate::audit::{self, AuditContext, Change};
use crate::data_classes::{BUILT_IN, CustomRule, classify_operation, normalised};
use crate::{CustomClass, Db, StoreError, now_millis};
use sqlx::Row;
use std::collections::BTreeSet;

const MAX_CLASS_NAME_CHARS: usize = 48;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_KEYWORDS: usize = 50;
const MAX_PATTERNS: usize = 20;
const MAX_PATTERN_CHARS: usize = 500;
/// Compiled size a pattern may reach; a pathological one is refused, not run.
const MAX_COMPILED_PATTERN_BYTES: usize = 256 * 1024;

/// `loyalty_number`: starts with a letter; lower-case letters, digits and `_`.
fn check_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= MAX_CLASS_NAME_CHARS;
    if !valid {
        return Err(StoreError::invalid(
            "name",
            format!("use lower-case letters, digits and _, starting with a letter, at most {MAX_CLASS_NAME_CHARS} characters"),
        ));
    }
    if BUILT_IN.contains(&name) {
        return Err(StoreError::invalid("name", format!("{name} is a built-in class")));
    }
    Ok(name.to_owned())
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_PATTERN_BYTES)
        .build()
        .map_err(|error| error.to_string().lines().last().unwrap_or("not a regular expression").trim().to_owned())
}

/// Checks and normalises a class definition.
pub(crate) fn checked(name: &str, description: &str, keywords: &[String], patterns: &[String]) -> Result<CustomClass, StoreError> {
    let name = check_name(name)?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(StoreError::invalid("description", "is too long"));
    }
    let keywords: Vec<String> = keywords.iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
    let patterns: Vec<String> = patterns.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    if keywords.is_empty() && patterns.is_empty() {
        return Err(StoreError::invalid("keywords", "give at least one keyword or pattern"));
    }
    if keywords.len() > MAX_KEYWORDS {
        return Err(StoreError::invalid("keywords", format!("at most {MAX_KEYWORDS}")));
    }
    if let Some(bad) = keywords.iter().find(|k| normalised(k).is_empty() || k.chars().count() > MAX_CLASS_NAME_CHARS) {
        return Err(StoreError::invalid("keywords", format!("{bad:?} is not a field name")));
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(StoreError::invalid("patterns", format!("at most {MAX_PATTERNS}")));
    }
    for pattern in &patterns {
        if pattern.chars().count() > MAX_PATTERN_CHARS {
            return Err(StoreError::invalid("patterns", "a pattern is too long"));
        }
        compile(pattern).map_err(|message| StoreError::invalid("patterns", format!("{pattern:?}: {message}")))?;
    }
    Ok(CustomClass { name, description: description.trim().to_owned(), keywords, patterns, created_at: now_millis() })
}

fn class_from_row(row: &sqlx::any::AnyRow) -> Result<CustomClass, StoreError> {
    let list = |column: &str| -> Result<Vec<String>, StoreError> {
        Ok(serde_json::from_str(&row.try_get::<String, _>(column)?).unwrap_or_default())
    };
    Ok(CustomClass {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        keywords: list("keywords")?,
        patterns: list("patterns")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Every custom class, by name.
pub async fn list_custom_classes(db: &Db) -> Result<Vec<CustomClass>, StoreError> {
    let rows = sqlx::query("SELECT name, description, keywords, patterns, created_at FROM data_class ORDER BY name")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(class_from_row).collect()
}

/// The classifier's view of the custom classes.
pub fn rules(classes: &[CustomClass]) -> Vec<CustomRule> {
    classes
        .iter()
        .map(|class| CustomRule {
            class: class.name.clone(),
            keywords: class.keywords.iter().map(|k| normalised(k)).collect(),
            // Checked when stored; one that no longer compiles is skipped, not fatal.
            patterns: class.patterns.iter().filter_map(|p| compile(p).ok()).collect(),
        })
        .collect()
}

/// Built-in and custom class names: what protection documents may name.
pub async fn known_classes(db: &Db) -> Result<BTreeSet<String>, StoreError> {
    let mut known: BTreeSet<String> = BUILT_IN.iter().map(|c| (*c).to_owned()).collect();
    known.extend(list_custom_classes(db).await?.into_iter().map(|c| c.name));
    Ok(known)
}

/// Defines a class and re-classifies every operation with it.
pub async fn create_custom_class(
    db: &Db,
    name: &str,
    description: &str,
    keywords: &[String],
    patterns: &[String],
    context: &AuditContext,
) -> Result<CustomClass, StoreError> {
    let class = checked(name, description, keywords, patterns)?;
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO data_class (name, description, keywords, patterns, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&class.name)
        .bind(&class.description)
        .bind(serde_json::to_string(&class.keywords).unwrap_or_default())
        .bind(serde_json::to_string(&class.patterns).unwrap_or_default())
        .bind(class.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict { field: "class name" },
            _ => StoreError::from(error),
        })?;
    let changed = reclassify_all(&mut tx).await?;
    let details = serde_json::json!({"after": {"keywords": class.keywords, "patterns": class.patterns}, "operations_reclassified": changed});
    audit::append(&mut tx, context, Change::success("data_class.create", "data_class", &class.name).with_details(details)).await?;
    tx.commit().await?;
    Ok(class)
}

/// Deletes a class no protection setting grants, and re-classifies without it.
pub async fn delete_custom_class(db: &Db, name: &str, context: &AuditContext) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let deleted = sqlx::query("DELETE FROM data_class WHERE name = $1").bind(name).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound("data class"));
    }
    let in_use: Vec<String> = sqlx::query_scalar("SELECT protection FROM api UNION ALL SELECT protection FROM api_operation")
        .fetch_all(&mut *tx)
        .await?;
    let granted = in_use
        .iter()
        .filter_map(|text| serde_json::from_str::<crate::Protection>(text).ok())
        .any(|protection| protection.data_classes().contains(name));
    if granted {
        return Err(StoreError::invalid("name", format!("{name} is granted in an L3 data rule; remove it there first")));
    }
    let changed = reclassify_all(&mut tx).await?;
    let details = serde_json::json!({"operations_reclassified": changed});
    audit::append(&mut tx, context, Change::success("data_class.delete", "data_class", name).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}

/// Classifies every stored operation again with the classes the transaction sees, and
/// refreshes each API's class list. Returns how many operations changed.
pub(crate) async fn reclassify_all(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<usize, StoreError> {
    let classes = sqlx::query("SELECT name, description, keywords, patterns, created_at FROM data_class")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(class_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let custom = rules(&classes);
    let apis: Vec<(i64, String)> = sqlx::query_as("SELECT api_id, components FROM api").fetch_all(&mut **tx).await?;
    let mut changed = 0;
    for (api_id, components) in apis {
        let components: serde_json::Value = serde_json::from_str(&components).unwrap_or_default();
        let operations = sqlx::query(
            "SELECT api_operation_id, parameters, request_body, responses, data_classes FROM api_operation WHERE api_id = $1",
        )
        .bind(api_id)
        .fetch_all(&mut **tx)
        .await?;
        for row in operations {
            let value = |column: &str| -> Result<serde_json::Value, StoreError> {
                Ok(serde_json::from_str(&row.try_get::<String, _>(column)?).unwrap_or_default())
            };
            let hits = classify_operation(&value("parameters")?, &value("request_body")?, &value("responses")?, &components, &custom);
            let text = serde_json::to_string(&hits).unwrap_or_default();
            if text != row.try_get::<String, _>("data_classes")? {
                sqlx::query("UPDATE api_operation SET data_classes = $1 WHERE api_operation_id = $2")
                    .bind(&text)
                    .bind(row.try_get::<i64, _>("api_operation_id")?)
                    .execute(&mut **tx)
                    .await?;
                changed += 1;
            }
        }
        crate::apis::refresh_api_classes(tx, api_id).await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_checked() {
        let ok = checked("loyalty_number", "", &[" loyaltyNo ".into(), "".into()], &["^LN[0-9]{8}$".into()]).unwrap();
        assert_eq!(ok.keywords, ["loyaltyNo"]);
        for (name, keywords, patterns, field) in [
            ("Loyalty", vec!["a".to_owned()], vec![], "name"),
            ("email", vec!["a".to_owned()], vec![], "name"),
            ("loyalty", vec![], vec![], "keywords"),
            ("loyalty", vec!["--".to_owned()], vec![], "keywords"),
            ("loyalty", vec![], vec!["(unclosed".to_owned()], "patterns"),
            ("loyalty", vec![], vec!["a{1000}{1000}".to_owned()], "patterns"),
        ] {
            match checked(name, "", &keywords, &patterns) {
                Err(StoreError::Invalid { field: found, .. }) => assert_eq!(found, field, "{name} {keywords:?} {patterns:?}"),
                other => panic!("{name} {keywords:?} {patterns:?} gave {other:?}"),
            }
        }
    }
}
