//! HMAC request signatures end to end inside the agent: a bundle pinning a key by the
//! digest of its secret, the keyring holding it, the real proxy and decision endpoint in
//! front of an echo upstream. Tampered, replayed, stale and under-covered signatures are
//! refused; a signed `Content-Digest` binds the body.

mod common;

use agent::config::Mode;
use agent::proxy;
use agent::signatures::{Message, byte_sequence, sign};
use common::{API, agent, echo_upstream, operation, proxy_for, records, serve_decisions, signed_snapshot};
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue};
use policy::Snapshot;
use policy::agent_api::{HmacSecret, HmacSecrets};
use policy::credentials::{Credentials, IssuedKey, digest};
use policy::model::ApiInput;
use serde_json::json;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const KEY_ID: &str = "phk_orders_one_0123";
const SECRET: &str = "secret-of-orders-instance-one";

fn estate() -> Snapshot {
    let hmac = |components: &[&str]| json!({"authentication": {"mode": "required", "methods": [
        {"type": "hmac", "algorithm": "hmac-sha256", "signed_components": components, "clock_skew_seconds": 60}]}});
    let issued = IssuedKey {
        client_app: 7,
        credential_id: 1,
        instance: "orders-1".into(),
        prefix: KEY_ID.into(),
        expires_at: None,
        secret_sha256: Some(digest(SECRET)),
    };
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Payments".into(),
            environment: "production".into(),
            protection: serde_json::from_value(hmac(&["@method", "@path"])).unwrap(),
            operations: vec![
                operation(1, "GET", "/payments/{id}", json!({})),
                operation(2, "POST", "/payments", hmac(&["@method", "@path", "content-digest"])),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::from([(7, "Orders".to_owned())]),
        credentials: Credentials { hmac_keys: BTreeMap::from([(KEY_ID.to_owned(), issued)]), ..Credentials::default() },
        ..Default::default()
    }
}

fn now() -> i64 {
    agent::now_millis() / 1000
}

/// Headers signed over `components` for `method target` (`extra` headers included first).
fn signed(method: &str, target: &str, components: &[&str], created: i64, extra: &[(&'static str, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in extra {
        headers.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let (input, signature) =
        sign(&Message { method, target, headers: &headers }, components, created, KEY_ID, SECRET.as_bytes()).unwrap();
    headers.insert("signature-input", HeaderValue::from_str(&input).unwrap());
    headers.insert("signature", HeaderValue::from_str(&signature).unwrap());
    headers
}

fn content_digest(body: &[u8]) -> String {
    format!("sha-256={}", byte_sequence(&sha2::Sha256::digest(body)))
}

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn started() -> common::Agent {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let estate = estate();
    let agent = agent(Some(&signed_snapshot(&key, 1, &estate)), &key, Mode::Enforce, false).await;
    let secrets = HmacSecrets { keys: vec![HmacSecret { key_id: KEY_ID.into(), secret: SECRET.into() }] };
    assert_eq!(agent.decider.keyring.accept(&estate.credentials, secrets), 1);
    agent
}

#[tokio::test]
async fn signed_requests_pass_once_and_forgeries_do_not() {
    let agent = started().await;
    let (upstream, hits) = echo_upstream().await;
    let base = proxy_for(&agent, upstream).await;
    let http = reqwest::Client::new();
    let get = |headers: HeaderMap| http.get(format!("{base}/payments/41")).headers(headers);

    let good = signed("GET", "/payments/41", &["@method", "@path"], now(), &[]);
    assert_eq!(get(good.clone()).send().await.unwrap().status(), 200);
    assert_eq!(code(get(good).send().await.unwrap()).await, (401, "invalid_signature".into()), "a replay");
    assert_eq!(code(get(HeaderMap::new()).send().await.unwrap()).await, (401, "unauthenticated".into()));
    let elsewhere = signed("GET", "/payments/42", &["@method", "@path"], now(), &[]);
    assert_eq!(code(get(elsewhere).send().await.unwrap()).await.1, "invalid_signature", "signed for another path");
    let stale = signed("GET", "/payments/41", &["@method", "@path"], now() - 120, &[]);
    let refused = get(stale).send().await.unwrap();
    assert_eq!(refused.headers()["www-authenticate"], "Signature");
    assert_eq!(code(refused).await.1, "invalid_signature");
    let thin = signed("GET", "/payments/41", &["@path"], now(), &[]);
    assert_eq!(code(get(thin).send().await.unwrap()).await.1, "invalid_signature", "does not cover @method");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The signed Content-Digest binds the body.
    let body = br#"{"amount": 10, "to": "acct-1"}"#.to_vec();
    let post = |headers: HeaderMap, body: Vec<u8>| http.post(format!("{base}/payments")).headers(headers).body(body);
    // `created` differs per request: the same signature twice would be a replay.
    let with_digest = |body: &[u8], created: i64| {
        signed("POST", "/payments", &["@method", "@path", "content-digest"], created, &[("content-digest", content_digest(body))])
    };
    let answer = post(with_digest(&body, now()), body.clone()).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let seen: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(seen["body_len"], body.len());
    let swapped = post(with_digest(&body, now() - 1), br#"{"amount": 99999, "to": "acct-6"}"#.to_vec()).send().await.unwrap();
    assert_eq!(code(swapped).await, (400, "content_digest_mismatch".into()));
    let no_digest = signed("POST", "/payments", &["@method", "@path"], now(), &[]);
    assert_eq!(code(post(no_digest, body.clone()).send().await.unwrap()).await.1, "invalid_signature", "the body is not covered");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let records = records(&agent).await;
    assert_eq!(records[0].caller.as_deref(), Some("app:7/orders-1"));
    let reasons: Vec<&str> = records.iter().filter_map(|r| r.reason.as_deref()).collect();
    assert!(reasons.contains(&"content_digest_mismatch") && reasons.contains(&"invalid_signature"), "{reasons:?}");
}

#[tokio::test]
async fn a_gateway_verifies_signatures_but_not_bodies_it_cannot_see() {
    let agent = started().await;
    let decide = format!("http://{}/decide", serve_decisions(proxy::decision_router(agent.decider.clone(), None)).await);
    let http = reqwest::Client::new();
    // nginx passes the caller's headers; the agent reads the original method and target.
    let ask = |method: &str, target: &str, headers: HeaderMap| {
        http.get(&decide).headers(headers).header("x-original-method", method).header("x-original-uri", target)
    };
    let good = signed("GET", "/payments/41", &["@method", "@path"], now(), &[]);
    assert_eq!(ask("GET", "/payments/41", good).send().await.unwrap().status(), 200);
    let tampered = signed("GET", "/payments/41", &["@method", "@path"], now(), &[]);
    let refused = ask("GET", "/payments/40", tampered).send().await.unwrap();
    assert_eq!(refused.headers()["x-palisade-reason"], "invalid_signature");
    let body = b"{}";
    let with_digest = signed("POST", "/payments", &["@method", "@path", "content-digest"], now(), &[("content-digest", content_digest(body))]);
    let refused = ask("POST", "/payments", with_digest).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-palisade-reason"], "request_inspection_unavailable");
}
