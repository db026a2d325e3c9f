//! Policy as code: the policy exported as files comes back unchanged (a lossless round
//! trip), `palisade policy validate` and `test` work on the files alone, `push` applies an
//! edited copy to a running control plane and compiles a draft, and a document with
//! problems is refused whole, each problem at its place, with nothing changed.

mod common;

use common::*;
use http::StatusCode;
use policy::files::{self, PolicyDocument};
use std::path::{Path, PathBuf};
use store::{ClientKind, Role, audit, client_apps, custom_classes, teams};

fn json_request(method: &str, path: &str, token: &str, body: &serde_json::Value) -> http::Request<axum::body::Body> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

async fn export(app: &TestApp, token: &str) -> PolicyDocument {
    let response = app.send(bearer_get("/api/v1/policy", Some(token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_value(body_json(response).await).unwrap()
}

fn write_files(dir: &Path, document: &PolicyDocument) {
    for (relative, text) in files::to_files(document) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Runs `palisade ARGS` without blocking the runtime the test's server runs on.
async fn palisade(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade")).args(args).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-policy-{name}-{}-{}", std::process::id(), store::now_millis()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

app_test!(policy_files_round_trip_validate_test_and_push, |app: TestApp| async move {
    let app = app;
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let token = app.token_for(&admin).await;
    let developer = app.create_user("dev@example.com", Role::Developer, &[team]).await;
    let dev_token = app.token_for(&developer).await;
    let portal = client_apps::create_client_app(&app.db, team, "Portal", ClientKind::Web, "", 90, &context).await.unwrap();
    custom_classes::create_custom_class(&app.db, "loyalty_number", "", &["loyalty".into()], &[], &context).await.unwrap();
    let document = serde_json::json!({
        "openapi": "3.0.3", "info": {"title": "Pets", "version": "1"},
        "paths": {
            "/pets/{id}": {"get": {"responses": {"200": {"description": "a pet", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"email": {"type": "string"}, "loyalty": {"type": "string"}}}}}}}}},
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
    });
    let registered = app
        .send(
            http::Request::post(format!("/api/v1/apis?team={}", team.0))
                .header(http::header::HOST, "localhost")
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(serde_json::to_vec(&document).unwrap()))
                .unwrap(),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let api = body_json(registered).await;
    let api_id = api["id"].as_i64().unwrap();
    let protection = serde_json::json!({
        "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
        "data": {"grants": [{"client_app": portal.id.0, "classes": ["email"]}], "otherwise": "mask"},
        "rate_limits": [{"client_app": portal.id.0, "requests": 10, "window_seconds": 1}],
    });
    let saved = app.send(json_request("PUT", &format!("/api/v1/apis/{api_id}/protection"), &token, &protection)).await;
    assert_eq!(saved.status(), StatusCode::OK);
    let detail = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api_id}"), Some(&token))).await).await;
    let health = detail["operations"].as_array().unwrap().iter().find(|o| o["path"] == "/healthz").unwrap()["id"].as_i64().unwrap();
    let public = serde_json::json!({"authentication": {"mode": "public"}});
    let saved = app.send(json_request("PUT", &format!("/api/v1/apis/{api_id}/operations/{health}/protection"), &token, &public)).await;
    assert_eq!(saved.status(), StatusCode::OK);

    // Export: client applications by name; every operation listed.
    let exported = export(&app, &dev_token).await;
    let pets = &exported.apis[0];
    assert_eq!(pets.protection["data"]["grants"][0]["client_app"], "Portal");
    assert_eq!(pets.operations.keys().collect::<Vec<_>>(), ["GET /healthz", "GET /pets/{id}"]);
    assert!(pets.operations["GET /pets/{id}"].response_classes.contains(&"loyalty_number".to_owned()));

    // Files → document → import: nothing changes, and the next export is the same.
    let round = files::from_files(&files::to_files(&exported)).unwrap();
    let imported = app.send(json_request("POST", "/api/v1/policy", &token, &serde_json::to_value(&round).unwrap())).await;
    assert_eq!(imported.status(), StatusCode::OK);
    let summary = body_json(imported).await;
    assert_eq!(summary["apis_changed"], serde_json::json!([]), "{summary}");
    assert_eq!(export(&app, &token).await, exported, "lossless");
    assert_eq!(app.send(json_request("POST", "/api/v1/policy", &dev_token, &serde_json::to_value(&round).unwrap())).await.status(), StatusCode::FORBIDDEN);

    // validate and test need only the files.
    let dir = folder("repo");
    let shown = dir.to_str().unwrap().to_owned();
    write_files(&dir, &exported);
    let (ok, output) = palisade(&["policy", "validate", &shown]).await;
    assert!(ok, "{output}");
    assert!(output.contains("valid: 1 APIs, 2 operations"), "{output}");
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    let cases = serde_json::json!({"cases": [
        {"name": "health is public", "api": "Pets", "request": {"method": "GET", "path": "/healthz"}, "expect": {"allow": true}},
        {"name": "the portal sees emails, not loyalty numbers", "api": "Pets",
         "request": {"method": "GET", "path": "/pets/1", "credential": {"method": "api_key", "client_app": "Portal"}},
         "expect": {"allow": true, "mask": ["loyalty_number"]}},
        {"name": "anonymous reads are refused", "api": "Pets", "request": {"method": "GET", "path": "/pets/1"}, "expect": {"allow": false, "status": 401}},
    ]});
    std::fs::write(dir.join("tests/pets.json"), cases.to_string()).unwrap();
    let (ok, output) = palisade(&["policy", "test", &shown]).await;
    assert!(ok, "{output}");
    assert!(output.contains("3 passed, 0 failed"), "{output}");
    // The dashboard runs the same file against the draft.
    let run = app.send(rpc("run_policy_cases", &format!("cases={}&against=draft", encode(&cases.to_string())), Some(&app.session_for("dev@example.com").await))).await;
    assert_eq!(run.status(), StatusCode::OK);
    let run = body_json(run).await;
    assert!(run["results"].as_array().unwrap().iter().all(|r| r["passed"] == true), "{run}");

    // Edit the files: health needs a key too. The cases now catch it, and validate still passes.
    let mut edited = exported.clone();
    edited.apis[0].operations.get_mut("GET /healthz").unwrap().protection = serde_json::json!({});
    write_files(&dir, &edited);
    let (ok, output) = palisade(&["policy", "test", &shown]).await;
    assert!(!ok, "a failing case fails the run");
    assert!(output.contains("FAIL  tests/pets.json: health is public"), "{output}");

    // Push to a running control plane, with a draft.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    let url = format!("http://{address}");
    let (ok, output) = palisade(&["policy", "push", &shown, "--server", &url, "--token", &dev_token]).await;
    assert!(!ok && output.contains("403"), "a developer cannot push: {output}");
    let (ok, output) = palisade(&["policy", "push", &shown, "--server", &url, "--token", &token, "--draft"]).await;
    assert!(ok, "{output}");
    assert!(output.contains("1 APIs changed, 1 operation settings changed"), "{output}");
    assert!(output.contains("draft revision 1") && output.contains("added: GET /healthz in Pets"), "nothing published yet: {output}");
    assert_eq!(export(&app, &token).await, edited, "the control plane now holds the files' policy");
    // Export writes the same files back.
    let copy = folder("copy");
    let (ok, output) = palisade(&["policy", "export", copy.to_str().unwrap(), "--server", &url, "--token", &dev_token]).await;
    assert!(ok, "{output}");
    assert_eq!(
        std::fs::read_to_string(copy.join("apis/production/pets.json")).unwrap(),
        std::fs::read_to_string(dir.join("apis/production/pets.json")).unwrap()
    );
    server.abort();

    // A document with problems is refused whole, each at its place; nothing changes.
    let before = export(&app, &token).await;
    let mut broken = serde_json::to_value(&edited).unwrap();
    broken["apis"][0]["protection"]["data"]["grants"][0]["client_app"] = "Nobody".into();
    broken["apis"][0]["operations"]["DELETE /pets/{id}"] = serde_json::json!({});
    broken["apis"][0]["operations"]["GET /pets/{id}"]["protection"] = serde_json::json!({"requestor": {"object_owner": {"parameter": "petId", "claim": "sub"}}});
    broken["apis"].as_array_mut().unwrap().push(serde_json::json!({"name": "Ghost", "environment": "production"}));
    broken["data_classes"].as_array_mut().unwrap().push(serde_json::json!({"name": "Bad Name", "keywords": ["x"]}));
    let refused = app.send(json_request("POST", "/api/v1/policy", &token, &broken)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body_json(refused).await;
    let pointers: Vec<&str> = refused["problems"].as_array().unwrap().iter().map(|p| p["pointer"].as_str().unwrap()).collect();
    for expected in [
        "apis[Ghost (production)]",
        "apis[Pets (production)].operations[DELETE /pets/{id}]",
        "apis[Pets (production)].protection.data.grants[0].client_app",
    ] {
        assert!(pointers.contains(&expected), "{expected} in {pointers:?}");
    }
    assert!(pointers.iter().any(|p| p.starts_with("apis[Pets (production)].operations[GET /pets/{id}].protection.requestor")), "{pointers:?}");
    assert_eq!(export(&app, &token).await, before, "nothing changed");
    // The class problem shows once the settings are fine.
    let mut bad_class = serde_json::to_value(&edited).unwrap();
    bad_class["data_classes"].as_array_mut().unwrap().push(serde_json::json!({"name": "Bad Name", "keywords": ["x"]}));
    let refused = body_json(app.send(json_request("POST", "/api/v1/policy", &token, &bad_class)).await).await;
    assert_eq!(refused["problems"][0]["pointer"], "data_classes[1].name", "{refused}");
    let not_json = app.send(json_request("POST", "/api/v1/policy", &token, &serde_json::json!({"apis": "no"}))).await;
    assert_eq!(not_json.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let actions: Vec<String> = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().map(|e| e.action).collect();
    assert!(actions.iter().any(|a| a == "policy.import"), "{actions:?}");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&copy).ok();
});
