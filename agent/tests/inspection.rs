//! L3 on real responses: the proxy in front of an upstream that returns customer data,
//! masking or withholding the classes the caller may not receive, refusing what it cannot
//! read, and recording each outcome.

mod common;

use agent::config::Mode;
use agent::proxy;
use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use futures::StreamExt;
use common::{API, agent, proxy_for, records, serve, signed_snapshot};
use ed25519_dalek::SigningKey;
use policy::Snapshot;
use policy::inspect::{MASK, ResponseField};
use policy::model::{ApiInput, OperationInput};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Public operations whose responses carry classes nobody is granted.
fn estate() -> Snapshot {
    let operation = |id: i64, path: &str, otherwise: &str, fields: &[(&str, &str)]| {
        let response_fields: Vec<ResponseField> = fields
            .iter()
            .map(|(class, at)| ResponseField::parse(class, at).unwrap())
            .collect();
        let mut classes: Vec<String> = fields
            .iter()
            .map(|(class, _)| (*class).to_owned())
            .collect();
        classes.dedup();
        OperationInput {
            id,
            method: "GET".into(),
            path: path.into(),
            protection: serde_json::from_value(json!({"data": {"otherwise": otherwise}})).unwrap(),
            response_classes: classes,
            response_fields,
            ..Default::default()
        }
    };
    let customer = [
        ("email", "200.body.email"),
        ("payment_card", "200.body.cards[].number"),
    ];
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Customers".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({"authentication": {"mode": "public"}}))
                .unwrap(),
            operations: vec![
                operation(20, "/customers/{id}", "mask", &customer),
                operation(
                    21,
                    "/cards/{id}",
                    "block",
                    &[("payment_card", "200.body.number")],
                ),
                operation(22, "/text", "mask", &[("email", "200.body.email")]),
                operation(23, "/compressed", "mask", &[("email", "200.body.email")]),
                operation(24, "/plain", "mask", &[]),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::new(),
        known_classes: vec!["email".into(), "payment_card".into()],
        ..Default::default()
    }
}

/// Answers customer data; `/customers/404` answers it with 404 and `/cards/0` without a
/// card number. Each answer says which `Accept-Encoding` reached it.
async fn upstream() -> SocketAddr {
    let router = Router::new().fallback(|request: Request| async move {
        let path = request.uri().path().to_owned();
        let accept_encoding = request
            .headers()
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let upgrade = request.headers().get("upgrade").map(|v| v.to_str().unwrap().to_owned());
        let customer = json!({
            "name": "Ada", "email": "ada@example.org",
            "cards": [{"number": "4111111111111111", "brand": "visa"}, {"number": null}],
            "accept_encoding": accept_encoding,
            "upgrade": upgrade,
        });
        let json_type = ("content-type", "application/json");
        // The first bytes of a customer, then nothing, an abort, or more than can be read.
        let start = || futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"email\": \"ada@example.org\", "))]);
        let partial = match path.as_str() {
            "/customers/stall" => Some(axum::body::Body::from_stream(start().chain(futures::stream::pending()))),
            "/customers/broken" => Some(axum::body::Body::from_stream(start().chain(futures::stream::iter([Err(std::io::Error::other("gone"))])))),
            "/customers/large" => {
                let filler = format!("\"filler\": \"{}\"}}", "x".repeat(agent::inspect::MAX_INSPECTED_BYTES));
                Some(axum::body::Body::from_stream(start().chain(futures::stream::iter([Ok(filler.into())]))))
            }
            _ => None,
        };
        if let Some(body) = partial {
            return ([json_type], body).into_response();
        }
        let (status, headers, body) = match path.as_str() {
            "/customers/404" => (404, vec![json_type], customer.to_string()),
            "/cards/0" => (200, vec![json_type], json!({"number": null}).to_string()),
            "/cards/1" => (200, vec![json_type], json!({"number": "4111"}).to_string()),
            "/text" => (
                200,
                vec![("content-type", "text/plain")],
                "ada@example.org".into(),
            ),
            "/compressed" => (
                200,
                vec![json_type, ("content-encoding", "br")],
                customer.to_string(),
            ),
            _ => (
                200,
                vec![json_type, ("etag", "\"v1\"")],
                customer.to_string(),
            ),
        };
        let mut response = axum::response::Response::new(axum::body::Body::from(body));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response.into_response()
    });
    serve(router).await
}

async fn body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn responses_are_masked_withheld_or_refused_as_the_data_rule_says() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 5, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let base = proxy_for(&agent, upstream().await).await;
    let http = reqwest::Client::new();

    // Masked: the email and every card number; the rest of the document as it was.
    let response = http
        .get(format!("{base}/customers/7"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("etag").is_none(),
        "the original's validator is dropped"
    );
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let masked = response.bytes().await.unwrap();
    assert_eq!(length, masked.len());
    let masked: Value = serde_json::from_slice(&masked).unwrap();
    assert_eq!(
        masked,
        json!({
            "name": "Ada", "email": MASK,
            "cards": [{"number": MASK, "brand": "visa"}, {"number": null}],
            "accept_encoding": null,
            "upgrade": null,
        }),
        "masked, and the upstream was asked for an uncompressed answer"
    );

    // A protocol switch (WebSocket) would carry data past inspection: it is not passed on,
    // and the plain answer is inspected.
    let (head, mut stream) = common::raw_request(&base, "GET /customers/7 HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
    let mut answer = vec![0u8; length];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut answer).await.unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!((answer["email"].as_str(), &answer["upgrade"]), (Some(MASK), &Value::Null));

    // A status the fields are not declared for passes unchanged.
    let not_found = http
        .get(format!("{base}/customers/404"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    assert_eq!(body(not_found).await["email"], "ada@example.org");

    // Blocked: present → withheld; absent (null) → answered.
    let withheld = http.get(format!("{base}/cards/1")).send().await.unwrap();
    assert_eq!(withheld.status(), 403);
    assert_eq!(
        withheld.headers()["content-type"],
        "application/problem+json"
    );
    let problem = body(withheld).await;
    assert_eq!(problem["code"], "data_withheld");
    assert!(!problem.to_string().contains("4111"), "{problem}");
    let without_card = http.get(format!("{base}/cards/0")).send().await.unwrap();
    assert_eq!(without_card.status(), 200);
    assert_eq!(body(without_card).await, json!({"number": null}));

    // Cannot be read, so cannot be checked: refused, not passed on.
    for path in ["/text", "/compressed"] {
        let refused = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(refused.status(), 502, "{path}");
        let problem = body(refused).await;
        assert_eq!(problem["code"], "response_not_inspectable", "{path}");
        assert!(!problem.to_string().contains("ada@"), "{problem}");
    }

    // An operation with no classes to look for is not inspected at all.
    let plain = http.get(format!("{base}/plain")).send().await.unwrap();
    assert_eq!(plain.headers()["etag"], "\"v1\"");
    assert_eq!(body(plain).await["accept_encoding"], Value::Null);

    let outcomes: Vec<(String, String, u16, Option<String>)> = records(&agent)
        .await
        .into_iter()
        .map(|r| (r.path, r.outcome, r.status, r.reason))
        .collect();
    let expected = [
        ("/customers/7", "allow", 200, Some("data_masked")),
        // The protocol switch that was not passed on.
        ("/customers/7", "allow", 200, Some("data_masked")),
        ("/customers/404", "allow", 200, None),
        ("/cards/1", "deny", 403, Some("data_withheld")),
        ("/cards/0", "allow", 200, None),
        ("/text", "deny", 502, Some("response_not_inspectable")),
        ("/compressed", "deny", 502, Some("response_not_inspectable")),
        ("/plain", "allow", 200, None),
    ];
    let expected: Vec<(String, String, u16, Option<String>)> = expected
        .iter()
        .map(|(path, outcome, status, reason)| {
            (
                (*path).into(),
                (*outcome).into(),
                *status,
                reason.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(outcomes, expected);
    let stats = &agent.decider.stats;
    assert_eq!(stats.denied.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn an_answer_the_upstream_stalls_or_breaks_off_is_its_failure_and_none_of_it_is_shown() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 5, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let limit = std::time::Duration::from_millis(300);
    let timeouts = agent::timeouts::Timeouts { caller_head: limit, caller_body: limit, upstream: limit };
    let base = common::proxy_kept(&agent, upstream().await, timeouts).await;
    let http = reqwest::Client::new();

    // Each on the same caller connection, which goes on after every one of them.
    for (path, status, code) in [
        ("/customers/stall", 504, "upstream_timeout"),
        ("/customers/broken", 502, "upstream_unavailable"),
        // Too large to read is the agent's limit, not the upstream's failure.
        ("/customers/large", 502, "response_not_inspectable"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let problem = body(response).await;
        assert_eq!(problem["code"], code, "{path}");
        assert!(!problem.to_string().contains("ada@"), "{problem}");
        let after = http.get(format!("{base}/customers/7")).send().await.unwrap();
        assert_eq!(body(after).await["email"], MASK, "after {path}");
    }

    let stats = &agent.decider.stats;
    assert_eq!(stats.errors.load(std::sync::atomic::Ordering::Relaxed), 2, "the stall and the abort");
    let last_error = stats.last_error().unwrap_or_default();
    assert!(last_error.starts_with("upstream unreachable"), "{last_error}");
    let outcomes: Vec<(String, String, u16, Option<String>)> = records(&agent)
        .await
        .into_iter()
        .filter(|r| r.path != "/customers/7")
        .map(|r| (r.path, r.outcome, r.status, r.reason))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("/customers/stall".into(), "allow".into(), 200, None),
            ("/customers/broken".into(), "allow".into(), 200, None),
            ("/customers/large".into(), "deny".into(), 502, Some("response_not_inspectable".into())),
        ],
        "allowed as decided, as when the upstream gives no answer"
    );
}

#[tokio::test]
async fn monitor_mode_records_what_inspection_would_do_and_changes_nothing() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 5, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Monitor, false).await;
    let base = proxy_for(&agent, upstream().await).await;
    let http = reqwest::Client::new();

    let customer = http
        .get(format!("{base}/customers/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(customer.headers()["etag"], "\"v1\"");
    assert_eq!(body(customer).await["email"], "ada@example.org");
    let card = http.get(format!("{base}/cards/1")).send().await.unwrap();
    assert_eq!(card.status(), 200);
    assert_eq!(body(card).await["number"], "4111");

    let outcomes: Vec<(String, Option<String>)> = records(&agent)
        .await
        .into_iter()
        .map(|r| (r.outcome, r.reason))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("monitor".to_owned(), Some("data_masked".to_owned())),
            ("monitor".to_owned(), Some("data_withheld".to_owned())),
        ]
    );
}

#[tokio::test]
async fn a_gateway_that_cannot_show_the_agent_the_response_is_refused_such_operations() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_snapshot(&key, 5, &estate());
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let decide = format!(
        "http://{}/decide",
        common::serve_decisions(proxy::decision_router(agent.decider.clone(), None)).await
    );
    let http = reqwest::Client::new();
    let ask = |uri: &'static str| {
        http.get(&decide)
            .header("x-original-method", "GET")
            .header("x-original-uri", uri)
            .send()
    };
    let refused = ask("/customers/7").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["x-palisade-reason"],
        "response_inspection_unavailable"
    );
    assert_eq!(ask("/plain").await.unwrap().status(), 200);
}
