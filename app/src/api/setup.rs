//! Setting a password through a one-time link (invitation or reset): no sign-in, the link
//! is the credential.

use crate::error::AppError;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use crate::auth::ssr::{anonymous_audit_context, fail, state, store_error};

/// Anyone holding a live link: the email the link is for.
#[server(prefix = "/rpc", endpoint = "check_setup_link")]
pub async fn check_setup_link(token: String) -> Result<String, AppError> {
    let account = store::accounts::find_password_setup(&state()?.db, &token).await.map_err(|_| {
        fail(AppError::NotFound("This link has expired or was already used; ask your administrator for a new one. The link".into()))
    })?;
    Ok(account.email)
}

/// Anyone holding a live link: sets the password once, then redirects to sign-in.
#[server(prefix = "/rpc", endpoint = "complete_setup")]
pub async fn complete_setup(token: String, password: String, password_again: String) -> Result<(), AppError> {
    if password != password_again {
        return Err(fail(AppError::invalid("password", "the two entries differ")));
    }
    let state = state()?;
    store::accounts::find_password_setup(&state.db, &token)
        .await
        .map_err(|_| fail(AppError::NotFound("The link".into())))?;
    let hash = state.passwords.hash(&password).await.map_err(store_error)?;
    store::accounts::complete_password_setup(&state.db, &token, &hash, &anonymous_audit_context()).await.map_err(store_error)?;
    leptos_axum::redirect("/login?notice=password-set");
    Ok(())
}
