//! The dashboard's Agents section: the fleet, drift and convergence for every role;
//! enrollment tokens (the secret shown once, with the agent's start command) and
//! revocation for security and admins only, audited; bad input refused with a clear
//! message; and the forms working without JavaScript.

mod common;

use common::*;
use http::{StatusCode, header};
use store::agent_reports::{self, StatusReport};
use store::agents::{self, EnrollmentRequest};
use store::audit::{self, AuditContext};
use store::{Labels, Role, teams};

fn system() -> AuditContext {
    AuditContext::system("test")
}

/// An API to compile bundles from, owned by a new team; its id.
async fn register_api(app: &TestApp) -> i64 {
    let team = teams::create_team(&app.db, "Edge", &system()).await.unwrap();
    let document = serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "Orders", "version": "1"},
        "paths": {"/orders/{id}": {"get": {"responses": {"200": {"description": "an order"}}}}},
    });
    let spec = store::openapi::parse(&serde_json::to_vec(&document).unwrap(), store::openapi::Format::Json).unwrap();
    store::apis::create_api(&app.db, team.id, "production", &spec, &system()).await.unwrap().summary.id.0
}

/// Enrolls an agent with `labels` through the data layer, as `/agent/v1/enroll` would.
async fn enroll(app: &TestApp, name: &str, labels: &Labels) -> i64 {
    let (_, secret) = agents::create_enrollment_token(&app.db, labels, Some(name), 3_600_000, &system()).await.unwrap();
    enroll_with(app, &secret).await
}

async fn enroll_with(app: &TestApp, secret: &str) -> i64 {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()).verifying_key();
    let request = EnrollmentRequest { token: secret.to_owned(), public_key: hex::encode(key.to_bytes()), name: None, version: "0.9.1".into() };
    agents::enroll(&app.db, &request, &system()).await.unwrap().id
}

async fn report(app: &TestApp, agent: i64, revision: i64, error: Option<&str>) {
    let report = StatusReport {
        version: "0.9.1".into(),
        active_revision: Some(revision),
        bundle_hash: Some("sha256:abc".into()),
        last_error: error.map(str::to_owned),
        uptime_seconds: 60,
        counters: store::AgentCounters { allowed: 41, denied: 7, monitored: 0, errors: 1, dropped_decisions: 12 },
        spooled_decisions: 0,
    };
    agent_reports::record_status(&app.db, agent, &report).await.unwrap();
}

/// Compiles and publishes a revision for every agent; its number.
async fn publish_for_everyone(app: &TestApp) -> i64 {
    let draft = app::publishing::ssr::create_draft(&app.db, &app.state.master, &Labels::new(), &system()).await.unwrap().unwrap().0;
    store::bundles::publish_bundle(&app.db, draft.revision, "agents page", &system()).await.unwrap();
    draft.revision
}

/// A signed-in session for a new user of `role`.
async fn session_of(app: &TestApp, role: Role) -> String {
    let email = format!("{}@example.com", role.as_str());
    app.create_user(&email, role, &[]).await;
    app.session_for(&email).await
}

async fn page(app: &TestApp, session: &str) -> String {
    let response = app.send(get("/agents", Some(session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    body_text(response).await
}

/// A server function's answer: its status and body.
async fn call(app: &TestApp, name: &str, body: &str, session: &str) -> (StatusCode, String) {
    let response = app.send(rpc(name, body, Some(session))).await;
    (response.status(), body_text(response).await)
}

app_test!(every_role_sees_the_fleet_drift_and_convergence_and_only_managers_get_controls, |app: TestApp| async move {
    let app = app;
    register_api(&app).await;
    let sessions = [
        (Role::Admin, session_of(&app, Role::Admin).await),
        (Role::Security, session_of(&app, Role::Security).await),
        (Role::Developer, session_of(&app, Role::Developer).await),
        (Role::Auditor, session_of(&app, Role::Auditor).await),
    ];

    // Before any agent: the empty state says what to do, by role.
    let empty = page(&app, &sessions[1].1).await;
    assert!(empty.contains("No enforcement agents enrolled yet"), "{empty}");
    assert!(empty.contains("Create an enrollment token below"));
    assert!(empty.contains("Nothing published yet"));
    assert!(empty.contains("No enrollment tokens yet"));
    let empty = page(&app, &sessions[2].1).await;
    assert!(empty.contains("ask one for an enrollment token"), "{empty}");

    // Three agents: one on the newest revision, one behind it, one silent so far.
    let eu = Labels::from([("region".to_owned(), "eu".to_owned())]);
    let current = enroll(&app, "orders-eu-1", &eu).await;
    let behind = enroll(&app, "orders-eu-2", &eu).await;
    let _silent = enroll(&app, "orders-us-1", &Labels::new()).await;
    let first = publish_for_everyone(&app).await;
    report(&app, behind, first, Some("upstream refused the connection")).await;
    let second = publish_for_everyone(&app).await;
    report(&app, current, second, None).await;

    for (role, session) in &sessions {
        let html = page(&app, session).await;
        let manages = matches!(role, Role::Admin | Role::Security);
        assert!(html.contains("3 agents: 1 healthy, 2 drifted, 0 offline, 1 degraded, 1 awaiting a first report."), "{role:?}: {html}");
        for shown in ["orders-eu-1", "orders-eu-2", "orders-us-1", "region=eu", "0.9.1", "upstream refused the connection", "41 allowed, 7 denied", "12 decisions dropped (spool full)"] {
            assert!(html.contains(shown), "{role:?} sees {shown}");
        }
        assert!(html.contains("badge healthy") && html.contains("badge degraded") && html.contains("badge pending"), "{role:?}");
        assert!(html.contains(&format!("{first} (meant: {second})")), "{role:?}: the drifted agent shows both revisions");
        assert_eq!(html.matches("data-testid=\"drift\"").count(), 2, "{role:?}: the behind and the silent agent drift");
        assert!(html.contains("s ago"), "{role:?}: last seen is relative");
        // Convergence: the first revision reached two of three agents (one by running the
        // second), the second one of three.
        assert!(html.contains("data-testid=\"convergence\""), "{role:?}");
        assert!(html.contains(">66 %<") && html.contains(">33 %<"), "{role:?}: {html}");
        // Controls only for those who manage the fleet.
        assert_eq!(html.contains("Create enrollment token"), manages, "{role:?}");
        assert_eq!(html.contains("name=\"reason\""), manages, "{role:?}");
        assert_eq!(html.contains("Enrollment tokens"), manages, "{role:?}");
        assert_eq!(html.contains("/rpc/revoke_agent"), manages, "{role:?}");
    }
    // The fleet's server function answers every role; the tokens only managers.
    for (role, session) in &sessions {
        let (status, _) = call(&app, "list_fleet", "", session).await;
        assert_eq!(status, StatusCode::OK, "{role:?}");
        let (status, _) = call(&app, "list_enrollment_tokens", "", session).await;
        let expected = if matches!(role, Role::Admin | Role::Security) { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(status, expected, "{role:?}");
    }
    assert_eq!(app.send(get("/agents", None)).await.status(), StatusCode::SEE_OTHER, "signed out: to sign in");
});

app_test!(enrollment_tokens_show_their_secret_once_and_are_revoked_by_managers_only, |app: TestApp| async move {
    let app = app;
    let api = register_api(&app).await;
    let security = session_of(&app, Role::Security).await;
    let developer = session_of(&app, Role::Developer).await;
    let auditor = session_of(&app, Role::Auditor).await;

    let body = format!("labels=env%3Dprod%2C+region%3Deu&name=edge-1&expires_minutes=30&api_id={api}");
    let (status, created) = call(&app, "create_enrollment_token", &body, &security).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pae_"), "{secret}");
    assert_eq!(created["token"]["labels"], serde_json::json!({"env": "prod", "region": "eu"}));
    let expires_in = created["token"]["expires_at"].as_i64().unwrap() - created["token"]["created_at"].as_i64().unwrap();
    assert_eq!(expires_in, 30 * 60_000);
    assert_eq!(
        created["command"],
        format!(
            "palisade-agent --control-plane {ORIGIN} --enroll-token {secret} --data-dir /var/lib/palisade-agent --api {api} \
             --listen 0.0.0.0:8080 --upstream http://127.0.0.1:9000"
        )
    );
    // Without an API chosen, the command leaves a placeholder; without an expiry, an hour.
    let (status, plain) = call(&app, "create_enrollment_token", "labels=&name=&expires_minutes=&api_id=", &security).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert!(plain["command"].as_str().unwrap().contains("--api <API id> --listen"), "{plain}");
    assert_eq!(plain["token"]["expires_at"].as_i64().unwrap() - plain["token"]["created_at"].as_i64().unwrap(), 3_600_000);

    // Never shown again: not in the listing, not on the page, not in the audit trail.
    let (status, listed) = call(&app, "list_enrollment_tokens", "", &security).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.contains("edge-1") && !listed.contains(&secret), "{listed}");
    let html = page(&app, &security).await;
    assert!(!html.contains(&secret), "the page never shows the secret again");
    assert!(html.contains("env=prod, region=eu") && html.contains("unused"), "{html}");
    assert!(html.contains("/rpc/revoke_enrollment_token"));
    let trail = audit::list_entries(&app.db, 0, 1_000).await.unwrap();
    assert!(!serde_json::to_string(&trail).unwrap().contains(&secret), "the audit trail holds no secret");
    let made = trail.iter().filter(|e| e.action == "agent.enrollment_token.create").collect::<Vec<_>>();
    assert_eq!(made.len(), 2);
    assert_eq!(made[0].actor_label, "security@example.com");

    // Developers and auditors change nothing.
    for session in [&developer, &auditor] {
        assert_eq!(call(&app, "create_enrollment_token", "labels=env%3Dprod&expires_minutes=60", session).await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "list_enrollment_tokens", "", session).await.0, StatusCode::FORBIDDEN);
        let id = created["token"]["id"].as_i64().unwrap();
        assert_eq!(call(&app, "revoke_enrollment_token", &format!("enrollment_token_id={id}"), session).await.0, StatusCode::FORBIDDEN);
    }

    // The agent enrolls with it: the listing says which agent it became.
    let agent = enroll_with(&app, &secret).await;
    let html = page(&app, &security).await;
    assert!(html.contains("→ edge-1"), "{html}");
    // A used token has nothing left to revoke.
    let used = created["token"]["id"].as_i64().unwrap();
    let (status, refused) = call(&app, "revoke_enrollment_token", &format!("enrollment_token_id={used}"), &security).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("is already used or revoked"), "{refused}");

    // The unused one is revoked, once, and audited.
    let unused = plain["token"]["id"].as_i64().unwrap();
    let (status, revoked) = call(&app, "revoke_enrollment_token", &format!("enrollment_token_id={unused}"), &security).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(serde_json::from_str::<serde_json::Value>(&revoked).unwrap()["revoked_at"].is_i64());
    assert_eq!(call(&app, "revoke_enrollment_token", &format!("enrollment_token_id={unused}"), &security).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, "revoke_enrollment_token", "enrollment_token_id=999999", &security).await.0, StatusCode::NOT_FOUND);
    let html = page(&app, &security).await;
    assert!(html.contains("revoked "), "{html}");
    assert_eq!(html.matches("/rpc/revoke_enrollment_token").count(), 0, "no live token is left to revoke");
    let revocation = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().find(|e| e.action == "agent.enrollment_token.revoke").unwrap();
    assert_eq!((revocation.target_id.as_str(), revocation.actor_label.as_str()), (unused.to_string().as_str(), "security@example.com"));

    // Revoking the agent needs a reason, is for managers only, and is audited with it.
    let (status, refused) = call(&app, "revoke_agent", &format!("agent_id={agent}&reason=+"), &security).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("say why the agent is cut off"), "{refused}");
    for session in [&developer, &auditor] {
        assert_eq!(call(&app, "revoke_agent", &format!("agent_id={agent}&reason=mine"), session).await.0, StatusCode::FORBIDDEN);
    }
    let (status, revoked) = call(&app, "revoke_agent", &format!("agent_id={agent}&reason=host+decommissioned"), &security).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(serde_json::from_str::<serde_json::Value>(&revoked).unwrap()["revoked_at"].is_i64());
    assert_eq!(call(&app, "revoke_agent", &format!("agent_id={agent}&reason=again"), &security).await.0, StatusCode::BAD_REQUEST);
    let entry = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().find(|e| e.action == "agent.revoke").unwrap();
    assert_eq!(entry.reason.as_deref(), Some("host decommissioned"));
    assert_eq!((entry.target_id.as_str(), entry.actor_label.as_str()), (agent.to_string().as_str(), "security@example.com"));
    let html = page(&app, &security).await;
    assert!(html.contains("0 agents: 0 healthy, 0 drifted, 0 offline. 1 revoked."), "{html}");
    assert!(html.contains("badge revoked") && !html.contains("/rpc/revoke_agent"), "a revoked agent has no revoke button");
});

app_test!(bad_labels_expiry_or_api_are_clear_errors_that_change_nothing, |app: TestApp| async move {
    let app = app;
    let admin = session_of(&app, Role::Admin).await;
    for (body, status, message) in [
        ("labels=env&expires_minutes=60", StatusCode::BAD_REQUEST, "a label is key=value"),
        ("labels=env%3Dprod%2Cenv%3Dtest&expires_minutes=60", StatusCode::BAD_REQUEST, "is given twice"),
        ("labels=env%3Dpr%21od&expires_minutes=60", StatusCode::BAD_REQUEST, "1 to 63 letters"),
        ("labels=env%3Dprod&expires_minutes=0", StatusCode::BAD_REQUEST, "from 1 to 10080 minutes"),
        ("labels=env%3Dprod&expires_minutes=10081", StatusCode::BAD_REQUEST, "from 1 to 10080 minutes"),
        ("labels=env%3Dprod&expires_minutes=soon", StatusCode::BAD_REQUEST, "from 1 to 10080 minutes"),
        ("labels=env%3Dprod&expires_minutes=60&api_id=999999", StatusCode::NOT_FOUND, "\"NotFound\":\"API\""),
        ("labels=env%3Dprod&expires_minutes=60&api_id=orders", StatusCode::BAD_REQUEST, "choose an API"),
        ("labels=env%3Dprod&expires_minutes=60&name=bad%0Aname", StatusCode::BAD_REQUEST, "name"),
    ] {
        let (got, text) = call(&app, "create_enrollment_token", body, &admin).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(message), "{body}: {text}");
    }
    assert!(agents::list_enrollment_tokens(&app.db).await.unwrap().is_empty(), "nothing was made");
    let html = page(&app, &admin).await;
    assert!(html.contains("No enrollment tokens yet"));
});

app_test!(without_javascript_the_secret_and_command_show_once_after_the_redirect, |app: TestApp| async move {
    let app = app;
    let security = session_of(&app, Role::Security).await;
    let plain_form = |body: &str| {
        let mut post = form_post("/rpc/create_enrollment_token", body, Some(&security));
        post.headers_mut().insert(header::ACCEPT, "text/html".parse().unwrap());
        post.headers_mut().insert(header::REFERER, format!("{ORIGIN}/agents").parse().unwrap());
        post
    };
    let created = app.send(plain_form("labels=env%3Dnoscript&name=&expires_minutes=60&api_id=")).await;
    assert_eq!(created.status(), StatusCode::FOUND);
    assert!(location(&created).starts_with(&format!("{ORIGIN}/agents")));
    let html = page(&app, &security).await;
    assert!(html.contains("data-testid=\"secret\"") && html.contains("class=\"secret\">pae_"), "the secret is shown after the redirect: {html}");
    assert!(html.contains(&format!("data-testid=\"command\">palisade-agent --control-plane {ORIGIN} --enroll-token pae_")), "{html}");
    let again = page(&app, &security).await;
    assert!(!again.contains("data-testid=\"secret\"") && !again.contains("pae_"), "and only once");
    assert!(again.contains("env=noscript"));

    // An error comes back to the form through the redirect.
    let refused = app.send(plain_form("labels=noscript&name=&expires_minutes=60&api_id=")).await;
    assert_eq!(refused.status(), StatusCode::FOUND);
    let target = location(&refused);
    let html = body_text(app.send(get(target.trim_start_matches(ORIGIN), Some(&security))).await).await;
    assert!(html.contains("a label is key=value"), "the error shows next to the form: {html}");
});
