//! Client credentials reach agents in bundles: API keys as digests only, re-issued to the
//! fleet as soon as a key is issued, rotated or revoked, and never brought back by a
//! rollback; a draft names the keys it adds and removes.

mod common;

use common::*;
use http::StatusCode;
use policy::bundle::{Bundle, Origin, TrustStore};
use policy::credentials::digest;
use store::{Role, audit, bundles, teams};

fn delete(path: &str, token: &str) -> http::Request<axum::body::Body> {
    http::Request::delete(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap()
}

/// The active revision for every agent, verified as an agent verifies it, with its text.
async fn active(app: &TestApp) -> (Bundle, String) {
    let record = bundles::active_bundle(&app.db).await.unwrap().expect("something is published");
    let signed = bundles::find_signed(&app.db, record.revision).await.unwrap();
    let keys = app::publishing::ssr::announced_keys(&app.db).await.unwrap();
    let trust = TrustStore::from_announced(&keys).unwrap();
    let bundle = policy::bundle::verify(signed.as_bytes(), &trust, 0, store::now_millis()).unwrap();
    (bundle, signed)
}

async fn issue_key(app: &TestApp, token: &str, client_app: i64, instance: &str) -> (i64, String) {
    let path = format!("/api/v1/client-apps/{client_app}/credentials");
    let issued = app.send(post_json(&path, token, serde_json::json!({"kind": "api_key", "instance": instance}))).await;
    assert_eq!(issued.status(), StatusCode::CREATED);
    let issued = body_json(issued).await;
    (issued["credential"]["id"].as_i64().unwrap(), issued["secret"].as_str().unwrap().to_owned())
}

app_test!(keys_reach_agents_as_digests_and_a_revoked_key_never_comes_back, |app: TestApp| async move {
    let context = audit::AuditContext::system("test");
    let team = teams::create_team(&app.db, "Orders", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let developer = app.create_user("dev@example.com", Role::Developer, &[team]).await;
    let dev_token = app.token_for(&developer).await;
    let created = app
        .send(post_json(&format!("/api/v1/client-apps?team={}", team.0), &dev_token, serde_json::json!({"name": "Orders service", "kind": "service"})))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let client_app = body_json(created).await["id"].as_i64().unwrap();

    // Before anything is published a key waits for the first bundle, whose draft names it.
    let (first_id, first_key) = issue_key(&app, &dev_token, client_app, "orders-1").await;
    assert!(bundles::active_bundle(&app.db).await.unwrap().is_none(), "nothing is published for it");
    let drafted = body_json(app.send(post_json("/api/v1/bundles", &token, serde_json::json!({}))).await).await;
    let prefix = &first_key[..12];
    assert_eq!(drafted["added"], serde_json::json!([format!("API key {prefix}… of Orders service (orders-1)")]));
    publish(&app, &token, drafted["bundle"]["revision"].as_i64().unwrap()).await;
    let (bundle, text) = active(&app).await;
    let held = &bundle.policy.credentials.api_keys[&digest(&first_key)];
    assert_eq!((held.client_app, held.credential_id, held.instance.as_str()), (client_app, first_id, "orders-1"));
    assert!(!text.contains(&first_key), "a key itself is never in a bundle");
    let with_first = bundle.header.revision;

    // Issuing a key for a second instance re-issues the fleet's bundle at once, rules unchanged.
    let (_, second_key) = issue_key(&app, &dev_token, client_app, "orders-2").await;
    let (bundle, _) = active(&app).await;
    assert_eq!(bundle.header.origin, Origin::Credentials { of: with_first });
    assert!(bundle.policy.credentials.api_keys.contains_key(&digest(&second_key)));
    let record = bundles::active_bundle(&app.db).await.unwrap().unwrap();
    assert_eq!((record.origin.as_str(), record.reissue_of), ("credentials", Some(with_first as i64)));
    let entry = audit::list_entries(&app.db, 0, 1_000).await.unwrap().into_iter().rev().find(|e| e.action.starts_with("bundle.")).unwrap();
    assert_eq!(entry.action, "bundle.credentials");

    // Rotating gives the successor and an expiry to the old key, in the next bundle.
    let rotated = app
        .send(post_json(&format!("/api/v1/client-apps/{client_app}/credentials/{first_id}/rotate"), &dev_token, serde_json::json!({"overlap_seconds": 600})))
        .await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let successor = body_json(rotated).await["secret"].as_str().unwrap().to_owned();
    let (bundle, _) = active(&app).await;
    let keys = &bundle.policy.credentials.api_keys;
    assert!(keys[&digest(&first_key)].expires_at.is_some_and(|at| at > store::now_millis()));
    assert!(keys[&digest(&successor)].expires_at.is_none());

    // Revoking cuts the key out of the fleet's bundle at once.
    let revoked = app.send(delete(&format!("/api/v1/client-apps/{client_app}/credentials/{first_id}"), &dev_token)).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let (bundle, _) = active(&app).await;
    assert!(!bundle.policy.credentials.api_keys.contains_key(&digest(&first_key)));
    assert_eq!(bundle.policy.credentials.api_keys.len(), 2);

    // A rollback restores the rules of an old revision, not its keys.
    let rolled = app.send(post_json(&format!("/api/v1/bundles/{with_first}/rollback"), &token, serde_json::json!({"reason": "back"}))).await;
    assert_eq!(rolled.status(), StatusCode::CREATED);
    let (bundle, _) = active(&app).await;
    assert_eq!(bundle.header.origin, Origin::Rollback { of: with_first });
    assert!(!bundle.policy.credentials.api_keys.contains_key(&digest(&first_key)), "the revoked key came back");
    assert!(bundle.policy.credentials.api_keys.contains_key(&digest(&second_key)));

    // An HMAC key goes out by key id and the digest of its secret, never the secret.
    let hmac = app
        .send(post_json(&format!("/api/v1/client-apps/{client_app}/credentials"), &dev_token, serde_json::json!({"kind": "hmac", "instance": "orders-3"})))
        .await;
    assert_eq!(hmac.status(), StatusCode::CREATED);
    let hmac = body_json(hmac).await;
    let (key_id, secret) = (hmac["credential"]["prefix"].as_str().unwrap().to_owned(), hmac["secret"].as_str().unwrap().to_owned());
    let (bundle, text) = active(&app).await;
    let held = &bundle.policy.credentials.hmac_keys[&key_id];
    assert_eq!((held.instance.as_str(), held.secret_sha256.as_deref()), ("orders-3", Some(digest(&secret).as_str())));
    assert!(!text.contains(&secret), "an HMAC secret is never in a bundle");

    // An mTLS credential goes out as its certificate identity.
    let mtls = serde_json::json!({"kind": "mtls", "instance": "orders-4", "identity": "spiffe://acme/orders"});
    let mtls = app.send(post_json(&format!("/api/v1/client-apps/{client_app}/credentials"), &dev_token, mtls)).await;
    assert_eq!(mtls.status(), StatusCode::CREATED);
    let (bundle, _) = active(&app).await;
    let held = &bundle.policy.credentials.mtls_identities["spiffe://acme/orders"];
    assert_eq!((held.client_app, held.instance.as_str()), (client_app, "orders-4"));

    // A change that leaves the credentials as they are re-issues nothing: an application
    // with no credentials deleted.
    let spare = app
        .send(post_json(&format!("/api/v1/client-apps?team={}", team.0), &dev_token, serde_json::json!({"name": "Spare", "kind": "service"})))
        .await;
    let spare = body_json(spare).await["id"].as_i64().unwrap();
    let before = bundles::active_bundle(&app.db).await.unwrap().unwrap().revision;
    assert_eq!(app.send(delete(&format!("/api/v1/client-apps/{spare}"), &dev_token)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(bundles::active_bundle(&app.db).await.unwrap().unwrap().revision, before);
});
