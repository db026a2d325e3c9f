//! `GET /audit/export`: the dashboard's download of the filtered audit range, as CSV or
//! JSON Lines, for the signed-in user (scoped like the Audit view).

use app::api::audit::{AuditFields, filter_from_fields};
use app::auth::ssr::CurrentPrincipal;
use app::state::AppState;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use store::{AuditEntry, audit};

/// Most entries one download holds; narrower filters get the rest.
pub const MAX_EXPORT_ENTRIES: usize = 100_000;

#[derive(Deserialize, Default)]
pub struct ExportQuery {
    format: Option<String>,
    #[serde(flatten)]
    filters: AuditFields,
}

/// One CSV field: quoted when needed (RFC 4180), and with a leading `'` where a
/// spreadsheet would otherwise run it as a formula (CSV injection).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from(
        "seq,at,actor_type,actor_id,actor_label,action,target_type,target_id,outcome,source,user_agent,request_id,reason,details,prev_hash,hash\n",
    );
    for e in entries {
        let fields = [
            e.seq.to_string(),
            e.at.to_string(),
            e.actor_type.clone(),
            e.actor_id.map(|id| id.to_string()).unwrap_or_default(),
            e.actor_label.clone(),
            e.action.clone(),
            e.target_type.clone(),
            e.target_id.clone(),
            e.outcome.clone(),
            e.source.clone(),
            e.user_agent.clone(),
            e.request_id.clone(),
            e.reason.clone().unwrap_or_default(),
            e.details.to_string(),
            e.prev_hash.clone(),
            e.hash.clone(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

pub async fn export(
    State(state): State<AppState>,
    principal: Option<axum::Extension<CurrentPrincipal>>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(principal) = principal.and_then(|axum::Extension(current)| current.0) else {
        return problem(StatusCode::UNAUTHORIZED, "sign in first".into());
    };
    let Ok(Query(query)) = query else {
        return problem(StatusCode::BAD_REQUEST, "unreadable filters".into());
    };
    let format = query.format.as_deref().unwrap_or("csv");
    if format != "csv" && format != "jsonl" {
        return problem(StatusCode::BAD_REQUEST, "format is csv or jsonl".into());
    }
    // A download covers the whole filtered range, not one page of it.
    let filter = filter_from_fields(AuditFields { cursor: None, ..query.filters });
    let mut filter = match filter {
        Ok(filter) => filter,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error.to_string()),
    };
    filter.limit = Some(audit::MAX_PAGE);
    let scope = (!principal.can_read_all_audit()).then_some(principal.account_id);
    let mut entries = Vec::new();
    loop {
        let page = match audit::search_entries(&state.db, &filter, scope).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "audit export failed");
                return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error; it has been logged".into());
            }
        };
        entries.extend(page.entries);
        match page.next_cursor {
            Some(before) if entries.len() < MAX_EXPORT_ENTRIES => filter.before_seq = Some(before),
            _ => break,
        }
    }
    entries.truncate(MAX_EXPORT_ENTRIES);
    // Oldest first, like the chain itself.
    entries.reverse();
    let (body, content_type) = if format == "csv" {
        (csv(&entries), "text/csv; charset=utf-8")
    } else {
        let lines: Vec<String> = entries.iter().filter_map(|e| serde_json::to_string(e).ok()).collect();
        (lines.join("\n") + if lines.is_empty() { "" } else { "\n" }, "application/x-ndjson")
    };
    let name = format!("attachment; filename=\"palisade-audit-{}.{format}\"", store::now_millis());
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
