//! Every state change reachable over HTTP lands in the audit chain with who, what, where
//! and which request; no secret is ever written into it; and when the entry cannot be
//! written, the change does not happen.

mod common;

use common::*;
use http::{StatusCode, header};
use store::{Role, audit, teams};

app_test!(changes_and_sign_ins_are_audited_without_secrets, |app: TestApp| async move {
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let before = audit::list_entries(&app.db, 0, 1000).await.unwrap().len();

    let mut failed = form_post("/auth/login", "email=admin%40example.com&password=not+the+right+one", None);
    failed.headers_mut().insert(header::USER_AGENT, "audit-test/1".parse().unwrap());
    app.send(failed).await;
    let session = app.session_for("admin@example.com").await;
    let created = app.send(rpc("create_team", "name=Payments", Some(&session))).await;
    assert_eq!(created.status(), StatusCode::OK);
    let token = body_json(app.send(rpc("create_my_token", "name=ci&expires_in_days=30", Some(&session))).await).await;
    let secret = token["secret"].as_str().unwrap().to_owned();
    let invited = body_json(
        app.send(rpc("create_user", "email=new%40example.com&display_name=&role=auditor&team_id=&password=", Some(&session)))
            .await,
    )
    .await;
    let link = invited["setup_link"].as_str().unwrap().to_owned();
    let body = format!("current_password={}&new_password=another+long+password", encode(PASSWORD));
    let changed = app.send(rpc("change_password", &body, Some(&session))).await;
    assert_eq!(changed.status(), StatusCode::OK);
    // The session continues under a new id; the old one is dead.
    let session = session_cookie(&changed).expect("the session moves to a new id");
    app.send(form_post("/auth/logout", "", Some(&session))).await;

    let entries = audit::list_entries(&app.db, 0, 1000).await.unwrap();
    let new: Vec<_> = entries[before..].iter().collect();
    let actions: Vec<(&str, &str)> = new.iter().map(|e| (e.action.as_str(), e.outcome.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("session.login", "failure"),
            ("session.login", "success"),
            ("team.create", "success"),
            ("api_token.create", "success"),
            ("account.create", "success"),
            ("account.issue_setup_link", "success"),
            ("account.set_password", "success"),
            ("session.logout", "success"),
        ]
    );
    assert_eq!(new[0].actor_type, "anonymous");
    assert_eq!(new[0].actor_label, "admin@example.com");
    assert_eq!(new[0].user_agent, "audit-test/1");
    for entry in &new[1..] {
        assert_eq!(entry.actor_label, "admin@example.com", "{entry:?}");
        assert_eq!(entry.actor_type, "user");
        assert!(!entry.request_id.is_empty(), "every entry names its request: {entry:?}");
    }
    assert_eq!(new[2].details["after"]["name"], "Payments");
    let everything = serde_json::to_string(&entries).unwrap();
    let token_part = link.rsplit('=').next().unwrap();
    for secret in [secret.as_str(), token_part, PASSWORD, "another long password", "not the right one", "$argon2"] {
        assert!(!everything.contains(secret), "the audit trail must not contain {secret:?}");
    }
    assert_eq!(audit::verify_database_own_keys(&app.db).await.unwrap().map(|s| s.entries), Ok(entries.len() as i64));
});

app_test!(no_entry_no_change, |app: TestApp| async move {
    app.create_user("admin@example.com", Role::Admin, &[]).await;
    let session = app.session_for("admin@example.com").await;
    // Make every append fail: the head row is gone.
    sqlx::query("DELETE FROM audit_head").execute(app.db.pool()).await.unwrap();
    let refused = app.send(rpc("create_team", "name=Ghost", Some(&session))).await;
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_text(refused).await;
    assert!(!body.to_lowercase().contains("audit_head"), "no database text reaches the browser: {body}");
    assert!(teams::list_teams(&app.db).await.unwrap().is_empty(), "the team was not created");
    let token = app.send(rpc("create_my_token", "name=ghost", Some(&session))).await;
    assert_eq!(token.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let listed = body_json(app.send(rpc("list_my_tokens", "", Some(&session))).await).await;
    assert_eq!(listed["tokens"], serde_json::json!([]));
});

app_test!(the_rest_api_reads_the_trail_scoped_by_role, |app: TestApp| async move {
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let auditor = app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let (admin_token, dev_token, auditor_token) =
        (app.token_for(&admin).await, app.token_for(&dev).await, app.token_for(&auditor).await);
    let session = app.session_for("admin@example.com").await;
    app.send(rpc("create_team", "name=Payments", Some(&session))).await;

    let everything = body_json(app.send(bearer_get("/api/v1/audit?limit=200", Some(&auditor_token))).await).await;
    let all = everything["entries"].as_array().unwrap().len();
    assert!(all >= 7, "{everything}");
    let teams = body_json(app.send(bearer_get("/api/v1/audit?action=team", Some(&admin_token))).await).await;
    assert_eq!(teams["entries"].as_array().unwrap().len(), 1);
    assert_eq!(teams["entries"][0]["details"]["after"]["name"], "Payments");

    // A developer sees only entries by or about themselves: their account and token.
    let own = body_json(app.send(bearer_get("/api/v1/audit?limit=200", Some(&dev_token))).await).await;
    let own = own["entries"].as_array().unwrap();
    assert!(!own.is_empty());
    for entry in own {
        let about_dev = entry["target_type"] == "account" && entry["target_id"] == *dev.id.0.to_string();
        let by_dev = entry["actor_id"] == dev.id.0;
        assert!(about_dev || by_dev, "a developer must not see {entry}");
    }

    // Paging with the cursor walks every entry exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/v1/audit?limit=3&cursor={c}"),
            None => "/api/v1/audit?limit=3".to_owned(),
        };
        let page = body_json(app.send(bearer_get(&path, Some(&auditor_token))).await).await;
        seen.extend(page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=all as i64).rev().collect::<Vec<_>>());

    for bad in ["/api/v1/audit?limit=0", "/api/v1/audit?limit=201", "/api/v1/audit?from=yesterday"] {
        let response = app.send(bearer_get(bad, Some(&auditor_token))).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(body_json(response).await["code"], "invalid");
    }
});

app_test!(the_dashboard_searches_with_and_without_filters, |app: TestApp| async move {
    app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let session = app.session_for("auditor@example.com").await;
    // No filters at all is how the page first loads in the browser.
    let all = app.send(rpc("search_audit", "", Some(&session))).await;
    assert_eq!(all.status(), StatusCode::OK);
    assert!(!body_json(all).await["entries"].as_array().unwrap().is_empty());
    let logins = body_json(app.send(rpc("search_audit", "filters[action]=session.login", Some(&session))).await).await;
    for entry in logins["entries"].as_array().unwrap() {
        assert_eq!(entry["action"], "session.login");
    }
    let bad = app.send(rpc("search_audit", "filters[from]=yesterday", Some(&session))).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
});

app_test!(the_dashboard_exports_the_filtered_range, |app: TestApp| async move {
    app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    // A hostile "email" that a spreadsheet would run as a formula.
    app.login("=HYPERLINK(\"http://evil\")", "whatever password").await;
    let auditor = app.session_for("auditor@example.com").await;
    let developer = app.session_for("dev@example.com").await;

    let csv = app.send(get("/audit/export?format=csv", Some(&auditor))).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(csv.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment; filename=\"palisade-audit-"));
    let text = body_text(csv).await;
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("seq,at,actor_type"));
    let all = audit::list_entries(&app.db, 0, 1000).await.unwrap();
    assert_eq!(rows.len(), all.len() + 1, "every entry, oldest first");
    assert!(rows[1].starts_with("1,"));
    assert!(text.contains("\"'=hyperlink(\"\"http://evil\"\")\""), "formulas are defused: {text}");

    let jsonl = app.send(get("/audit/export?format=jsonl&outcome=failure", Some(&auditor))).await;
    assert_eq!(jsonl.headers()[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<serde_json::Value> =
        body_text(jsonl).await.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["outcome"], "failure");

    // A developer's download holds only their own entries.
    let own = body_text(app.send(get("/audit/export?format=jsonl", Some(&developer))).await).await;
    for line in own.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let mine = entry["actor_id"] == dev.id.0 || (entry["target_type"] == "account" && entry["target_id"] == *dev.id.0.to_string());
        assert!(mine, "{entry}");
    }
    assert!(!own.is_empty());

    let anonymous = app.send(get("/audit/export?format=csv", None)).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.send(get("/audit/export?format=xlsx", Some(&auditor))).await.status(), StatusCode::BAD_REQUEST);
    let bad_day = app.send(get("/audit/export?format=csv&from=31-12-2026", Some(&auditor))).await;
    assert_eq!(bad_day.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(bad_day).await.contains("from"));
});

app_test!(signing_keys_and_checkpoints_are_published, |app: TestApp| async move {
    use store::checkpoints::{CheckpointPolicy, checkpoint_if_due};
    use store::signing::{self, KeyPurpose, MasterKey};
    let auditor = app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let dev = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let (master, _) = MasterKey::generate();
    let signer = signing::ensure_signer(&app.db, &master, KeyPurpose::Audit, &audit::AuditContext::system("test")).await.unwrap();
    let session = app.session_for("auditor@example.com").await;
    let status = body_json(app.send(rpc("audit_chain_status", "", Some(&session))).await).await;
    assert_eq!(status["verified"]["checkpoints"], 0, "{status}");
    assert_eq!(status["verified"]["last_checkpoint"], serde_json::Value::Null);

    let signed = checkpoint_if_due(&app.db, &signer, CheckpointPolicy::ALWAYS).await.unwrap().unwrap();
    let status = body_json(app.send(rpc("audit_chain_status", "", Some(&session))).await).await;
    assert_eq!(status["first_bad_seq"], serde_json::Value::Null, "{status}");
    assert_eq!(status["verified"]["checkpoints"], 1);
    assert_eq!(status["verified"]["last_checkpoint"]["seq"], signed.seq);
    assert_eq!(status["verified"]["last_checkpoint"]["at"], signed.at);

    // The public keys, in the form `palisade audit verify --keys` reads, for any caller.
    let keys = body_json(app.send(bearer_get("/api/v1/audit/keys", Some(&app.token_for(&dev).await))).await).await;
    let parsed: Vec<store::PublicKeyInfo> = serde_json::from_value(keys.clone()).unwrap();
    assert_eq!(parsed, signing::list_public_keys(&app.db, KeyPurpose::Audit).await.unwrap());
    assert_eq!(parsed[0].key_id, signer.key_id);
    assert!(!keys.to_string().contains("sealed"), "only public halves: {keys}");
    let _ = auditor;
    assert_eq!(app.send(bearer_get("/api/v1/audit/keys", None)).await.status(), StatusCode::UNAUTHORIZED);
});
