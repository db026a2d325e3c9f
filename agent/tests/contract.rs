//! Request contracts end to end inside the agent: operations compiled from their OpenAPI
//! description, the real proxy and decision endpoint in front of an echo upstream. What
//! breaks the contract is refused before it reaches the upstream, with what is wrong;
//! monitor mode records it and lets it through.

mod common;

use agent::config::Mode;
use agent::proxy;
use agent::timeouts::Timeouts;
use common::{API, agent, echo_upstream, proxy_kept, records, serve_decisions, signed_snapshot};
use ed25519_dalek::SigningKey;
use policy::Snapshot;
use policy::model::{ApiInput, OperationInput, OperationSchemas};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn operation(id: i64, method: &str, path: &str, parameters: Value, request_body: Value) -> OperationInput {
    OperationInput {
        id,
        method: method.into(),
        path: path.into(),
        openapi: Some(OperationSchemas { parameters, request_body }),
        ..Default::default()
    }
}

/// The Pets API, public, with a contract (bodies at most 1 KiB) in `mode`.
fn estate(enforcement: &str) -> Snapshot {
    let pet_id = json!({"name": "petId", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}});
    let pet_body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}}});
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Pets".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({
                "authentication": {"mode": "public"},
                "contract": {"max_body_bytes": 1024},
                "enforcement": enforcement,
            }))
            .unwrap(),
            operations: vec![
                operation(1, "GET", "/pets", json!([
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string", "enum": ["cat", "dog"]}}},
                    {"name": "X-Tenant", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[a-z]+$"}}
                ]), Value::Null),
                operation(2, "POST", "/pets", json!([]), pet_body),
                operation(3, "GET", "/pets/{petId}", json!([pet_id]), Value::Null),
            ],
            components: json!({"schemas": {
                "NewPet": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "tag": {"type": "string", "nullable": true},
                    "owner": {"$ref": "#/components/schemas/Owner"}}},
                "Owner": {"type": "object", "properties": {"id": {"type": "integer"}}}
            }}),
            openapi_version: "3.0.3".into(),
        }],
        ..Default::default()
    }
}

async fn problem(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, body["code"].as_str().unwrap().to_owned(), body["detail"].as_str().unwrap().to_owned())
}

/// An agent enforcing the estate in `enforcement` mode, its proxy in front of an echo
/// upstream, and the upstream's hit counter.
async fn proxied(enforcement: &str) -> (common::Agent, String, Arc<AtomicUsize>) {
    proxied_with(enforcement, Timeouts::default()).await
}

/// As [`proxied`], the proxy with `timeouts`.
async fn proxied_with(enforcement: &str, timeouts: Timeouts) -> (common::Agent, String, Arc<AtomicUsize>) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 1, &estate(enforcement));
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let (upstream, hits) = echo_upstream().await;
    let base = proxy_kept(&agent, upstream, timeouts).await;
    (agent, base, hits)
}

#[tokio::test]
async fn requests_that_break_the_contract_never_reach_the_upstream() {
    let (agent, base, hits) = proxied("enforce").await;
    let http = reqwest::Client::new();
    let list = |query: &str| http.get(format!("{base}/pets{query}")).header("x-tenant", "acme");

    // Within the contract: forwarded as sent.
    assert_eq!(list("?limit=10&tags=cat&tags=dog").send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/pets/7")).send().await.unwrap().status(), 200);
    let pet = json!({"name": "Rex", "tag": null, "owner": {"id": 3}});
    let created = http.post(format!("{base}/pets")).json(&pet).send().await.unwrap();
    assert_eq!(created.status(), 200);
    let seen: Value = created.json().await.unwrap();
    let sent = serde_json::to_vec(&pet).unwrap();
    assert_eq!(seen["body_len"], sent.len(), "the body read for the check is forwarded whole");
    assert_eq!(seen["body_head"], String::from_utf8_lossy(&sent[..16]).as_ref());
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Parameters: each refusal says which one and why.
    let (status, code, detail) = problem(list("?limit=500").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_parameter"));
    assert!(detail.contains("limit"), "{detail}");
    assert_eq!(problem(list("?limit=ten").send().await.unwrap()).await.1, "invalid_parameter");
    assert_eq!(problem(list("?tags=cow").send().await.unwrap()).await.1, "invalid_parameter");
    let (_, code, detail) = problem(list("?limit=1&debug=true").send().await.unwrap()).await;
    assert_eq!(code, "unknown_parameter");
    assert!(detail.contains("debug"), "{detail}");
    let (_, code, detail) = problem(http.get(format!("{base}/pets")).send().await.unwrap()).await;
    assert_eq!(code, "missing_parameter");
    assert!(detail.contains("x-tenant"), "{detail}");
    let bad_header = http.get(format!("{base}/pets")).header("x-tenant", "ACME!");
    assert_eq!(problem(bad_header.send().await.unwrap()).await.1, "invalid_parameter");
    assert_eq!(problem(http.get(format!("{base}/pets/0")).send().await.unwrap()).await.1, "invalid_parameter");
    assert_eq!(problem(http.get(format!("{base}/pets/rex")).send().await.unwrap()).await.1, "invalid_parameter");

    // Bodies.
    let post = || http.post(format!("{base}/pets"));
    let (status, code, detail) = problem(post().json(&json!({"name": "Rex", "owner": {"id": "three"}})).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_body"));
    assert!(detail.contains("/owner/id"), "{detail}");
    assert_eq!(problem(post().json(&json!({"name": "Rex", "admin": true})).send().await.unwrap()).await.1, "invalid_body");
    let not_json = post().header("content-type", "application/json").body("{name");
    assert_eq!(problem(not_json.send().await.unwrap()).await.1, "invalid_body");
    let text = post().header("content-type", "text/plain").body("Rex");
    assert_eq!(problem(text.send().await.unwrap()).await.0, 415);
    assert_eq!(problem(post().header("content-type", "application/json").send().await.unwrap()).await.1, "missing_body");
    let big = json!({"name": "x".repeat(2_000)});
    assert_eq!(problem(post().json(&big).send().await.unwrap()).await.0, 413);
    // Chunked, with no length announced: read up to the bound, then refused.
    let chunks = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let chunked = post().header("content-type", "application/json").body(reqwest::Body::wrap_stream(chunks));
    assert_eq!(problem(chunked.send().await.unwrap()).await.1, "body_too_large");
    let unexpected = http.get(format!("{base}/pets/7")).body("surprise");
    assert_eq!(problem(unexpected.send().await.unwrap()).await.1, "unexpected_body");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "nothing that broke the contract was forwarded");

    let reasons: Vec<Option<String>> = records(&agent).await.into_iter().filter(|r| r.outcome == "deny").map(|r| r.reason).collect();
    assert_eq!(reasons.len(), 16, "{reasons:?}");
    assert!(reasons.contains(&Some("body_too_large".into())) && reasons.contains(&Some("unknown_parameter".into())));
}

#[tokio::test]
async fn monitor_mode_records_a_broken_contract_and_forwards_the_request() {
    let (agent, base, hits) = proxied("monitor").await;
    let http = reqwest::Client::new();
    let broken = http.post(format!("{base}/pets")).json(&json!({"owner": "nobody"}));
    assert_eq!(broken.send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/pets?limit=1000")).header("x-tenant", "acme").send().await.unwrap().status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let records = records(&agent).await;
    let seen: Vec<(&str, Option<&str>)> = records.iter().map(|r| (r.outcome.as_str(), r.reason.as_deref())).collect();
    assert_eq!(seen, [("monitor", Some("invalid_body")), ("monitor", Some("invalid_parameter"))]);
}

#[tokio::test]
async fn monitor_mode_forwards_a_body_over_the_bound_whole() {
    let (agent, base, hits) = proxied("monitor").await;
    let http = reqwest::Client::new();
    let post = || http.post(format!("{base}/pets")).header("content-type", "application/json");
    // Announced too large (never read by the agent), and chunked (read past the bound,
    // then the rest streamed after what was read).
    let announced = serde_json::to_vec(&json!({"name": "x".repeat(3_000)})).unwrap();
    let seen: Value = post().body(announced.clone()).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["body_len"], announced.len());
    let chunks = futures::stream::iter((0..8).map(|i| Ok::<_, std::io::Error>(vec![b'a' + i; 512])));
    let seen: Value = post().body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["body_len"], 8 * 512, "every byte, the ones read for the check included");
    assert_eq!(seen["body_head"], "a".repeat(16));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let reasons: Vec<(String, Option<String>)> = records(&agent).await.into_iter().map(|r| (r.outcome, r.reason)).collect();
    assert_eq!(reasons, vec![("monitor".to_owned(), Some("body_too_large".to_owned())); 2]);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_with_408_in_either_mode() {
    for enforcement in ["enforce", "monitor"] {
        // A caller has 300 ms between the bytes of a body.
        let timeouts = Timeouts { caller_body: Duration::from_millis(300), ..Timeouts::default() };
        let (agent, base, hits) = proxied_with(enforcement, timeouts).await;
        let half = b"POST /pets HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"name\":";
        let answer = common::send_until_closed(&base, half).await;
        assert!(answer.starts_with("http/1.1 408"), "{enforcement}: {answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        // Half a body is not forwarded even when only monitoring: the upstream would
        // get a request the caller never finished.
        assert_eq!(hits.load(Ordering::SeqCst), 0, "{enforcement}");
        let records = records(&agent).await;
        let seen: Vec<(&str, u16, Option<&str>)> = records.iter().map(|r| (r.outcome.as_str(), r.status, r.reason.as_deref())).collect();
        assert_eq!(seen, [("deny", 408, Some("request_timeout"))], "{enforcement}");
    }
}

#[tokio::test]
async fn a_gateway_checks_parameters_and_refuses_bodies_it_cannot_see() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 1, &estate("enforce"));
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let decide = format!("http://{}/decide", serve_decisions(proxy::decision_router(agent.decider.clone(), None)).await);
    let http = reqwest::Client::new();
    let ask = |method: &str, uri: &str| {
        http.get(&decide).header("x-original-method", method).header("x-original-uri", uri).header("x-tenant", "acme")
    };
    assert_eq!(ask("GET", "/pets?limit=5").send().await.unwrap().status(), 200);
    let refused = ask("GET", "/pets?limit=5000").send().await.unwrap();
    assert_eq!(refused.headers()["x-palisade-reason"], "invalid_parameter");
    assert_eq!(refused.headers()["x-palisade-status"], "400");
    let refused = ask("POST", "/pets").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-palisade-reason"], "request_inspection_unavailable");
}
