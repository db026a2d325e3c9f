//! Reading the audit trail from the dashboard: search and the chain's verification status.

use crate::error::AppError;
use leptos::prelude::*;
use store::{AuditPage, ChainStatus};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{fail, require, require_signed_in, state, store_error};

/// `YYYY-MM-DD` as Unix milliseconds at 00:00 UTC.
#[cfg(feature = "ssr")]
fn parse_day(field: &str, day: &str) -> Result<i64, AppError> {
    let invalid = || fail(AppError::invalid(field, "must be a date like 2026-11-23"));
    let mut parts = day.splitn(3, '-').map(|part| part.parse::<i32>());
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(date))) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let month = u8::try_from(month).ok().and_then(|m| time::Month::try_from(m).ok()).ok_or_else(invalid)?;
    let day = time::Date::from_calendar_date(year, month, u8::try_from(date).map_err(|_| invalid())?)
        .map_err(|_| invalid())?;
    Ok(day.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The dashboard's audit filters as typed (all optional text; `from`/`to` are days, `to`
/// inclusive). The Audit page's URL, its search and its download all use these names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditFields {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
}

impl AuditFields {
    /// The filter names, as they appear in the Audit page's URL (the cursor aside).
    pub const NAMES: [&'static str; 6] = ["actor", "action", "outcome", "from", "to", "q"];
}

/// The typed filters as a store filter, refusing what does not parse.
#[cfg(feature = "ssr")]
pub fn filter_from_fields(fields: AuditFields) -> Result<store::AuditFilter, AppError> {
    use super::non_empty;
    let AuditFields { actor, action, outcome, from, to, q, cursor } = fields;
    let from = non_empty(from).map(|day| parse_day("from", &day)).transpose()?;
    let to = non_empty(to).map(|day| parse_day("to", &day).map(|at| at + 86_400_000)).transpose()?;
    let before_seq = match non_empty(cursor) {
        Some(cursor) => Some(cursor.parse().map_err(|_| fail(AppError::invalid("cursor", "is not a position in the trail")))?),
        None => None,
    };
    let outcome = non_empty(outcome);
    if outcome.as_deref().is_some_and(|o| o != "success" && o != "failure") {
        return Err(fail(AppError::invalid("outcome", "is success or failure")));
    }
    Ok(store::AuditFilter {
        actor: non_empty(actor),
        action: non_empty(action),
        outcome,
        from,
        to,
        text: non_empty(q),
        before_seq,
        limit: Some(50),
        ..Default::default()
    })
}

/// Signed in: audit entries matching the filters, newest first. Auditors and admins search
/// everything; others, the entries made by or about themselves. `to` is inclusive.
#[server(prefix = "/rpc", endpoint = "search_audit")]
pub async fn search_audit(#[server(default)] filters: AuditFields) -> Result<AuditPage, AppError> {
    let principal = require_signed_in()?;
    let filter = filter_from_fields(filters)?;
    let scope = (!principal.can_read_all_audit()).then_some(principal.account_id);
    store::audit::search_entries(&state()?.db, &filter, scope).await.map_err(store_error)
}

/// Auditors and admins: whether the stored chain verifies.
#[server(prefix = "/rpc", endpoint = "audit_chain_status")]
pub async fn audit_chain_status() -> Result<ChainStatus, AppError> {
    require(store::Principal::can_read_all_audit)?;
    store::audit::chain_status(&state()?.db).await.map_err(store_error)
}
