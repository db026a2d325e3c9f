//! How an API and its operations are protected, from the dashboard: structured forms for
//! authentication, the L3 data rule and rate limits, and a JSON editor for the whole
//! document (every level, several methods). The owning team's developers, security and
//! admins change; everyone signed in reads through `get_api`.

use crate::error::AppError;
use leptos::prelude::*;
use store::ApiDetail;

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require_signed_in, state, store_error};
#[cfg(feature = "ssr")]
use store::protection::{AuthMethod, AuthMode, Authentication, ClassEdits, ContractRule, DataAction, DataGrant, DataRule, Enforcement, RateLimit};
#[cfg(feature = "ssr")]
use store::{ApiId, ClientAppId, DataClassHit, Db, Principal, Protection, apis, settings};

/// The caller and the database, when the caller may change the API.
#[cfg(feature = "ssr")]
async fn owned(api_id: i64) -> Result<(Db, Principal), AppError> {
    let db = state()?.db;
    let principal = require_signed_in()?;
    let owner = apis::find_owner(&db, ApiId(api_id)).await.map_err(store_error)?;
    if !principal.can_change_owned_by(owner) {
        return Err(fail(AppError::Forbidden));
    }
    Ok((db, principal))
}

#[cfg(feature = "ssr")]
fn parse_document<T: serde::de::DeserializeOwned + Default>(document: &str) -> Result<T, AppError> {
    if document.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(document).map_err(|error| fail(AppError::invalid("document", format!("not a protection document: {error}"))))
}

/// Comma- or line-separated entries, trimmed, without empties.
pub fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The owning team's developers, security and admins: replaces the API's protection
/// with a JSON document.
#[server(prefix = "/rpc", endpoint = "set_protection")]
pub async fn set_protection(api_id: i64, document: String) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let protection: Protection = parse_document(&document)?;
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: replaces one operation's override
/// (an empty document inherits everything from the API).
#[server(prefix = "/rpc", endpoint = "set_operation_protection")]
pub async fn set_operation_protection(api_id: i64, operation_id: i64, document: String) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let protection: Protection = parse_document(&document)?;
    settings::update_operation_protection(&db, ApiId(api_id), operation_id, &protection, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// The owning team's developers, security and admins: sets how callers authenticate,
/// keeping the rest of the API's protection. `mode` is `public`, `required` or `unset`;
/// each filled-in method group adds that method.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "set_authentication")]
pub async fn set_authentication(
    api_id: i64,
    mode: String,
    jwt_issuer: String,
    jwt_audiences: String,
    jwt_jwks_url: String,
    jwt_algorithms: String,
    jwt_scopes: String,
    api_key: Option<String>,
    mtls_identities: String,
) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let mut protection = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?.protection;
    let mut methods = Vec::new();
    if !jwt_issuer.trim().is_empty() {
        let jwks_url = Some(jwt_jwks_url.trim().to_owned()).filter(|url| !url.is_empty());
        methods.push(AuthMethod::Jwt {
            issuer: jwt_issuer.trim().to_owned(),
            audiences: split_list(&jwt_audiences),
            jwks_url,
            static_keys: Vec::new(),
            algorithms: split_list(&jwt_algorithms),
            required_scopes: split_list(&jwt_scopes),
        });
    }
    if api_key.is_some() {
        methods.push(AuthMethod::ApiKey { header: "x-api-key".to_owned() });
    }
    if !mtls_identities.trim().is_empty() {
        methods.push(AuthMethod::Mtls { allowed_identities: split_list(&mtls_identities) });
    }
    protection.authentication = match mode.as_str() {
        "public" => Some(Authentication { mode: AuthMode::Public, methods }),
        "required" => Some(Authentication { mode: AuthMode::Required, methods }),
        "unset" => None,
        _ => return Err(fail(AppError::invalid("mode", "public, required or not declared"))),
    };
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: grants a client application the
/// data classes it may receive (none listed: its grant is removed) and says what happens
/// to the others, keeping the rest of the API's protection.
#[server(prefix = "/rpc", endpoint = "set_data_rule")]
pub async fn set_data_rule(api_id: i64, client_app_id: i64, classes: String, otherwise: String) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let otherwise = match otherwise.as_str() {
        "mask" => DataAction::Mask,
        "block" => DataAction::Block,
        "log_only" => DataAction::LogOnly,
        _ => return Err(fail(AppError::invalid("otherwise", "mask, block or log only"))),
    };
    let mut protection = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?.protection;
    let mut rule = protection.data.take().unwrap_or(DataRule { grants: Vec::new(), otherwise });
    rule.otherwise = otherwise;
    rule.grants.retain(|grant| grant.client_app != ClientAppId(client_app_id));
    let classes = split_list(&classes);
    if !classes.is_empty() {
        rule.grants.push(DataGrant { client_app: ClientAppId(client_app_id), classes });
        rule.grants.sort_by_key(|grant| grant.client_app);
    }
    protection.data = Some(rule);
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: sets the API-wide rate limit of
/// one client application (0: everyone), or removes it when `requests` is 0.
#[server(prefix = "/rpc", endpoint = "set_rate_limit")]
pub async fn set_rate_limit(api_id: i64, client_app_id: i64, requests: u32, window_seconds: u32) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let mut protection = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?.protection;
    let client_app = (client_app_id != 0).then_some(ClientAppId(client_app_id));
    let mut limits = protection.rate_limits.take().unwrap_or_default();
    limits.retain(|limit| limit.client_app != client_app);
    if requests > 0 {
        limits.push(RateLimit { client_app, requests, window_seconds });
    }
    protection.rate_limits = (!limits.is_empty()).then_some(limits);
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: whether agents enforce the API's
/// rules (`enforce`) or record what they would refuse and let it through (`monitor`),
/// keeping the rest of its protection. Operations that set their own mode keep it.
#[server(prefix = "/rpc", endpoint = "set_enforcement")]
pub async fn set_enforcement(api_id: i64, mode: String) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let mode = match mode.as_str() {
        "enforce" => Enforcement::Enforce,
        "monitor" => Enforcement::Monitor,
        _ => return Err(fail(AppError::invalid("mode", "enforce or monitor"))),
    };
    let mut protection = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?.protection;
    protection.enforcement = Some(mode);
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: the API's request contract.
/// `enabled` is `on` or `off`; `reject_unknown_query` is a checkbox (`on` when ticked);
/// `max_body_kib` is the largest body in KiB (empty: 1 MiB). The rest is kept.
#[server(prefix = "/rpc", endpoint = "set_contract")]
pub async fn set_contract(api_id: i64, enabled: String, reject_unknown_query: Option<String>, max_body_kib: String) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let enabled = match enabled.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(fail(AppError::invalid("enabled", "on or off"))),
    };
    let max_body_bytes = match max_body_kib.trim() {
        "" => None,
        kib => {
            let kib: u32 = kib.parse().map_err(|_| fail(AppError::invalid("max_body_kib", "a whole number of KiB")))?;
            Some(kib.checked_mul(1024).ok_or_else(|| fail(AppError::invalid("max_body_kib", "is too large")))?)
        }
    };
    let mut protection = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?.protection;
    protection.contract = enabled.then(|| ContractRule { reject_unknown_query: reject_unknown_query.as_deref() == Some("on"), max_body_bytes });
    settings::update_api_protection(&db, ApiId(api_id), &protection, &audit_context(&principal)).await.map_err(store_error)
}

/// The owning team's developers, security and admins: adds a data class to an
/// operation's field, or removes one the schemas suggested (`change` is `add` or
/// `remove`). Corrections survive re-imports.
#[server(prefix = "/rpc", endpoint = "set_class_edit")]
pub async fn set_class_edit(
    api_id: i64,
    operation_id: i64,
    change: String,
    class: String,
    direction: String,
    field: String,
) -> Result<ApiDetail, AppError> {
    let (db, principal) = owned(api_id).await?;
    let detail = apis::find_api(&db, ApiId(api_id)).await.map_err(store_error)?;
    let operation = detail
        .operations
        .into_iter()
        .find(|operation| operation.id == operation_id)
        .ok_or_else(|| fail(AppError::NotFound("Operation".into())))?;
    let hit = DataClassHit { class: class.trim().to_owned(), direction, field: field.trim().to_owned() };
    let mut edits: ClassEdits = operation.class_edits;
    // Whether the schemas show it, before any correction.
    let detected = (operation.data_classes.contains(&hit) && !edits.added.contains(&hit)) || edits.removed.contains(&hit);
    edits.added.retain(|h| *h != hit);
    edits.removed.retain(|h| *h != hit);
    match change.as_str() {
        "add" if !detected => edits.added.push(hit),
        "remove" if detected => edits.removed.push(hit),
        "add" | "remove" => {}
        _ => return Err(fail(AppError::invalid("change", "add or remove"))),
    }
    settings::update_class_edits(&db, ApiId(api_id), operation_id, &edits, &audit_context(&principal)).await.map_err(store_error)
}
