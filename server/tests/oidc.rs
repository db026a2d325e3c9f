//! Single sign-on through OpenID Connect against a provider served on a real socket by
//! this test, which can be told to misbehave: every forged, replayed or stale answer is
//! refused without a session; groups decide the role; accounts are created, linked by
//! verified email or refused as the admin configured; sign-out ends the provider's session.
//! (The browser test `e2e/tests/single_sign_on.spec.ts` signs in through the real npm
//! `oidc-provider`.)

mod common;

use axum::Router;
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use http::{HeaderMap, StatusCode};
use openidconnect::core::{CoreGenderClaim, CoreHmacKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{AccessToken, AdditionalClaims, IdToken, IdTokenClaims, JsonWebKeyId, PrivateSigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{Role, audit};

const CLIENT_ID: &str = "palisade-dashboard";
const CLIENT_SECRET: &str = "a-client-secret-nobody-else-knows";
const SLUG: &str = "corp";

/// What the provider gets wrong, on purpose, in its next answers.
#[derive(Clone, Debug, Default)]
enum Misbehaviour {
    #[default]
    None,
    WrongNonce,
    WrongIssuer,
    WrongAudience,
    Expired,
    AlgNone,
    /// HS256 keyed with the client secret: valid for the secret's holder, which is why
    /// it must not be accepted.
    Hs256,
    /// Signed by another key under the published key's id.
    ForeignKey,
    /// Groups only in userinfo, as many providers do for the code flow.
    GroupsInUserInfoOnly,
    /// The user last signed in at the provider an hour ago (its session was reused).
    OldAuthTime,
}

#[derive(Clone, Debug)]
struct User {
    subject: String,
    email: String,
    email_verified: bool,
    groups: Vec<String>,
}

fn user(subject: &str, email: &str, groups: &[&str]) -> User {
    User { subject: subject.into(), email: email.into(), email_verified: true, groups: groups.iter().map(|g| g.to_string()).collect() }
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: User,
}

#[derive(Default)]
struct ProviderState {
    issuer: String,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, User>,
    misbehaviour: Misbehaviour,
    tokens_issued: usize,
}

#[derive(Clone)]
struct Provider {
    issuer: String,
    state: Arc<Mutex<ProviderState>>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct GroupClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
}
impl AdditionalClaims for GroupClaims {}

fn provider_key() -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(include_str!("fixtures/oidc_provider_key.pem"), Some(JsonWebKeyId::new("k1".into()))).unwrap()
}

fn impostor_key() -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(include_str!("fixtures/oidc_impostor_key.pem"), Some(JsonWebKeyId::new("k1".into()))).unwrap()
}

impl Provider {
    async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProviderState { issuer: issuer.clone(), ..ProviderState::default() }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/token", post(token))
            .route("/me", axum::routing::get(userinfo))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Provider { issuer, state }
    }

    fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.state.lock().unwrap().misbehaviour = misbehaviour;
    }

    /// What the provider's sign-in page does once `user` has signed in: checks the
    /// authorization request and hands out a code bound to it.
    fn authorize(&self, authorization_url: &str, user: &User) -> (String, String) {
        let url = url::Url::parse(authorization_url).unwrap();
        assert!(authorization_url.starts_with(&format!("{}/authorize?", self.issuer)), "{authorization_url}");
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(query["code_challenge_method"], "S256", "PKCE with S256");
        let scopes: Vec<&str> = query["scope"].split(' ').collect();
        assert!(scopes.contains(&"openid") && scopes.contains(&"email"), "{scopes:?}");
        assert!(query["state"].len() >= 16 && query["nonce"].len() >= 16, "state and nonce are random");
        let code = format!("code-{}", uuid::Uuid::new_v4());
        let grant = Grant {
            nonce: query["nonce"].clone(),
            challenge: query["code_challenge"].clone(),
            redirect_uri: query["redirect_uri"].clone(),
            user: user.clone(),
        };
        self.state.lock().unwrap().codes.insert(code.clone(), grant);
        (code, query["state"].clone())
    }

    fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().tokens_issued
    }
}

async fn discovery(State(state): State<Arc<Mutex<ProviderState>>>) -> Json<serde_json::Value> {
    let issuer = state.lock().unwrap().issuer.clone();
    Json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        // A provider may well advertise HS256; the client still must not accept it.
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks() -> Json<serde_json::Value> {
    let key = provider_key().as_verification_key();
    Json(serde_json::json!({"keys": [key]}))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
}

fn invalid_grant() -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "invalid_grant"}))).into_response()
}

async fn token(State(state): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    let expected = format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(CLIENT_SECRET))));
    if headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "invalid_client"}))).into_response();
    }
    let mut state = state.lock().unwrap();
    // A code works once.
    let Some(grant) = state.codes.remove(&form.code) else { return invalid_grant() };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form.code_verifier.as_bytes()));
    if form.grant_type != "authorization_code" || challenge != grant.challenge || form.redirect_uri != grant.redirect_uri {
        return invalid_grant();
    }
    let access_token = format!("at-{}", uuid::Uuid::new_v4());
    state.access_tokens.insert(access_token.clone(), grant.user.clone());
    state.tokens_issued += 1;
    let id_token = id_token(&state.issuer, &grant, &state.misbehaviour, &access_token);
    Json(serde_json::json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token})).into_response()
}

fn id_token(issuer: &str, grant: &Grant, misbehaviour: &Misbehaviour, access_token: &str) -> String {
    let now = store::now_millis() / 1000;
    let mut claims = serde_json::json!({
        "iss": issuer,
        "aud": [CLIENT_ID],
        "iat": now,
        "exp": now + 300,
        "auth_time": now,
        "sub": grant.user.subject,
        "nonce": grant.nonce,
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
        "name": "Casey Example",
        "groups": grant.user.groups,
    });
    match misbehaviour {
        Misbehaviour::WrongNonce => claims["nonce"] = "a nonce from another sign-in".into(),
        Misbehaviour::WrongIssuer => claims["iss"] = "http://127.0.0.1:1/elsewhere".into(),
        Misbehaviour::WrongAudience => claims["aud"] = serde_json::json!(["another-client"]),
        Misbehaviour::Expired => {
            claims["iat"] = (now - 3600).into();
            claims["exp"] = (now - 1800).into();
        }
        Misbehaviour::GroupsInUserInfoOnly => {
            claims.as_object_mut().unwrap().remove("groups");
        }
        Misbehaviour::OldAuthTime => claims["auth_time"] = (now - 3600).into(),
        _ => {}
    }
    if matches!(misbehaviour, Misbehaviour::AlgNone) {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        return format!("{header}.{payload}.");
    }
    let claims: IdTokenClaims<GroupClaims, CoreGenderClaim> = serde_json::from_value(claims).unwrap();
    let access_token = AccessToken::new(access_token.to_owned());
    let signed: IdToken<GroupClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm> = match misbehaviour {
        Misbehaviour::Hs256 => IdToken::new(
            claims,
            &CoreHmacKey::new(CLIENT_SECRET.as_bytes()),
            CoreJwsSigningAlgorithm::HmacSha256,
            Some(&access_token),
            None,
        ),
        Misbehaviour::ForeignKey => {
            IdToken::new(claims, &impostor_key(), CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, Some(&access_token), None)
        }
        _ => IdToken::new(claims, &provider_key(), CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, Some(&access_token), None),
    }
    .unwrap();
    signed.to_string()
}

async fn userinfo(State(state): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap) -> Response {
    let bearer = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let state = state.lock().unwrap();
    let Some(user) = bearer.and_then(|token| state.access_tokens.get(token)) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    Json(serde_json::json!({"sub": user.subject, "email": user.email, "email_verified": user.email_verified, "groups": user.groups}))
        .into_response()
}

/// Configures the provider through the dashboard's server function, as an admin would.
async fn configure(app: &TestApp, provider: &Provider, admin: &str, extra: &str) -> serde_json::Value {
    if store::teams::find_team_by_name(&app.db, "payments").await.is_err() {
        store::teams::create_team(&app.db, "payments", &store::audit::AuditContext::system("test")).await.unwrap();
    }
    let body = format!(
        "slug={SLUG}&display_name=Corp+SSO&issuer_url={}&client_id={CLIENT_ID}&client_secret={}&scopes=email+profile\
         &groups_claim=groups&role_mapping={}&team_mapping={}&enabled=on{extra}",
        encode(&provider.issuer),
        encode(CLIENT_SECRET),
        encode("palisade-admins = admin\npalisade-security = security\nengineering = developer"),
        encode("engineering = payments"),
    );
    let response = app.send(rpc("save_sso_provider", &body, Some(admin))).await;
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await
}

/// The browser's round trip: our sign-in start, the provider's sign-in page, our callback.
/// Returns the callback's response.
async fn round_trip(app: &TestApp, provider: &Provider, user: &User) -> http::Response<axum::body::Body> {
    let (callback, ..) = round_trip_parts(app, provider, user).await;
    callback
}

async fn round_trip_parts(app: &TestApp, provider: &Provider, user: &User) -> (http::Response<axum::body::Body>, String, String, String) {
    let start = app.send(get(&format!("/auth/oidc/{SLUG}?next=%2Fapis"), None)).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let browser = session_cookie(&start).expect("the pending sign-in lives in a session");
    let (code, state) = provider.authorize(&location(&start), user);
    let callback_path = format!("/auth/oidc/{SLUG}/callback?code={}&state={}", encode(&code), encode(&state));
    let callback = app.send(get(&callback_path, Some(&browser))).await;
    (callback, browser, code, state)
}

async fn whoami(app: &TestApp, response: &http::Response<axum::body::Body>, fallback: &str) -> serde_json::Value {
    let cookie = session_cookie(response).unwrap_or_else(|| fallback.to_owned());
    body_json(app.send(rpc("whoami", "", Some(&cookie))).await).await
}

app_test!(groups_decide_the_role_accounts_are_created_and_sign_out_ends_the_provider_session, |app: TestApp| async move {
    let app = app;
    let provider = Provider::start().await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    let saved = configure(&app, &provider, &admin, "&create_accounts=on").await;
    assert_eq!(saved["slug"], SLUG);
    assert!(saved.get("client_secret").is_none(), "the secret is never sent back");

    // The secret is sealed at rest.
    let sealed: String = sqlx::query_scalar("SELECT sealed_client_secret FROM sso_provider").fetch_one(app.db.pool()).await.unwrap();
    assert!(!sealed.contains(CLIENT_SECRET) && !sealed.contains(&hex_of(CLIENT_SECRET)), "sealed, not stored");
    // The sign-in page offers it, to anyone.
    let buttons = body_json(app.send(rpc("sign_in_providers", "", None)).await).await;
    assert_eq!(buttons, serde_json::json!([{"slug": SLUG, "display_name": "Corp SSO"}]));

    let casey = user("subject-casey", "Casey@Example.com", &["palisade-security", "everyone"]);
    let callback = round_trip(&app, &provider, &casey).await;
    assert_eq!(callback.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&callback), "/apis", "back where the sign-in started");
    let me = whoami(&app, &callback, "").await;
    assert_eq!(me["email"], "casey@example.com");
    assert_eq!(me["role"], "security");
    let account = store::accounts::find_account_by_email(&app.db, "casey@example.com").await.unwrap();
    assert!(!account.has_password, "a provider's account has no password to guess");
    assert_eq!(account.display_name, "Casey Example");
    let entries = audit::search_entries(&app.db, &store::AuditFilter { action: Some("session.login".into()), ..Default::default() }, None).await.unwrap();
    let login = entries.entries.iter().find(|e| e.actor_label == "casey@example.com").expect("the sign-in is audited");
    assert_eq!(login.details["method"], "oidc");
    assert_eq!(login.details["provider"], SLUG);

    // The next sign-in finds the account by subject, even with a new email, and brings
    // role and teams in line with the groups.
    let moved = User { email: "casey.new@example.com".into(), groups: vec!["engineering".into()], ..casey.clone() };
    let callback = round_trip(&app, &provider, &moved).await;
    let me = whoami(&app, &callback, "").await;
    assert_eq!(me["email"], "casey@example.com", "the subject, not the email, identifies");
    assert_eq!(me["role"], "developer");
    let account = store::accounts::find_account(&app.db, account.id).await.unwrap();
    assert_eq!(account.teams.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["payments"]);
    assert_eq!(store::accounts::count_accounts(&app.db).await.unwrap(), 2, "no second account");

    // Signing out ends the local session and sends the browser to end the provider's.
    let session = session_cookie(&callback).unwrap();
    let out = app.send(form_post("/auth/logout", "", Some(&session))).await;
    assert_eq!(out.status(), StatusCode::OK, "a page that moves on to the provider");
    let page = body_text(out).await;
    let href = page.split("href=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a link to the provider");
    assert!(page.contains(&format!("http-equiv=\"refresh\" content=\"0;url={href}\"")));
    let end = url::Url::parse(&href.replace("&amp;", "&")).unwrap();
    assert_eq!(end.path(), "/session/end");
    let query: HashMap<String, String> = end.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["post_logout_redirect_uri"], format!("{ORIGIN}/login?notice=signed-out"));
    assert_eq!(query["id_token_hint"].split('.').count(), 3, "the ID token the provider issued");
    let me = body_json(app.send(rpc("whoami", "", Some(&session))).await).await;
    assert!(me.is_null(), "the local session is over");
});

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

app_test!(a_user_whose_groups_map_to_no_role_is_refused, |app: TestApp| async move {
    let app = app;
    let provider = Provider::start().await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    configure(&app, &provider, &admin, "&create_accounts=on").await;
    let contractor = user("subject-contractor", "contractor@example.com", &["contractors"]);
    let callback = round_trip(&app, &provider, &contractor).await;
    assert_eq!(location(&callback), "/login?error=sso-no-role");
    assert!(whoami(&app, &callback, "").await.is_null());
    assert!(store::accounts::find_account_by_email(&app.db, "contractor@example.com").await.is_err(), "no account made");
    let page = body_text(app.send(get("/login?error=sso-no-role", None)).await).await;
    assert!(page.contains("none of your groups gives access to Palisade"), "a clear message");
    let refused = audit::search_entries(&app.db, &store::AuditFilter { action: Some("session.login".into()), ..Default::default() }, None).await.unwrap();
    let entry = refused.entries.iter().find(|e| e.outcome == "failure").expect("the refusal is audited");
    assert_eq!(entry.details["refusal"], "no_role");
});

app_test!(forged_replayed_and_stale_answers_never_sign_in, |app: TestApp| async move {
    let app = app;
    let provider = Provider::start().await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    configure(&app, &provider, &admin, "&create_accounts=on").await;
    let casey = user("subject-casey", "casey@example.com", &["palisade-security"]);
    let refused = |response: &http::Response<axum::body::Body>, what: &str| {
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{what}");
        assert!(location(response).starts_with("/login?error=sso-"), "{what}: {}", location(response));
    };

    for misbehaviour in [
        Misbehaviour::WrongNonce,
        Misbehaviour::WrongIssuer,
        Misbehaviour::WrongAudience,
        Misbehaviour::Expired,
        Misbehaviour::AlgNone,
        Misbehaviour::Hs256,
        Misbehaviour::ForeignKey,
    ] {
        provider.misbehave(misbehaviour.clone());
        let callback = round_trip(&app, &provider, &casey).await;
        refused(&callback, &format!("{misbehaviour:?}"));
        assert_eq!(location(&callback), "/login?error=sso-failed", "{misbehaviour:?}");
        assert!(whoami(&app, &callback, "").await.is_null(), "{misbehaviour:?} made no session");
    }
    assert_eq!(store::accounts::count_accounts(&app.db).await.unwrap(), 1, "no account was made");
    provider.misbehave(Misbehaviour::None);

    // A state other than the one this browser started with.
    let start = app.send(get(&format!("/auth/oidc/{SLUG}"), None)).await;
    let browser = session_cookie(&start).unwrap();
    let (code, _) = provider.authorize(&location(&start), &casey);
    let issued = provider.tokens_issued();
    let forged = app.send(get(&format!("/auth/oidc/{SLUG}/callback?code={}&state=attacker-state", encode(&code)), Some(&browser))).await;
    refused(&forged, "wrong state");
    assert_eq!(provider.tokens_issued(), issued, "a wrong state stops before the code is spent");
    // The real state no longer works either: a sign-in's state is good for one answer.
    // And a callback in a browser that started nothing is refused.
    let no_start = app.send(get(&format!("/auth/oidc/{SLUG}/callback?code={}&state=x", encode(&code)), None)).await;
    refused(&no_start, "no sign-in started");

    // Replays: the same callback again, and an old code in a new sign-in.
    let (callback, browser, code, state) = round_trip_parts(&app, &provider, &casey).await;
    assert_eq!(location(&callback), "/apis");
    let replay = app.send(get(&format!("/auth/oidc/{SLUG}/callback?code={}&state={}", encode(&code), encode(&state)), Some(&browser))).await;
    refused(&replay, "the same answer twice");
    let start = app.send(get(&format!("/auth/oidc/{SLUG}"), None)).await;
    let fresh = session_cookie(&start).unwrap();
    let query: HashMap<String, String> = url::Url::parse(&location(&start)).unwrap().query_pairs().into_owned().collect();
    let old_code = app.send(get(&format!("/auth/oidc/{SLUG}/callback?code={}&state={}", encode(&code), encode(&query["state"])), Some(&fresh))).await;
    refused(&old_code, "a spent code");
    assert!(whoami(&app, &old_code, &fresh).await.is_null());

    // An answer naming another issuer (RFC 9207), even with a good state and code.
    let start = app.send(get(&format!("/auth/oidc/{SLUG}"), None)).await;
    let browser = session_cookie(&start).unwrap();
    let (code, state) = provider.authorize(&location(&start), &casey);
    let mixed_up = format!("/auth/oidc/{SLUG}/callback?code={}&state={}&iss={}", encode(&code), encode(&state), encode("https://evil.example"));
    refused(&app.send(get(&mixed_up, Some(&browser))).await, "another issuer");

    // The provider's own error answer, and a disabled or unknown provider.
    let start = app.send(get(&format!("/auth/oidc/{SLUG}"), None)).await;
    let browser = session_cookie(&start).unwrap();
    let denied = app.send(get(&format!("/auth/oidc/{SLUG}/callback?error=access_denied"), Some(&browser))).await;
    assert_eq!(location(&denied), "/login?error=sso-denied");
    let unknown = app.send(get("/auth/oidc/nobody", None)).await;
    assert_eq!(location(&unknown), "/login?error=sso-unavailable");
});

app_test!(groups_from_userinfo_and_accounts_linked_only_as_allowed, |app: TestApp| async move {
    let app = app;
    let provider = Provider::start().await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let local = app.create_user("dana@example.com", Role::Auditor, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    // Neither creating nor linking: an unknown identity has no account.
    let saved = configure(&app, &provider, &admin, "").await;
    let id = saved["id"].as_i64().unwrap();
    let stranger = user("subject-stranger", "stranger@example.com", &["palisade-security"]);
    assert_eq!(location(&round_trip(&app, &provider, &stranger).await), "/login?error=sso-no-account");
    let dana = user("subject-dana", "dana@example.com", &["palisade-security"]);
    assert_eq!(location(&round_trip(&app, &provider, &dana).await), "/login?error=sso-no-account");

    // Linking allowed, but the provider has not verified the email: refused.
    configure_again(&app, &admin, id, &provider, "&link_by_email=on").await;
    let unverified = User { email_verified: false, ..dana.clone() };
    assert_eq!(location(&round_trip(&app, &provider, &unverified).await), "/login?error=sso-email-taken");
    // Verified: the local account is linked, and its role follows the groups; groups read
    // from userinfo when the ID token has none.
    provider.misbehave(Misbehaviour::GroupsInUserInfoOnly);
    let callback = round_trip(&app, &provider, &dana).await;
    assert_eq!(location(&callback), "/apis");
    let me = whoami(&app, &callback, "").await;
    assert_eq!(me["account_id"], local.id.0);
    assert_eq!(me["role"], "security");
    // The admin sees the link on the account's page, and can undo it: the next sign-in
    // counts as a first one again.
    let listed = body_json(app.send(rpc("list_user_identities", &format!("account_id={}", local.id.0), Some(&admin))).await).await;
    assert_eq!(listed[0]["subject"], "subject-dana");
    assert_eq!(listed[0]["provider"], "Corp SSO");
    let unlink = format!("account_id={}&provider_id={id}", local.id.0);
    assert_eq!(app.send(rpc("unlink_user_identity", &unlink, Some(&admin))).await.status(), StatusCode::OK);
    assert_eq!(app.send(rpc("unlink_user_identity", &unlink, Some(&admin))).await.status(), StatusCode::NOT_FOUND);
    let listed = body_json(app.send(rpc("list_user_identities", &format!("account_id={}", local.id.0), Some(&admin))).await).await;
    assert_eq!(listed, serde_json::json!([]));
    let callback = round_trip(&app, &provider, &dana).await;
    assert_eq!(whoami(&app, &callback, "").await["account_id"], local.id.0, "linked again by verified email");
    // The password still works for the linked account; a disabled account cannot sign in.
    store::accounts::set_disabled(&app.db, local.id, true, &store::audit::AuditContext::system("test")).await.unwrap();
    assert_eq!(location(&round_trip(&app, &provider, &dana).await), "/login?error=sso-disabled");

    // The last administrator keeps the role whatever the provider says.
    configure_again(&app, &admin, id, &provider, "&link_by_email=on").await;
    let admin_identity = user("subject-admin", "admin@example.com", &["engineering"]);
    let callback = round_trip(&app, &provider, &admin_identity).await;
    assert_eq!(whoami(&app, &callback, "").await["role"], "admin");
    // A disabled provider offers no button and signs nobody in.
    let body = format!(
        "id={id}&slug={SLUG}&display_name=Corp+SSO&issuer_url={}&client_id={CLIENT_ID}&groups_claim=groups&role_mapping={}",
        encode(&provider.issuer),
        encode("palisade-security = security"),
    );
    assert_eq!(app.send(rpc("save_sso_provider", &body, Some(&admin))).await.status(), StatusCode::OK);
    assert_eq!(body_json(app.send(rpc("sign_in_providers", "", None)).await).await, serde_json::json!([]));
    assert_eq!(location(&app.send(get(&format!("/auth/oidc/{SLUG}"), None)).await), "/login?error=sso-unavailable");
});

async fn configure_again(app: &TestApp, admin: &str, id: i64, provider: &Provider, extra: &str) {
    // No client secret: the stored one stays.
    let body = format!(
        "id={id}&slug={SLUG}&display_name=Corp+SSO&issuer_url={}&client_id={CLIENT_ID}&scopes=email&groups_claim=groups\
         &role_mapping={}&enabled=on{extra}",
        encode(&provider.issuer),
        encode("palisade-security = security\nengineering = developer"),
    );
    let response = app.send(rpc("save_sso_provider", &body, Some(admin))).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", body_text(response).await);
}

app_test!(bad_provider_settings_are_refused_and_change_nothing, |app: TestApp| async move {
    let app = app;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    let attempt = |issuer: &str, roles: &str, teams: &str| {
        format!(
            "slug=corp&display_name=Corp&issuer_url={}&client_id=c&client_secret=s&groups_claim=groups&role_mapping={}&team_mapping={}",
            encode(issuer),
            encode(roles),
            encode(teams)
        )
    };
    for (body, field) in [
        (attempt("http://idp.example.com", "a = admin", ""), "issuer url"),
        (attempt("https://idp.example.com", "a = owner", ""), "role mapping"),
        (attempt("https://idp.example.com", "", ""), "role mapping"),
        (attempt("https://idp.example.com", "a = admin", "a = no-such-team"), "team mapping"),
    ] {
        let response = app.send(rpc("save_sso_provider", &body, Some(&admin))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        assert!(body_text(response).await.contains(field), "{field}");
    }
    assert!(store::sso_providers::list(&app.db).await.unwrap().is_empty());
    // A developer may not read or change providers.
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let developer = app.session_for("dev@example.com").await;
    assert_eq!(app.send(rpc("list_sso_providers", "", Some(&developer))).await.status(), StatusCode::FORBIDDEN);
    let body = attempt("https://idp.example.com", "a = admin", "");
    assert_eq!(app.send(rpc("save_sso_provider", &body, Some(&developer))).await.status(), StatusCode::FORBIDDEN);
});

/// A sensitive action after the recent-authentication window asks for a fresh sign-in; a
/// fresh one at the provider (`prompt=login`, `max_age=0`) restores it, one the provider
/// answered from an old session does not.
async fn a_fresh_sign_in_at_the_provider_confirms_sensitive_actions(backend: store::Backend) {
    let settings = app::state::AuthSettings {
        mfa_required_roles: Vec::new(),
        recent_authentication: std::time::Duration::from_secs(1),
        ..app::state::AuthSettings::default()
    };
    let app = TestApp::with_settings(backend, settings).await;
    let provider = Provider::start().await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    configure(&app, &provider, &admin, "&create_accounts=on").await;
    let casey = user("subject-casey", "casey@example.com", &["palisade-security"]);
    let callback = round_trip(&app, &provider, &casey).await;
    let session = session_cookie(&callback).unwrap();
    let rotate = |session: String| {
        let app = &app;
        async move { app.send(rpc("rotate_bundle_key", "overlap_hours=24&reason=drill", Some(&session))).await }
    };
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let stale = rotate(session.clone()).await;
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    assert!(body_text(stale).await.contains("Reauthenticate"));

    let confirm = |session: String| {
        let (app, provider, casey) = (&app, &provider, &casey);
        async move {
            let start = app.send(get(&format!("/auth/oidc/{SLUG}?reauth=1&next=%2Fpolicies"), Some(&session))).await;
            let to_provider = location(&start);
            let query: HashMap<String, String> = url::Url::parse(&to_provider).unwrap().query_pairs().into_owned().collect();
            assert_eq!(query.get("prompt").map(String::as_str), Some("login"), "the provider must ask again");
            assert_eq!(query.get("max_age").map(String::as_str), Some("0"));
            let (code, state) = provider.authorize(&to_provider, casey);
            app.send(get(&format!("/auth/oidc/{SLUG}/callback?code={}&state={}", encode(&code), encode(&state)), Some(&session))).await
        }
    };
    provider.misbehave(Misbehaviour::OldAuthTime);
    let refused = confirm(session.clone()).await;
    assert_eq!(location(&refused), "/login?error=sso-failed", "an old sign-in at the provider does not confirm");
    provider.misbehave(Misbehaviour::None);
    let confirmed = confirm(session.clone()).await;
    assert_eq!(location(&confirmed), "/policies");
    let fresh = session_cookie(&confirmed).unwrap();
    let rotated = rotate(fresh).await;
    assert_eq!(rotated.status(), StatusCode::OK, "{}", body_text(rotated).await);
}

#[tokio::test]
async fn a_fresh_sign_in_at_the_provider_confirms_sensitive_actions_sqlite() {
    a_fresh_sign_in_at_the_provider_confirms_sensitive_actions(store::Backend::Sqlite).await;
}

#[tokio::test]
async fn a_fresh_sign_in_at_the_provider_confirms_sensitive_actions_postgres() {
    a_fresh_sign_in_at_the_provider_confirms_sensitive_actions(store::Backend::Postgres).await;
}
