//! The server-side state handed to server functions and route handlers.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;
use std::time::Duration;
use store::Db;
use store::login_throttle::ThrottlePolicy;
use store::passwords::Passwords;
use store::signing::MasterKey;

/// Session and login rules, from configuration.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub throttle: ThrottlePolicy,
    /// How long an invitation or password-reset link stays valid.
    pub setup_link_ttl: Duration,
    /// The externally visible origin (`https://palisade.example.com`), when behind a proxy:
    /// used for links and for checking `Origin` on state-changing requests.
    pub public_origin: Option<String>,
    /// Roles that must have a second factor: signed in with a password alone, they can do
    /// nothing but set one up.
    pub mfa_required_roles: Vec<store::Role>,
    /// How old a sign-in may be for sensitive actions (publishing, user administration,
    /// removing a second factor) before they ask for a fresh one.
    pub recent_authentication: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            throttle: ThrottlePolicy::default(),
            setup_link_ttl: Duration::from_secs(72 * 3600),
            public_origin: None,
            mfa_required_roles: vec![store::Role::Admin, store::Role::Security],
            recent_authentication: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone, Debug, FromRef)]
pub struct AppState {
    pub db: Db,
    pub passwords: Passwords,
    pub leptos_options: LeptosOptions,
    pub auth: Arc<AuthSettings>,
    /// Seals and opens secrets at rest (signing keys, HMAC client keys).
    pub master: Arc<MasterKey>,
}

/// The Content-Security-Policy nonce of the current response, put in the request's
/// extensions by the server's security-headers middleware.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);
