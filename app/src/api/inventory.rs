//! The API inventory for the dashboard: everyone signed in reads it; developers register
//! and re-import their teams' APIs, security and admins any, auditors none.

use crate::error::AppError;
use leptos::prelude::*;
use store::{ApiDetail, ApiPosture, ApiSummary, EstatePosture, SpecDiff};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_signed_in, state, store_error};
#[cfg(feature = "ssr")]
use store::{ApiId, TeamId, apis, openapi};

/// Problems listed in one message next to the document field.
#[cfg(feature = "ssr")]
const PROBLEMS_SHOWN: usize = 10;

/// Reads a pasted document, turning its problems into one message for the form.
#[cfg(feature = "ssr")]
async fn parse_document(document: String) -> Result<openapi::ImportedSpec, AppError> {
    if document.trim().is_empty() {
        return Err(fail(AppError::invalid("document", "paste or choose an OpenAPI document")));
    }
    let parsed = tokio::task::spawn_blocking(move || openapi::parse(document.as_bytes(), openapi::Format::Detect))
        .await
        .map_err(|_| fail(AppError::Internal))?;
    parsed.map_err(|problems| {
        let mut listed: Vec<String> = problems.iter().take(PROBLEMS_SHOWN).map(ToString::to_string).collect();
        if problems.len() > PROBLEMS_SHOWN {
            listed.push(format!("and {} more", problems.len() - PROBLEMS_SHOWN));
        }
        fail(AppError::invalid("document", listed.join("; ")))
    })
}

/// Anyone signed in: every API.
#[server(prefix = "/rpc", endpoint = "list_apis")]
pub async fn list_apis() -> Result<Vec<ApiSummary>, AppError> {
    require_signed_in()?;
    apis::list_apis(&state()?.db).await.map_err(store_error)
}

/// Anyone signed in: one API with its operations.
#[server(prefix = "/rpc", endpoint = "get_api")]
pub async fn get_api(api_id: i64) -> Result<ApiDetail, AppError> {
    require_signed_in()?;
    apis::find_api(&state()?.db, ApiId(api_id)).await.map_err(store_error)
}

/// Anyone signed in: an API's posture findings and score.
#[server(prefix = "/rpc", endpoint = "get_api_posture")]
pub async fn get_api_posture(api_id: i64) -> Result<ApiPosture, AppError> {
    require_signed_in()?;
    apis::find_posture(&state()?.db, ApiId(api_id)).await.map_err(store_error)
}

/// Anyone signed in: every API's score and finding counts, and the estate's.
#[server(prefix = "/rpc", endpoint = "get_estate_posture")]
pub async fn get_estate_posture() -> Result<EstatePosture, AppError> {
    require_signed_in()?;
    apis::estate_posture(&state()?.db).await.map_err(store_error)
}

/// Developers for their own teams, security and admins for any: registers an API from a
/// pasted OpenAPI document (JSON or YAML).
#[server(prefix = "/rpc", endpoint = "import_api")]
pub async fn import_api(team_id: i64, environment: String, document: String) -> Result<ApiDetail, AppError> {
    let principal = require(|p| p.can_change_owned_by(TeamId(team_id)))?;
    let spec = parse_document(document).await?;
    let environment = if environment.trim().is_empty() { "production".to_owned() } else { environment };
    apis::create_api(&state()?.db, TeamId(team_id), &environment, &spec, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// The owning team's developers, security and admins: re-imports an API's document and
/// says what changed.
#[server(prefix = "/rpc", endpoint = "reimport_api")]
pub async fn reimport_api(api_id: i64, document: String) -> Result<SpecDiff, AppError> {
    let db = state()?.db;
    let principal = require_signed_in()?;
    let owner = apis::find_owner(&db, ApiId(api_id)).await.map_err(store_error)?;
    if !principal.can_change_owned_by(owner) {
        return Err(fail(AppError::Forbidden));
    }
    let spec = parse_document(document).await?;
    let (_, diff) = apis::reimport_spec(&db, ApiId(api_id), &spec, &audit_context(&principal)).await.map_err(store_error)?;
    Ok(diff)
}

/// The owning team's developers, security and admins: sets the API's lifecycle; `sunset`
/// is a date (YYYY-MM-DD, UTC) for a deprecated API, or empty.
#[server(prefix = "/rpc", endpoint = "set_api_lifecycle")]
pub async fn set_api_lifecycle(api_id: i64, lifecycle: String, sunset: String) -> Result<ApiSummary, AppError> {
    let db = state()?.db;
    let principal = require_signed_in()?;
    let owner = apis::find_owner(&db, ApiId(api_id)).await.map_err(store_error)?;
    if !principal.can_change_owned_by(owner) {
        return Err(fail(AppError::Forbidden));
    }
    let lifecycle: store::Lifecycle = lifecycle.parse().map_err(|message: String| fail(AppError::invalid("lifecycle", message)))?;
    let sunset_at = match sunset.trim() {
        "" => None,
        date => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let day = time::Date::parse(date, &format)
                .map_err(|_| fail(AppError::invalid("sunset", "give the date as YYYY-MM-DD")))?;
            Some((day.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
        }
    };
    apis::update_lifecycle(&db, ApiId(api_id), lifecycle, sunset_at, &audit_context(&principal)).await.map_err(store_error)
}
