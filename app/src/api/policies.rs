//! The Policies section: preview what publishing would change, keep signed drafts (for
//! every agent or a canary label group), publish with a reason, promote a canary, roll
//! back, pin a label group. Everyone signed in reads the history, the pins and the
//! preview; security and admins change them.

use crate::error::AppError;
use crate::publishing::Preview;
use leptos::prelude::*;
use store::{BundlePin, BundleRecord};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_recent, require_signed_in, state, store_error};
#[cfg(feature = "ssr")]
use crate::publishing::ssr as publishing;
#[cfg(feature = "ssr")]
use store::{Principal, Role, bundles};

#[cfg(feature = "ssr")]
fn may_publish(principal: &Principal) -> bool {
    matches!(principal.role, Role::Admin | Role::Security)
}

/// Anyone signed in: what publishing now would change, or what prevents it.
#[server(prefix = "/rpc", endpoint = "preview_policy")]
pub async fn preview_policy() -> Result<Preview, AppError> {
    require_signed_in()?;
    Ok(publishing::preview(&state()?.db).await.map_err(store_error)?.0)
}

/// Anyone signed in: every revision, newest first.
#[server(prefix = "/rpc", endpoint = "list_bundles")]
pub async fn list_bundles() -> Result<Vec<BundleRecord>, AppError> {
    require_signed_in()?;
    bundles::list_bundles(&state()?.db).await.map_err(store_error)
}

/// Security and admins: compiles the inventory into a signed draft revision, for every
/// agent or, with target labels (`env=canary`), a canary group.
#[server(prefix = "/rpc", endpoint = "create_draft")]
pub async fn create_draft(target: Option<String>) -> Result<BundleRecord, AppError> {
    let principal = require(may_publish)?;
    let target = labels(target.as_deref().unwrap_or_default(), "target")?;
    let state = state()?;
    match publishing::create_draft(&state.db, &state.master, &target, &audit_context(&principal)).await.map_err(store_error)? {
        Ok((record, _)) => Ok(record),
        Err(diagnostics) => {
            let listed: Vec<String> = diagnostics.iter().take(10).map(ToString::to_string).collect();
            Err(fail(AppError::invalid("policy", format!("{} problem(s) prevent a bundle: {}", diagnostics.len(), listed.join("; ")))))
        }
    }
}

/// Security and admins: publishes a draft to every agent, with the reason.
#[server(prefix = "/rpc", endpoint = "publish_bundle")]
pub async fn publish_bundle(revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require_recent(may_publish).await?;
    bundles::publish_bundle(&state()?.db, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}

/// Security and admins: re-issues an earlier revision as a new, published one.
#[server(prefix = "/rpc", endpoint = "rollback_bundle")]
pub async fn rollback_bundle(revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require_recent(may_publish).await?;
    let state = state()?;
    publishing::rollback(&state.db, &state.master, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}

#[cfg(feature = "ssr")]
fn labels(text: &str, field: &str) -> Result<store::Labels, AppError> {
    store::parse_labels(text).map_err(|message| fail(AppError::invalid(field, message)))
}

/// Security and admins: promotes a published canary to every agent.
#[server(prefix = "/rpc", endpoint = "promote_bundle")]
pub async fn promote_bundle(revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require_recent(may_publish).await?;
    let state = state()?;
    publishing::promote(&state.db, &state.master, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}

/// Anyone signed in: the label pins, most specific group first.
#[server(prefix = "/rpc", endpoint = "list_pins")]
pub async fn list_pins() -> Result<Vec<BundlePin>, AppError> {
    require_signed_in()?;
    bundles::list_pins(&state()?.db).await.map_err(store_error)
}

/// Security and admins: holds the agents with these labels on a published revision.
#[server(prefix = "/rpc", endpoint = "pin_group")]
pub async fn pin_group(labels: String, revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require_recent(may_publish).await?;
    let group = self::labels(&labels, "labels")?;
    let state = state()?;
    publishing::pin(&state.db, &state.master, &group, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}

/// Security and admins: releases a pin.
#[server(prefix = "/rpc", endpoint = "release_pin")]
pub async fn release_pin(pin_id: i64, reason: String) -> Result<BundlePin, AppError> {
    let principal = require_recent(may_publish).await?;
    bundles::unpin(&state()?.db, pin_id, &reason, &audit_context(&principal)).await.map_err(store_error)
}

/// Security and admins, signed in recently: rotates the bundle-signing key. What each
/// agent group runs now is re-issued by the retiring key, announcing the new one, which
/// stays trusted alongside it for `overlap_hours` (1 to 720). Returns the new key's id.
#[server(prefix = "/rpc", endpoint = "rotate_bundle_key")]
pub async fn rotate_bundle_key(overlap_hours: i64, reason: String) -> Result<String, AppError> {
    let principal = require_recent(may_publish).await?;
    if !(1..=publishing::MAX_OVERLAP_HOURS).contains(&overlap_hours) {
        return Err(fail(AppError::invalid("overlap_hours", format!("from 1 to {}", publishing::MAX_OVERLAP_HOURS))));
    }
    let state = state()?;
    let (key_id, _) = publishing::rotate_key(&state.db, &state.master, overlap_hours * 3_600_000, &reason, &audit_context(&principal))
        .await
        .map_err(store_error)?;
    Ok(key_id)
}

/// Anyone signed in: runs a policy test file (cases of a request and the decision
/// expected) against the draft or a revision.
#[server(prefix = "/rpc", endpoint = "run_policy_cases")]
pub async fn run_policy_cases(cases: String, against: String) -> Result<crate::policy_code::CaseRun, AppError> {
    require_signed_in()?;
    if cases.len() > 4 * 1024 * 1024 {
        return Err(fail(AppError::invalid("cases", "the file is larger than 4 MiB")));
    }
    match crate::policy_code::ssr::run_cases(&state()?.db, &cases, &against).await.map_err(store_error)? {
        Ok(run) => Ok(run),
        Err(problems) => {
            let listed: Vec<String> = problems.iter().take(10).map(ToString::to_string).collect();
            Err(fail(AppError::invalid("cases", format!("{} problem(s): {}", problems.len(), listed.join("; ")))))
        }
    }
}

/// A request to try against a policy, as the decision explorer's form (and its shareable
/// URL) carries it. Empty fields mean "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExplorerCase {
    /// `draft` (the inventory as it is now) or a revision number.
    pub against: String,
    pub api_id: String,
    pub method: String,
    pub path: String,
    pub source: String,
    /// `none`, `jwt`, `api_key`, `mtls` or `hmac`.
    pub credential: String,
    pub client_app_id: String,
    pub subject: String,
    pub issuer: String,
    pub audiences: String,
    pub scopes: String,
    pub roles: String,
    /// Other claims, as a JSON object.
    pub claims: String,
    pub identity: String,
    pub risk: String,
    pub device: String,
    pub consent: String,
}

#[cfg(feature = "ssr")]
fn explorer_request(case: &ExplorerCase) -> Result<policy::Request, AppError> {
    let invalid = |field: &str, message: &str| fail(AppError::invalid(field, message));
    let list = |text: &str| crate::api::protection::split_list(text);
    let api: i64 = case.api_id.trim().parse().map_err(|_| invalid("api_id", "choose an API"))?;
    let source = if case.source.trim().is_empty() { "127.0.0.1" } else { case.source.trim() };
    let source = source.parse().map_err(|_| invalid("source", "give an IPv4 or IPv6 address"))?;
    let credential = match case.credential.as_str() {
        "" | "none" => None,
        method @ ("jwt" | "api_key" | "mtls" | "hmac") => {
            let claims = match case.claims.trim() {
                "" => Default::default(),
                text => serde_json::from_str(text).map_err(|_| invalid("claims", "give the claims as a JSON object"))?,
            };
            let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
            Some(policy::VerifiedCredential {
                method: method.to_owned(),
                client_app: optional(&case.client_app_id).map(|id| id.parse()).transpose().map_err(|_| invalid("client_app_id", "a client application id"))?,
                subject: optional(&case.subject),
                issuer: optional(&case.issuer),
                audiences: list(&case.audiences),
                scopes: list(&case.scopes),
                roles: list(&case.roles),
                claims,
                identity: optional(&case.identity),
            })
        }
        _ => return Err(invalid("credential", "none, jwt, api_key, mtls or hmac")),
    };
    let risk = match case.risk.trim() {
        "" => None,
        text => Some(text.parse().map_err(|_| invalid("risk", "a score from 0 to 100"))?),
    };
    let consent = match case.consent.as_str() {
        "granted" => Some(true),
        "refused" => Some(false),
        _ => None,
    };
    Ok(policy::Request {
        api,
        method: case.method.trim().to_ascii_uppercase(),
        path: case.path.trim().to_owned(),
        source,
        credential: credential.map(std::sync::Arc::new),
        risk,
        device: case.device == "on",
        consent,
    })
}

/// Anyone signed in: decides a request against the draft (the inventory as it is now)
/// or a stored revision, with the trace through each level.
#[server(prefix = "/rpc", endpoint = "explain_request")]
pub async fn explain_request(case: ExplorerCase) -> Result<policy::Decision, AppError> {
    require_signed_in()?;
    let db = state()?.db;
    let request = explorer_request(&case)?;
    let compiled = match case.against.trim() {
        "" | "draft" => {
            let snapshot = publishing::snapshot(&db).await.map_err(store_error)?;
            policy::compile(&snapshot).map_err(|problems| {
                fail(AppError::invalid("against", format!("the draft does not compile ({} problem(s)); see the preview", problems.len())))
            })?
        }
        revision => {
            let revision: i64 = revision.parse().map_err(|_| fail(AppError::invalid("against", "draft or a revision number")))?;
            let signed = bundles::find_signed(&db, revision).await.map_err(store_error)?;
            policy::bundle::decode_unverified(signed.as_bytes())
                .map_err(|_| fail(AppError::Internal))?
                .policy
        }
    };
    Ok(policy::evaluate(&policy::Prepared::new(compiled), &request))
}
