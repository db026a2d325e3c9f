//! Palisade's evaluator beside Cedar and Rego (regorus) on equivalent policies and the same
//! request, in one run (criterion): estates of 10 and 1,000 APIs × 20 operations, every
//! API requiring a JWT from one issuer with scope `read`, a role among `reader`/`admin`,
//! and a source in 10.0.0.0/8; the request is an allowed GET on a templated route.
//!
//! What each engine is given: Palisade and Rego get the raw method and path and match the
//! route themselves (Rego with a segment-matching rule over the route table in `data`);
//! Cedar gets the matched route as its action, since Cedar has no path templates — Cedar
//! is spared the route lookup. Cedar evaluates one policy per API (the 20 routes as its
//! actions); Rego one rule over data indexed by API and method. regorus has no
//! `net.cidr_contains`, so Rego tests 10.0.0.0/8 as the prefix `10.` (cheaper than a
//! CIDR test, which favours Rego).
//!
//! Run: `cargo bench --manifest-path policy/compare/Cargo.toml`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use policy::model::{ApiInput, OperationInput, Snapshot};
use policy::{Prepared, Request, VerifiedCredential, compile, evaluate};
use serde_json::json;
use std::hint::black_box;
use std::str::FromStr;

const OPERATIONS: i64 = 20;
/// The API and route every engine is asked about.
const API: i64 = 7;
const METHOD: &str = "GET";
const PATH: &str = "/resource-4/8812/part-8";
const TEMPLATE: &str = "/resource-4/{id}/part-8";

fn template(n: i64) -> String {
    format!("/resource-{}/{{id}}/part-{n}", n / 2)
}

fn method(n: i64) -> &'static str {
    if n % 2 == 0 { "GET" } else { "POST" }
}

fn palisade_estate(apis: i64) -> Prepared {
    let protection: store::Protection = serde_json::from_value(json!({
        "authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "https://login.example.com",
            "audiences": ["api"], "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": ["read"]}]},
        "network": {"source_networks": ["10.0.0.0/8"]},
        "requestor": {"roles": ["reader", "admin"]},
    }))
    .unwrap();
    let snapshot = Snapshot {
        apis: (1..=apis)
            .map(|api| ApiInput {
                id: api,
                name: format!("api-{api}"),
                environment: "production".into(),
                protection: protection.clone(),
                operations: (0..OPERATIONS)
                    .map(|n| OperationInput {
                        id: api * 100 + n,
                        method: method(n).into(),
                        path: template(n),
                        protection: Default::default(),
                        response_classes: vec![],
                        response_fields: Vec::new(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Snapshot::default()
    };
    Prepared::new(compile(&snapshot).unwrap())
}

fn palisade_request() -> Request {
    Request {
        api: API,
        method: METHOD.into(),
        path: PATH.into(),
        source: "10.1.2.3".parse().unwrap(),
        credential: Some(std::sync::Arc::new(VerifiedCredential {
            method: "jwt".into(),
            subject: Some("user-1".into()),
            issuer: Some("https://login.example.com".into()),
            audiences: vec!["api".into()],
            scopes: vec!["read".into()],
            roles: vec!["reader".into()],
            ..VerifiedCredential::default()
        })),
        risk: None,
        device: false,
        consent: None,
    }
}

/// One Cedar policy per API: its routes as actions, the same conditions.
fn cedar_policies(apis: i64) -> cedar_policy::PolicySet {
    let mut text = String::new();
    for api in 1..=apis {
        let actions: Vec<String> = (0..OPERATIONS).map(|n| format!("Action::\"{} {}\"", method(n), template(n))).collect();
        text.push_str(&format!(
            "permit(principal, action in [{}], resource == Api::\"api-{api}\") when {{\n\
             context.issuer == \"https://login.example.com\" && context.audiences.contains(\"api\") &&\n\
             context.scopes.contains(\"read\") && context.roles.containsAny([\"reader\", \"admin\"]) &&\n\
             context.source.isInRange(ip(\"10.0.0.0/8\")) }};\n",
            actions.join(", ")
        ));
    }
    cedar_policy::PolicySet::from_str(&text).unwrap()
}

fn cedar_request() -> cedar_policy::Request {
    let context = cedar_policy::Context::from_json_value(
        json!({
            "issuer": "https://login.example.com",
            "audiences": ["api"],
            "scopes": ["read"],
            "roles": ["reader"],
            "source": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}},
        }),
        None,
    )
    .unwrap();
    cedar_policy::Request::new(
        cedar_policy::EntityUid::from_str("User::\"user-1\"").unwrap(),
        cedar_policy::EntityUid::from_str(&format!("Action::\"{METHOD} {TEMPLATE}\"")).unwrap(),
        cedar_policy::EntityUid::from_str(&format!("Api::\"api-{API}\"")).unwrap(),
        context,
        None,
    )
    .unwrap()
}

const REGO: &str = r#"
package palisade

default allow := false

segment_matches(pattern, _) if pattern == "*"

segment_matches(pattern, actual) if pattern == actual

route_matches(route, parts) if {
	count(route) == count(parts)
	every i, pattern in route {
		segment_matches(pattern, parts[i])
	}
}

allow if {
	api := data.apis[input.api]
	parts := split(trim_prefix(input.path, "/"), "/")
	some route in api.routes[input.method]
	route_matches(route, parts)
	input.credential.issuer == api.issuer
	api.audience in input.credential.audiences
	every scope in api.scopes {
		scope in input.credential.scopes
	}
	some role in input.credential.roles
	role in api.roles
	some prefix in api.network_prefixes
	startswith(input.source, prefix)
}
"#;

fn rego_engine(apis: i64) -> regorus::Engine {
    let mut table = serde_json::Map::new();
    for api in 1..=apis {
        let mut routes: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for n in 0..OPERATIONS {
            let segments: Vec<String> =
                template(n).trim_start_matches('/').split('/').map(|s| if s.starts_with('{') { "*".to_owned() } else { s.to_owned() }).collect();
            routes.entry(method(n)).or_insert_with(|| json!([])).as_array_mut().unwrap().push(json!(segments));
        }
        table.insert(
            api.to_string(),
            json!({"routes": routes, "issuer": "https://login.example.com", "audience": "api", "scopes": ["read"],
                   "roles": ["reader", "admin"], "network_prefixes": ["10."]}),
        );
    }
    let mut engine = regorus::Engine::new();
    engine.add_policy("palisade.rego".into(), REGO.into()).unwrap();
    engine.add_data(regorus::Value::from_json_str(&json!({"apis": table}).to_string()).unwrap()).unwrap();
    engine
}

fn rego_input() -> regorus::Value {
    let input = json!({
        "api": API.to_string(), "method": METHOD, "path": PATH, "source": "10.1.2.3",
        "credential": {"issuer": "https://login.example.com", "audiences": ["api"], "scopes": ["read"], "roles": ["reader"]},
    });
    regorus::Value::from_json_str(&input.to_string()).unwrap()
}

fn rego_allows(engine: &mut regorus::Engine, input: &regorus::Value) -> bool {
    engine.set_input(input.clone());
    engine.eval_rule("data.palisade.allow".into()).unwrap() == regorus::Value::from(true)
}

fn comparison(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed GET on a templated route");
    for apis in [10, 1_000] {
        let prepared = palisade_estate(apis);
        let request = palisade_request();
        assert!(evaluate(&prepared, &request).allow, "the engines must agree before they are timed");
        group.bench_with_input(BenchmarkId::new("palisade", apis), &prepared, |b, prepared| b.iter(|| evaluate(prepared, black_box(&request))));

        let policies = cedar_policies(apis);
        let entities = cedar_policy::Entities::empty();
        let authorizer = cedar_policy::Authorizer::new();
        let cedar = cedar_request();
        assert_eq!(authorizer.is_authorized(&cedar, &policies, &entities).decision(), cedar_policy::Decision::Allow);
        group.bench_with_input(BenchmarkId::new("cedar (route given)", apis), &policies, |b, policies| {
            b.iter(|| authorizer.is_authorized(black_box(&cedar), policies, &entities))
        });

        let mut engine = rego_engine(apis);
        let input = rego_input();
        assert!(rego_allows(&mut engine, &input));
        group.bench_function(BenchmarkId::new("regorus", apis), |b| b.iter(|| rego_allows(&mut engine, black_box(&input))));
    }
    group.finish();
}

criterion_group!(benches, comparison);
criterion_main!(benches);
