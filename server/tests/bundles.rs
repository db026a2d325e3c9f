//! Bundles through the REST API and the command line: a draft is compiled and signed,
//! its artifact verifies as an agent would check it and refuses tampering, publishing
//! needs a reason and cannot go backwards, a rollback re-issues an old policy as a new
//! revision, problems across APIs block a bundle with their paths, and only security and
//! admins make bundles.

mod common;

use common::*;
use http::StatusCode;
use store::signing::{self, KeyPurpose};
use store::{Role, audit, teams};

fn post_json(path: &str, token: &str, body: serde_json::Value) -> http::Request<axum::body::Body> {
    http::Request::post(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

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
    let records = signing::list_public_keys(&app.db, KeyPurpose::Bundle).await.unwrap();
    let keys = policy::bundle::trusted_keys(records.iter().map(|r| (r.key_id.as_str(), r.public_key.as_str()))).unwrap();
    let bundle = policy::bundle::verify(artifact.as_bytes(), &keys, 0).unwrap();
    assert_eq!(bundle.header.revision, 1);
    assert_eq!(bundle.header.content_hash, created["bundle"]["content_hash"].as_str().unwrap());
    let tampered = artifact.replacen("/pets/", "/pats/", 1);
    assert_eq!(policy::bundle::verify(tampered.as_bytes(), &keys, 0).unwrap_err(), policy::bundle::VerifyError::BadSignature);

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
    assert_eq!(rolled["rollback_of"], 1);
    assert_eq!(rolled["revision"], 4);
    assert_eq!(rolled["content_hash"], created["bundle"]["content_hash"]);
    let artifact = body_text(app.send(bearer_get("/api/v1/bundles/4", Some(&token))).await).await;
    let verified = policy::bundle::verify(artifact.as_bytes(), &keys, 3).unwrap();
    assert_eq!(verified.header.rollback_of, Some(1));
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
