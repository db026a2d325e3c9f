//! A Palisade router over a per-test database, with helpers to make users, sign in and
//! send requests through `oneshot` (no socket).
#![allow(dead_code)]

use app::state::{AppState, AuthSettings};
use axum::Router;
use axum::body::{Body, to_bytes};
use http::{Request, Response, StatusCode, header};
use leptos::config::LeptosOptions;
use std::sync::Arc;
use store::accounts::{self, NewAccount};
use store::passwords::Passwords;
use store::testing::TestDb;
use store::{Account, Backend, Db, Role, TeamId, tokens};
use tower::ServiceExt;

pub mod processes;

pub const PASSWORD: &str = "a long enough password";
pub const ORIGIN: &str = "http://palisade.test";
pub const HOST: &str = "palisade.test";

pub struct TestApp {
    pub router: Router,
    pub db: Db,
    pub state: AppState,
    master_hex: String,
    _database: TestDb,
}

/// `app_test!(name, |app: TestApp| async move { … })` runs the body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! app_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::common::TestApp::new(store::Backend::Sqlite).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                ($body)($crate::common::TestApp::new(store::Backend::Postgres).await).await;
            }
        }
    };
}

impl TestApp {
    /// Without the second-factor requirement, so tests sign in with a password alone;
    /// `mfa.rs` tests the requirement with it on.
    pub async fn new(backend: Backend) -> TestApp {
        Self::with_settings(backend, AuthSettings { mfa_required_roles: Vec::new(), ..AuthSettings::default() }).await
    }

    pub async fn with_settings(backend: Backend, auth: AuthSettings) -> TestApp {
        let database = TestDb::new(backend).await;
        let db = database.db.clone();
        let (master, master_hex) = store::signing::MasterKey::generate();
        let state = AppState {
            db: db.clone(),
            passwords: Passwords::new().unwrap(),
            leptos_options: LeptosOptions::builder().output_name("palisade").site_root("target/site").build(),
            auth: Arc::new(auth),
            master: Arc::new(master),
        };
        TestApp { router: server::router(state.clone()), db, state, master_hex, _database: database }
    }

    /// The database's URL, for running the binary against it.
    pub fn database_url(&self) -> &str {
        &self._database.url
    }

    /// The master key, for running the binary with this app's sealed keys.
    pub fn master_key_hex(&self) -> &str {
        &self.master_hex
    }

    pub async fn create_user(&self, email: &str, role: Role, teams: &[TeamId]) -> Account {
        let hash = self.state.passwords.hash(PASSWORD).await.unwrap();
        accounts::create_account(
            &self.db,
            NewAccount {
                email: email.into(),
                display_name: String::new(),
                role,
                team_ids: teams.to_vec(),
                password_hash: Some(hash),
            }, &store::audit::AuditContext::system("test"))
        .await
        .unwrap()
    }

    pub async fn token_for(&self, account: &Account) -> String {
        tokens::create_token(&self.db, account.id, "test", None, &store::audit::AuditContext::system("test")).await.unwrap().1
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// Posts the sign-in form as a same-origin browser would.
    pub async fn login(&self, email: &str, password: &str) -> Response<Body> {
        self.send(form_post("/auth/login", &format!("email={}&password={}", encode(email), encode(password)), None))
            .await
    }

    /// Signs in and returns the session cookie (`name=value`).
    pub async fn session_for(&self, email: &str) -> String {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), "/", "sign-in of {email} failed");
        session_cookie(&response).expect("a session cookie")
    }
}

pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn form_post(path: &str, body: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// A server-function call as the hydrated dashboard makes it (JSON answer, not a redirect).
pub fn rpc(name: &str, body: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = form_post(&format!("/rpc/{name}"), body, cookie);
    request.headers_mut().insert(header::ACCEPT, "application/json".parse().unwrap());
    request
}

pub fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path).header(header::HOST, HOST);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).unwrap()
}

pub fn bearer_get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path).header(header::HOST, HOST);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

pub fn location(response: &Response<Body>) -> String {
    response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The `name=value` of the session cookie a response sets.
pub fn session_cookie(response: &Response<Body>) -> Option<String> {
    set_cookie(response).map(|full| full.split(';').next().unwrap().to_owned())
}

/// The whole `Set-Cookie` line for the session cookie.
pub fn set_cookie(response: &Response<Body>) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(server::router::SESSION_COOKIE))
}

pub async fn body_text(response: Response<Body>) -> String {
    String::from_utf8(to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
}

pub async fn body_json(response: Response<Body>) -> serde_json::Value {
    let text = body_text(response).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A JSON POST with a bearer token.
pub fn post_json(path: &str, token: &str, body: serde_json::Value) -> http::Request<axum::body::Body> {
    http::Request::post(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Publishes a draft through REST.
pub async fn publish(app: &TestApp, token: &str, revision: i64) {
    let published = app.send(post_json(&format!("/api/v1/bundles/{revision}/publish"), token, serde_json::json!({"reason": "ship it"}))).await;
    assert_eq!(published.status(), StatusCode::OK, "{}", body_text(published).await);
}

/// Registers an OpenAPI `document` for `team` through REST; the API's id.
pub async fn register_document(app: &TestApp, token: &str, team: i64, document: &serde_json::Value) -> i64 {
    let request = http::Request::post(format!("/api/v1/apis?team={team}"))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(document).unwrap()))
        .unwrap();
    let response = app.send(request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body_json(response).await["id"].as_i64().unwrap()
}

/// Makes a draft for `target` labels through REST; its revision.
pub async fn draft(app: &TestApp, token: &str, target: serde_json::Value) -> i64 {
    let created = app.send(post_json("/api/v1/bundles", token, serde_json::json!({"target": target}))).await;
    assert_eq!(created.status(), StatusCode::CREATED, "{}", body_text(created).await);
    body_json(created).await["bundle"]["revision"].as_i64().unwrap()
}
