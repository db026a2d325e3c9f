//! Sign-in and sign-out for the dashboard (plain form posts, so they work without
//! JavaScript), and the middleware that resolves each browser request's principal.

use app::auth::ssr::{CurrentPrincipal, ENROLLMENT_REQUIRED_KEY, audit_context_for, client_address, resolve_session, start_session};
use app::state::AppState;
use crate::oidc::{self, SsoHttp};
use axum::extract::{Extension, Form, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use store::login_throttle::{self, Verdict};
use store::audit::{self, Actor, Change};
use store::{accounts, mfa, now_millis};
use std::sync::Arc;
use tower_sessions::Session;

/// Session keys of a sign-in waiting for its second factor: which account, with which
/// session generation, since when, and where to go after.
const PENDING_ACCOUNT: &str = "mfa_pending_account";
const PENDING_GENERATION: &str = "mfa_pending_generation";
const PENDING_EMAIL: &str = "mfa_pending_email";
const PENDING_SINCE: &str = "mfa_pending_since";
const PENDING_NEXT: &str = "mfa_pending_next";
/// How long the second step may take after the password.
const PENDING_MILLIS: i64 = 5 * 60_000;

/// The second-factor form. Missing fields are treated like wrong ones.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CodeForm {
    code: String,
}

/// The sign-in form. Missing fields are treated like wrong ones.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct LoginForm {
    email: String,
    password: String,
    next: String,
}

/// What a session that must set up a second factor may still call.
const ENROLLMENT_FUNCTIONS: [&str; 5] = ["whoami", "take_flash", "mfa_status", "begin_mfa", "confirm_mfa"];

/// Pages anyone may see without signing in.
const PUBLIC_PAGES: [&str; 2] = ["/login", "/setup-password"];

/// Where to go after sign-in: only a path on this site, never another origin.
pub(crate) fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local && !next.starts_with("/auth/") && !next.starts_with("/login") { next } else { "/" }
}

pub(crate) fn login_failed(error: &str) -> Response {
    Redirect::to(&format!("/login?error={error}")).into_response()
}

/// `POST /auth/login`: 303 to the dashboard on success, back to the form otherwise. An
/// unknown email and a wrong password get the same answer after the same work.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    request: Request,
) -> Response {
    let source = client_address(request.extensions());
    let (headers, extensions) = (request.headers().clone(), request.extensions().clone());
    let form = match Form::<LoginForm>::from_request(request, &state).await {
        Ok(Form(form)) => form,
        Err(_) => LoginForm::default(),
    };
    // Throttle by what was typed, normalised, so unknown emails are throttled like known
    // ones and the throttle does not reveal which exist.
    let email_key: String = form.email.trim().to_lowercase().chars().take(254).collect();
    let now = now_millis();
    match login_throttle::check(&state.db, &state.auth.throttle, &email_key, &source, now).await {
        Ok(Verdict::Allowed) => {}
        Ok(Verdict::RetryAfter(wait)) => {
            metrics::counter!("palisade_logins_total", "outcome" => "throttled").increment(1);
            let mut response = login_failed("throttled");
            if let Ok(seconds) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, seconds);
            }
            return response;
        }
        Err(error) => return internal(error),
    }
    let record = match accounts::find_login(&state.db, &form.email).await {
        Ok(record) => record,
        Err(error) => return internal(error),
    };
    let stored_hash = record.as_ref().and_then(|r| r.password_hash.as_deref());
    let password_ok = match state.passwords.verify(&form.password, stored_hash).await {
        Ok(ok) => ok,
        Err(error) => return internal(error),
    };
    let account = record.filter(|r| password_ok && !r.disabled);
    let Some(account) = account else {
        metrics::counter!("palisade_logins_total", "outcome" => "failed").increment(1);
        let context = audit_context_for(&headers, &extensions, Actor::anonymous(&email_key));
        if let Err(error) = login_throttle::record_failure(&state.db, &email_key, &source, now, &context).await {
            return internal(error);
        }
        tracing::info!(%source, "sign-in failed");
        return login_failed("invalid");
    };
    if let Err(error) = login_throttle::clear_account(&state.db, &email_key).await {
        return internal(error);
    }
    // With a second factor, the password only opens the second step; the session is not
    // signed in until the code is right.
    match mfa::is_enrolled(&state.db, account.account_id).await {
        Ok(false) => {}
        Ok(true) => {
            let pending = async {
                session.cycle_id().await?;
                session.insert(PENDING_ACCOUNT, account.account_id.0).await?;
                session.insert(PENDING_GENERATION, account.session_generation).await?;
                session.insert(PENDING_EMAIL, &email_key).await?;
                session.insert(PENDING_SINCE, now).await?;
                session.insert(PENDING_NEXT, safe_next(&form.next)).await
            };
            if let Err(error) = pending.await {
                tracing::error!(%error, "could not keep a pending sign-in");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            return Redirect::to("/login?step=code").into_response();
        }
        Err(error) => return internal(error),
    }
    // A role that needs a second factor, signed in with a password alone, may only set
    // one up: the session is marked, and the middleware holds it to that.
    let required = match store::sign_in_policy::mfa_required_roles(&state.db).await {
        Ok(Some(roles)) => roles,
        Ok(None) => state.auth.mfa_required_roles.clone(),
        Err(error) => return internal(error),
    };
    let must_enroll = required.contains(&account.role);
    let next = if must_enroll { "/settings?notice=enroll-mfa" } else { safe_next(&form.next) };
    let response =
        finish_login(&state, &session, &headers, &extensions, account.account_id, account.session_generation, &email_key, &source, password_details(None), next).await;
    if must_enroll
        && response.status() == StatusCode::SEE_OTHER
        && let Err(error) = session.insert(ENROLLMENT_REQUIRED_KEY, true).await
    {
        tracing::error!(%error, "could not mark a session for enrollment");
        let _ = session.flush().await;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    response
}

/// Audits the sign-in (`details` says how) and starts the session.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_login(
    state: &AppState,
    session: &Session,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    account_id: store::AccountId,
    generation: i64,
    email_key: &str,
    source: &str,
    details: serde_json::Value,
    next: &str,
) -> Response {
    let actor = Actor { kind: "user", id: Some(account_id.0), label: email_key.to_owned() };
    let context = audit_context_for(headers, extensions, actor);
    let change = Change::success("session.login", "account", account_id).with_details(details);
    if let Err(error) = audit::record(&state.db, &context, change).await {
        return internal(error);
    }
    if let Err(error) = start_session(session, account_id, generation).await {
        tracing::error!(%error, "could not start a session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    metrics::counter!("palisade_logins_total", "outcome" => "succeeded").increment(1);
    tracing::info!(account = %account_id, %source, "signed in");
    Redirect::to(next).into_response()
}

fn password_details(second_factor: Option<&str>) -> serde_json::Value {
    serde_json::json!({"method": "password", "second_factor": second_factor})
}

/// `POST /auth/mfa`: the second step of a sign-in, a TOTP code or a recovery code. Wrong
/// codes count against the same throttle as wrong passwords.
pub async fn second_factor(State(state): State<AppState>, session: Session, request: Request) -> Response {
    let source = client_address(request.extensions());
    let (headers, extensions) = (request.headers().clone(), request.extensions().clone());
    let form = match Form::<CodeForm>::from_request(request, &state).await {
        Ok(Form(form)) => form,
        Err(_) => CodeForm::default(),
    };
    let read = async {
        let account: Option<i64> = session.get(PENDING_ACCOUNT).await?;
        let generation: Option<i64> = session.get(PENDING_GENERATION).await?;
        let email: Option<String> = session.get(PENDING_EMAIL).await?;
        let since: Option<i64> = session.get(PENDING_SINCE).await?;
        let next: Option<String> = session.get(PENDING_NEXT).await?;
        Ok::<_, tower_sessions::session::Error>((account, generation, email, since, next))
    };
    let Ok((Some(account), Some(generation), Some(email_key), Some(since), next)) = read.await else {
        return login_failed("expired-code");
    };
    let now = now_millis();
    if now - since > PENDING_MILLIS {
        let _ = session.flush().await;
        return login_failed("expired-code");
    }
    match login_throttle::check(&state.db, &state.auth.throttle, &email_key, &source, now).await {
        Ok(Verdict::Allowed) => {}
        Ok(Verdict::RetryAfter(wait)) => {
            let mut response = Redirect::to("/login?step=code&error=throttled").into_response();
            if let Ok(seconds) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, seconds);
            }
            return response;
        }
        Err(error) => return internal(error),
    }
    let account_id = store::AccountId(account);
    let actor = Actor { kind: "user", id: Some(account), label: email_key.clone() };
    let context = audit_context_for(&headers, &extensions, actor);
    let accepted = match mfa::verify(&state.db, &state.master, account_id, &email_key, &form.code, now, &context).await {
        Ok(accepted) => accepted,
        Err(error) => return internal(error),
    };
    let Some(accepted) = accepted else {
        metrics::counter!("palisade_logins_total", "outcome" => "failed").increment(1);
        let context = audit_context_for(&headers, &extensions, Actor::anonymous(&email_key));
        if let Err(error) = login_throttle::record_failure(&state.db, &email_key, &source, now, &context).await {
            return internal(error);
        }
        return Redirect::to("/login?step=code&error=code").into_response();
    };
    if let Err(error) = login_throttle::clear_account(&state.db, &email_key).await {
        return internal(error);
    }
    for key in [PENDING_ACCOUNT, PENDING_GENERATION, PENDING_EMAIL, PENDING_SINCE, PENDING_NEXT] {
        let _ = session.remove_value(key).await;
    }
    let factor = match accepted {
        mfa::Accepted::Totp => "totp",
        mfa::Accepted::RecoveryCode { .. } => "recovery_code",
    };
    let next = next.unwrap_or_else(|| "/".to_owned());
    finish_login(&state, &session, &headers, &extensions, account_id, generation, &email_key, &source, password_details(Some(factor)), safe_next(&next)).await
}

/// `POST /auth/logout`: deletes the session server-side, so its cookie is worthless; a
/// session that came from a provider with an end-session endpoint goes on to end there.
pub async fn logout(
    State(state): State<AppState>,
    Extension(http): Extension<Arc<SsoHttp>>,
    session: Session,
    request: Request,
) -> Response {
    let principal = request.extensions().get::<CurrentPrincipal>().and_then(|current| current.0.clone());
    if let Some(principal) = principal {
        let context = audit_context_for(request.headers(), request.extensions(), Actor::user(&principal));
        let change = Change::success("session.logout", "account", principal.account_id);
        if let Err(error) = audit::record(&state.db, &context, change).await {
            return internal(error);
        }
    }
    let provider_sign_out = oidc::end_session_url(&state, &http, &session, request.headers()).await;
    if let Err(error) = session.flush().await {
        tracing::error!(%error, "could not end a session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match provider_sign_out {
        Some((url, provider)) => oidc::continue_sign_out(&url, &provider),
        None => Redirect::to("/login?notice=signed-out").into_response(),
    }
}

fn internal(error: store::StoreError) -> Response {
    tracing::error!(%error, "sign-in failed on our side");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Resolves the session's principal for pages and server functions, and sends signed-out
/// visitors of a dashboard page to the sign-in page.
pub async fn resolve_principal(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match resolve_session(&state, &session).await {
        Ok(principal) => principal,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let path = request.uri().path();
    let is_page = request.method() == http::Method::GET
        && !path.starts_with("/rpc/")
        && !path.starts_with("/auth/")
        && !PUBLIC_PAGES.contains(&path);
    if principal.is_some() && session.get::<bool>(ENROLLMENT_REQUIRED_KEY).await.ok().flatten() == Some(true) {
        if is_page && path != "/settings" && !path.starts_with("/pkg/") {
            return Redirect::to("/settings?notice=enroll-mfa").into_response();
        }
        let endpoint = path.strip_prefix("/rpc/");
        if endpoint.is_some_and(|name| !ENROLLMENT_FUNCTIONS.contains(&name)) {
            let message = "set up two-factor authentication under Settings first: your role requires it";
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    }
    if principal.is_none() && is_page {
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let next = app::url::percent_encode(target);
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    request.extensions_mut().insert(CurrentPrincipal(principal));
    next.run(request).await
}

use axum::extract::FromRequest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/settings/users"), "/settings/users");
        assert_eq!(safe_next(""), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/auth/logout"), "/");
    }

}
