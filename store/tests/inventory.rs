//! The API inventory: real OpenAPI documents import; re-import applies a diff in place,
//! atomically, keeping what Palisade holds beyond the document; bad documents are refused
//! with located errors before anything is written.

use store::apis;
use store::audit::{self, AuditContext};
use store::openapi::{self, Format};
use store::teams;
use store::{ApiId, Db, StoreError, TeamId, both_backends};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/fixtures/openapi/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_shared_fixtures_import() {
    for (name, operations, version) in [
        ("petstore-expanded.yaml", 4, "3.0."),
        ("spotify.json", 88, "3.0."),
        ("plaid.json", 200, "3.0."),
        ("adyen-checkout-3.1.json", 25, "3.1."),
        ("openbanking-uk-account-info.json", 0, ""),
    ] {
        let spec = openapi::parse(&fixture(name), Format::Detect).unwrap_or_else(|p| panic!("{name}: {p:?}"));
        if operations > 0 {
            assert_eq!(spec.operations.len(), operations, "{name}");
            assert!(spec.openapi_version.starts_with(version), "{name}: {}", spec.openapi_version);
        } else {
            assert!(!spec.operations.is_empty(), "{name}");
        }
        assert!(!spec.title.is_empty(), "{name}");
    }
}

fn context() -> AuditContext {
    AuditContext::system("test")
}

async fn team(db: &Db, name: &str) -> TeamId {
    teams::create_team(db, name, &context()).await.unwrap().id
}

both_backends!(registration_and_reimport_apply_a_diff_in_place, |db: Db| async move {
    let payments = team(&db, "Payments").await;
    let spec = openapi::parse(&fixture("petstore-expanded.yaml"), Format::Yaml).unwrap();
    let api = apis::create_api(&db, payments, "production", &spec, &context()).await.unwrap();
    assert_eq!(api.summary.name, "Swagger Petstore");
    assert_eq!(api.summary.team_name, "Payments");
    assert_eq!(api.summary.operation_count, 4);
    assert_eq!(api.base_urls, ["http://petstore.swagger.io/api"]);
    let listed: Vec<String> = api.operations.iter().map(|o| format!("{} {}", o.method, o.path)).collect();
    assert_eq!(listed, ["GET /pets", "POST /pets", "DELETE /pets/{id}", "GET /pets/{id}"]);
    let created = audit::list_entries(&db, 0, 100).await.unwrap().pop().unwrap();
    assert_eq!((created.action.as_str(), created.target_id.as_str()), ("api.create", api.summary.id.to_string().as_str()));

    // The same name in the same environment is taken; another environment is not.
    let again = apis::create_api(&db, payments, "production", &spec, &context()).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { field: "API name" }), "{again}");
    apis::create_api(&db, payments, "staging", &spec, &context()).await.unwrap();
    assert!(matches!(
        apis::create_api(&db, TeamId(9_999), "dev", &spec, &context()).await,
        Err(StoreError::NotFound("team"))
    ));

    // Re-import: one removed, one added, one changed, one untouched.
    let text = String::from_utf8(fixture("petstore-expanded.yaml")).unwrap();
    let changed = text
        .replace("operationId: deletePet", "operationId: removePet")
        .replace("  /pets/{id}:\n", "  /owners:\n    get:\n      operationId: listOwners\n      responses:\n        '200':\n          description: owners\n  /pets/{id}:\n")
        .replace("    post:\n      description: Creates a new pet in the store.  Duplicates are allowed\n      operationId: addPet", "    put:\n      description: Creates a new pet in the store.  Duplicates are allowed\n      operationId: addPet");
    let new_spec = openapi::parse(changed.as_bytes(), Format::Yaml).unwrap();
    let ids_before: Vec<(String, i64)> = api.operations.iter().map(|o| (format!("{} {}", o.method, o.path), o.id)).collect();
    let (after, diff) = apis::reimport_spec(&db, api.summary.id, &new_spec, &context()).await.unwrap();
    assert_eq!(diff.added, ["GET /owners", "PUT /pets"]);
    assert_eq!(diff.removed, ["POST /pets"]);
    assert_eq!(diff.changed, ["DELETE /pets/{id}"]);
    for (name, id) in ids_before.iter().filter(|(name, _)| name == "GET /pets" || name == "DELETE /pets/{id}") {
        let now = after.operations.iter().find(|o| &format!("{} {}", o.method, o.path) == name).unwrap();
        assert_eq!(now.id, *id, "{name} keeps its id");
    }
    assert_eq!(after.summary.name, "Swagger Petstore", "what Palisade holds stays");
    let reimported = audit::list_entries(&db, 0, 100).await.unwrap().pop().unwrap();
    assert_eq!(reimported.action, "api.reimport");
    assert_eq!(reimported.details["counts"], serde_json::json!({"added": 2, "removed": 1, "changed": 1}));

    // The same document again changes nothing.
    let (_, none) = apis::reimport_spec(&db, api.summary.id, &new_spec, &context()).await.unwrap();
    assert!(none.is_empty(), "{none:?}");

    // A re-import whose audit entry cannot be written does not happen at all.
    sqlx::query("DELETE FROM audit_head").execute(db.pool()).await.unwrap();
    assert!(apis::reimport_spec(&db, api.summary.id, &spec, &context()).await.is_err());
    let unchanged = apis::find_api(&db, api.summary.id).await.unwrap();
    assert_eq!(unchanged.operations, after.operations);
    assert!(matches!(apis::find_api(&db, ApiId(424_242)).await, Err(StoreError::NotFound("API"))));
    assert_eq!(apis::list_apis(&db).await.unwrap().len(), 2);
});

/// GitHub's full REST description (npm `@octokit/openapi`, installed with the browser-test
/// packages by `scripts/test`): about 1,200 operations in 13 MB.
fn github_description() -> Vec<u8> {
    let path = format!("{}/../e2e/node_modules/@octokit/openapi/generated/api.github.com.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; `cd e2e && npm ci` installs it"))
}

both_backends!(githubs_full_description_imports, |db: Db| async move {
    let spec = openapi::parse(&github_description(), Format::Json).unwrap_or_else(|p| panic!("{:?}", &p[..p.len().min(5)]));
    assert_eq!(spec.operations.len(), 1223);
    let payments = team(&db, "Platform").await;
    let api = apis::create_api(&db, payments, "production", &spec, &context()).await.unwrap();
    assert_eq!(api.summary.operation_count, 1223);
    let (_, diff) = apis::reimport_spec(&db, api.summary.id, &spec, &context()).await.unwrap();
    assert!(diff.is_empty(), "the same document changes nothing");
});

both_backends!(data_classes_are_found_per_operation_and_api, |db: Db| async move {
    let team = team(&db, "Payments").await;
    let spec = openapi::parse(&fixture("plaid.json"), Format::Json).unwrap();
    let api = apis::create_api(&db, team, "production", &spec, &context()).await.unwrap();
    for class in ["bank_account", "email", "phone", "postal_address", "person_name", "credentials"] {
        assert!(api.summary.data_classes.iter().any(|c| c == class), "plaid exposes {class}: {:?}", api.summary.data_classes);
    }
    let listed = apis::list_apis(&db).await.unwrap();
    assert_eq!(listed[0].data_classes, api.summary.data_classes, "the list shows them too");
    let with_email = api.operations.iter().filter(|o| o.data_classes.iter().any(|h| h.class == "email")).count();
    assert!(with_email > 0 && with_email < api.operations.len(), "per operation, not per API: {with_email}");
    let hit = api.operations.iter().flat_map(|o| &o.data_classes).find(|h| h.class == "bank_account").unwrap();
    assert!(hit.field.contains('.'), "the field is named: {hit:?}");

    // A changed shared schema alone changes the operations that use it.
    let mut document: serde_json::Value = serde_yaml_ng::from_slice(&fixture("petstore-expanded.yaml")).unwrap();
    let pets = apis::create_api(&db, team, "production", &openapi::parse(&serde_json::to_vec(&document).unwrap(), Format::Json).unwrap(), &context()).await.unwrap();
    assert!(pets.summary.data_classes.is_empty(), "{:?}", pets.summary.data_classes);
    document["components"]["schemas"]["NewPet"]["properties"]["owner_email"] = serde_json::json!({"type": "string", "format": "email"});
    let changed = openapi::parse(&serde_json::to_vec(&document).unwrap(), Format::Json).unwrap();
    let (after, diff) = apis::reimport_spec(&db, pets.summary.id, &changed, &context()).await.unwrap();
    assert_eq!(diff.changed, ["GET /pets", "GET /pets/{id}", "POST /pets"], "{diff:?}");
    assert_eq!(after.summary.data_classes, ["email"]);
});

both_backends!(lifecycle_changes_are_checked_audited_and_found, |db: Db| async move {
    use store::{Lifecycle, findings};
    let team = team(&db, "Payments").await;
    let spec = openapi::parse(&fixture("petstore-expanded.yaml"), Format::Yaml).unwrap();
    let api = apis::create_api(&db, team, "production", &spec, &context()).await.unwrap();
    let id = api.summary.id;
    let refused = apis::update_lifecycle(&db, id, Lifecycle::Active, Some(1), &context()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Invalid { field: "sunset", .. }), "{refused}");

    let yesterday = store::now_millis() - 86_400_000;
    let deprecated = apis::update_lifecycle(&db, id, Lifecycle::Deprecated, Some(yesterday), &context()).await.unwrap();
    assert_eq!((deprecated.lifecycle, deprecated.sunset_at), (Lifecycle::Deprecated, Some(yesterday)));
    let entry = audit::list_entries(&db, 0, 100).await.unwrap().pop().unwrap();
    assert_eq!(entry.action, "api.lifecycle");
    assert_eq!(entry.details["before"]["lifecycle"], "active");
    assert_eq!(entry.details["after"]["sunset_at"], yesterday);
    // Past its sunset and still served: a high finding, and the members-less team another.
    let posture = apis::find_posture(&db, id).await.unwrap();
    let rules: Vec<&str> = posture.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(rules.contains(&"sunset-api-still-served") && rules.contains(&"no-owner"), "{rules:?}");
    let retired = apis::update_lifecycle(&db, id, Lifecycle::Retired, None, &context()).await.unwrap();
    assert_eq!((retired.lifecycle, retired.sunset_at), (Lifecycle::Retired, None));
    let posture = apis::find_posture(&db, id).await.unwrap();
    assert!(!posture.findings.iter().any(|f| f.rule.starts_with("sunset")));
    assert_eq!(posture.score, findings::score(&posture.findings, 4));
    assert!(matches!(apis::update_lifecycle(&db, ApiId(999_999), Lifecycle::Active, None, &context()).await, Err(StoreError::NotFound("API"))));
});
