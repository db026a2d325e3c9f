//! The inventory over REST, as CI uses it: register from a document, re-import a changed
//! one and get the diff, read it back; bad documents get located errors and change nothing;
//! another team's developer can change nothing.

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode, header};
use store::{Role, audit, teams};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../shared/fixtures/openapi/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn send_document(method: &str, path: &str, token: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn send_json(method: &str, path: &str, token: &str, value: &serde_json::Value) -> Request<Body> {
    send_document(method, path, token, "application/json", serde_json::to_vec(value).unwrap())
}

app_test!(ci_registers_and_reimports_an_api, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let payments = teams::create_team(&app.db, "Payments", &context).await.unwrap();
    let identity = teams::create_team(&app.db, "Identity", &context).await.unwrap();
    let dev = app.create_user("dev@example.com", Role::Developer, &[payments.id]).await;
    let other = app.create_user("other@example.com", Role::Developer, &[identity.id]).await;
    let (token, other_token) = (app.token_for(&dev).await, app.token_for(&other).await);

    // Created from the YAML document itself, for the token owner's only team.
    let created = app.send(send_document("POST", "/api/v1/apis", &token, "application/yaml", fixture("petstore-expanded.yaml"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let api = body_json(created).await;
    assert_eq!(api["name"], "Swagger Petstore");
    assert_eq!(api["team_name"], "Payments");
    assert_eq!(api["environment"], "production");
    assert_eq!(api["operations"].as_array().unwrap().len(), 4);
    let id = api["id"].as_i64().unwrap();
    let entry = audit::list_entries(&app.db, 0, 1000).await.unwrap().pop().unwrap();
    assert_eq!((entry.action.as_str(), entry.actor_type.as_str(), entry.actor_id), ("api.create", "token", Some(dev.id.0)));

    let listed = body_json(app.send(bearer_get("/api/v1/apis", Some(&other_token))).await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "everyone reads the inventory");
    assert_eq!(listed[0]["operation_count"], 4);
    assert_eq!(listed[0]["data_classes"], serde_json::json!([]), "the petstore carries no personal data");
    let fetched = body_json(app.send(bearer_get(&format!("/api/v1/apis/{id}"), Some(&other_token))).await).await;
    // Its posture: two operations take an object id with no object-level rule, no
    // authentication is declared in Palisade and no rate limit is set.
    // 100 − 25 × (0.5 + 0.5 × 2/4) − 10 − 10 = 61.
    let rules: Vec<(String, String)> = fetched["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_owned(), f["operation"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(rules, [
        ("object-id-without-object-rule".to_owned(), "DELETE /pets/{id}".to_owned()),
        ("object-id-without-object-rule".to_owned(), "GET /pets/{id}".to_owned()),
        ("authentication-undeclared".to_owned(), String::new()),
        ("no-rate-limit".to_owned(), String::new()),
    ]);
    assert_eq!(fetched["score"], 61);
    assert_eq!(listed[0]["score"], 61);
    assert_eq!(listed[0]["high_findings"], 2);
    let find_pets = fetched["operations"].as_array().unwrap().iter().find(|o| o["operation_id"] == "findPets").unwrap();
    assert_eq!(find_pets["parameters"][1]["name"], "limit");

    // The owner declares how it is protected. A bad document is refused whole, with
    // every problem at its path, and changes nothing.
    let protection_path = format!("/api/v1/apis/{id}/protection");
    let bad = serde_json::json!({"authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "http://login.example.com",
        "audiences": [], "jwks_url": "https://login.example.com/jwks", "algorithms": ["HS256"]}]}});
    let refused = app.send(send_json("PUT", &protection_path, &token, &bad)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body_json(refused).await;
    assert_eq!(refused["code"], "invalid_settings");
    let pointers: Vec<&str> = refused["problems"].as_array().unwrap().iter().map(|p| p["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["authentication.methods[0].algorithms[0]", "authentication.methods[0].audiences", "authentication.methods[0].issuer"]);
    let typo = app.send(send_json("PUT", &protection_path, &token, &serde_json::json!({"authentcation": {}}))).await;
    assert_eq!(typo.status(), StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused, not ignored");
    let unchanged = body_json(app.send(bearer_get(&protection_path, Some(&other_token))).await).await;
    assert_eq!(unchanged["protection"], serde_json::json!({}));
    let declared = serde_json::json!({
        "authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "https://login.example.com",
            "audiences": ["pets"], "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": []}]},
        "rate_limits": [{"requests": 100, "window_seconds": 60}],
    });
    let saved = app.send(send_json("PUT", &protection_path, &token, &declared)).await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(body_json(saved).await["protection"], declared);
    let by_id = fetched["operations"].as_array().unwrap().iter().find(|o| o["operation_id"] == "find pet by id").unwrap()["id"].as_i64().unwrap();
    let override_rule = serde_json::json!({"requestor": {"object_owner": {"parameter": "id", "claim": "sub"}}});
    let saved = app.send(send_json("PUT", &format!("/api/v1/apis/{id}/operations/{by_id}/protection"), &token, &override_rule)).await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved = body_json(saved).await;
    let operation = saved["operations"].as_array().unwrap().iter().find(|o| o["id"] == by_id).unwrap().clone();
    assert_eq!(operation["override"], override_rule);
    assert_eq!(operation["effective"]["authentication"], declared["authentication"], "the rest is inherited");
    let correction = serde_json::json!({"added": [{"class": "person_name", "direction": "response", "field": "200.body.name"}]});
    let corrected = app.send(send_json("PUT", &format!("/api/v1/apis/{id}/operations/{by_id}/data-classes"), &token, &correction)).await;
    assert_eq!(corrected.status(), StatusCode::OK);
    assert_eq!(body_json(corrected).await["data_classes"][0]["class"], "person_name");
    // The findings these settings answer are gone; the one they raise appears.
    let protected = body_json(app.send(bearer_get(&format!("/api/v1/apis/{id}"), Some(&token))).await).await;
    let rules: Vec<&str> = protected["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["object-id-without-object-rule", "data-without-data-rule"], "{:?}", protected["findings"]);
    // Another team's developer may not change any of it.
    let refused = app.send(send_json("PUT", &protection_path, &other_token, &serde_json::json!({}))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Re-import a changed document (JSON this time): the diff comes back.
    let mut changed: serde_json::Value = serde_yaml_ng_value(&fixture("petstore-expanded.yaml"));
    changed["paths"]["/pets/{id}"]["get"]["summary"] = "Find one pet".into();
    changed["paths"].as_object_mut().unwrap().remove("/pets");
    changed["paths"]["/owners"] = serde_json::json!({"get": {"operationId": "listOwners", "responses": {"200": {"description": "owners",
        "content": {"application/json": {"schema": {"type": "array", "items": {"properties": {"email": {"type": "string"}}}}}}}}}});
    let path = format!("/api/v1/apis/{id}/spec");
    let body = serde_json::to_vec(&changed).unwrap();
    let reimported = app.send(send_document("PUT", &path, &token, "application/json", body.clone())).await;
    assert_eq!(reimported.status(), StatusCode::OK);
    let reimported = body_json(reimported).await;
    assert_eq!(reimported["diff"], serde_json::json!({"added": ["GET /owners"], "removed": ["GET /pets", "POST /pets"], "changed": ["GET /pets/{id}"]}));
    assert_eq!(reimported["api"]["operations"].as_array().unwrap().len(), 3);
    // Settings made in Palisade are kept: protection, override and class correction.
    assert_eq!(reimported["api"]["protection"], declared);
    let kept = reimported["api"]["operations"].as_array().unwrap().iter().find(|o| o["id"] == by_id).unwrap().clone();
    assert_eq!(kept["protection"], override_rule);
    assert_eq!(kept["class_edits"], serde_json::json!({"added": correction["added"], "removed": []}));
    // The new operation returns email addresses: the inventory says where.
    assert_eq!(reimported["api"]["data_classes"], serde_json::json!(["email", "person_name"]));
    let owners = reimported["api"]["operations"].as_array().unwrap().iter().find(|o| o["path"] == "/owners").unwrap().clone();
    assert_eq!(owners["data_classes"], serde_json::json!([{"class": "email", "direction": "response", "field": "200.body[].email"}]));
    // …with no data rule, in a list without paging: two more findings, and the score drops.
    let findings = reimported["api"]["findings"].as_array().unwrap();
    for rule in ["data-without-data-rule", "unbounded-list"] {
        assert!(findings.iter().any(|f| f["rule"] == rule && f["operation"] == "GET /owners"), "{rule}: {findings:?}");
    }
    assert!(!findings.iter().any(|f| f["rule"] == "sensitive-data-without-authentication"), "authentication is declared");
    assert!(reimported["api"]["score"].as_i64().unwrap() < protected["score"].as_i64().unwrap());

    // Another team's developer can read but not change it, nor register for Payments.
    let refused = app.send(send_document("PUT", &path, &other_token, "application/json", body.clone())).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = app.send(send_document("POST", &format!("/api/v1/apis?team={}", payments.id), &other_token, "application/json", body.clone())).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = app.send(send_document("POST", "/api/v1/apis?team=Payments", &other_token, "application/json", body.clone())).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "by name too");
    assert_eq!(app.send(send_document("PUT", "/api/v1/apis/424242/spec", &token, "application/json", body.clone())).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.send(bearer_get("/api/v1/apis/not-a-number", Some(&token))).await.status(), StatusCode::NOT_FOUND);

    // The lifecycle, from CI: deprecated with a sunset date, checked and audited.
    let patch = |token: &str, body: &str| send_document("PATCH", &format!("/api/v1/apis/{id}"), token, "application/json", body.to_owned());
    let deprecated = app.send(patch(&token, r#"{"lifecycle": "deprecated", "sunset_at": 1893456000000}"#)).await;
    assert_eq!(deprecated.status(), StatusCode::OK);
    let deprecated = body_json(deprecated).await;
    assert_eq!((deprecated["lifecycle"].as_str(), deprecated["sunset_at"].as_i64()), (Some("deprecated"), Some(1_893_456_000_000)));
    assert_eq!(audit::list_entries(&app.db, 0, 1000).await.unwrap().pop().unwrap().action, "api.lifecycle");
    for bad in [r#"{"lifecycle": "paused"}"#, r#"{"lifecycle": "active", "sunset_at": 1}"#, r#"{"lifecycle": "active", "owner": "x"}"#, "not json"] {
        let response = app.send(patch(&token, bad)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(app.send(patch(&other_token, r#"{"lifecycle": "retired"}"#)).await.status(), StatusCode::FORBIDDEN);
    let unchanged = body_json(app.send(bearer_get(&format!("/api/v1/apis/{id}"), Some(&token))).await).await;
    assert_eq!(unchanged["lifecycle"], "deprecated", "refused changes changed nothing");
});

fn serde_yaml_ng_value(bytes: &[u8]) -> serde_json::Value {
    let spec = String::from_utf8(bytes.to_vec()).unwrap();
    // The server's own parser is the reference: go through a JSON round trip of YAML.
    serde_json::to_value(serde_yaml_ng::from_str::<serde_json::Value>(&spec).unwrap()).unwrap()
}

app_test!(bad_documents_get_located_errors_and_change_nothing, |app: TestApp| async move {
    let payments = teams::create_team(&app.db, "Payments", &audit::AuditContext::system("test")).await.unwrap();
    let dev = app.create_user("dev@example.com", Role::Developer, &[payments.id]).await;
    let token = app.token_for(&dev).await;
    let entries_before = audit::list_entries(&app.db, 0, 10_000).await.unwrap().len();
    let good = r##"{"openapi":"3.0.3","info":{"title":"T","version":"1"},"paths":{"/a/{id}":{"get":{"operationId":"one","responses":{"200":{"$ref":"#/components/responses/R"}}}},"/b":{"get":{"operationId":"two","responses":{}}}},"components":{"responses":{"R":{"description":"r"}}}}"##;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("application/json", b"{\"openapi\": \"3.0.3\",\n \"info\": }".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "line 2"),
        ("application/yaml", b"openapi: 3.0.3\ninfo:\n  title: [unclosed\n".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "not valid YAML"),
        ("application/json", good.replace("3.0.3", "2.5.0").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "/openapi"),
        ("application/json", br#"{"swagger":"2.0","info":{"title":"x","version":"1"},"paths":{}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "convert it to OpenAPI 3"),
        ("application/json", good.replace("responses/R\"", "responses/Nope\"").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "/paths/~1a~1{id}/get/responses/200/$ref"),
        ("application/json", good.replace("\"two\"", "\"one\"").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "/paths/~1b/get/operationId"),
        ("application/json", vec![b' '; store::openapi::MAX_DOCUMENT_BYTES + 10], StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
        ("text/plain", good.as_bytes().to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/yaml"),
    ];
    for (content_type, body, status, expected) in cases {
        let response = app.send(send_document("POST", "/api/v1/apis", &token, content_type, body)).await;
        assert_eq!(response.status(), status, "{expected}");
        let text = body_text(response).await;
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(store::apis::list_apis(&app.db).await.unwrap().is_empty(), "nothing half-imported");
    assert_eq!(audit::list_entries(&app.db, 0, 10_000).await.unwrap().len(), entries_before);

    // Every problem is reported at once, each located.
    let many = good.replace("\"two\"", "\"one\"").replace("responses/R\"", "responses/Nope\"");
    let response = app.send(send_document("POST", "/api/v1/apis", &token, "application/json", many.into_bytes())).await;
    let error = body_json(response).await;
    assert_eq!(error["code"], "invalid_document");
    assert_eq!(error["problems"].as_array().unwrap().len(), 2, "{error}");

    // A re-import with a bad document leaves the API as it was.
    let created = app.send(send_document("POST", "/api/v1/apis", &token, "application/json", good.as_bytes().to_vec())).await;
    let id = body_json(created).await["id"].as_i64().unwrap();
    let before = store::apis::find_api(&app.db, store::ApiId(id)).await.unwrap();
    let bad = good.replace("\"two\"", "\"one\"");
    let response = app.send(send_document("PUT", &format!("/api/v1/apis/{id}/spec"), &token, "application/json", bad.into_bytes())).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(store::apis::find_api(&app.db, store::ApiId(id)).await.unwrap(), before);
});
