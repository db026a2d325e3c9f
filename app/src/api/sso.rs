//! Single sign-on providers: the sign-in page's buttons for anyone, the configuration for
//! admins (auditors read it). The client secret is write-only.

use crate::error::AppError;
use leptos::prelude::*;
use store::sso::{LinkedIdentity, SsoButton, SsoProvider};

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, require, require_recent, state, store_error};
#[cfg(feature = "ssr")]
use store::{AccountId, Principal};

/// A provider with the two addresses to register at the provider for it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfiguredProvider {
    pub provider: SsoProvider,
    /// Where the provider sends the browser back after sign-in (its redirect URI).
    pub callback_url: String,
    /// Where it sends the browser after its own sign-out.
    pub signed_out_url: String,
}

/// Anyone, signed in or not: the enabled providers, for the sign-in page's buttons.
#[server(prefix = "/rpc", endpoint = "sign_in_providers")]
pub async fn sign_in_providers() -> Result<Vec<SsoButton>, AppError> {
    store::sso_providers::buttons(&state()?.db).await.map_err(store_error)
}

/// Admins and auditors: every configured provider, without secrets.
#[server(prefix = "/rpc", endpoint = "list_sso_providers")]
pub async fn list_sso_providers() -> Result<Vec<ConfiguredProvider>, AppError> {
    require(Principal::can_read_users)?;
    let state = state()?;
    let origin = crate::auth::ssr::request_origin(&state);
    let providers = store::sso_providers::list(&state.db).await.map_err(store_error)?;
    Ok(providers
        .into_iter()
        .map(|provider| ConfiguredProvider {
            callback_url: format!("{origin}/auth/oidc/{}/callback", provider.slug),
            signed_out_url: format!("{origin}/login?notice=signed-out"),
            provider,
        })
        .collect())
}

/// Admins, signed in recently: creates (no `id`) or changes a provider. The mappings are
/// text, one `group = role` (or `group = team`) per line; an empty secret on a change
/// keeps the stored one.
#[server(prefix = "/rpc", endpoint = "save_sso_provider")]
#[allow(clippy::too_many_arguments)]
pub async fn save_sso_provider(
    id: Option<i64>,
    slug: String,
    display_name: String,
    issuer_url: String,
    client_id: String,
    #[server(default)] client_secret: String,
    #[server(default)] scopes: String,
    groups_claim: String,
    role_mapping: String,
    #[server(default)] team_mapping: String,
    create_accounts: Option<String>,
    link_by_email: Option<String>,
    enabled: Option<String>,
) -> Result<SsoProvider, AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    let state = state()?;
    let mapping = store::sso::GroupMapping::parse(&role_mapping, &team_mapping).map_err(store_error)?;
    let input = store::sso::SsoProviderInput {
        id,
        slug,
        display_name,
        issuer_url,
        client_id,
        client_secret,
        scopes,
        groups_claim,
        mapping,
        create_accounts: create_accounts.is_some(),
        link_by_email: link_by_email.is_some(),
        enabled: enabled.is_some(),
    };
    store::sso_providers::save(&state.db, &state.master, &input, &audit_context(&principal)).await.map_err(store_error)
}

/// Admins, signed in recently: removes a provider. Accounts stay; their link to the
/// provider goes, so its sign-ins stop at once.
#[server(prefix = "/rpc", endpoint = "delete_sso_provider")]
pub async fn delete_sso_provider(id: i64) -> Result<(), AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    store::sso_providers::delete(&state()?.db, id, &audit_context(&principal)).await.map_err(store_error)
}

/// Admins and auditors: the provider identities an account signs in with.
#[server(prefix = "/rpc", endpoint = "list_user_identities")]
pub async fn list_user_identities(account_id: i64) -> Result<Vec<LinkedIdentity>, AppError> {
    require(Principal::can_read_users)?;
    store::sso_identities::identities_of(&state()?.db, AccountId(account_id)).await.map_err(store_error)
}

/// Admins, signed in recently: removes an account's link to a provider; its next sign-in
/// there is treated as a first one (a new account, a link or a refusal, as configured).
#[server(prefix = "/rpc", endpoint = "unlink_user_identity")]
pub async fn unlink_user_identity(account_id: i64, provider_id: i64) -> Result<(), AppError> {
    let principal = require_recent(Principal::can_administer_users).await?;
    store::sso_identities::unlink(&state()?.db, AccountId(account_id), provider_id, &audit_context(&principal)).await.map_err(store_error)
}
