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
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            throttle: ThrottlePolicy::default(),
            setup_link_ttl: Duration::from_secs(72 * 3600),
            public_origin: None,
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
