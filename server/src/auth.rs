//! Sign-in and sign-out for the dashboard (plain form posts, so they work without
//! JavaScript), and the middleware that resolves each browser request's principal.

use app::auth::ssr::{CurrentPrincipal, audit_context_for, client_address, resolve_session, start_session};
use app::state::AppState;
use axum::extract::{Form, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use store::login_throttle::{self, Verdict};
use store::audit::{self, Actor, Change};
use store::{accounts, now_millis};
use tower_sessions::Session;

/// The sign-in form. Missing fields are treated like wrong ones.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct LoginForm {
    email: String,
    password: String,
    next: String,
}

/// Pages anyone may see without signing in.
const PUBLIC_PAGES: [&str; 2] = ["/login", "/setup-password"];

/// Where to go after sign-in: only a path on this site, never another origin.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local && !next.starts_with("/auth/") && !next.starts_with("/login") { next } else { "/" }
}

fn login_failed(error: &str) -> Response {
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
    let actor = Actor { kind: "user", id: Some(account.account_id.0), label: email_key.clone() };
    let context = audit_context_for(&headers, &extensions, actor);
    let change = Change::success("session.login", "account", account.account_id);
    if let Err(error) = audit::record(&state.db, &context, change).await {
        return internal(error);
    }
    if let Err(error) = start_session(&session, account.account_id, account.session_generation).await {
        tracing::error!(%error, "could not start a session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    metrics::counter!("palisade_logins_total", "outcome" => "succeeded").increment(1);
    tracing::info!(account = %account.account_id, %source, "signed in");
    Redirect::to(safe_next(&form.next)).into_response()
}

/// `POST /auth/logout`: deletes the session server-side, so its cookie is worthless.
pub async fn logout(State(state): State<AppState>, session: Session, request: Request) -> Response {
    let principal = request.extensions().get::<CurrentPrincipal>().and_then(|current| current.0.clone());
    if let Some(principal) = principal {
        let context = audit_context_for(request.headers(), request.extensions(), Actor::user(&principal));
        let change = Change::success("session.logout", "account", principal.account_id);
        if let Err(error) = audit::record(&state.db, &context, change).await {
            return internal(error);
        }
    }
    if let Err(error) = session.flush().await {
        tracing::error!(%error, "could not end a session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Redirect::to("/login?notice=signed-out").into_response()
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
