//! Request contracts from the inventory: an API's protection turns one on, the next draft
//! carries each operation's parameters and body schema from the imported OpenAPI document
//! (with the components they use, and nothing else), and a schema that cannot be checked
//! blocks the bundle with its path.

mod common;

use common::*;
use http::StatusCode;
use store::{Role, audit, teams};

fn put_json(path: &str, token: &str, body: serde_json::Value) -> http::Request<axum::body::Body> {
    let mut request = post_json(path, token, body);
    *request.method_mut() = http::Method::PUT;
    request
}

fn document(tag_schema: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1"},
        "paths": {
            "/pets": {
                "get": {"parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                        "responses": {"200": {"description": "ok"}}},
                "post": {"requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}}},
                         "responses": {"201": {"description": "made"}}}
            }
        },
        "components": {"schemas": {
            "NewPet": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "tag": {"$ref": "#/components/schemas/Tag"}}},
            "Tag": tag_schema,
            "Unrelated": {"type": "string"}
        }}
    })
}

app_test!(a_contract_is_compiled_from_the_imported_description, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Pets", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let api = register_document(&app, &token, team.0, &document(serde_json::json!({"type": "string", "nullable": true}))).await;
    let first = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, first).await;

    // Bad settings are refused with their path and change nothing.
    let bad = serde_json::json!({"authentication": {"mode": "public"}, "contract": {"max_body_bytes": 0}});
    let refused = app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, bad)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(refused).await.contains("contract.max_body_bytes"));

    let protection = serde_json::json!({"authentication": {"mode": "public"}, "contract": {"reject_unknown_query": false}});
    assert_eq!(app.send(put_json(&format!("/api/v1/apis/{api}/protection"), &token, protection)).await.status(), StatusCode::OK);
    let created = app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body_json(created).await;
    let changed: Vec<&str> = created["changed"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(changed.iter().all(|c| c.contains("request contract")), "{changed:?}");
    assert_eq!(changed.len(), 2);

    let revision = created["bundle"]["revision"].as_i64().unwrap();
    let artifact = body_text(app.send(bearer_get(&format!("/api/v1/bundles/{revision}"), Some(&token))).await).await;
    let bundle = policy::bundle::decode_unverified(artifact.as_bytes()).unwrap();
    let routes = &bundle.policy.apis[&api].routes;
    let list = routes["GET"][0].contract.as_ref().unwrap();
    assert!(!list.reject_unknown_query);
    assert_eq!(list.parameters[0].name, "limit");
    assert!(list.body.is_none(), "GET /pets takes no body");
    let create = routes["POST"][0].contract.as_ref().unwrap();
    let body = create.body.as_ref().unwrap();
    assert!(body.required);
    let schema = body.json_schema.as_ref().unwrap();
    let carried: Vec<&String> = schema["components"]["schemas"].as_object().unwrap().keys().collect();
    assert_eq!(carried, ["NewPet", "Tag"], "only the components the schema uses");
    assert_eq!(schema["components"]["schemas"]["Tag"]["type"], serde_json::json!(["string", "null"]));

    // The dashboard's form: bad input is refused and changes nothing; then it is turned off.
    let cookie = app.session_for("ciso@example.com").await;
    for (body, field) in [("enabled=maybe&max_body_kib=", "on or off"), ("enabled=on&max_body_kib=lots", "KiB"), ("enabled=on&max_body_kib=0", "max_body_bytes")] {
        let refused = app.send(rpc("set_contract", &format!("api_id={api}&{body}"), Some(&cookie))).await;
        assert!(refused.status().is_client_error(), "{body}: {}", refused.status());
        assert!(body_text(refused).await.contains(field), "{body}");
    }
    let unchanged = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api}"), Some(&token))).await).await;
    assert_eq!(unchanged["protection"]["contract"], serde_json::json!({"reject_unknown_query": false}));
    let saved = app.send(rpc("set_contract", &format!("api_id={api}&enabled=on&reject_unknown_query=on&max_body_kib=64"), Some(&cookie))).await;
    assert_eq!(saved.status(), StatusCode::OK, "{}", body_text(saved).await);
    let now = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api}"), Some(&token))).await).await;
    assert_eq!(now["protection"]["contract"], serde_json::json!({"reject_unknown_query": true, "max_body_bytes": 65536}));
    assert_eq!(now["protection"]["authentication"]["mode"], "public", "the rest is kept");
    let off = app.send(rpc("set_contract", &format!("api_id={api}&enabled=off&max_body_kib="), Some(&cookie))).await;
    assert_eq!(off.status(), StatusCode::OK);
    let now = body_json(app.send(bearer_get(&format!("/api/v1/apis/{api}"), Some(&token))).await).await;
    assert!(now["protection"].get("contract").is_none(), "{now}");

    // A schema that cannot be checked blocks the bundle, named by its operation.
    let mut broken = document(serde_json::json!({"type": 12}));
    broken["info"]["title"] = serde_json::json!("Broken pets");
    let broken = register_document(&app, &token, team.0, &broken).await;
    let protection = serde_json::json!({"authentication": {"mode": "public"}, "contract": {}});
    assert_eq!(app.send(put_json(&format!("/api/v1/apis/{broken}/protection"), &token, protection)).await.status(), StatusCode::OK);
    let refused = app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = body_text(refused).await;
    assert!(text.contains(&format!("apis[{broken}].operations[")) && text.contains("].contract"), "{text}");
});
