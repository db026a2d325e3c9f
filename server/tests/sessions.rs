//! Sign-in, sessions and request hygiene through the real router, on SQLite and PostgreSQL.

mod common;

use common::*;
use http::{StatusCode, header};
use store::login_throttle::ThrottlePolicy;
use store::{Role, accounts, sessions};

app_test!(sign_in_sets_a_hardened_session_cookie, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let response = app.login("Dev@Example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");
    let cookie = set_cookie(&response).expect("session cookie");
    for attribute in ["__Host-palisade_session=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing from {cookie}");
    }
    assert!(!cookie.contains("Domain"), "__Host- cookies must not carry a Domain: {cookie}");

    let session = session_cookie(&response).unwrap();
    let page = app.send(get("/settings", Some(&session))).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(body_text(page).await.contains("dev@example.com"));
});

app_test!(wrong_password_and_unknown_email_look_the_same, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let wrong = app.login("dev@example.com", "not the password at all").await;
    let unknown = app.login("nobody@example.com", "not the password at all").await;
    let garbage = app.login("not an email", "").await;
    for response in [&wrong, &unknown, &garbage] {
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(response), "/login?error=invalid");
        assert!(set_cookie(response).is_none(), "no session for a failed sign-in");
    }
    let missing_fields = app.send(form_post("/auth/login", "", None)).await;
    assert_eq!(location(&missing_fields), "/login?error=invalid");
});

app_test!(disabled_accounts_cannot_sign_in, |app: TestApp| async move {
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let session = app.session_for("dev@example.com").await;
    accounts::set_disabled(&app.db, dev.id, true, &store::audit::AuditContext::system("test")).await.unwrap();
    assert_eq!(location(&app.login("dev@example.com", PASSWORD).await), "/login?error=invalid");
    let page = app.send(get("/settings", Some(&session))).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "the live session ended with the account");
    let _ = admin;
});

app_test!(session_id_is_cycled_at_sign_in, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let sign_in = |cookie: Option<String>| {
        let mut request =
            form_post("/auth/login", &format!("email=dev%40example.com&password={}", encode(PASSWORD)), None);
        if let Some(cookie) = cookie {
            request.headers_mut().insert(header::COOKIE, cookie.parse().unwrap());
        }
        app.send(request)
    };
    // An id planted before sign-in (session fixation) is never adopted.
    let planted = format!("{}=AAAAAAAAAAAAAAAAAAAAAA", server::router::SESSION_COOKIE);
    let fresh = session_cookie(&sign_in(Some(planted.clone())).await).unwrap();
    assert_ne!(fresh, planted);
    // Signing in again over a live session moves it to a new id, and the old id is dead.
    let renewed = session_cookie(&sign_in(Some(fresh.clone())).await).unwrap();
    assert_ne!(renewed, fresh);
    assert_eq!(app.send(get("/settings", Some(&fresh))).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.send(get("/settings", Some(&renewed))).await.status(), StatusCode::OK);
});

app_test!(logout_ends_the_session_server_side, |app: TestApp| async move {
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let session = app.session_for("dev@example.com").await;
    assert_eq!(sessions::count_sessions_of(&app.db, dev.id).await.unwrap(), 1);
    let out = app.send(form_post("/auth/logout", "", Some(&session))).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/login?notice=signed-out");
    assert_eq!(sessions::count_sessions_of(&app.db, dev.id).await.unwrap(), 0);
    let replay = app.send(get("/settings", Some(&session))).await;
    assert_eq!(replay.status(), StatusCode::SEE_OTHER, "the old cookie is refused");
    assert_eq!(location(&replay), "/login?next=/settings");
    let rpc_replay = app.send(rpc("list_my_tokens", "", Some(&session))).await;
    assert_eq!(rpc_replay.status(), StatusCode::UNAUTHORIZED);
});

app_test!(password_change_ends_other_sessions, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let first = app.session_for("dev@example.com").await;
    let second = app.session_for("dev@example.com").await;
    let body = format!("current_password={}&new_password={}", encode(PASSWORD), encode("another long password"));
    let changed = app.send(rpc("change_password", &body, Some(&first))).await;
    assert_eq!(changed.status(), StatusCode::OK, "{}", body_text(changed).await);
    let other = app.send(get("/settings", Some(&second))).await;
    assert_eq!(other.status(), StatusCode::SEE_OTHER, "the other session ended");
    assert_eq!(location(&app.login("dev@example.com", PASSWORD).await), "/login?error=invalid");
    assert_eq!(location(&app.login("dev@example.com", "another long password").await), "/");

    let short = format!("current_password={}&new_password=short", encode("another long password"));
    let third = app.session_for_password("dev@example.com", "another long password").await;
    let refused = app.send(rpc("change_password", &short, Some(&third))).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(refused).await.contains("at least 12"));
});

impl TestApp {
    async fn session_for_password(&self, email: &str, password: &str) -> String {
        session_cookie(&self.login(email, password).await).unwrap()
    }
}

app_test!(failed_sign_ins_are_throttled_per_account, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let policy = ThrottlePolicy::default();
    for _ in 0..policy.free_account_failures {
        assert_eq!(location(&app.login("dev@example.com", "wrong password!!").await), "/login?error=invalid");
    }
    let throttled = app.login("dev@example.com", PASSWORD).await;
    assert_eq!(location(&throttled), "/login?error=throttled", "even the right password waits");
    assert!(throttled.headers().contains_key(header::RETRY_AFTER));
    // Unknown emails are throttled the same way, so throttling reveals nothing.
    for _ in 0..policy.free_account_failures {
        app.login("ghost@example.com", "wrong password!!").await;
    }
    assert_eq!(location(&app.login("ghost@example.com", "wrong password!!").await), "/login?error=throttled");
    // Another account is unaffected.
    app.create_user("other@example.com", Role::Developer, &[]).await;
    assert_eq!(location(&app.login("other@example.com", PASSWORD).await), "/");
});

app_test!(cross_site_state_changes_are_refused, |app: TestApp| async move {
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let session = app.session_for("dev@example.com").await;
    let mut foreign = form_post("/auth/logout", "", Some(&session));
    foreign.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(app.send(foreign).await.status(), StatusCode::FORBIDDEN);
    let mut cross = rpc("create_my_token", "name=x", Some(&session));
    cross.headers_mut().remove(header::ORIGIN);
    cross.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(app.send(cross).await.status(), StatusCode::FORBIDDEN);
    let mut null_origin = form_post("/auth/login", "email=a&password=b", None);
    null_origin.headers_mut().insert(header::ORIGIN, "null".parse().unwrap());
    assert_eq!(app.send(null_origin).await.status(), StatusCode::FORBIDDEN);
    // Nothing was created by the refused call, and the session still works.
    let tokens = app.send(rpc("list_my_tokens", "", Some(&session))).await;
    assert_eq!(body_json(tokens).await["tokens"], serde_json::json!([]));
});

app_test!(html_responses_carry_security_headers, |app: TestApp| async move {
    let page = app.send(get("/login", None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).unwrap().to_owned();
    assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(page.headers().contains_key(header::REFERRER_POLICY));
    assert!(page.headers().contains_key("x-request-id"));
    let html = body_text(page).await;
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "hydration script carries the nonce");
    let second = app.send(get("/login", None)).await;
    assert!(!second.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains(&nonce), "fresh nonce each time");
});

app_test!(oversized_bodies_are_refused, |app: TestApp| async move {
    let huge = "a".repeat(server::router::MAX_BODY_BYTES + 1);
    let response = app.send(form_post("/auth/login", &format!("email={huge}&password=x"), None)).await;
    // The form extractor fails on the limit: a refused sign-in, and no work done.
    assert!(response.status() == StatusCode::PAYLOAD_TOO_LARGE || location(&response) == "/login?error=invalid");
    let body = format!("name={huge}");
    let mut with_length = rpc("create_team", &body, None);
    with_length.headers_mut().insert(header::CONTENT_LENGTH, body.len().into());
    assert_eq!(app.send(with_length).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without a declared length (chunked), reading stops at the limit: refused all the same.
    let chunked = app.send(rpc("create_team", &body, None)).await;
    assert!(!chunked.status().is_success(), "{}", chunked.status());
});

app_test!(health_readiness_and_metrics, |app: TestApp| async move {
    assert_eq!(body_text(app.send(get("/healthz", None)).await).await, "ok");
    assert_eq!(app.send(get("/readyz", None)).await.status(), StatusCode::OK);
    app.login("x@example.com", "nope nope nope").await;
    let metrics = body_text(app.send(get("/metrics", None)).await).await;
    assert!(metrics.contains("palisade_http_requests_total"), "{metrics}");
    assert!(metrics.contains("palisade_logins_total"), "{metrics}");
    app.db.close().await;
    assert_eq!(app.send(get("/readyz", None)).await.status(), StatusCode::SERVICE_UNAVAILABLE);
});

app_test!(no_javascript_forms_redirect_back_with_errors_and_flash, |app: TestApp| async move {
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let session = app.session_for("admin@example.com").await;
    // A plain HTML form post (Accept: text/html) is answered by a redirect to the form.
    let mut post = form_post("/rpc/create_my_token", "name=laptop&expires_in_days=", Some(&session));
    post.headers_mut().insert(header::ACCEPT, "text/html".parse().unwrap());
    post.headers_mut().insert(header::REFERER, format!("{ORIGIN}/settings/tokens").parse().unwrap());
    let created = app.send(post).await;
    assert_eq!(created.status(), StatusCode::FOUND);
    assert!(location(&created).starts_with(&format!("{ORIGIN}/settings/tokens")));
    // The page after the redirect shows the new secret once.
    let page = body_text(app.send(get("/settings/tokens", Some(&session))).await).await;
    assert!(page.contains("pal_"), "the secret is shown after the redirect");
    let again = body_text(app.send(get("/settings/tokens", Some(&session))).await).await;
    assert!(!again.contains("data-testid=\"secret\""), "and only once");

    let mut bad = form_post("/rpc/create_team", "name=", Some(&session));
    bad.headers_mut().insert(header::ACCEPT, "text/html".parse().unwrap());
    bad.headers_mut().insert(header::REFERER, format!("{ORIGIN}/settings/teams").parse().unwrap());
    let refused = app.send(bad).await;
    assert_eq!(refused.status(), StatusCode::FOUND);
    let target = location(&refused);
    assert!(target.contains("__path=") || target.contains("error"), "error carried in the URL: {target}");
    let path = target.trim_start_matches(ORIGIN);
    let page = body_text(app.send(get(path, Some(&session))).await).await;
    assert!(page.contains("team name: is required"), "the error shows next to the form");
});

async fn with_timeouts(backend: store::Backend, idle: std::time::Duration, absolute: std::time::Duration) -> TestApp {
    let settings = app::state::AuthSettings { idle_timeout: idle, absolute_timeout: absolute, mfa_required_roles: Vec::new(), ..Default::default() };
    TestApp::with_settings(backend, settings).await
}

async fn idle_sessions_expire(backend: store::Backend) {
    // Margins of seconds, not milliseconds: the machine running this may be busy.
    let app = with_timeouts(backend, std::time::Duration::from_secs(4), std::time::Duration::from_secs(3600)).await;
    app.create_user("dev@example.com", Role::Developer, &[]).await;
    let session = app.session_for("dev@example.com").await;
    for _ in 0..3 {
        // Activity keeps the session alive past the idle timeout…
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        assert_eq!(app.send(get("/settings", Some(&session))).await.status(), StatusCode::OK);
    }
    // …inactivity ends it.
    tokio::time::sleep(std::time::Duration::from_millis(5_000)).await;
    assert_eq!(app.send(get("/settings", Some(&session))).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn idle_sessions_expire_on_sqlite() {
    idle_sessions_expire(store::Backend::Sqlite).await;
}

#[tokio::test]
async fn idle_sessions_expire_on_postgres() {
    idle_sessions_expire(store::Backend::Postgres).await;
}

async fn sessions_end_at_the_absolute_timeout(backend: store::Backend) {
    let app = with_timeouts(backend, std::time::Duration::from_secs(3600), std::time::Duration::from_secs(4)).await;
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let session = app.session_for("dev@example.com").await;
    assert_eq!(app.send(get("/settings", Some(&session))).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(app.send(get("/settings", Some(&session))).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(4_000)).await;
    assert_eq!(app.send(get("/settings", Some(&session))).await.status(), StatusCode::SEE_OTHER, "active or not");
    assert_eq!(sessions::count_sessions_of(&app.db, dev.id).await.unwrap(), 0, "and it is deleted");
}

#[tokio::test]
async fn sessions_end_at_the_absolute_timeout_on_sqlite() {
    sessions_end_at_the_absolute_timeout(store::Backend::Sqlite).await;
}

#[tokio::test]
async fn sessions_end_at_the_absolute_timeout_on_postgres() {
    sessions_end_at_the_absolute_timeout(store::Backend::Postgres).await;
}
