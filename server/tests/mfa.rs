//! Two-factor authentication with TOTP: enrollment needs a code the authenticator shows,
//! after which the password only opens a second step; a wrong or reused code is refused
//! and counts against the sign-in throttle; a recovery code signs in once; turning it off
//! needs a code.

mod common;

use common::*;
use http::StatusCode;
use store::{Role, audit};

const EMAIL: &str = "ciso@example.com";

/// Signs in with the password and returns the pending session's cookie, checking that the
/// password alone opened only the second step.
async fn password_step(app: &TestApp) -> String {
    let response = app.login(EMAIL, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login?step=code");
    let cookie = session_cookie(&response).expect("a pending session");
    let whoami = body_json(app.send(rpc("whoami", "", Some(&cookie))).await).await;
    assert!(whoami.is_null(), "not signed in before the code: {whoami}");
    cookie
}

async fn code_step(app: &TestApp, cookie: &str, code: &str) -> http::Response<axum::body::Body> {
    app.send(form_post("/auth/mfa", &format!("code={}", encode(code)), Some(cookie))).await
}

app_test!(totp_enrollment_sign_in_replay_recovery_and_removal, |app: TestApp| async move {
    let app = app;
    app.create_user(EMAIL, Role::Security, &[]).await;
    let cookie = app.session_for(EMAIL).await;
    let status = body_json(app.send(rpc("mfa_status", "", Some(&cookie))).await).await;
    assert_eq!(status["enrolled"], false);

    let enrollment = body_json(app.send(rpc("begin_mfa", "", Some(&cookie))).await).await;
    let secret = enrollment["secret"].as_str().unwrap().to_owned();
    assert!(enrollment["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(enrollment["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Palisade"));
    // Until confirmed, the password alone still signs in.
    assert_eq!(location(&app.login(EMAIL, PASSWORD).await), "/");
    let wrong = app.send(rpc("confirm_mfa", "code=12345x", Some(&cookie))).await;
    assert!(!wrong.status().is_success());
    let enrolled_code = store::mfa::code_at(&secret, store::now_millis()).unwrap();
    let confirmed = app.send(rpc("confirm_mfa", &format!("code={enrolled_code}"), Some(&cookie))).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let recovery: Vec<String> = serde_json::from_value(body_json(confirmed).await).unwrap();
    assert_eq!(recovery.len(), store::mfa::RECOVERY_CODES);
    let again = app.send(rpc("begin_mfa", "", Some(&cookie))).await;
    assert!(!again.status().is_success(), "a confirmed factor is not replaced by reaching an open session");

    // Now the password opens the second step only; a wrong code and the code already
    // used at enrollment are refused.
    let pending = password_step(&app).await;
    let refused = code_step(&app, &pending, "000000").await;
    assert_eq!(location(&refused), "/login?step=code&error=code");
    assert_eq!(location(&code_step(&app, &pending, &enrolled_code).await), "/login?step=code&error=code", "a code works once");
    // The next code signs in, once.
    let next_code = store::mfa::code_at(&secret, store::now_millis() + 30_000).unwrap();
    let accepted = code_step(&app, &pending, &next_code).await;
    assert_eq!(location(&accepted), "/");
    let signed_in = session_cookie(&accepted).unwrap();
    let whoami = body_json(app.send(rpc("whoami", "", Some(&signed_in))).await).await;
    assert_eq!(whoami["email"], EMAIL);
    let replay = password_step(&app).await;
    assert_eq!(location(&code_step(&app, &replay, &next_code).await), "/login?step=code&error=code", "replayed");

    // A recovery code signs in once, in any case and with spaces.
    let spaced = recovery[0].to_uppercase().replace('-', " - ");
    assert_eq!(location(&code_step(&app, &replay, &spaced).await), "/");
    let later = password_step(&app).await;
    assert_eq!(location(&code_step(&app, &later, &recovery[0]).await), "/login?step=code&error=code", "used up");
    // A code step without a password step first goes nowhere.
    assert_eq!(location(&code_step(&app, &cookie, &recovery[1]).await), "/login?error=expired-code");

    // Wrong codes count against the sign-in throttle.
    let mut throttled = false;
    for _ in 0..8 {
        let response = code_step(&app, &later, "999999").await;
        if location(&response) == "/login?step=code&error=throttled" {
            assert!(response.headers().contains_key(http::header::RETRY_AFTER));
            throttled = true;
            break;
        }
    }
    assert!(throttled, "guessing codes is throttled");

    let status = body_json(app.send(rpc("mfa_status", "", Some(&signed_in))).await).await;
    assert_eq!((status["enrolled"].as_bool(), status["recovery_codes_left"].as_i64()), (Some(true), Some(9)));
    // Turning it off needs a code.
    assert!(!app.send(rpc("remove_mfa", "code=000000", Some(&signed_in))).await.status().is_success());
    let removed = app.send(rpc("remove_mfa", &format!("code={}", recovery[2]), Some(&signed_in))).await;
    assert_eq!(removed.status(), StatusCode::OK);
    let actions: Vec<String> = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().map(|e| e.action).collect();
    for action in ["mfa.enroll", "mfa.recovery_code", "mfa.remove"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    store::login_throttle::clear_account(&app.db, EMAIL).await.unwrap();
    assert_eq!(location(&app.login(EMAIL, PASSWORD).await), "/", "the password alone again");
});

/// With the requirement on (the default for admins and security), a password-only sign-in
/// can only set up a second factor; developers are not held.
async fn requirement_app(backend: store::Backend) -> TestApp {
    TestApp::with_settings(backend, app::state::AuthSettings::default()).await
}

async fn admins_and_security_must_set_up_a_second_factor_first(app: TestApp) {
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let response = app.login("admin@example.com", PASSWORD).await;
    assert_eq!(location(&response), "/settings?notice=enroll-mfa");
    let cookie = session_cookie(&response).unwrap();
    // Pages lead to the settings page; other server functions are refused.
    assert_eq!(location(&app.send(get("/apis", Some(&cookie))).await), "/settings?notice=enroll-mfa");
    assert_eq!(app.send(get("/settings", Some(&cookie))).await.status(), StatusCode::OK);
    let refused = app.send(rpc("list_apis", "", Some(&cookie))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(body_text(refused).await.contains("two-factor"));
    assert_eq!(app.send(rpc("create_my_token", "name=escape&expires_in_days=1", Some(&cookie))).await.status(), StatusCode::FORBIDDEN);
    // Setting it up frees the session.
    let enrollment = body_json(app.send(rpc("begin_mfa", "", Some(&cookie))).await).await;
    let code = store::mfa::code_at(enrollment["secret"].as_str().unwrap(), store::now_millis()).unwrap();
    assert_eq!(app.send(rpc("confirm_mfa", &format!("code={code}"), Some(&cookie))).await.status(), StatusCode::OK);
    assert_eq!(app.send(rpc("list_apis", "", Some(&cookie))).await.status(), StatusCode::OK);
    assert_eq!(app.send(get("/apis", Some(&cookie))).await.status(), StatusCode::OK);
    // A developer is not held.
    let developer = app.login("dev@example.com", PASSWORD).await;
    assert_eq!(location(&developer), "/");
    assert_eq!(app.send(rpc("list_apis", "", Some(&session_cookie(&developer).unwrap()))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn admins_and_security_must_set_up_a_second_factor_first_sqlite() {
    admins_and_security_must_set_up_a_second_factor_first(requirement_app(store::Backend::Sqlite).await).await;
}

#[tokio::test]
async fn admins_and_security_must_set_up_a_second_factor_first_postgres() {
    admins_and_security_must_set_up_a_second_factor_first(requirement_app(store::Backend::Postgres).await).await;
}

/// Sensitive actions (publishing, key rotation, user and provider administration, removing
/// a second factor) need a sign-in within the recent-authentication window; signing in
/// again restores them.
async fn sensitive_actions_ask_for_a_recent_sign_in(backend: store::Backend) {
    let settings = app::state::AuthSettings {
        mfa_required_roles: Vec::new(),
        recent_authentication: std::time::Duration::from_secs(1),
        ..app::state::AuthSettings::default()
    };
    let app = TestApp::with_settings(backend, settings).await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let cookie = app.session_for("admin@example.com").await;
    let publish = |cookie: String| {
        let app = &app;
        async move { app.send(rpc("publish_bundle", "revision=999999&reason=why", Some(&cookie))).await }
    };
    assert_eq!(publish(cookie.clone()).await.status(), StatusCode::NOT_FOUND, "fresh: the action goes ahead");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let stale = publish(cookie.clone()).await;
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    assert!(body_text(stale).await.contains("Reauthenticate"), "the browser can tell it apart from a refusal");
    // Every kind of sensitive action: user and provider administration, key rotations.
    for (name, body) in [
        ("create_team", "name=late"),
        ("rotate_bundle_key", "overlap_hours=24&reason=late"),
        ("rotate_credential", "client_app_id=999999&credential_id=1&overlap_minutes=5"),
        ("delete_sso_provider", "id=999999"),
    ] {
        let stale = app.send(rpc(name, body, Some(&cookie))).await;
        assert_eq!(stale.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(body_text(stale).await.contains("Reauthenticate"), "{name}");
    }
    // Reading goes on; signing in again restores the sensitive actions.
    assert_eq!(app.send(rpc("list_bundles", "", Some(&cookie))).await.status(), StatusCode::OK);
    let again = app.session_for("admin@example.com").await;
    assert_eq!(publish(again).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sensitive_actions_ask_for_a_recent_sign_in_sqlite() {
    sensitive_actions_ask_for_a_recent_sign_in(store::Backend::Sqlite).await;
}

#[tokio::test]
async fn sensitive_actions_ask_for_a_recent_sign_in_postgres() {
    sensitive_actions_ask_for_a_recent_sign_in(store::Backend::Postgres).await;
}

/// Sets up a second factor for the session's account; returns the secret.
async fn enroll(app: &TestApp, cookie: &str) -> String {
    let enrollment = body_json(app.send(rpc("begin_mfa", "", Some(cookie))).await).await;
    let secret = enrollment["secret"].as_str().unwrap().to_owned();
    let code = store::mfa::code_at(&secret, store::now_millis()).unwrap();
    assert_eq!(app.send(rpc("confirm_mfa", &format!("code={code}"), Some(cookie))).await.status(), StatusCode::OK);
    secret
}

app_test!(an_admin_or_the_command_line_removes_a_lost_second_factor, |app: TestApp| async move {
    let app = app;
    let user = app.create_user(EMAIL, Role::Security, &[]).await;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    enroll(&app, &app.session_for(EMAIL).await).await;
    password_step(&app).await;
    let admin = app.session_for("admin@example.com").await;
    let reset = |cookie: String| {
        let app = &app;
        async move { app.send(rpc("reset_user_mfa", &format!("account_id={}", user.id.0), Some(&cookie))).await.status() }
    };
    assert_eq!(reset(admin.clone()).await, StatusCode::OK);
    assert_eq!(location(&app.login(EMAIL, PASSWORD).await), "/", "the password alone again, until they set up a new one");
    assert_eq!(reset(admin).await, StatusCode::NOT_FOUND, "nothing left to remove");

    // The last admin's way back in: the command line, on the database.
    enroll(&app, &app.session_for(EMAIL).await).await;
    let folder = std::env::temp_dir().join(format!("palisade-mfa-reset-{}-{}", std::process::id(), store::now_millis()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["admin", "reset-mfa", "--email", EMAIL])
        .env("PALISADE_DATABASE_URL", app.database_url())
        .env("PALISADE_DATA_DIR", &folder)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(location(&app.login(EMAIL, PASSWORD).await), "/");
    let actions: Vec<String> = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "mfa.remove").count(), 2);
    std::fs::remove_dir_all(&folder).ok();
});

app_test!(admins_set_which_roles_need_a_second_factor, |app: TestApp| async move {
    let app = app;
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let admin = app.session_for("admin@example.com").await;
    let policy = body_json(app.send(rpc("get_sign_in_policy", "", Some(&admin))).await).await;
    assert_eq!((policy["mfa_required_roles"].clone(), policy["configured_default"].as_bool()), (serde_json::json!([]), Some(true)));
    let auditor = app.session_for("auditor@example.com").await;
    assert_eq!(app.send(rpc("set_sign_in_policy", "developer=on", Some(&auditor))).await.status(), StatusCode::FORBIDDEN, "auditors read only");

    let saved = body_json(app.send(rpc("set_sign_in_policy", "developer=on&auditor=on", Some(&admin))).await).await;
    assert_eq!((saved["mfa_required_roles"].clone(), saved["configured_default"].as_bool()), (serde_json::json!(["auditor", "developer"]), Some(false)));
    assert_eq!(location(&app.login("dev@example.com", PASSWORD).await), "/settings?notice=enroll-mfa");
    assert_eq!(location(&app.login("admin@example.com", PASSWORD).await), "/", "admins left out of it here");
    let saved = body_json(app.send(rpc("set_sign_in_policy", "", Some(&admin))).await).await;
    assert_eq!(saved["mfa_required_roles"], serde_json::json!([]));
    assert_eq!(location(&app.login("dev@example.com", PASSWORD).await), "/");
    let actions: Vec<String> = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "sign_in_policy.update").count(), 2);
});
