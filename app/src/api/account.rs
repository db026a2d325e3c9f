//! The signed-in user's own account: who am I, password change, personal API tokens.

use crate::error::AppError;
use leptos::prelude::*;
use store::{ApiToken, Principal};
#[cfg(feature = "ssr")]
use store::ApiTokenId;

#[cfg(feature = "ssr")]
use crate::auth::ssr::{audit_context, fail, require_signed_in, session_error, start_session, state, store_error};

/// A token just created, with its secret: the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

impl CreatedToken {
    /// What the creator is told, with the secret.
    pub fn flash(self) -> crate::flash::Flash {
        crate::flash::Flash {
            message: format!("Token “{}” created. Copy it now: it will not be shown again.", self.token.name),
            secret: Some(self.secret),
            command: None,
        }
    }
}

/// Anyone: the signed-in principal, or `None`.
#[server(prefix = "/rpc", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<Principal>, AppError> {
    Ok(crate::auth::ssr::current_principal())
}

/// Signed in: changes one's own password after checking the current one. Every other
/// session of the account ends; this one continues under a new id.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(current_password: String, new_password: String) -> Result<(), AppError> {
    let principal = require_signed_in()?;
    let state = state()?;
    let login = store::accounts::find_login(&state.db, &principal.email)
        .await
        .map_err(store_error)?
        .ok_or_else(|| fail(AppError::Unauthenticated))?;
    let matches = state
        .passwords
        .verify(&current_password, login.password_hash.as_deref())
        .await
        .map_err(store_error)?;
    if !matches {
        return Err(fail(AppError::invalid("current password", "is not correct")));
    }
    if new_password == current_password {
        return Err(fail(AppError::invalid("new password", "must differ from the current one")));
    }
    let hash = state.passwords.hash(&new_password).await.map_err(store_error)?;
    store::accounts::set_password_hash(&state.db, principal.account_id, &hash, &audit_context(&principal))
        .await
        .map_err(store_error)?;
    let refreshed = store::accounts::find_login(&state.db, &principal.email)
        .await
        .map_err(store_error)?
        .ok_or_else(|| fail(AppError::Unauthenticated))?;
    let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|_| fail(AppError::Internal))?;
    start_session(&session, principal.account_id, refreshed.session_generation)
        .await
        .map_err(session_error)?;
    Ok(())
}

/// One's tokens, with the server's clock to tell which have expired.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenList {
    pub now: i64,
    pub tokens: Vec<ApiToken>,
}

/// Signed in: one's own API tokens.
#[server(prefix = "/rpc", endpoint = "list_my_tokens")]
pub async fn list_my_tokens() -> Result<TokenList, AppError> {
    let principal = require_signed_in()?;
    let tokens = store::tokens::list_tokens(&state()?.db, principal.account_id).await.map_err(store_error)?;
    Ok(TokenList { now: store::now_millis(), tokens })
}

/// Signed in: creates a personal API token (`expires_in_days` empty for no expiry).
#[server(prefix = "/rpc", endpoint = "create_my_token")]
pub async fn create_my_token(name: String, expires_in_days: Option<String>) -> Result<CreatedToken, AppError> {
    let principal = require_signed_in()?;
    let expires_at = match super::non_empty(expires_in_days) {
        None => None,
        Some(days) => match days.parse::<u16>() {
            Ok(days @ 1..=3650) => Some(store::now_millis() + i64::from(days) * 86_400_000),
            _ => return Err(fail(AppError::invalid("expiry", "must be between 1 and 3650 days"))),
        },
    };
    let (token, secret) = store::tokens::create_token(&state()?.db, principal.account_id, &name, expires_at, &audit_context(&principal))
        .await
        .map_err(store_error)?;
    let created = CreatedToken { token, secret };
    crate::flash::keep_for_plain_form(created.clone().flash()).await?;
    Ok(created)
}

/// Signed in: revokes one of one's own tokens (another account's token is "not found").
#[server(prefix = "/rpc", endpoint = "revoke_my_token")]
pub async fn revoke_my_token(token_id: i64) -> Result<(), AppError> {
    let principal = require_signed_in()?;
    store::tokens::revoke_token(&state()?.db, ApiTokenId(token_id), Some(principal.account_id), &audit_context(&principal))
        .await
        .map_err(store_error)
}

/// One's second factor: whether it is set up, and how many recovery codes are left.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TwoFactorStatus {
    pub enrolled: bool,
    pub recovery_codes_left: i64,
}

/// What an authenticator app needs to start: the secret, its `otpauth://` URI and that URI
/// as a QR code (SVG).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MfaEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// Signed in: one's second-factor status.
#[server(prefix = "/rpc", endpoint = "mfa_status")]
pub async fn mfa_status() -> Result<TwoFactorStatus, AppError> {
    let principal = require_signed_in()?;
    let db = state()?.db;
    let enrolled = store::mfa::is_enrolled(&db, principal.account_id).await.map_err(store_error)?;
    let recovery_codes_left = store::mfa::recovery_codes_left(&db, principal.account_id).await.map_err(store_error)?;
    Ok(TwoFactorStatus { enrolled, recovery_codes_left })
}

/// Signed in: starts setting up an authenticator app (a fresh secret each time, until a
/// code confirms one).
#[server(prefix = "/rpc", endpoint = "begin_mfa")]
pub async fn begin_mfa() -> Result<MfaEnrollment, AppError> {
    let principal = require_signed_in()?;
    let state = state()?;
    let enrollment = store::mfa::begin_enrollment(&state.db, &state.master, principal.account_id, &principal.email).await.map_err(store_error)?;
    let qr_svg = qrcode::QrCode::new(enrollment.otpauth_uri.as_bytes())
        .map_err(|_| fail(AppError::Internal))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(MfaEnrollment { secret: enrollment.secret_base32, otpauth_uri: enrollment.otpauth_uri, qr_svg })
}

/// Signed in: confirms the authenticator with a code it shows; returns the recovery codes,
/// shown this once.
#[server(prefix = "/rpc", endpoint = "confirm_mfa")]
pub async fn confirm_mfa(code: String) -> Result<Vec<String>, AppError> {
    let principal = require_signed_in()?;
    let state = state()?;
    let now = store::now_millis();
    let codes = store::mfa::confirm_enrollment(&state.db, &state.master, principal.account_id, &principal.email, &code, now, &audit_context(&principal))
        .await
        .map_err(store_error)?;
    // A session held to enrolling is free from now on.
    let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|_| fail(AppError::Internal))?;
    session.remove::<bool>(crate::auth::ssr::ENROLLMENT_REQUIRED_KEY).await.map_err(session_error)?;
    Ok(codes)
}

/// Signed in: removes one's second factor, with a current code (or a recovery code) so an
/// unattended session cannot do it.
#[server(prefix = "/rpc", endpoint = "remove_mfa")]
pub async fn remove_mfa(code: String) -> Result<(), AppError> {
    let principal = crate::auth::ssr::require_recent(|_| true).await?;
    let state = state()?;
    let context = audit_context(&principal);
    let accepted = store::mfa::verify(&state.db, &state.master, principal.account_id, &principal.email, &code, store::now_millis(), &context)
        .await
        .map_err(store_error)?;
    if accepted.is_none() {
        return Err(fail(AppError::invalid("code", "is not a current code or an unused recovery code")));
    }
    store::mfa::remove(&state.db, principal.account_id, &context).await.map_err(store_error)
}
