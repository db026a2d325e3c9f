//! Protection settings, client applications and custom data classes against a real
//! database: a bad document changes nothing and says where it is wrong; settings and
//! class corrections survive re-import; API keys are stored as digests, rotate with an
//! overlap and stop at revocation; custom classes re-classify what is stored.

use serde_json::json;
use store::audit::{self, AuditContext};
use store::openapi::{self, Format};
use store::protection::ClassEdits;
use store::signing::MasterKey;
use store::{
    ApiDetail, ClientAppId, ClientKind, CredentialKind, DataClassHit, Db, Protection, StoreError, TeamId, apis, both_backends,
    client_apps, custom_classes, settings, teams,
};

fn context() -> AuditContext {
    AuditContext::system("test")
}

fn petstore() -> openapi::ImportedSpec {
    let path = format!("{}/../../shared/fixtures/openapi/petstore-expanded.yaml", env!("CARGO_MANIFEST_DIR"));
    openapi::parse(&std::fs::read(&path).unwrap(), Format::Yaml).unwrap()
}

async fn setup(db: &Db) -> (TeamId, ApiDetail) {
    let team = teams::create_team(db, "Pets", &context()).await.unwrap().id;
    let api = apis::create_api(db, team, "production", &petstore(), &context()).await.unwrap();
    (team, api)
}

fn protection(value: serde_json::Value) -> Protection {
    serde_json::from_value(value).unwrap()
}

fn operation_id(api: &ApiDetail, method: &str, path: &str) -> i64 {
    api.operations.iter().find(|o| o.method == method && o.path == path).unwrap().id
}

async fn audit_len(db: &Db) -> usize {
    audit::list_entries(db, 0, 10_000).await.unwrap().len()
}

both_backends!(protection_is_checked_whole_and_survives_reimport, |db: Db| async move {
    let (team, api) = setup(&db).await;
    let app = client_apps::create_client_app(&db, team, "Pet Portal", ClientKind::Web, "", 90, &context()).await.unwrap();
    let good = protection(json!({
        "authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "https://login.example.com",
            "audiences": ["pets"], "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"]}]},
        "data": {"grants": [{"client_app": app.id, "classes": ["email"]}], "otherwise": "mask"},
        "rate_limits": [{"requests": 100, "window_seconds": 60}],
    }));
    let saved = settings::update_api_protection(&db, api.summary.id, &good, &context()).await.unwrap();
    assert_eq!(saved.protection, good);
    let entry = audit::list_entries(&db, 0, 1_000).await.unwrap().pop().unwrap();
    assert_eq!(entry.action, "api.protection");
    assert_eq!(entry.details["after"]["authentication"]["mode"], "required");

    // Everything wrong is reported at once, with paths; nothing changes, nothing is audited.
    let before = audit_len(&db).await;
    let bad = protection(json!({
        "authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "ftp://x", "audiences": ["a"],
            "jwks_url": "https://x/jwks", "algorithms": ["none"]}]},
        "data": {"grants": [{"client_app": 4242, "classes": ["shoe_size"]}], "otherwise": "block"},
    }));
    match settings::update_api_protection(&db, api.summary.id, &bad, &context()).await {
        Err(StoreError::Settings(problems)) => {
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(
                paths,
                ["authentication.methods[0].algorithms[0]", "authentication.methods[0].issuer", "client_app", "data.grants"],
                "{problems:?}"
            );
        }
        other => panic!("expected settings problems, got {other:?}"),
    }
    assert_eq!(apis::find_api(&db, api.summary.id).await.unwrap().protection, good);
    assert_eq!(audit_len(&db).await, before);

    // An operation's override is checked against its own path.
    let by_id = operation_id(&api, "GET", "/pets/{id}");
    let owner_rule = protection(json!({"requestor": {"object_owner": {"parameter": "id", "claim": "sub"}}}));
    settings::update_operation_protection(&db, api.summary.id, by_id, &owner_rule, &context()).await.unwrap();
    let list = operation_id(&api, "GET", "/pets");
    let wrong_path = settings::update_operation_protection(&db, api.summary.id, list, &owner_rule, &context()).await.unwrap_err();
    assert!(matches!(&wrong_path, StoreError::Settings(p) if p[0].path == "requestor.object_owner.parameter"), "{wrong_path}");
    // Another API's operation id is not this API's.
    let (_, other) = {
        let mut spec = petstore();
        spec.title = "Other Pets".into();
        (team, apis::create_api(&db, team, "production", &spec, &context()).await.unwrap())
    };
    let foreign = settings::update_operation_protection(&db, other.summary.id, by_id, &owner_rule, &context()).await.unwrap_err();
    assert!(matches!(foreign, StoreError::NotFound("operation")), "{foreign}");

    // A class correction, then a re-import that changes the operation: both settings stay.
    let name = DataClassHit { class: "person_name".into(), direction: "response".into(), field: "200.body.name".into() };
    let edits = ClassEdits { added: vec![name.clone()], removed: vec![] };
    let corrected = settings::update_class_edits(&db, api.summary.id, by_id, &edits, &context()).await.unwrap();
    assert_eq!(corrected.summary.data_classes, ["person_name"]);
    let mut changed = petstore();
    for operation in &mut changed.operations {
        operation.summary = format!("{} (v2)", operation.summary);
    }
    let (after, diff) = apis::reimport_spec(&db, api.summary.id, &changed, &context()).await.unwrap();
    assert_eq!(diff.changed.len(), 4);
    assert_eq!(after.protection, good);
    let kept = after.operations.iter().find(|o| o.id == by_id).unwrap();
    assert_eq!(kept.protection, owner_rule);
    assert!(kept.data_classes.contains(&name));
    assert_eq!(after.summary.data_classes, ["person_name"]);
    // A class nobody defined cannot be assigned.
    let unknown = ClassEdits { added: vec![DataClassHit { class: "shoe_size".into(), ..name }], removed: vec![] };
    assert!(matches!(settings::update_class_edits(&db, api.summary.id, by_id, &unknown, &context()).await, Err(StoreError::Settings(_))));
});

both_backends!(declared_protection_moves_the_posture, |db: Db| async move {
    let (team, api) = setup(&db).await;
    let by_id = operation_id(&api, "GET", "/pets/{id}");
    let name = DataClassHit { class: "person_name".into(), direction: "response".into(), field: "200.body.name".into() };
    settings::update_class_edits(&db, api.summary.id, by_id, &ClassEdits { added: vec![name], removed: vec![] }, &context()).await.unwrap();
    let rules = |posture: &store::ApiPosture| posture.findings.iter().map(|f| f.rule.clone()).collect::<Vec<_>>();
    let before = apis::find_posture(&db, api.summary.id).await.unwrap();
    assert!(rules(&before).contains(&"sensitive-data-without-authentication".into()), "{:?}", rules(&before));
    assert!(rules(&before).contains(&"data-without-data-rule".into()));
    let app = client_apps::create_client_app(&db, team, "Pet Portal", ClientKind::Web, "", 90, &context()).await.unwrap();
    let declared = protection(json!({
        "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
        "data": {"grants": [{"client_app": app.id, "classes": ["person_name"]}], "otherwise": "mask"},
    }));
    settings::update_api_protection(&db, api.summary.id, &declared, &context()).await.unwrap();
    let after = apis::find_posture(&db, api.summary.id).await.unwrap();
    for gone in ["sensitive-data-without-authentication", "data-without-data-rule", "authentication-undeclared"] {
        assert!(!rules(&after).contains(&gone.to_owned()), "{gone} in {:?}", rules(&after));
    }
    assert!(after.score > before.score, "{} > {}", after.score, before.score);
    // The app is named in the protection: it cannot be deleted from under it.
    let refused = client_apps::delete_client_app(&db, app.id, &context()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Invalid { field: "client_app", .. }), "{refused}");
});

both_backends!(api_keys_are_digests_that_rotate_and_revoke, |db: Db| async move {
    let master = MasterKey::generate().0;
    let team = teams::create_team(&db, "Orders", &context()).await.unwrap().id;
    let app = client_apps::create_client_app(&db, team, "Orders", ClientKind::Service, "order service", 30, &context()).await.unwrap();
    let taken = client_apps::create_client_app(&db, team, "Orders", ClientKind::Service, "", 30, &context()).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict { .. }), "{taken}");
    let bad_rotation = client_apps::create_client_app(&db, team, "Other", ClientKind::Service, "", 0, &context()).await.unwrap_err();
    assert!(matches!(bad_rotation, StoreError::Invalid { field: "rotation_days", .. }), "{bad_rotation}");

    let first = client_apps::issue_credential(&db, &master, app.id, CredentialKind::ApiKey, "orders-1", None, &context()).await.unwrap();
    let secret = first.secret.clone().unwrap();
    assert!(secret.starts_with(client_apps::API_KEY_PREFIX));
    assert!(secret.starts_with(first.credential.prefix.as_deref().unwrap()));
    // Only the digest is stored: the secret appears nowhere in the database or the audit trail.
    let stored: Vec<(Option<String>,)> = sqlx::query_as("SELECT key_digest FROM client_credential").fetch_all(db.pool()).await.unwrap();
    assert!(stored.iter().all(|(digest,)| digest.as_deref() != Some(secret.as_str())));
    let trail = serde_json::to_string(&audit::list_entries(&db, 0, 1_000).await.unwrap()).unwrap();
    assert!(!trail.contains(&secret));
    assert_eq!(client_apps::authenticate_api_key(&db, &secret).await.unwrap(), Some(app.id));
    assert_eq!(client_apps::authenticate_api_key(&db, "pak_guess").await.unwrap(), None);

    // Rotation: a new key for the same instance; the old one lives through the overlap.
    let second = client_apps::rotate_credential(&db, &master, app.id, first.credential.id, Some(600), &context()).await.unwrap();
    assert_eq!(second.credential.instance, "orders-1");
    let new_secret = second.secret.clone().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(client_apps::authenticate_api_key(&db, &secret).await.unwrap(), Some(app.id), "within the overlap");
    assert_eq!(client_apps::authenticate_api_key(&db, &new_secret).await.unwrap(), Some(app.id));
    let again = client_apps::rotate_credential(&db, &master, app.id, first.credential.id, Some(600), &context()).await.unwrap();
    assert!(again.secret.is_some(), "an old key may be rotated again while it lives");
    let too_long = client_apps::rotate_credential(&db, &master, app.id, second.credential.id, Some(30 * 24 * 3600), &context()).await.unwrap_err();
    assert!(matches!(too_long, StoreError::Invalid { field: "overlap_seconds", .. }), "{too_long}");
    // Zero overlap: the old key stops at once.
    client_apps::rotate_credential(&db, &master, app.id, second.credential.id, Some(0), &context()).await.unwrap();
    assert_eq!(client_apps::authenticate_api_key(&db, &new_secret).await.unwrap(), None);

    // Revocation is immediate; another application's credential id is not found.
    client_apps::revoke_credential(&db, app.id, first.credential.id, &context()).await.unwrap();
    assert_eq!(client_apps::authenticate_api_key(&db, &secret).await.unwrap(), None);
    let twice = client_apps::revoke_credential(&db, app.id, first.credential.id, &context()).await.unwrap_err();
    assert!(matches!(twice, StoreError::Invalid { .. }), "{twice}");
    let other = client_apps::create_client_app(&db, team, "Billing", ClientKind::Partner, "", 90, &context()).await.unwrap();
    let foreign = client_apps::revoke_credential(&db, other.id, again.credential.id, &context()).await.unwrap_err();
    assert!(matches!(foreign, StoreError::NotFound("credential")), "{foreign}");

    // mTLS credentials register a certificate identity and carry no secret.
    let missing = client_apps::issue_credential(&db, &master, app.id, CredentialKind::Mtls, "orders-2", None, &context()).await.unwrap_err();
    assert!(matches!(missing, StoreError::Invalid { field: "identity", .. }), "{missing}");
    let mtls = client_apps::issue_credential(&db, &master, app.id, CredentialKind::Mtls, "orders-2", Some("spiffe://acme/orders"), &context())
        .await
        .unwrap();
    assert!(mtls.secret.is_none());
    let not_rotatable = client_apps::rotate_credential(&db, &master, app.id, mtls.credential.id, None, &context()).await.unwrap_err();
    assert!(matches!(not_rotatable, StoreError::Invalid { .. }), "{not_rotatable}");
    let found = client_apps::find_client_app(&db, app.id).await.unwrap();
    assert_eq!(found.credentials.len(), 5);
    assert!(matches!(client_apps::find_client_app(&db, ClientAppId(9_999)).await, Err(StoreError::NotFound(_))));

    // HMAC keys: shown once, sealed at rest, opened only with the same master key.
    let hmac = client_apps::issue_credential(&db, &master, app.id, CredentialKind::Hmac, "orders-3", None, &context()).await.unwrap();
    let key_id = hmac.credential.prefix.clone().unwrap();
    assert!(key_id.starts_with(client_apps::HMAC_KEY_ID_PREFIX));
    let hmac_secret = hmac.secret.clone().unwrap();
    let sealed: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT sealed_secret FROM client_credential WHERE kind = 'hmac'").fetch_all(db.pool()).await.unwrap();
    assert!(!sealed[0].0.as_deref().unwrap().contains(&hmac_secret), "never stored in the clear");
    let opened = client_apps::active_hmac_keys(&db, &master).await.unwrap();
    assert_eq!((opened.len(), opened[0].key_id.as_str(), opened[0].secret.as_slice()), (1, key_id.as_str(), hmac_secret.as_bytes()));
    let other_master = MasterKey::generate().0;
    assert!(matches!(client_apps::active_hmac_keys(&db, &other_master).await, Err(StoreError::Sealed { .. })));
    // A sealed value copied onto another key's row does not open there.
    let rotated = client_apps::rotate_credential(&db, &master, app.id, hmac.credential.id, Some(600), &context()).await.unwrap();
    assert_eq!(client_apps::active_hmac_keys(&db, &master).await.unwrap().len(), 2, "both live through the overlap");
    sqlx::query("UPDATE client_credential SET sealed_secret = (SELECT sealed_secret FROM client_credential WHERE client_credential_id = $1) WHERE client_credential_id = $2")
        .bind(hmac.credential.id.0)
        .bind(rotated.credential.id.0)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(matches!(client_apps::active_hmac_keys(&db, &master).await, Err(StoreError::Sealed { .. })));
    client_apps::revoke_credential(&db, app.id, rotated.credential.id, &context()).await.unwrap();
    client_apps::revoke_credential(&db, app.id, hmac.credential.id, &context()).await.unwrap();

    // Keys past the rotation period are reported; rotated (expiring) ones are not.
    let later = store::now_millis() + 31 * 24 * 3600 * 1000;
    let due = client_apps::keys_due_for_rotation(&client_apps::list_client_apps(&db).await.unwrap(), later);
    assert_eq!(due, [("Orders".to_owned(), 2)], "the two successors still live with no end; the rotated ones expire");
});

both_backends!(custom_classes_reclassify_what_is_stored, |db: Db| async move {
    let team = teams::create_team(&db, "Loyalty", &context()).await.unwrap().id;
    let spec = openapi::parse(
        json!({"openapi": "3.0.3", "info": {"title": "Loyalty", "version": "1"}, "paths": {"/members/{id}": {"get": {"responses": {"200": {
            "description": "a member", "content": {"application/json": {"schema": {"properties": {"loyaltyNumber": {"type": "string"}, "tier": {}}}}}}}}}}})
        .to_string()
        .as_bytes(),
        Format::Json,
    )
    .unwrap();
    let api = apis::create_api(&db, team, "production", &spec, &context()).await.unwrap();
    assert!(api.summary.data_classes.is_empty());
    let refused = custom_classes::create_custom_class(&db, "email", "", &["x".into()], &[], &context()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Invalid { field: "name", .. }), "{refused}");
    let bad_pattern = custom_classes::create_custom_class(&db, "loyalty", "", &[], &["(".into()], &context()).await.unwrap_err();
    assert!(matches!(bad_pattern, StoreError::Invalid { field: "patterns", .. }), "{bad_pattern}");
    custom_classes::create_custom_class(&db, "loyalty_number", "member numbers", &["loyalty_number".into()], &[], &context()).await.unwrap();
    let duplicate = custom_classes::create_custom_class(&db, "loyalty_number", "", &["x".into()], &[], &context()).await.unwrap_err();
    assert!(matches!(duplicate, StoreError::Conflict { .. }), "{duplicate}");
    let classified = apis::find_api(&db, api.summary.id).await.unwrap();
    assert_eq!(classified.summary.data_classes, ["loyalty_number"]);
    assert_eq!(classified.operations[0].data_classes[0].field, "200.body.loyaltyNumber");

    // Granted in an L3 rule, it cannot be deleted; once the grant is gone, it can.
    let app = client_apps::create_client_app(&db, team, "Till", ClientKind::Service, "", 90, &context()).await.unwrap();
    let granting = protection(json!({"data": {"grants": [{"client_app": app.id, "classes": ["loyalty_number"]}], "otherwise": "mask"}}));
    settings::update_api_protection(&db, api.summary.id, &granting, &context()).await.unwrap();
    let in_use = custom_classes::delete_custom_class(&db, "loyalty_number", &context()).await.unwrap_err();
    assert!(matches!(in_use, StoreError::Invalid { .. }), "{in_use}");
    assert_eq!(custom_classes::list_custom_classes(&db).await.unwrap().len(), 1, "the refused delete changed nothing");
    settings::update_api_protection(&db, api.summary.id, &Protection::default(), &context()).await.unwrap();
    custom_classes::delete_custom_class(&db, "loyalty_number", &context()).await.unwrap();
    assert!(apis::find_api(&db, api.summary.id).await.unwrap().summary.data_classes.is_empty());
    assert!(matches!(custom_classes::delete_custom_class(&db, "loyalty_number", &context()).await, Err(StoreError::NotFound(_))));
});
