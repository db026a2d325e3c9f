//! The Policies section: preview what publishing would change, keep signed drafts,
//! publish with a reason, roll back. Everyone signed in reads the history and the
//! preview; security and admins make, publish and roll back revisions.

use crate::error::AppError;
use crate::publishing::Preview;
use leptos::prelude::*;
use store::BundleRecord;

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_signed_in, state, store_error};
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

/// Security and admins: compiles the inventory into a signed draft revision.
#[server(prefix = "/rpc", endpoint = "create_draft")]
pub async fn create_draft() -> Result<BundleRecord, AppError> {
    let principal = require(may_publish)?;
    let state = state()?;
    match publishing::create_draft(&state.db, &state.master, &audit_context(&principal)).await.map_err(store_error)? {
        Ok(record) => Ok(record),
        Err(diagnostics) => {
            let listed: Vec<String> = diagnostics.iter().take(10).map(ToString::to_string).collect();
            Err(fail(AppError::invalid("policy", format!("{} problem(s) prevent a bundle: {}", diagnostics.len(), listed.join("; ")))))
        }
    }
}

/// Security and admins: publishes a draft to every agent, with the reason.
#[server(prefix = "/rpc", endpoint = "publish_bundle")]
pub async fn publish_bundle(revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require(may_publish)?;
    bundles::publish_bundle(&state()?.db, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}

/// Security and admins: re-issues an earlier revision as a new, published one.
#[server(prefix = "/rpc", endpoint = "rollback_bundle")]
pub async fn rollback_bundle(revision: i64, reason: String) -> Result<BundleRecord, AppError> {
    let principal = require(may_publish)?;
    let state = state()?;
    publishing::rollback(&state.db, &state.master, revision, &reason, &audit_context(&principal)).await.map_err(store_error)
}
