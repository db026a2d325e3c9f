//! The evaluator over a compiled estate: each level decides with its own reason, the
//! obligations follow the rules, and — as properties over generated requests — no request
//! without credentials is allowed where authentication is required, and no spelling of a
//! path reaches a route other than the one it literally names.

use policy::evaluate::{Level, VerifiedCredential};
use policy::model::{ApiInput, OperationInput};
use policy::{Prepared, Request, Snapshot, compile, evaluate};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

fn operation(id: i64, method: &str, path: &str, protection: serde_json::Value, classes: &[&str]) -> OperationInput {
    OperationInput {
        id,
        method: method.into(),
        path: path.into(),
        protection: serde_json::from_value(protection).unwrap(),
        response_classes: classes.iter().map(|c| (*c).to_owned()).collect(),
        response_fields: Vec::new(),
        ..Default::default()
    }
}

/// A pet shop: JWT or API keys, object-owner checks on a pet, an admin operation for
/// admins from the office network, a consent-bound export, a public health check.
fn estate() -> Prepared {
    let snapshot = Snapshot {
        apis: vec![ApiInput {
            id: 1,
            name: "Pets".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({
                "authentication": {"mode": "required", "methods": [
                    {"type": "jwt", "issuer": "https://login.example.com", "audiences": ["pets"],
                     "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": ["pets"]},
                    {"type": "api_key"}]},
                "data": {"grants": [{"client_app": 7, "classes": ["email"]}], "otherwise": "mask"},
                "rate_limits": [{"requests": 100, "window_seconds": 60}, {"client_app": 7, "requests": 5, "window_seconds": 1}],
            }))
            .unwrap(),
            operations: vec![
                operation(1, "GET", "/pets/{id}", json!({"requestor": {"object_owner": {"parameter": "id", "claim": "sub"}}}), &["email", "person_name"]),
                operation(2, "POST", "/admin/users", json!({
                    "network": {"source_networks": ["10.0.0.0/8"]},
                    "requestor": {"roles": ["admin"], "max_risk": 50},
                }), &[]),
                operation(3, "GET", "/pets/{id}/export", json!({"consent": {"purpose": "export", "subject": {"in": "path", "name": "id"}}}), &[]),
                operation(4, "GET", "/healthz", json!({"authentication": {"mode": "public"}}), &[]),
                operation(5, "GET", "/pets/mine", json!({}), &[]),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::from([(7, "Portal".to_owned())]),
        known_classes: vec!["email".into(), "person_name".into()],
        ..Default::default()
    };
    Prepared::new(compile(&snapshot).expect("the estate compiles"))
}

fn jwt(sub: &str, roles: &[&str]) -> VerifiedCredential {
    VerifiedCredential {
        method: "jwt".into(),
        subject: Some(sub.into()),
        issuer: Some("https://login.example.com".into()),
        audiences: vec!["pets".into()],
        scopes: vec!["pets".into()],
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..VerifiedCredential::default()
    }
}

fn request(method: &str, path: &str, credential: Option<VerifiedCredential>) -> Request {
    Request { api: 1, method: method.into(), path: path.into(), source: "10.1.2.3".parse().unwrap(), credential: credential.map(std::sync::Arc::new), risk: None, device: false, consent: None }
}

fn code(prepared: &Prepared, request: &Request) -> String {
    let decision = evaluate(prepared, request);
    decision.reason.map_or_else(|| "allowed".to_owned(), |step| step.code)
}

#[test]
fn each_level_decides_with_its_reason() {
    let estate = estate();
    assert_eq!(code(&estate, &request("GET", "/healthz", None)), "allowed");
    assert_eq!(code(&estate, &request("GET", "/nowhere", None)), "undeclared_route");
    let mut other_api = request("GET", "/healthz", None);
    other_api.api = 2;
    assert_eq!(code(&estate, &other_api), "undeclared_route", "routes are matched within the API the agent fronts");
    assert_eq!(code(&estate, &request("GET", "/pets/42", None)), "unauthenticated");
    assert_eq!(code(&estate, &request("GET", "/pets/42", Some(jwt("42", &[])))), "allowed");
    assert_eq!(code(&estate, &request("GET", "/pets/41", Some(jwt("42", &[])))), "not_object_owner");
    let mut other_issuer = jwt("42", &[]);
    other_issuer.issuer = Some("https://evil.example.com".into());
    assert_eq!(code(&estate, &request("GET", "/pets/42", Some(other_issuer))), "credential_not_accepted");
    let mut no_scope = jwt("42", &[]);
    no_scope.scopes.clear();
    assert_eq!(code(&estate, &request("GET", "/pets/42", Some(no_scope))), "credential_not_accepted");
    // A literal route wins over the parameter at the same place.
    let mine = evaluate(&estate, &request("GET", "/pets/mine", Some(jwt("42", &[]))));
    assert_eq!(mine.matched.unwrap().operation_id, 5);

    assert_eq!(code(&estate, &request("POST", "/admin/users", Some(jwt("1", &["support"])))), "missing_role");
    assert_eq!(code(&estate, &request("POST", "/admin/users", Some(jwt("1", &["admin"])))), "allowed");
    let mut outside = request("POST", "/admin/users", Some(jwt("1", &["admin"])));
    outside.source = "192.0.2.1".parse().unwrap();
    assert_eq!(code(&estate, &outside), "source_not_allowed");
    let mut risky = request("POST", "/admin/users", Some(jwt("1", &["admin"])));
    risky.risk = Some(80);
    assert_eq!(code(&estate, &risky), "risk_too_high");

    let mut export = request("GET", "/pets/42/export", Some(jwt("42", &[])));
    assert_eq!(code(&estate, &export), "consent_required", "no consent fact: denied until consent records exist");
    export.consent = Some(true);
    assert_eq!(code(&estate, &export), "allowed");

    let denied = evaluate(&estate, &request("GET", "/pets/42", None));
    assert_eq!((denied.allow, denied.status), (false, 401));
    let levels: Vec<Level> = denied.trace.iter().map(|step| step.level).collect();
    assert_eq!(levels, [Level::Route, Level::Network, Level::Authentication], "the trace stops where it was decided");
}

#[test]
fn obligations_follow_the_data_rule_and_rate_limits() {
    let estate = estate();
    let portal = VerifiedCredential { method: "api_key".into(), client_app: Some(7), subject: Some("42".into()), ..Default::default() };
    let decision = evaluate(&estate, &request("GET", "/pets/42", Some(portal)));
    assert!(decision.allow);
    assert_eq!(decision.obligations.mask, ["person_name"], "the portal may receive email, not names");
    let keys: Vec<(u32, u32)> = decision.obligations.rate_limits.iter().map(|k| (k.requests, k.window_seconds)).collect();
    assert_eq!(keys, [(100, 60), (5, 1)]);
    assert!(decision.obligations.rate_limits.iter().all(|k| k.key.ends_with(":app:7")));
    let stranger = evaluate(&estate, &request("GET", "/pets/42", Some(jwt("42", &[]))));
    assert_eq!(stranger.obligations.mask, ["email", "person_name"], "no grant: every class is masked");
    assert_eq!(stranger.obligations.rate_limits.len(), 1, "the portal's own limit is not the stranger's");
}

/// Ways to spell `/admin/users` (or something near it) that a server might read as it.
fn spelling() -> impl Strategy<Value = String> {
    let tricks = prop_oneof![
        Just("/admin/users".to_owned()),
        Just("/admin/users/".to_owned()),
        Just("//admin/users".to_owned()),
        Just("/admin//users".to_owned()),
        Just("/admin/./users".to_owned()),
        Just("/healthz/../admin/users".to_owned()),
        Just("/healthz/%2e%2e/admin/users".to_owned()),
        Just("/admin%2fusers".to_owned()),
        Just("/%61dmin/users".to_owned()),
        Just("/ADMIN/users".to_owned()),
        Just("/Admin/Users".to_owned()),
        Just("/admin;jsessionid=1/users".to_owned()),
        Just("/admin/users;x".to_owned()),
        Just("/admin/users?healthz".to_owned()),
        Just("/healthz?/admin/users".to_owned()),
        Just("/admin\\users".to_owned()),
        Just("/admin/users%00".to_owned()),
        Just("/admin/users%20".to_owned()),
    ];
    (tricks, proptest::collection::vec(prop_oneof![Just(""), Just("/"), Just("."), Just("%2F"), Just("%"), Just(";")], 0..3))
        .prop_map(|(path, suffixes)| format!("{path}{}", suffixes.concat()))
}

proptest! {
    #[test]
    fn no_request_without_credentials_is_allowed_where_authentication_is_required(
        path in spelling(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
    ) {
        let estate = estate();
        let decision = evaluate(&estate, &request(method, &path, None));
        if decision.allow {
            let matched = decision.matched.expect("an allowed request matched a route");
            prop_assert_eq!(matched.template.as_str(), "/healthz", "{} {} was let through", method, path);
        }
    }

    #[test]
    fn an_allowed_path_names_its_route_literally(path in spelling()) {
        let estate = estate();
        let decision = evaluate(&estate, &request("POST", &path, Some(jwt("1", &["admin"]))));
        if decision.allow {
            let bare = path.split('?').next().unwrap();
            prop_assert_eq!(bare, "/admin/users", "{} reached {:?}", path, decision.matched);
        }
    }
}

#[test]
fn monitor_mode_is_set_per_api_and_an_operation_may_opt_out() {
    let api = |enforcement: serde_json::Value, operations| ApiInput {
        id: 1,
        name: "Pets".into(),
        environment: "production".into(),
        protection: serde_json::from_value(json!({"authentication": {"mode": "required", "methods": [{"type": "api_key"}]}, "enforcement": enforcement})).unwrap(),
        operations,
        ..Default::default()
    };
    let operations = vec![
        operation(1, "GET", "/pets/{id}", json!({}), &[]),
        operation(2, "DELETE", "/pets/{id}", json!({"enforcement": "enforce"}), &[]),
    ];
    let compiled = compile(&Snapshot { apis: vec![api(json!("monitor"), operations.clone())], ..Snapshot::default() }).unwrap();
    assert!(compiled.apis[&1].monitor);
    let monitored = Prepared::new(compiled);
    let read = evaluate(&monitored, &request("GET", "/pets/1", None));
    assert_eq!((read.allow, read.monitor), (false, true), "denied, to be recorded and let through");
    let undeclared = evaluate(&monitored, &request("GET", "/nowhere", None));
    assert_eq!((undeclared.allow, undeclared.monitor), (false, true), "the API's mode before any route matches");
    let delete = evaluate(&monitored, &request("DELETE", "/pets/1", None));
    assert_eq!((delete.allow, delete.monitor), (false, false), "the operation enforces");

    let enforced = compile(&Snapshot { apis: vec![api(serde_json::Value::Null, operations)], ..Snapshot::default() }).unwrap();
    assert!(!enforced.apis[&1].monitor);
    assert!(!evaluate(&Prepared::new(enforced), &request("GET", "/pets/1", None)).monitor);
}
