//! `GET /api/v1/audit`: the audit trail with filters and cursor pagination. Auditors and
//! admins read everything; everyone else reads the entries made by or about themselves.

use super::{ApiError, Caller, ErrorBody};
use app::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use store::{AuditFilter, audit};
use utoipa::{IntoParams, ToSchema};

/// Filters; every one narrows the result.
#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Part of the actor's label (an email), any case.
    actor: Option<String>,
    /// An exact action (`account.create`) or a family (`account`).
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    from: Option<i64>,
    /// Unix milliseconds, exclusive.
    to: Option<i64>,
    /// Free text over actor, action, target, details, reason and source.
    q: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    /// Entries per page, 1 to 200 (default 50).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryBody {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor_type: String,
    pub actor_id: Option<i64>,
    pub actor_label: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: String,
    pub source: String,
    pub user_agent: String,
    pub request_id: String,
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPageBody {
    /// Newest first.
    pub entries: Vec<AuditEntryBody>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Audit entries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "A page of entries (others' entries only for auditors and admins)", body = AuditPageBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 422, description = "A filter is out of range", body = ErrorBody),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPageBody>, ApiError> {
    let principal = caller.require(|_| true)?;
    let Query(query) = query.map_err(|rejection| ApiError::Invalid(rejection.body_text()))?;
    if query.limit.is_some_and(|limit| !(1..=audit::MAX_PAGE).contains(&limit)) {
        return Err(ApiError::Invalid(format!("limit must be between 1 and {}", audit::MAX_PAGE)));
    }
    let filter = AuditFilter {
        actor: text(query.actor),
        action: text(query.action),
        target_type: text(query.target_type),
        target_id: text(query.target_id),
        outcome: text(query.outcome),
        from: query.from,
        to: query.to,
        text: text(query.q),
        before_seq: query.cursor,
        limit: query.limit,
    };
    let scope = (!principal.can_read_all_audit()).then_some(principal.account_id);
    let page = audit::search_entries(&state.db, &filter, scope).await?;
    Ok(Json(AuditPageBody {
        next_cursor: page.next_cursor,
        entries: page
            .entries
            .into_iter()
            .map(|e| AuditEntryBody {
                seq: e.seq,
                at: e.at,
                actor_type: e.actor_type,
                actor_id: e.actor_id,
                actor_label: e.actor_label,
                action: e.action,
                target_type: e.target_type,
                target_id: e.target_id,
                outcome: e.outcome,
                source: e.source,
                user_agent: e.user_agent,
                request_id: e.request_id,
                reason: e.reason,
                details: e.details,
                prev_hash: e.prev_hash,
                hash: e.hash,
            })
            .collect(),
    }))
}

/// A public key that signs audit checkpoints.
#[derive(Serialize, ToSchema)]
pub struct PublicKeyBody {
    pub key_id: String,
    /// `audit`.
    pub purpose: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Signatures dated after this are not accepted from this key.
    pub retired_at: Option<i64>,
}

/// The public keys that sign audit checkpoints, oldest first, in the form
/// `palisade audit verify --keys` reads. Public by nature: any signed-in caller may fetch
/// them to verify an export.
#[utoipa::path(
    get,
    path = "/api/v1/audit/keys",
    tag = "audit",
    security(("bearer" = ["admin", "security", "developer", "auditor"])),
    responses(
        (status = 200, description = "Every audit signing key, retired ones included", body = Vec<PublicKeyBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_audit_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<PublicKeyBody>>, ApiError> {
    caller.require(|_| true)?;
    let keys = store::signing::list_public_keys(&state.db, store::signing::KeyPurpose::Audit).await?;
    Ok(Json(
        keys.into_iter()
            .map(|key| PublicKeyBody {
                key_id: key.key_id,
                purpose: key.purpose,
                public_key: key.public_key,
                created_at: key.created_at,
                retired_at: key.retired_at,
            })
            .collect(),
    ))
}
