//! Bundles through the REST API and the command line: a draft is compiled and signed,
//! its artifact verifies as an agent would check it and refuses tampering, publishing
//! needs a reason and cannot go backwards, a rollback re-issues an old policy as a new
//! revision, problems across APIs block a bundle with their paths, and only security and
//! admins make bundles.

mod common;

use common::*;
use http::StatusCode;
use store::{Role, audit, teams};

fn put_json(path: &str, token: &str, body: serde_json::Value) -> http::Request<axum::body::Body> {
    let mut request = post_json(path, token, body);
    *request.method_mut() = http::Method::PUT;
    request
}

fn document(title: &str, paths: &[&str]) -> Vec<u8> {
    let paths: serde_json::Map<String, serde_json::Value> = paths
        .iter()
        .map(|path| ((*path).to_owned(), serde_json::json!({"get": {"responses": {"200": {"description": "ok"}}}})))
        .collect();
    serde_json::to_vec(&serde_json::json!({"openapi": "3.0.3", "info": {"title": title, "version": "1"}, "paths": paths})).unwrap()
}

async fn register(app: &TestApp, token: &str, team: i64, title: &str, paths: &[&str]) -> i64 {
    let request = http::Request::post(format!("/api/v1/apis?team={team}"))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(document(title, paths)))
        .unwrap();
    let response = app.send(request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body_json(response).await["id"].as_i64().unwrap()
}

/// The bundle keys an agent would be given at enrollment.
async fn trust(app: &TestApp) -> policy::bundle::TrustStore {
    let keys = app::publishing::ssr::announced_keys(&app.db).await.unwrap();
    policy::bundle::TrustStore::from_announced(&keys).unwrap()
}

app_test!(drafts_are_signed_published_with_a_reason_and_rolled_back, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let developer = app.create_user("dev@example.com", Role::Developer, &[team]).await;
    let dev_token = app.token_for(&developer).await;
    let api = register(&app, &token, team.0, "Pets", &["/pets/{id}"]).await;
    // Another API may declare the same path: an agent fronts one API and matches in it.
    register(&app, &token, team.0, "Pets Mirror", &["/pets/{id}"]).await;

    // Only security and admins make bundles.
    assert_eq!(app.send(post_json("/api/v1/bundles", &dev_token, serde_json::json!({}))).await.status(), StatusCode::FORBIDDEN);

    let created = app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body_json(created).await;
    assert_eq!(created["bundle"]["revision"], 1);
    assert_eq!(created["added"], serde_json::json!(["GET /pets/{id} in Pets", "GET /pets/{id} in Pets Mirror"]));
    assert!(created["bundle"]["published_at"].is_null(), "a draft until published");

    // The artifact verifies as an agent checks it; tampered, it does not.
    let artifact = body_text(app.send(bearer_get("/api/v1/bundles/1", Some(&dev_token))).await).await;
    let keys = trust(&app).await;
    let bundle = policy::bundle::verify(artifact.as_bytes(), &keys, 0, store::now_millis()).unwrap();
    assert_eq!(bundle.header.revision, 1);
    assert_eq!(bundle.header.content_hash, created["bundle"]["content_hash"].as_str().unwrap());
    let tampered = artifact.replacen("/pets/", "/pats/", 1);
    assert_eq!(policy::bundle::verify(tampered.as_bytes(), &keys, 0, store::now_millis()).unwrap_err(), policy::bundle::VerifyError::BadSignature);

    // The command line does the same check.
    let folder = std::env::temp_dir().join(format!("palisade-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let (good_file, bad_file) = (folder.join(format!("good-{}.json", api)), folder.join(format!("bad-{}.json", api)));
    std::fs::write(&good_file, &artifact).unwrap();
    std::fs::write(&bad_file, &tampered).unwrap();
    let cli = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["bundle", "verify"])
            .arg(file)
            .env("PALISADE_DATABASE_URL", app.database_url())
            .env("PALISADE_DATA_DIR", &folder)
            .output()
            .unwrap()
    };
    let good = cli(&good_file);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(String::from_utf8_lossy(&good.stdout).contains("revision 1"));
    let bad = cli(&bad_file);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signature"), "{}", String::from_utf8_lossy(&bad.stderr));
    std::fs::remove_dir_all(&folder).ok();

    // Publishing needs a reason, happens once, and is audited with it.
    let no_reason = app.send(post_json("/api/v1/bundles/1/publish", &token, serde_json::json!({"reason": " "}))).await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let published = app.send(post_json("/api/v1/bundles/1/publish", &token, serde_json::json!({"reason": "first policy"}))).await;
    assert_eq!(published.status(), StatusCode::OK);
    assert_eq!(body_json(published).await["reason"], "first policy");
    let entry = audit::list_entries(&app.db, 0, 1_000).await.unwrap().pop().unwrap();
    assert_eq!((entry.action.as_str(), entry.reason.as_deref()), ("bundle.publish", Some("first policy")));
    let again = app.send(post_json("/api/v1/bundles/1/publish", &token, serde_json::json!({"reason": "again"}))).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A change in the inventory shows in the next draft's diff.
    let protection = serde_json::json!({"authentication": {"mode": "public"}});
    let saved = app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, protection)).await;
    assert_eq!(saved.status(), StatusCode::OK);
    let stale_draft = body_json(app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await).await;
    assert_eq!(stale_draft["changed"], serde_json::json!(["GET /pets/{id} in Pets: authentication"]));
    let newer = body_json(app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await).await;
    let publish_newer = app.send(post_json(&format!("/api/v1/bundles/{}/publish", newer["bundle"]["revision"]), &token, serde_json::json!({"reason": "open it"}))).await;
    assert_eq!(publish_newer.status(), StatusCode::OK);
    // An older draft can no longer be published: agents would refuse it.
    let stale = app
        .send(post_json(&format!("/api/v1/bundles/{}/publish", stale_draft["bundle"]["revision"]), &token, serde_json::json!({"reason": "late"})))
        .await;
    assert_eq!(stale.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Roll back to revision 1: a new, newer revision with revision 1's policy.
    let rolled = app.send(post_json("/api/v1/bundles/1/rollback", &token, serde_json::json!({"reason": "the open API leaked"}))).await;
    assert_eq!(rolled.status(), StatusCode::CREATED);
    let rolled = body_json(rolled).await;
    assert_eq!((rolled["origin"].as_str(), rolled["reissue_of"].as_i64()), (Some("rollback"), Some(1)));
    assert_eq!(rolled["revision"], 4);
    assert_eq!(rolled["content_hash"], created["bundle"]["content_hash"]);
    let artifact = body_text(app.send(bearer_get("/api/v1/bundles/4", Some(&token))).await).await;
    let verified = policy::bundle::verify(artifact.as_bytes(), &keys, 3, store::now_millis()).unwrap();
    assert_eq!(verified.header.origin, policy::bundle::Origin::Rollback { of: 1 });
    let history = body_json(app.send(bearer_get("/api/v1/bundles", Some(&dev_token))).await).await;
    let revisions: Vec<i64> = history.as_array().unwrap().iter().map(|b| b["revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, [4, 3, 2, 1]);
    assert_eq!(app.send(bearer_get("/api/v1/bundles/99", Some(&token))).await.status(), StatusCode::NOT_FOUND);
});

app_test!(routes_no_request_could_tell_apart_block_a_bundle, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let token = app.token_for(&admin).await;
    let api = register(&app, &token, team.0, "Pets", &["/pets/{id}", "/pets/{petId}"]).await;
    let refused = app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body_json(refused).await;
    let pointers: Vec<&str> = refused["problems"].as_array().unwrap().iter().map(|p| p["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers.len(), 2, "{refused}");
    assert!(pointers.iter().all(|p| p.starts_with(&format!("apis[{api}].operations[")) && p.ends_with("].path")), "{pointers:?}");
    assert_ne!(pointers[0], pointers[1], "both operations are named");
    assert!(body_json(app.send(bearer_get("/api/v1/bundles", Some(&token))).await).await.as_array().unwrap().is_empty(), "nothing stored");
});

app_test!(bundles_carry_where_each_returned_data_class_sits_for_response_inspection, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Customers", &context).await.unwrap().id;
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let token = app.token_for(&admin).await;
    let customer = serde_json::json!({"type": "object", "properties": {
        "contact": {"type": "string", "format": "email"},
        "cards": {"type": "array", "items": {"type": "object", "properties": {"cardNumber": {"type": "string"}, "brand": {"type": "string"}}}},
    }});
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Customers", "version": "1"}, "paths": {"/customers/{id}": {"get": {
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": customer}}}}}}}});
    let request = http::Request::post(format!("/api/v1/apis?team={}", team.0))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&document).unwrap()))
        .unwrap();
    let created = app.send(request).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let api = body_json(created).await["id"].as_i64().unwrap();
    let protection = serde_json::json!({"authentication": {"mode": "public"}, "data": {"otherwise": "mask"}});
    assert_eq!(app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, protection)).await.status(), StatusCode::OK);

    let draft = body_json(app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await).await;
    let revision = draft["bundle"]["revision"].as_i64().unwrap();
    let artifact = body_text(app.send(bearer_get(&format!("/api/v1/bundles/{revision}"), Some(&token))).await).await;
    let bundle = policy::bundle::verify(artifact.as_bytes(), &trust(&app).await, 0, store::now_millis()).unwrap();
    let route = bundle.policy.routes().map(|(_, route)| route).find(|route| route.template == "/customers/{id}").unwrap().clone();
    let fields: Vec<(String, String, String)> =
        route.response_fields.iter().map(|f| (f.class.clone(), f.status.clone(), serde_json::to_string(&f.path).unwrap())).collect();
    assert_eq!(
        fields,
        [
            ("email".to_owned(), "200".to_owned(), r#"[{"key":"contact"}]"#.to_owned()),
            ("payment_card".to_owned(), "200".to_owned(), r#"[{"key":"cards"},"each",{"key":"cardNumber"}]"#.to_owned()),
        ]
    );

    // The agent's evaluation hands those places on for the classes the caller may not see.
    let prepared = policy::Prepared::new(bundle.policy);
    let request = policy::Request {
        api,
        method: "GET".into(),
        path: "/customers/7".into(),
        source: "127.0.0.1".parse().unwrap(),
        credential: None,
        risk: None,
        device: false,
        consent: None,
    };
    let decision = policy::evaluate(&prepared, &request);
    assert!(decision.allow, "{decision:?}");
    assert_eq!(decision.obligations.mask, ["email", "payment_card"]);
    assert_eq!(decision.obligations.response_fields, route.response_fields);
});

app_test!(an_api_put_in_monitor_mode_from_the_dashboard_reaches_agents_in_its_bundle, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let api = register(&app, &token, team.0, "Pets", &["/pets/{id}"]).await;
    let protection = serde_json::json!({"authentication": {"mode": "public"}});
    assert_eq!(app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, protection)).await.status(), StatusCode::OK);
    publish(&app, &token, draft(&app, &token, serde_json::json!({})).await).await;

    let cookie = app.session_for("ciso@example.com").await;
    let refused = app.send(rpc("set_enforcement", &format!("api_id={api}&mode=sideways"), Some(&cookie))).await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert!(body_text(refused).await.contains("enforce or monitor"));
    let unchanged = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api}"), Some(&token))).await).await;
    assert!(unchanged["protection"].get("enforcement").is_none(), "{unchanged}");

    let saved = app.send(rpc("set_enforcement", &format!("api_id={api}&mode=monitor"), Some(&cookie))).await;
    assert_eq!(saved.status(), StatusCode::OK, "{}", body_text(saved).await);
    let api_now = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api}"), Some(&token))).await).await;
    assert_eq!(api_now["protection"]["enforcement"], "monitor");
    assert_eq!(api_now["protection"]["authentication"]["mode"], "public", "the rest is kept");

    let next = body_json(app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await).await;
    assert_eq!(next["changed"], serde_json::json!(["GET /pets/{id} in Pets: enforcement"]));
    let revision = next["bundle"]["revision"].as_i64().unwrap();
    let artifact = body_text(app.send(bearer_get(&format!("/api/v1/bundles/{revision}"), Some(&token))).await).await;
    let bundle = policy::bundle::verify(artifact.as_bytes(), &trust(&app).await, 0, store::now_millis()).unwrap();
    assert!(bundle.policy.apis[&api].monitor);
});

/// The revision agents with `labels` (`k=v,…`) run, as the REST API answers.
async fn meant_for(app: &TestApp, token: &str, labels: &str) -> Option<i64> {
    let response = app.send(bearer_get(&format!("/api/v1/bundles/meant-for?labels={}", encode(labels)), Some(token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await["revision"].as_i64()
}

app_test!(canaries_reach_their_labels_promote_to_every_agent_and_pins_hold_a_group, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let developer = app.create_user("dev@example.com", Role::Developer, &[team]).await;
    let dev_token = app.token_for(&developer).await;
    let api = register(&app, &token, team.0, "Pets", &["/pets/{id}"]).await;
    assert_eq!(meant_for(&app, &token, "env=prod").await, None, "nothing published yet");

    let fleet = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, fleet).await;
    let protection = serde_json::json!({"authentication": {"mode": "public"}});
    assert_eq!(app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, protection)).await.status(), StatusCode::OK);

    // A canary: only agents with its labels take it.
    let canary = draft(&app, &token, serde_json::json!({"env": "canary"})).await;
    publish(&app, &token, canary).await;
    assert_eq!(meant_for(&app, &token, "env=canary,region=eu").await, Some(canary));
    assert_eq!(meant_for(&app, &token, "env=prod").await, Some(fleet));
    assert_eq!(meant_for(&app, &token, "").await, Some(fleet));
    let listed = body_json(app.send(bearer_get("/api/v1/bundles", Some(&token))).await).await;
    assert_eq!(listed[0]["target"], serde_json::json!({"env": "canary"}));
    // Labels are checked; a bad one stores nothing.
    let bad = app.send(post_json("/api/v1/bundles", &token, serde_json::json!({"target": {"env": "can ary"}}))).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_query = app.send(bearer_get("/api/v1/bundles/meant-for?labels=env", Some(&token))).await;
    assert_eq!(bad_query.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Promotion: only a published canary, with a reason, by security or admins.
    let reason = serde_json::json!({"reason": "canary healthy for an hour"});
    assert_eq!(app.send(post_json(&format!("/api/v1/bundles/{fleet}/promote"), &token, reason.clone())).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.send(post_json(&format!("/api/v1/bundles/{canary}/promote"), &dev_token, reason.clone())).await.status(), StatusCode::FORBIDDEN);
    let no_reason = app.send(post_json(&format!("/api/v1/bundles/{canary}/promote"), &token, serde_json::json!({"reason": ""}))).await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unpublished = draft(&app, &token, serde_json::json!({"env": "canary"})).await;
    assert_eq!(app.send(post_json(&format!("/api/v1/bundles/{unpublished}/promote"), &token, reason.clone())).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let promoted = app.send(post_json(&format!("/api/v1/bundles/{canary}/promote"), &token, reason)).await;
    assert_eq!(promoted.status(), StatusCode::CREATED);
    let promoted = body_json(promoted).await;
    let promotion = promoted["revision"].as_i64().unwrap();
    assert_eq!((promoted["origin"].as_str(), promoted["reissue_of"].as_i64()), (Some("promotion"), Some(canary)));
    assert_eq!(promoted["target"], serde_json::json!({}));
    let canary_hash = body_json(app.send(bearer_get("/api/v1/bundles", Some(&token))).await).await.as_array().unwrap().iter()
        .find(|b| b["revision"] == canary).unwrap()["content_hash"].clone();
    assert_eq!(promoted["content_hash"], canary_hash, "the canary's policy, for everyone");
    assert_eq!(meant_for(&app, &token, "env=prod").await, Some(promotion));

    // A pin holds a group on the first policy whatever is published later.
    let pin_body = |labels: serde_json::Value, revision: i64| serde_json::json!({"labels": labels, "revision": revision, "reason": "EU audit freeze"});
    assert_eq!(app.send(post_json("/api/v1/bundles/pins", &dev_token, pin_body(serde_json::json!({"region": "eu"}), fleet))).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.send(post_json("/api/v1/bundles/pins", &token, pin_body(serde_json::json!({}), fleet))).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.send(post_json("/api/v1/bundles/pins", &token, pin_body(serde_json::json!({"region": "eu"}), unpublished))).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.send(post_json("/api/v1/bundles/pins", &token, pin_body(serde_json::json!({"region": "eu"}), 999))).await.status(), StatusCode::NOT_FOUND);
    let pinned = app.send(post_json("/api/v1/bundles/pins", &token, pin_body(serde_json::json!({"region": "eu"}), fleet))).await;
    assert_eq!(pinned.status(), StatusCode::CREATED);
    let pinned = body_json(pinned).await;
    let pin_revision = pinned["revision"].as_i64().unwrap();
    assert_eq!((pinned["origin"].as_str(), pinned["reissue_of"].as_i64()), (Some("pin"), Some(fleet)));
    let later = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, later).await;
    assert_eq!(meant_for(&app, &token, "region=eu,env=prod").await, Some(pin_revision), "pinned");
    assert_eq!(meant_for(&app, &token, "region=us").await, Some(later));
    // The pinned group's bundle verifies as an agent checks it and carries the old policy.
    let artifact = body_text(app.send(bearer_get(&format!("/api/v1/bundles/{pin_revision}"), Some(&token))).await).await;
    let verified = policy::bundle::verify(artifact.as_bytes(), &trust(&app).await, promotion as u64, store::now_millis()).unwrap();
    assert_eq!(verified.header.origin, policy::bundle::Origin::Pin { of: fleet as u64 });
    assert_eq!(verified.header.target, store::Labels::from([("region".to_owned(), "eu".to_owned())]));

    let pins = body_json(app.send(bearer_get("/api/v1/bundles/pins", Some(&dev_token))).await).await;
    assert_eq!(pins.as_array().unwrap().len(), 1);
    let pin_id = pins[0]["pin_id"].as_i64().unwrap();
    assert_eq!((pins[0]["pinned_to"].as_i64(), pins[0]["revision"].as_i64()), (Some(fleet), Some(pin_revision)));
    let release = |token: &str, query: &str| {
        let request = http::Request::delete(format!("/api/v1/bundles/pins/{pin_id}{query}"))
            .header(http::header::HOST, "localhost")
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        app.send(request)
    };
    assert_eq!(release(&dev_token, "?reason=done").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(release(&token, "").await.status(), StatusCode::UNPROCESSABLE_ENTITY, "a reason is required");
    assert_eq!(release(&token, "?reason=freeze%20over").await.status(), StatusCode::OK);
    assert_eq!(release(&token, "?reason=again").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(meant_for(&app, &token, "region=eu").await, Some(later), "released: the newest publish reaches the group");

    let actions: Vec<String> = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().map(|e| e.action).collect();
    for action in ["bundle.promote", "bundle.pin", "bundle.unpin"] {
        assert!(actions.iter().any(|a| a == action), "{action} is audited: {actions:?}");
    }
});

app_test!(rotating_the_bundle_key_announces_the_new_key_in_bundles_signed_by_the_old_one, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let token = app.token_for(&admin).await;
    let auditor = app.create_user("auditor@example.com", Role::Auditor, &[]).await;
    let auditor_token = app.token_for(&auditor).await;
    register(&app, &token, team.0, "Pets", &["/pets/{id}"]).await;
    let fleet = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, fleet).await;
    let canary = draft(&app, &token, serde_json::json!({"env": "canary"})).await;
    publish(&app, &token, canary).await;
    let pinned = app.send(post_json("/api/v1/bundles/pins", &token, serde_json::json!({"labels": {"region": "eu"}, "revision": fleet, "reason": "freeze"}))).await;
    let pin_revision = body_json(pinned).await["revision"].as_i64().unwrap();

    // An agent that enrolled before the rotation trusts the old key only.
    let mut agent_trust = trust(&app).await;
    let old_key = agent_trust.key_ids().next().unwrap().to_owned();
    let rotate = |token: &str, body: serde_json::Value| app.send(post_json("/api/v1/bundles/keys/rotate", token, body));
    assert_eq!(rotate(&auditor_token, serde_json::json!({"reason": "yearly"})).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(rotate(&token, serde_json::json!({"reason": " "})).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rotate(&token, serde_json::json!({"reason": "yearly", "overlap_hours": 0})).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let rotated = rotate(&token, serde_json::json!({"reason": "yearly", "overlap_hours": 2})).await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let rotated = body_json(rotated).await;
    let new_key = rotated["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    // Every group hears of it: the fleet, the newer canary and the pinned group, each on
    // what it ran, signed by the old key.
    let announcements = rotated["announcements"].as_array().unwrap();
    let heard: Vec<(serde_json::Value, Option<i64>, &str)> =
        announcements.iter().map(|a| (a["target"].clone(), a["reissue_of"].as_i64(), a["signing_key_id"].as_str().unwrap())).collect();
    assert_eq!(heard, [
        (serde_json::json!({}), Some(fleet), old_key.as_str()),
        (serde_json::json!({"env": "canary"}), Some(canary), old_key.as_str()),
        (serde_json::json!({"region": "eu"}), Some(fleet), old_key.as_str()),
    ]);
    let eu_announcement = announcements[2]["revision"].as_i64().unwrap();
    assert!(eu_announcement > pin_revision);
    assert_eq!(meant_for(&app, &token, "region=eu").await, Some(eu_announcement), "the pin moved to its announcement");
    assert_eq!(announcements[2]["origin"], "pin");

    // The next bundle is signed by the new key: refused by an agent that missed the
    // announcement, taken once the announcement was accepted.
    let next = draft(&app, &token, serde_json::json!({})).await;
    let artifact = |revision: i64| {
        let app = &app;
        let token = token.clone();
        async move { body_text(app.send(bearer_get(&format!("/api/v1/bundles/{revision}"), Some(&token))).await).await }
    };
    let now = store::now_millis();
    let next_file = artifact(next).await;
    assert!(matches!(policy::bundle::verify(next_file.as_bytes(), &agent_trust, 0, now), Err(policy::bundle::VerifyError::UnknownKey(_))));
    let announcement = policy::bundle::verify(artifact(announcements[0]["revision"].as_i64().unwrap()).await.as_bytes(), &agent_trust, canary as u64, now).unwrap();
    assert_eq!(announcement.header.origin, policy::bundle::Origin::KeyAnnouncement { of: fleet as u64 });
    agent_trust.adopt(&announcement.header).unwrap();
    assert_eq!(policy::bundle::verify(next_file.as_bytes(), &agent_trust, 0, now).unwrap().header.key_id, new_key);
    // The old key counts through the overlap and not after it.
    let old_signed = artifact(announcements[1]["revision"].as_i64().unwrap()).await;
    assert!(policy::bundle::verify(old_signed.as_bytes(), &agent_trust, 0, now).is_ok());
    let after_overlap = now + 2 * 3_600_000 + 60_000;
    assert!(matches!(policy::bundle::verify(old_signed.as_bytes(), &agent_trust, 0, after_overlap), Err(policy::bundle::VerifyError::ExpiredKey(_))));

    // The published key list says the same.
    let keys = body_json(app.send(bearer_get("/api/v1/bundles/keys", Some(&auditor_token))).await).await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let old_entry = keys.iter().find(|k| k["key_id"] == old_key.as_str()).unwrap();
    assert!(old_entry["trusted_until"].as_i64().unwrap() > now);
    assert!(keys.iter().find(|k| k["key_id"] == new_key.as_str()).unwrap()["trusted_until"].is_null());

    // The command line rotates as well, and verifies against the published keys.
    let folder = std::env::temp_dir().join(format!("palisade-rotate-{}-{}", std::process::id(), next));
    std::fs::create_dir_all(&folder).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(args)
            .env("PALISADE_DATABASE_URL", app.database_url())
            .env("PALISADE_DATA_DIR", &folder)
            .env("PALISADE_MASTER_KEY", app.master_key_hex())
            .output()
            .unwrap()
    };
    let keys_file = folder.join("keys.json");
    let listed = cli(&["bundle", "keys"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    std::fs::write(&keys_file, &listed.stdout).unwrap();
    let next_path = folder.join("next.json");
    std::fs::write(&next_path, &next_file).unwrap();
    let verified = cli(&["bundle", "verify", next_path.to_str().unwrap(), "--keys", keys_file.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let rotated = cli(&["bundle", "rotate-key", "--reason", "drill", "--overlap-hours", "1"]);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("announces it to every agent"), "{}", String::from_utf8_lossy(&rotated.stdout));
    std::fs::remove_dir_all(&folder).ok();
});
