//! Client applications, their credentials and the data classes, from the dashboard.
//! Everyone signed in reads (never a secret); the owning team's developers, security and
//! admins change client applications; security and admins define custom classes.

use crate::error::AppError;
use crate::flash::Flash;
use leptos::prelude::*;
use store::{ClientApp, CustomClass, IssuedCredential};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require, require_signed_in, state, store_error};
#[cfg(feature = "ssr")]
use store::{ClientAppId, CredentialId, Db, Principal, Role, TeamId, client_apps, custom_classes};

/// The built-in classes and the organisation's own.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataClasses {
    pub built_in: Vec<String>,
    pub custom: Vec<CustomClass>,
}

impl DataClasses {
    /// Every class name, built-in first.
    pub fn names(&self) -> Vec<String> {
        self.built_in.iter().cloned().chain(self.custom.iter().map(|c| c.name.clone())).collect()
    }
}

/// Every client application, and the server's clock so pages tell active from expired
/// the same way on the server and in the browser.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientAppList {
    pub now: i64,
    pub apps: Vec<ClientApp>,
}

/// A credential just issued, and what the user is told (with an API key's secret, once).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issued {
    pub issued: IssuedCredential,
    pub flash: Flash,
}

#[cfg(feature = "ssr")]
async fn owned(client_app_id: i64) -> Result<(Db, Principal), AppError> {
    let db = state()?.db;
    let principal = require_signed_in()?;
    let owner = client_apps::find_client_owner(&db, ClientAppId(client_app_id)).await.map_err(store_error)?;
    if !principal.can_change_owned_by(owner) {
        return Err(fail(AppError::Forbidden));
    }
    Ok((db, principal))
}

#[cfg(feature = "ssr")]
async fn announce(issued: IssuedCredential, what: &str) -> Result<Issued, AppError> {
    let message = match &issued.secret {
        Some(_) if issued.credential.kind == store::CredentialKind::Hmac => format!(
            "{what} for {}: key id {}. Copy the key now: it is shown only once.",
            issued.credential.instance,
            issued.credential.prefix.clone().unwrap_or_default()
        ),
        Some(_) => format!("{what} for {}. Copy the key now: it is shown only once.", issued.credential.instance),
        None => format!("{what} for {}.", issued.credential.instance),
    };
    let flash = Flash { message, secret: issued.secret.clone(), command: None };
    crate::flash::keep_for_plain_form(flash.clone()).await?;
    Ok(Issued { issued, flash })
}

/// Anyone signed in: every client application with its credentials (no secrets).
#[server(prefix = "/rpc", endpoint = "list_client_apps")]
pub async fn list_client_apps() -> Result<ClientAppList, AppError> {
    require_signed_in()?;
    let apps = client_apps::list_client_apps(&state()?.db).await.map_err(store_error)?;
    Ok(ClientAppList { now: store::now_millis(), apps })
}

/// Developers for their own teams, security and admins for any: registers a client
/// application.
#[server(prefix = "/rpc", endpoint = "create_client_app")]
pub async fn create_client_app(
    team_id: i64,
    name: String,
    kind: String,
    description: String,
    rotation_days: i64,
) -> Result<ClientApp, AppError> {
    let principal = require(|p| p.can_change_owned_by(TeamId(team_id)))?;
    let kind = kind.parse().map_err(|message: String| fail(AppError::invalid("kind", message)))?;
    client_apps::create_client_app(&state()?.db, TeamId(team_id), &name, kind, &description, rotation_days, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// The owning team's developers, security and admins: deletes a client application that
/// no protection setting names.
#[server(prefix = "/rpc", endpoint = "delete_client_app")]
pub async fn delete_client_app(client_app_id: i64) -> Result<(), AppError> {
    let (db, principal) = owned(client_app_id).await?;
    let context = audit_context(&principal);
    client_apps::delete_client_app(&db, ClientAppId(client_app_id), &context).await.map_err(store_error)?;
    let why = format!("client application {client_app_id} deleted with its credentials");
    crate::publishing::ssr::credentials_changed(&db, &state()?.master, &why, &context).await;
    Ok(())
}

/// The owning team's developers, security and admins: issues a credential for one
/// instance (`api_key` or `hmac`, shown once, or `mtls` with a certificate identity).
#[server(prefix = "/rpc", endpoint = "issue_credential")]
pub async fn issue_credential(client_app_id: i64, kind: String, instance: String, identity: String) -> Result<Issued, AppError> {
    let (db, principal) = owned(client_app_id).await?;
    let kind = kind.parse().map_err(|message: String| fail(AppError::invalid("kind", message)))?;
    let identity = Some(identity.trim()).filter(|i| !i.is_empty());
    let (master, context) = (state()?.master, audit_context(&principal));
    let issued = client_apps::issue_credential(&db, &master, ClientAppId(client_app_id), kind, &instance, identity, &context)
        .await
        .map_err(store_error)?;
    let why = format!("credential issued for {}", instance.trim());
    crate::publishing::ssr::credentials_changed(&db, &master, &why, &context).await;
    announce(issued, "Credential issued").await
}

/// The owning team's developers, security and admins, signed in recently: rotates an API
/// or HMAC key; the old one works for `overlap_minutes` more.
#[server(prefix = "/rpc", endpoint = "rotate_credential")]
pub async fn rotate_credential(client_app_id: i64, credential_id: i64, overlap_minutes: i64) -> Result<Issued, AppError> {
    crate::auth::ssr::require_recent(|_| true).await?;
    let (db, principal) = owned(client_app_id).await?;
    let overlap = overlap_minutes.checked_mul(60).ok_or_else(|| fail(AppError::invalid("overlap_minutes", "is too large")))?;
    let (master, context) = (state()?.master, audit_context(&principal));
    let issued = client_apps::rotate_credential(&db, &master, ClientAppId(client_app_id), CredentialId(credential_id), Some(overlap), &context)
        .await
        .map_err(store_error)?;
    crate::publishing::ssr::credentials_changed(&db, &master, &format!("credential {credential_id} rotated"), &context).await;
    announce(issued, "Key rotated").await
}

/// The owning team's developers, security and admins: revokes a credential at once.
#[server(prefix = "/rpc", endpoint = "revoke_credential")]
pub async fn revoke_credential(client_app_id: i64, credential_id: i64) -> Result<(), AppError> {
    let (db, principal) = owned(client_app_id).await?;
    let context = audit_context(&principal);
    client_apps::revoke_credential(&db, ClientAppId(client_app_id), CredentialId(credential_id), &context).await.map_err(store_error)?;
    crate::publishing::ssr::credentials_changed(&db, &state()?.master, &format!("credential {credential_id} revoked"), &context).await;
    Ok(())
}

/// Anyone signed in: the built-in and custom data classes.
#[server(prefix = "/rpc", endpoint = "list_data_classes")]
pub async fn list_data_classes() -> Result<DataClasses, AppError> {
    require_signed_in()?;
    let custom = custom_classes::list_custom_classes(&state()?.db).await.map_err(store_error)?;
    Ok(DataClasses { built_in: store::data_classes::BUILT_IN.iter().map(|c| (*c).to_owned()).collect(), custom })
}

/// Security and admins: defines a custom class from keywords (comma-separated field
/// names) and patterns (one regular expression per line).
#[server(prefix = "/rpc", endpoint = "create_data_class")]
pub async fn create_data_class(name: String, description: String, keywords: String, patterns: String) -> Result<CustomClass, AppError> {
    let principal = require(|p| matches!(p.role, Role::Admin | Role::Security))?;
    let keywords = crate::api::protection::split_list(&keywords);
    let patterns: Vec<String> = patterns.lines().map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    custom_classes::create_custom_class(&state()?.db, &name, &description, &keywords, &patterns, &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// Security and admins: deletes a custom class no L3 rule grants.
#[server(prefix = "/rpc", endpoint = "delete_data_class")]
pub async fn delete_data_class(name: String) -> Result<(), AppError> {
    let principal = require(|p| matches!(p.role, Role::Admin | Role::Security))?;
    custom_classes::delete_custom_class(&state()?.db, &name, &audit_context(&principal)).await.map_err(store_error)
}
