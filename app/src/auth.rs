//! Who is signed in: the principal the server resolved for this request, shared with the
//! browser at hydration; and, on the server, the session rules (start, resolve, end) and
//! the permission checks every server function opens with.

use leptos::prelude::*;
use store::Principal;

/// The signed-in principal, provided as context to every page (`None`: signed out).
#[derive(Clone, Debug)]
pub struct Me(pub Option<Principal>);

/// The principal from context, if anyone is signed in.
pub fn use_me() -> Option<Principal> {
    use_context::<Me>().and_then(|me| me.0)
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use crate::error::AppError;
    use crate::state::AppState;
    use leptos::prelude::*;
    use store::audit::{Actor, AuditContext};
    use store::{AccountId, Principal, accounts, now_millis, sessions::ACCOUNT_KEY};
    use tower_sessions::Session;

    /// The session key for the account's session generation at sign-in.
    const GENERATION_KEY: &str = "generation";
    /// The session key for the sign-in time (Unix ms), for the absolute timeout.
    const SIGNED_IN_AT_KEY: &str = "signed_in_at";
    /// The session key for the last time the user proved who they are (Unix ms): the
    /// sign-in, or a password change.
    const AUTHENTICATED_AT_KEY: &str = "authenticated_at";
    /// The session key for the last time activity extended the session (Unix ms).
    const SEEN_AT_KEY: &str = "seen_at";
    /// Set when the account's role needs a second factor and it signed in without one: the
    /// session may then only set one up.
    pub const ENROLLMENT_REQUIRED_KEY: &str = "mfa_enrollment_required";
    /// Activity extends a session at most this often: a write per request would be waste.
    const MAX_REFRESH_MILLIS: i64 = 60_000;

    /// What the server resolved about the caller, put in the request's extensions by the
    /// server's authentication middleware.
    #[derive(Clone, Debug, Default)]
    pub struct CurrentPrincipal(pub Option<Principal>);

    /// Starts a signed-in session under a new id, so an id fixed before sign-in is useless.
    pub async fn start_session(
        session: &Session,
        account_id: AccountId,
        generation: i64,
    ) -> Result<(), tower_sessions::session::Error> {
        session.cycle_id().await?;
        // A new sign-in starts without what an earlier one in this browser required.
        session.remove_value(ENROLLMENT_REQUIRED_KEY).await?;
        session.insert(ACCOUNT_KEY, account_id.0).await?;
        session.insert(GENERATION_KEY, generation).await?;
        session.insert(SIGNED_IN_AT_KEY, now_millis()).await?;
        session.insert(AUTHENTICATED_AT_KEY, now_millis()).await?;
        session.insert(SEEN_AT_KEY, now_millis()).await?;
        Ok(())
    }

    /// The signed-in principal if `allowed` says yes and their sign-in is recent enough for
    /// a sensitive action; otherwise 401/403, or a request to sign in again.
    pub async fn require_recent(allowed: impl Fn(&Principal) -> bool) -> Result<Principal, AppError> {
        let principal = require(allowed)?;
        let window = state()?.auth.recent_authentication;
        let session: Session = leptos_axum::extract().await.map_err(|_| fail(AppError::Internal))?;
        let at: Option<i64> = session.get(AUTHENTICATED_AT_KEY).await.map_err(session_error)?;
        if at.is_none_or(|at| now_millis() - at > window.as_millis() as i64) {
            return Err(fail(AppError::Reauthenticate(window.as_secs().div_ceil(60))));
        }
        Ok(principal)
    }

    /// The principal behind a session, enforcing the absolute timeout and ending sessions
    /// whose account was disabled or whose sessions were ended since.
    pub async fn resolve_session(
        state: &AppState,
        session: &Session,
    ) -> Result<Option<Principal>, AppError> {
        let read = async {
            let account: Option<i64> = session.get(ACCOUNT_KEY).await?;
            let generation: Option<i64> = session.get(GENERATION_KEY).await?;
            let signed_in_at: Option<i64> = session.get(SIGNED_IN_AT_KEY).await?;
            Ok::<_, tower_sessions::session::Error>((account, generation, signed_in_at))
        };
        let (account, generation, signed_in_at) = read.await.map_err(session_error)?;
        let (Some(account), Some(generation), Some(signed_in_at)) = (account, generation, signed_in_at)
        else {
            return Ok(None);
        };
        let absolute = state.auth.absolute_timeout.as_millis() as i64;
        let principal = if now_millis() - signed_in_at > absolute {
            None
        } else {
            accounts::find_session_principal(&state.db, AccountId(account), generation).await?
        };
        if principal.is_none() {
            session.flush().await.map_err(session_error)?;
            return Ok(None);
        }
        // The store's expiry moves only when the session is saved: mark it modified now
        // and then so that activity keeps it alive (idle timeout), within a small margin.
        let refresh_every = (state.auth.idle_timeout.as_millis() as i64 / 4).min(MAX_REFRESH_MILLIS);
        let seen_at: i64 = session.get(SEEN_AT_KEY).await.map_err(session_error)?.unwrap_or(0);
        if now_millis() - seen_at >= refresh_every {
            session.insert(SEEN_AT_KEY, now_millis()).await.map_err(session_error)?;
        }
        Ok(principal)
    }

    pub fn session_error(error: tower_sessions::session::Error) -> AppError {
        tracing::error!(%error, "session store failed");
        AppError::Internal
    }

    /// This server's origin as users reach it: the configured public origin, else the
    /// address the request came to (plain http: without a public URL, Palisade serves no
    /// TLS itself).
    pub fn public_origin(state: &AppState, headers: &http::HeaderMap) -> String {
        if let Some(origin) = &state.auth.public_origin {
            return origin.clone();
        }
        let host = headers.get(http::header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("127.0.0.1");
        format!("http://{host}")
    }

    /// The origin of the current server function's request (see [`public_origin`]).
    pub fn request_origin(state: &AppState) -> String {
        let headers = request_parts().map(|parts| parts.headers).unwrap_or_default();
        public_origin(state, &headers)
    }

    /// The peer's address: the socket's, not a header anyone could set.
    pub fn client_address(extensions: &http::Extensions) -> String {
        extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string())
    }

    /// The audit context of a request made by `actor`: where from, with what, which request.
    pub fn audit_context_for(
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
        actor: Actor,
    ) -> AuditContext {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        AuditContext {
            actor,
            source: client_address(extensions),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
        }
    }

    /// The audit context of the current server function, acting as `principal`.
    pub fn audit_context(principal: &Principal) -> AuditContext {
        match request_parts() {
            Some(parts) => audit_context_for(&parts.headers, &parts.extensions, Actor::user(principal)),
            None => AuditContext { actor: Actor::user(principal), ..AuditContext::system("") },
        }
    }

    /// The audit context of the current server function for a caller not signed in.
    pub fn anonymous_audit_context() -> AuditContext {
        match request_parts() {
            Some(parts) => audit_context_for(&parts.headers, &parts.extensions, Actor::anonymous("")),
            None => AuditContext::system("anonymous"),
        }
    }

    /// The application state provided to server functions.
    pub fn state() -> Result<AppState, AppError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from server function context");
            AppError::Internal
        })
    }

    fn request_parts() -> Option<http::request::Parts> {
        use_context::<http::request::Parts>()
    }

    /// The caller of the current server function or page render.
    pub fn current_principal() -> Option<Principal> {
        request_parts()?.extensions.get::<CurrentPrincipal>()?.0.clone()
    }

    /// Sets the response status for a failed server function, except for a plain form
    /// post (no JavaScript): that one is answered with a redirect back to the form, which
    /// carries the error, and a status would stop the browser from following it.
    pub fn fail(error: AppError) -> AppError {
        if !is_plain_form() {
            set_page_status(error.status());
        }
        error
    }

    /// Whether the current request is a browser's own form post (JavaScript off), which
    /// leptos answers with a redirect back to the form rather than with data.
    pub fn is_plain_form() -> bool {
        request_parts()
            .and_then(|parts| parts.headers.get(http::header::ACCEPT).cloned())
            .and_then(|accept| accept.to_str().ok().map(|v| v.contains("text/html")))
            .unwrap_or(false)
    }

    /// The signed-in principal, or 401.
    pub fn require_signed_in() -> Result<Principal, AppError> {
        current_principal().ok_or_else(|| fail(AppError::Unauthenticated))
    }

    /// The signed-in principal if `allowed` says yes, or 401/403.
    pub fn require(allowed: impl Fn(&Principal) -> bool) -> Result<Principal, AppError> {
        let principal = require_signed_in()?;
        if allowed(&principal) { Ok(principal) } else { Err(fail(AppError::Forbidden)) }
    }

    /// Maps a data-layer error to what the browser may see, with its status.
    pub fn store_error(error: store::StoreError) -> AppError {
        fail(AppError::from(error))
    }

    /// Sets the response status of the current page render or server function.
    pub fn set_page_status(status: u16) {
        if let (Some(response), Ok(status)) =
            (use_context::<leptos_axum::ResponseOptions>(), http::StatusCode::from_u16(status))
        {
            response.set_status(status);
        }
    }
}
