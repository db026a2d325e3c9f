//! API keys end to end inside the agent: a bundle carrying key digests, the real proxy
//! and decision endpoint in front of an echo upstream. Keys authenticate their client
//! application, never reach the upstream, stop at their expiry, and bind L2 and rate
//! limits to the application that holds them.

mod common;

use agent::config::Mode;
use agent::proxy;
use common::{API, agent, echo_upstream, operation, proxy_for, records, serve_decisions, signed_snapshot};
use ed25519_dalek::SigningKey;
use policy::Snapshot;
use policy::credentials::{Credentials, IssuedKey, digest};
use policy::model::ApiInput;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const ORDERS: i64 = 7;
const BILLING: i64 = 8;
const ORDERS_KEY: &str = "pak_orders_instance_one_0123456789abcdef";
const BILLING_KEY: &str = "pak_billing_instance_one_0123456789abcdef";
const ROTATED_KEY: &str = "pak_orders_rotated_away_0123456789abcdef";

fn issued(client_app: i64, credential_id: i64, instance: &str, expires_at: Option<i64>) -> IssuedKey {
    IssuedKey { client_app, credential_id, instance: instance.into(), prefix: "pak_".into(), expires_at, secret_sha256: None }
}

/// Orders API keys in `x-api-key`; one operation only for Orders, one rate-limited per app.
fn estate() -> Snapshot {
    let past = agent::now_millis() - 1_000;
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Orders".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({
                "authentication": {"mode": "required", "methods": [{"type": "api_key", "header": "X-Api-Key"}]},
            }))
            .unwrap(),
            operations: vec![
                operation(1, "GET", "/orders", json!({})),
                operation(2, "POST", "/orders", json!({"requestor": {"client_apps": [ORDERS]}})),
                operation(3, "GET", "/limited", json!({"rate_limits": [{"requests": 1, "window_seconds": 60}]})),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::from([(ORDERS, "Orders service".into()), (BILLING, "Billing".into())]),
        credentials: Credentials {
            api_keys: BTreeMap::from([
                (digest(ORDERS_KEY), issued(ORDERS, 1, "orders-1", None)),
                (digest(BILLING_KEY), issued(BILLING, 2, "billing-1", None)),
                (digest(ROTATED_KEY), issued(ORDERS, 3, "orders-0", Some(past))),
            ]),
            ..Credentials::default()
        },
        ..Default::default()
    }
}

async fn body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn api_keys_authenticate_their_application_and_never_reach_the_upstream() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 1, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let (upstream, hits) = echo_upstream().await;
    let base = proxy_for(&agent, upstream).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let request = http.request(method, format!("{base}{path}"));
        match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    };

    // A known key: forwarded without the key; the record names the application and instance.
    let response = call(reqwest::Method::GET, "/orders", Some(ORDERS_KEY)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = body(response).await;
    assert!(seen["headers"].get("x-api-key").is_none(), "the key was passed on: {seen}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // No key, an unknown key, a rotated key past its overlap: 401, nothing forwarded.
    let response = call(reqwest::Method::GET, "/orders", None).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(body(response).await["code"], "unauthenticated");
    for wrong in ["pak_guessed", ROTATED_KEY, &ORDERS_KEY.to_uppercase()] {
        let response = call(reqwest::Method::GET, "/orders", Some(wrong)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{wrong}");
        assert_eq!(response.headers()["www-authenticate"], "ApiKey");
        assert_eq!(body(response).await["code"], "invalid_api_key");
    }
    // Two keys at once are refused rather than guessed between.
    let doubled = call(reqwest::Method::GET, "/orders", Some(ORDERS_KEY)).header("x-api-key", BILLING_KEY);
    assert_eq!(doubled.send().await.unwrap().status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // L2 binds to the application holding the key.
    assert_eq!(call(reqwest::Method::POST, "/orders", Some(ORDERS_KEY)).send().await.unwrap().status(), 200);
    let response = call(reqwest::Method::POST, "/orders", Some(BILLING_KEY)).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(body(response).await["code"], "client_app_not_allowed");

    // Rate limits count per application: Billing is not slowed by Orders' use.
    assert_eq!(call(reqwest::Method::GET, "/limited", Some(ORDERS_KEY)).send().await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::GET, "/limited", Some(ORDERS_KEY)).send().await.unwrap().status(), 429);
    assert_eq!(call(reqwest::Method::GET, "/limited", Some(BILLING_KEY)).send().await.unwrap().status(), 200);

    let records = records(&agent).await;
    let callers: Vec<(&str, Option<&str>)> =
        records.iter().map(|r| (r.outcome.as_str(), r.caller.as_deref())).collect();
    assert_eq!(callers[0], ("allow", Some("app:7/orders-1")));
    assert!(callers.contains(&("deny", Some("app:8/billing-1"))), "{callers:?}");
    let refused: Vec<Option<&str>> =
        records.iter().filter(|r| r.status == 401).map(|r| r.reason.as_deref()).collect();
    assert_eq!(refused, [Some("unauthenticated"), Some("invalid_api_key"), Some("invalid_api_key"), Some("invalid_api_key"), Some("invalid_api_key")]);
    for record in &records {
        let line = serde_json::to_string(record).unwrap();
        assert!(!line.contains("pak_"), "a key was written to the decision log: {line}");
    }
}

#[tokio::test]
async fn the_decision_endpoint_reads_the_key_the_gateway_passes_on() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 1, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let decide = format!("http://{}/decide", serve_decisions(proxy::decision_router(agent.decider.clone(), None)).await);
    let http = reqwest::Client::new();
    let ask = |key: &str| {
        http.get(&decide)
            .header("x-original-method", "POST")
            .header("x-original-uri", "/orders?draft=1")
            .header("x-api-key", key)
    };
    assert_eq!(ask(ORDERS_KEY).send().await.unwrap().status(), 200);
    let refused = ask(BILLING_KEY).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-palisade-reason"], "client_app_not_allowed");
    let refused = ask("pak_guessed").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["x-palisade-reason"], "invalid_api_key");
}
