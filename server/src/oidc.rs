//! Single sign-on through OpenID Connect, the authorization code flow with PKCE, state
//! and nonce. `GET /auth/oidc/{slug}` sends the browser to the provider; the provider
//! sends it back to `GET /auth/oidc/{slug}/callback`, where the code is exchanged, the ID
//! token verified (signature by the provider's published keys with an asymmetric
//! algorithm, issuer, audience, expiry, nonce, access-token hash) and the identity mapped
//! to an account. Any failure ends on the sign-in page with no session.

use crate::auth::{finish_login, login_failed, safe_next};
use app::auth::ssr::{audit_context_for, client_address, public_origin};
use app::state::AppState;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use store::audit::Actor;
use store::sso::SsoProvider;
use store::sso_identities::{self, VerifiedIdentity};
use store::{now_millis, sso_providers};
use tower_sessions::Session;

/// The session key of a sign-in waiting for the provider's answer.
const PENDING_KEY: &str = "oidc_pending";
/// The session key of what sign-out needs to end the provider's session too.
const SIGNED_IN_WITH_KEY: &str = "oidc_signed_in_with";
/// How long the round trip through the provider may take.
const PENDING_MILLIS: i64 = 10 * 60_000;
/// Where the provider sends the browser after its own sign-out.
pub const SIGNED_OUT_PATH: &str = "/login?notice=signed-out";

/// The asymmetric algorithms an ID token may be signed with. `none` and the HMAC family
/// (keyed with the client secret, which every copy of the client holds) never are.
const ALLOWED_ALGORITHMS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

type DiscoveredClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The HTTP client for talking to providers. Redirects are not followed (a provider
/// answering with one could otherwise point us anywhere) and every call has a deadline.
#[derive(Clone)]
pub struct SsoHttp(pub reqwest::Client);

impl SsoHttp {
    pub fn new() -> Arc<SsoHttp> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new(SsoHttp(client))
    }
}

/// A sign-in on its way through the provider, kept in the (not yet signed-in) session.
#[derive(Serialize, Deserialize, Debug)]
struct Pending {
    provider_id: i64,
    slug: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    redirect_uri: String,
    next: String,
    since: i64,
    reauth: bool,
}

/// What sign-out needs to end the provider's session as well.
#[derive(Serialize, Deserialize, Debug)]
struct SignedInWith {
    provider_id: i64,
    id_token: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct StartQuery {
    next: String,
    reauth: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the issuer of this answer, which providers that send it vouch for.
    iss: Option<String>,
}

/// Every claim, for those the standard types do not name (groups).
#[derive(Serialize, Deserialize, Debug, Default)]
struct OtherClaims(Map<String, Value>);
impl AdditionalClaims for OtherClaims {}

/// Why a sign-in through a provider failed, for the log. The browser only learns that it
/// failed: details would help an attacker more than the user.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no sign-in was started in this browser, or it was used already")]
    NoPending,
    #[error("the sign-in took longer than 10 minutes")]
    Expired,
    #[error("the state does not match the sign-in started in this browser")]
    WrongState,
    #[error("the provider is unknown or disabled")]
    UnknownProvider,
    #[error("the provider answered with an error: {0}")]
    ProviderError(String),
    #[error("the provider could not be reached or described: {0}")]
    Discovery(String),
    #[error("the code was refused: {0}")]
    CodeExchange(String),
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the userinfo request failed: {0}")]
    UserInfo(String),
    #[error("the store failed: {0}")]
    Store(#[from] store::StoreError),
}

impl Failure {
    fn code(&self) -> &'static str {
        match self {
            Failure::Expired => "sso-expired",
            Failure::UnknownProvider | Failure::Discovery(_) => "sso-unavailable",
            Failure::ProviderError(_) => "sso-denied",
            _ => "sso-failed",
        }
    }
}

/// The absolute URL the provider sends the browser back to: under the configured public
/// origin, else this server's address as the browser reached it.
fn redirect_uri(state: &AppState, headers: &http::HeaderMap, slug: &str) -> String {
    format!("{}/auth/oidc/{slug}/callback", public_origin(state, headers))
}

/// Discovers the provider (its metadata and signing keys, fetched afresh so a key the
/// provider just rotated in is known) and builds its client.
async fn discover(
    http: &SsoHttp,
    state: &AppState,
    provider: &SsoProvider,
    redirect_uri: &str,
) -> Result<(DiscoveredClient, ProviderMetadataWithLogout), Failure> {
    let issuer = IssuerUrl::new(provider.issuer_url.clone()).map_err(|error| Failure::Discovery(error.to_string()))?;
    let metadata = ProviderMetadataWithLogout::discover_async(issuer, &http.0)
        .await
        .map_err(|error| Failure::Discovery(error_chain(&error)))?;
    let secret = sso_providers::client_secret(&state.db, &state.master, provider.id).await?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|error| Failure::Discovery(error.to_string()))?;
    // client_secret_basic unless the provider says it only takes the secret in the body.
    let methods = metadata.token_endpoint_auth_methods_supported();
    let post_only = methods.is_some_and(|methods| {
        !methods.contains(&CoreClientAuthMethod::ClientSecretBasic) && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
    });
    let client = CoreClient::from_provider_metadata(metadata.clone(), ClientId::new(provider.client_id.clone()), Some(ClientSecret::new(secret)))
        .set_redirect_uri(redirect)
        .set_auth_type(if post_only { AuthType::RequestBody } else { AuthType::BasicAuth });
    Ok((client, metadata))
}

/// `GET /auth/oidc/{slug}`: remembers state, nonce and PKCE verifier in the session and
/// sends the browser to the provider.
pub async fn start(
    State(state): State<AppState>,
    Extension(http): Extension<Arc<SsoHttp>>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<StartQuery>,
    request: Request,
) -> Response {
    let provider = match sso_providers::find_enabled(&state.db, &slug).await {
        Ok(Some(provider)) => provider,
        Ok(None) => return login_failed(Failure::UnknownProvider.code()),
        Err(error) => return failed(&slug, Failure::Store(error)),
    };
    let redirect_uri = redirect_uri(&state, request.headers(), &slug);
    let (client, _) = match discover(&http, &state, &provider, &redirect_uri).await {
        Ok(client) => client,
        Err(failure) => return failed(&slug, failure),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let reauth = query.reauth.is_some();
    let mut authorize = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(provider.scopes.iter().cloned().map(Scope::new));
    if reauth {
        // A confirmation for a sensitive action must be a fresh sign-in at the provider,
        // not its remembered session.
        authorize = authorize.add_prompt(CoreAuthPrompt::Login).set_max_age(Duration::ZERO);
    }
    let (url, csrf, nonce) = authorize.url();
    let pending = Pending {
        provider_id: provider.id,
        slug: slug.clone(),
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        redirect_uri,
        next: safe_next(&query.next).to_owned(),
        since: now_millis(),
        reauth,
    };
    if let Err(error) = session.insert(PENDING_KEY, &pending).await {
        tracing::error!(%error, "could not keep a pending single sign-on");
        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Redirect::to(url.as_str()).into_response()
}

/// `GET /auth/oidc/{slug}/callback`: verifies the provider's answer and signs in.
pub async fn callback(
    State(state): State<AppState>,
    Extension(http): Extension<Arc<SsoHttp>>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<CallbackQuery>,
    request: Request,
) -> Response {
    // The pending sign-in is taken out whatever happens next: state and code work once.
    let pending: Option<Pending> = session.remove(PENDING_KEY).await.ok().flatten();
    let (headers, extensions) = (request.headers().clone(), request.extensions().clone());
    let verified = match verify(&state, &http, &slug, pending, query).await {
        Ok(verified) => verified,
        Err(failure) => {
            metrics::counter!("palisade_logins_total", "outcome" => "failed").increment(1);
            return failed(&slug, failure);
        }
    };
    let Verified { provider, identity, id_token, next } = verified;
    let label = identity.email.clone().unwrap_or_else(|| format!("{}:{}", provider.slug, identity.subject));
    let context = audit_context_for(&headers, &extensions, Actor::anonymous(&label));
    let account = match sso_identities::sign_in(&state.db, &provider, &identity, &context).await {
        Ok(Ok(account)) => account,
        Ok(Err(refusal)) => {
            metrics::counter!("palisade_logins_total", "outcome" => "failed").increment(1);
            tracing::info!(provider = %provider.slug, ?refusal, "single sign-on refused");
            return login_failed(refusal.code());
        }
        Err(error) => return failed(&slug, Failure::Store(error)),
    };
    let details = serde_json::json!({"method": "oidc", "provider": provider.slug, "subject": identity.subject});
    let source = client_address(&extensions);
    let response =
        finish_login(&state, &session, &headers, &extensions, account.account_id, account.session_generation, &account.email, &source, details, &next).await;
    let signed_in_with = SignedInWith { provider_id: provider.id, id_token };
    if let Err(error) = session.insert(SIGNED_IN_WITH_KEY, &signed_in_with).await {
        tracing::warn!(%error, "could not remember the provider for sign-out");
    }
    response
}

struct Verified {
    provider: SsoProvider,
    identity: VerifiedIdentity,
    id_token: String,
    next: String,
}

async fn verify(
    state: &AppState,
    http: &SsoHttp,
    slug: &str,
    pending: Option<Pending>,
    query: CallbackQuery,
) -> Result<Verified, Failure> {
    let pending = pending.filter(|pending| pending.slug == slug).ok_or(Failure::NoPending)?;
    if now_millis() - pending.since > PENDING_MILLIS {
        return Err(Failure::Expired);
    }
    if let Some(error) = query.error {
        return Err(Failure::ProviderError(error.chars().take(100).collect()));
    }
    let returned_state = query.state.unwrap_or_default();
    if !constant_time_eq(returned_state.as_bytes(), pending.state.as_bytes()) {
        return Err(Failure::WrongState);
    }
    let code = query.code.filter(|code| !code.is_empty()).ok_or_else(|| Failure::CodeExchange("no code".into()))?;
    let provider = sso_providers::find_enabled(&state.db, slug)
        .await?
        .filter(|provider| provider.id == pending.provider_id)
        .ok_or(Failure::UnknownProvider)?;
    // An answer naming another issuer was meant for another provider (a mix-up attack).
    if query.iss.as_ref().is_some_and(|iss| *iss != provider.issuer_url) {
        return Err(Failure::IdToken("the answer names another issuer".into()));
    }
    let (client, metadata) = discover(http, state, &provider, &pending.redirect_uri).await?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|error| Failure::CodeExchange(error.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&http.0)
        .await
        .map_err(|error| Failure::CodeExchange(error_chain(&error)))?;
    let id_token = token.id_token().ok_or_else(|| Failure::IdToken("the token response has no ID token".into()))?;
    let advertised = metadata.id_token_signing_alg_values_supported();
    let allowed: Vec<CoreJwsSigningAlgorithm> = ALLOWED_ALGORITHMS.iter().filter(|alg| advertised.contains(alg)).cloned().collect();
    let verifier = client.id_token_verifier().set_allowed_algs(allowed);
    let nonce = Nonce::new(pending.nonce);
    let claims = id_token.claims(&verifier, &nonce).map_err(|error| Failure::IdToken(error_chain(&error)))?;
    if let Some(expected) = claims.access_token_hash() {
        let algorithm = id_token.signing_alg().map_err(|error| Failure::IdToken(error.to_string()))?;
        let key = id_token.signing_key(&verifier).map_err(|error| Failure::IdToken(error.to_string()))?;
        let actual = AccessTokenHash::from_token(token.access_token(), algorithm, key).map_err(|error| Failure::IdToken(error.to_string()))?;
        if actual != *expected {
            return Err(Failure::IdToken("the access token does not match the ID token's at_hash".into()));
        }
    }
    if pending.reauth {
        let window = state.auth.recent_authentication.as_secs() as i64;
        let fresh = claims.auth_time().is_none_or(|at| time_since(at.timestamp()) <= window);
        if !fresh {
            return Err(Failure::IdToken("a confirmation needs a fresh sign-in, and auth_time is old".into()));
        }
    }
    let subject = claims.subject().as_str().to_owned();
    let mut email = claims.email().map(|email| email.as_str().to_owned());
    let mut email_verified = claims.email_verified().unwrap_or(false);
    let mut name = claims.name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned());
    let raw_id_token = id_token.to_string();
    let mut groups = groups_in(&payload_of(&raw_id_token), &provider.groups_claim);
    // Many providers put profile and groups only in userinfo for the code flow.
    if (groups.is_none() || email.is_none() || name.is_none())
        && let Ok(request) = client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
    {
        let info: UserInfoClaims<OtherClaims, CoreGenderClaim> =
            request.request_async(&http.0).await.map_err(|error| Failure::UserInfo(error_chain(&error)))?;
        if email.is_none() {
            email = info.email().map(|email| email.as_str().to_owned());
            email_verified = info.email_verified().unwrap_or(false);
        }
        if groups.is_none() {
            groups = groups_in(&info.additional_claims().0, &provider.groups_claim);
        }
        if name.is_none() {
            name = info.name().and_then(|name| name.get(None)).map(|name| name.as_str().to_owned());
        }
    }
    let identity = VerifiedIdentity { subject, email, email_verified, name, groups: groups.unwrap_or_default() };
    Ok(Verified { provider, identity, id_token: raw_id_token, next: pending.next })
}

fn time_since(unix_seconds: i64) -> i64 {
    now_millis() / 1000 - unix_seconds
}

/// The claims of a compact JWT whose signature was already verified.
fn payload_of(jwt: &str) -> Map<String, Value> {
    jwt.split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The groups in `claim`: a list of strings or one string. The name is tried whole first
/// (`https://example.com/groups`), then as a dotted path (`realm_access.roles`).
fn groups_in(claims: &Map<String, Value>, claim: &str) -> Option<Vec<String>> {
    let value = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    })?;
    match value {
        Value::String(group) => Some(vec![group.clone()]),
        Value::Array(items) => Some(items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect()),
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn failed(slug: &str, failure: Failure) -> Response {
    match &failure {
        Failure::Store(error) => tracing::error!(provider = %slug, %error, "single sign-on failed on our side"),
        _ => tracing::warn!(provider = %slug, %failure, "single sign-on failed"),
    }
    login_failed(failure.code())
}

/// Where sign-out should send the browser so the provider ends its session too, with the
/// provider's name: its end-session endpoint, when this session came from a provider that
/// has one.
pub async fn end_session_url(state: &AppState, http: &SsoHttp, session: &Session, headers: &http::HeaderMap) -> Option<(String, String)> {
    let signed_in_with: SignedInWith = session.get(SIGNED_IN_WITH_KEY).await.ok().flatten()?;
    let provider = sso_providers::find(&state.db, signed_in_with.provider_id).await.ok()?;
    let issuer = IssuerUrl::new(provider.issuer_url.clone()).ok()?;
    let metadata = match ProviderMetadataWithLogout::discover_async(issuer, &http.0).await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::warn!(provider = %provider.slug, error = %error_chain(&error), "provider unreachable at sign-out; only the local session ends");
            return None;
        }
    };
    let endpoint = metadata.additional_metadata().end_session_endpoint.clone()?;
    let back = PostLogoutRedirectUrl::new(format!("{}{SIGNED_OUT_PATH}", public_origin(state, headers))).ok()?;
    let mut logout = LogoutRequest::from(endpoint)
        .set_client_id(ClientId::new(provider.client_id))
        .set_post_logout_redirect_uri(back);
    // The hint is the ID token itself, as the provider issued it.
    let hint = serde_json::from_value::<openidconnect::core::CoreIdToken>(Value::String(signed_in_with.id_token)).ok();
    if let Some(hint) = hint {
        logout = logout.set_id_token_hint(&hint);
    }
    Some((logout.http_get_url().to_string(), provider.display_name))
}

/// The answer to a sign-out that continues at the provider. Not a redirect: the sign-out
/// form's page allows forms to reach only this site (`form-action 'self'`), which browsers
/// apply to a form's redirects too. A page that moves on by itself is a navigation of its
/// own, with a link for when it does not.
pub fn continue_sign_out(url: &str, provider: &str) -> Response {
    let (url, provider) = (escape_html(url), escape_html(provider));
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={url}\">\
         <title>Signing out</title></head><body><main><p>You have signed out of Palisade.</p>\
         <p><a href=\"{url}\" data-testid=\"provider-sign-out\">Sign out at {provider} too</a></p></main></body></html>"
    );
    axum::response::Html(page).into_response()
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_from_lists_strings_and_paths() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "groups": ["a", "b", 3],
            "https://example.com/groups": "ciso",
            "realm_access": {"roles": ["admin"]},
            "odd": {"x": 1}
        }))
        .unwrap();
        assert_eq!(groups_in(&claims, "groups"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(groups_in(&claims, "https://example.com/groups"), Some(vec!["ciso".into()]));
        assert_eq!(groups_in(&claims, "realm_access.roles"), Some(vec!["admin".into()]));
        assert_eq!(groups_in(&claims, "odd"), None);
        assert_eq!(groups_in(&claims, "missing"), None);
    }

    #[test]
    fn payloads_of_broken_tokens_are_empty() {
        assert!(payload_of("").is_empty());
        assert!(payload_of("a.!!!.c").is_empty());
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(payload_of(&format!("h.{payload}.s"))["sub"], "x");
    }

    #[test]
    fn sign_out_pages_escape_what_they_show() {
        assert_eq!(escape_html(r#"a&b"<c>'"#), "a&amp;b&quot;&lt;c&gt;&#39;");
    }

    #[test]
    fn states_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
