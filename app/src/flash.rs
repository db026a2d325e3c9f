//! One-time messages carried in the session across the redirect that follows a form post
//! made without JavaScript — the only way to show such a user a secret created by that
//! post (a new API token, an invitation link) without putting it in a URL.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A message to show once, the secret it is about, if any, and a command that uses the
/// secret (an agent's start command), to copy as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub message: String,
    pub secret: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
}

#[cfg(feature = "ssr")]
const FLASH_KEY: &str = "flash";

/// Keeps a flash for the next page when the current request is a plain form post; a
/// JavaScript caller gets the value in the response instead.
#[cfg(feature = "ssr")]
pub async fn keep_for_plain_form(flash: Flash) -> Result<(), AppError> {
    if crate::auth::ssr::is_plain_form() {
        let session: tower_sessions::Session =
            leptos_axum::extract().await.map_err(|_| AppError::Internal)?;
        session.insert(FLASH_KEY, flash).await.map_err(crate::auth::ssr::session_error)?;
    }
    Ok(())
}

/// Signed in: takes (and so removes) the flash left by the previous form post.
#[server(prefix = "/rpc", endpoint = "take_flash")]
pub async fn take_flash() -> Result<Option<Flash>, AppError> {
    crate::auth::ssr::require_signed_in()?;
    let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|_| AppError::Internal)?;
    session.remove::<Flash>(FLASH_KEY).await.map_err(crate::auth::ssr::session_error)
}
