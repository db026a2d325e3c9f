//! Request hygiene for every response: refusing cross-site state changes, and the security
//! headers (a nonce-based Content-Security-Policy for HTML, nosniff, no framing, referrer).

use app::state::{AppState, CspNonce};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderValue, Method, StatusCode, header};
use rand::RngCore;

/// Refuses state-changing requests that a browser marks as coming from another site: a
/// foreign `Origin`, or `Sec-Fetch-Site: cross-site`. Requests with neither header (CLI
/// tools, CI with bearer tokens) are not a browser's, so there is no ambient cookie to abuse.
pub async fn refuse_cross_site(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_safe_method(request.method()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return refuse("cross-site request");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !origin_allowed(origin, host, state.auth.public_origin.as_deref()) {
            return refuse("request from another origin");
        }
    }
    next.run(request).await
}

fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Same origin means the configured public origin, or the `Host` the request was sent to.
fn origin_allowed(origin: &str, host: Option<&str>, public_origin: Option<&str>) -> bool {
    if public_origin.is_some_and(|public| public.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https") && host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

fn refuse(why: &'static str) -> Response {
    tracing::warn!(why, "refused a cross-site state change");
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"code":"cross_site","message":"{why} refused"}}"#),
    )
        .into_response()
}

/// Mints the CSP nonce for this request and sets the security headers on the response.
pub async fn headers(mut request: Request, next: Next) -> Response {
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    if is_html {
        let policy = format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
             style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
        // Signed-in pages hold personal data: keep them out of shared and back-button caches.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Same-origin only: forms posted without JavaScript return to the page they came from.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins_must_match_host_or_public_origin() {
        assert!(origin_allowed("http://127.0.0.1:3000", Some("127.0.0.1:3000"), None));
        assert!(!origin_allowed("http://127.0.0.1:3001", Some("127.0.0.1:3000"), None));
        assert!(!origin_allowed("https://evil.example", Some("127.0.0.1:3000"), None));
        assert!(!origin_allowed("null", Some("127.0.0.1:3000"), None));
        assert!(!origin_allowed("http://127.0.0.1:3000", None, None));
        assert!(origin_allowed("https://p.example.com", Some("internal:3000"), Some("https://p.example.com")));
        assert!(!origin_allowed("https://q.example.com", Some("internal:3000"), Some("https://p.example.com")));
    }
}
