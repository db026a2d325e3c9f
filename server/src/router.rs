//! The whole HTTP surface in one `Router`, so tests drive it with `oneshot` and no socket.

use crate::{agent_api, api, auth, health, oidc, security};
use app::state::AppState;
use app::{App, shell};
use axum::{Extension, Router};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::body::Body;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderName, StatusCode};
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Largest request body accepted by forms, server functions and REST, but for OpenAPI
/// document imports.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The session cookie: `__Host-` so it is bound to this exact origin, HttpOnly, Secure, Lax.
pub const SESSION_COOKIE: &str = "__Host-palisade_session";

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let session_layer = SessionManagerLayer::new(store::sessions::DbSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(
            time::Duration::try_from(state.auth.idle_timeout).unwrap_or(time::Duration::minutes(30)),
        ));

    // What a browser uses: pages, server functions, sign-in. Carries the session.
    let context_state = state.clone();
    let browser = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/mfa", post(auth::second_factor))
        .route("/auth/oidc/{slug}", get(oidc::start))
        .route("/auth/oidc/{slug}/callback", get(oidc::callback))
        .route("/rpc/{*name}", get(server_fn_handler).post(server_fn_handler))
        .route("/audit/export", get(crate::audit_download::export))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .layer(from_fn_with_state(state.clone(), auth::resolve_principal))
        .layer(Extension(oidc::SsoHttp::new()))
        .layer(session_layer)
        // Server functions read bodies themselves, past axum's extractor limit: cap them.
        .layer(from_fn(limit_browser_bodies));

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(api::router())
        .merge(agent_api::router(&state))
        .merge(browser)
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(from_fn_with_state(state.clone(), security::refuse_cross_site))
        .layer(from_fn(security::headers))
        // Every extractor (JSON, forms, bytes) stops at 1 MiB; the document imports read
        // their raw body up to `openapi::MAX_DOCUMENT_BYTES` themselves.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(store::openapi::MAX_DOCUMENT_BYTES))
        .layer(from_fn(health::count_requests))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Server functions that take a pasted OpenAPI document, which may be large.
const DOCUMENT_SERVER_FUNCTIONS: [&str; 2] = ["/rpc/import_api", "/rpc/reimport_api"];

/// Caps request bodies on browser routes: 1 MiB, or the document limit for imports. A
/// declared length over the cap is refused at once; a body that grows past it fails when
/// read.
async fn limit_browser_bodies(request: Request, next: Next) -> Response {
    let limit = if DOCUMENT_SERVER_FUNCTIONS.contains(&request.uri().path()) {
        store::openapi::MAX_DOCUMENT_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    }
    next.run(request.map(|body| Body::new(http_body_util::Limited::new(body, limit)))).await
}

async fn server_fn_handler(State(state): State<AppState>, request: Request) -> impl IntoResponse {
    handle_server_fns_with_context(move || provide_context(state.clone()), request).await
}
