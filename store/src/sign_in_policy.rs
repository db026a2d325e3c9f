//! The sign-in policy admins set in the dashboard: which roles must have a second factor.
//! Until an admin sets it, the configured default applies (`PALISADE_MFA_REQUIRED_ROLES`).

use crate::audit::{self, AuditContext, Change};
use crate::{Db, Role, StoreError, now_millis};

/// The roles an admin chose, or `None` when nobody has set the policy yet.
pub async fn mfa_required_roles(db: &Db) -> Result<Option<Vec<Role>>, StoreError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT mfa_required_roles FROM sign_in_policy WHERE policy_id = 1").fetch_optional(db.pool()).await?;
    let Some(stored) = stored else { return Ok(None) };
    let names: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
    // A name this build does not know is skipped rather than failing every sign-in.
    Ok(Some(names.iter().filter_map(|name| name.parse().ok()).collect()))
}

/// Sets which roles must have a second factor (audited with before and after).
pub async fn set_mfa_required_roles(db: &Db, roles: &[Role], context: &AuditContext) -> Result<(), StoreError> {
    let mut names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let text = serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned());
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query("UPDATE sign_in_policy SET mfa_required_roles = $1, updated_at = $2, updated_by = $3 WHERE policy_id = 1 RETURNING policy_id")
        .bind(&text)
        .bind(now)
        .bind(&context.actor.label)
        .fetch_optional(&mut *tx)
        .await?;
    if updated.is_none() {
        sqlx::query("INSERT INTO sign_in_policy (policy_id, mfa_required_roles, updated_at, updated_by) VALUES (1, $1, $2, $3)")
            .bind(&text)
            .bind(now)
            .bind(&context.actor.label)
            .execute(&mut *tx)
            .await?;
    }
    let details = serde_json::json!({"mfa_required_roles": names});
    audit::append(&mut tx, context, Change::success("sign_in_policy.update", "sign_in_policy", 1).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}
