//! The real reverse proxy and decision endpoint on port 0, in front of a small upstream,
//! enforcing a bundle signed in the test and loaded the way the agent loads it from disk.

mod common;

use agent::config::Mode;
use agent::proxy;
use common::{API, agent, echo_upstream as upstream, jwt, proxy_for, records, serve, signed_bundle};
use ed25519_dalek::SigningKey;
use serde_json::Value;
use std::sync::atomic::Ordering;
use store::protection::Enforcement;

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, json_of(response).await)
}

#[tokio::test]
async fn the_proxy_forwards_what_the_bundle_allows_and_refuses_the_rest() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 3, &jwks);
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let (upstream, hits) = upstream().await;
    let base = proxy_for(&agent, upstream).await;
    let http = reqwest::Client::new();

    // Allowed: forwarded with body, headers and the forwarding headers; hop-by-hop stripped.
    let body = vec![b'x'; 3 * 1024 * 1024];
    let response = http
        .post(format!("{base}/echo?q=1"))
        .header("x-custom", "kept")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .header("x-forwarded-for", "203.0.113.9")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert!(
        response.headers().get("keep-alive").is_none(),
        "hop-by-hop headers of the answer are stripped too"
    );
    let seen = json_of(response).await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["target"], "/echo?q=1");
    assert_eq!(seen["body_len"], 3 * 1024 * 1024);
    assert_eq!(seen["headers"]["x-custom"], "kept");
    assert!(seen["headers"].get("x-hop").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["host"], upstream.to_string());
    let proxy_host = base.trim_start_matches("http://");
    assert_eq!(
        seen["headers"]["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{proxy_host}\"")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Undeclared: 404 problem, never forwarded.
    let (status, body) = problem(http.get(format!("{base}/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "undeclared_route");
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "urn:palisade:problem:undeclared_route");
    assert!(
        !body["detail"].as_str().unwrap().contains("nowhere"),
        "no internals in the detail"
    );
    let (status, body) = problem(http.get(format!("{base}/pets//1")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("non_canonical_path"))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Authentication: missing, invalid, valid.
    let missing = http.get(format!("{base}/pets/1")).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let (status, body) = problem(missing).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let invalid = http
        .get(format!("{base}/pets/1"))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(
        invalid.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(problem(invalid).await.1["code"], "invalid_token");
    let token = jwt("alice", &["reader"]);
    let allowed = http
        .get(format!("{base}/pets/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let seen = json_of(allowed).await;
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {token}"),
        "the upstream still sees the token"
    );
    let (status, body) = problem(
        http.get(format!("{base}/admin"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("missing_role")));
    let admin = http
        .get(format!("{base}/admin"))
        .bearer_auth(jwt("root", &["admin"]))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    // Rate limit: two per minute per caller.
    for _ in 0..2 {
        assert_eq!(
            http.get(format!("{base}/limited"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let limited = http.get(format!("{base}/limited")).send().await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let (status, body) = problem(limited).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));

    // The upstream gone: 502 problem.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dead = proxy_for(&agent, closed).await;
    let (status, body) = problem(http.get(format!("{dead}/public")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("upstream_unavailable"))
    );

    // Every decision was recorded, with what matched and who called.
    let records = records(&agent).await;
    let outcomes: Vec<(&str, u16, Option<&str>)> = records
        .iter()
        .map(|r| (r.outcome.as_str(), r.status, r.reason.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("allow", 200, None),
            ("deny", 404, Some("undeclared_route")),
            ("deny", 400, Some("non_canonical_path")),
            ("deny", 401, Some("unauthenticated")),
            ("deny", 401, Some("invalid_token")),
            ("allow", 200, None),
            ("deny", 403, Some("missing_role")),
            ("allow", 200, None),
            ("allow", 200, None),
            ("allow", 200, None),
            ("deny", 429, Some("rate_limited")),
            ("allow", 200, None),
        ]
    );
    let alice = &records[5];
    assert_eq!(
        (
            alice.caller.as_deref(),
            alice.api_id,
            alice.operation_id,
            alice.revision
        ),
        (Some("sub:alice"), Some(API), Some(12), Some(3))
    );
    assert_eq!(records[0].path, "/echo", "no query in records");
    assert_eq!(records[0].source, "127.0.0.1");
    let stats = agent.decider.stats.counters();
    assert_eq!((stats.allowed, stats.denied, stats.errors), (6, 6, 1));
}

#[tokio::test]
async fn monitor_mode_and_fail_open_let_denials_through_and_say_so() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 1, &jwks);
    let (upstream, hits) = upstream().await;
    let http = reqwest::Client::new();

    let monitor = agent(Some(&bundle), &key, Mode::Monitor, false).await;
    let base = proxy_for(&monitor, upstream).await;
    assert_eq!(
        http.get(format!("{base}/nowhere"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/pets/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let records = records(&monitor).await;
    assert!(
        records.iter().all(|r| r.outcome == "monitor"),
        "{records:?}"
    );
    assert_eq!(records[0].reason.as_deref(), Some("undeclared_route"));
    assert_eq!(monitor.decider.stats.counters().monitored, 2);

    // The API's own monitor setting in the bundle does the same for an enforcing agent;
    // an operation that opts back in to enforcement is still refused.
    let mut estate = common::snapshot(&jwks);
    estate.apis[0].protection.enforcement = Some(Enforcement::Monitor);
    estate.apis[0].operations[4].protection.enforcement = Some(Enforcement::Enforce);
    let monitored_api = agent(
        Some(&common::signed_snapshot(&key, 2, &estate)),
        &key,
        Mode::Enforce,
        false,
    )
    .await;
    let base = proxy_for(&monitored_api, upstream).await;
    for path in ["/nowhere", "/pets/1"] {
        let status = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let (status, body) = problem(http.get(format!("{base}/admin")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let outcomes: Vec<String> = common::records(&monitored_api)
        .await
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, ["monitor", "monitor", "deny"]);
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // No verified bundle: refused (fail closed), or forwarded with --fail-open.
    let closed = agent(None, &key, Mode::Enforce, false).await;
    let base = proxy_for(&closed, upstream).await;
    let (status, body) = problem(http.get(format!("{base}/public")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("no_verified_bundle"))
    );
    let open = agent(None, &key, Mode::Enforce, true).await;
    let base = proxy_for(&open, upstream).await;
    assert_eq!(
        http.get(format!("{base}/public"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let records = self::records(&open).await;
    assert_eq!(
        (records[0].outcome.as_str(), records[0].revision),
        ("monitor", None)
    );
}

#[tokio::test]
async fn the_decision_endpoint_answers_a_gateway() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 1, &jwks);
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let base = format!(
        "http://{}",
        common::serve_decisions(proxy::decision_router(agent.decider.clone(), None)).await
    );
    let http = reqwest::Client::new();
    let ask = |method: &str, uri: &str, token: Option<String>| {
        let mut request = http
            .get(format!("{base}/decide/anything"))
            .header("x-original-method", method)
            .header("x-original-uri", uri)
            .header("x-real-ip", "198.51.100.7");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let allowed = ask("GET", "/public?x=1", None).await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.bytes().await.unwrap().is_empty());
    let unauthenticated = ask("GET", "/pets/1", None).await.unwrap();
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        ask("GET", "/pets/1", Some(jwt("alice", &[])))
            .await
            .unwrap()
            .status(),
        200
    );
    let forbidden = ask("GET", "/admin", Some(jwt("alice", &[]))).await.unwrap();
    assert_eq!(forbidden.headers()["x-palisade-status"], "403");
    let (status, body) = problem(forbidden).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("missing_role")));
    let undeclared = ask("DELETE", "/public", None).await.unwrap();
    assert_eq!(
        (
            undeclared.status().as_u16(),
            undeclared.headers()["x-palisade-reason"].to_str().unwrap()
        ),
        (404, "undeclared_route")
    );
    // POST /decide works too; without the original request's headers it is a bad request.
    let posted = http
        .post(format!("{base}/decide"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/public")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(
        http.get(format!("{base}/decide"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    let records = records(&agent).await;
    assert_eq!(records.len(), 6);
    assert_eq!(
        records[0].source, "198.51.100.7",
        "the gateway's X-Real-IP is the caller"
    );
    assert_eq!(records[0].path, "/public");
    assert_eq!(
        records[5].source, "127.0.0.1",
        "without X-Real-IP, the peer"
    );
}

/// An upstream that counts the connections made to it and answers `ok`, closing each
/// connection after its answer when `close` is set.
async fn counting_upstream(close: bool) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::serve::ListenerExt;
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    // Answers `ok` only to a request line in origin form (`GET /public`), as an upstream
    // that is not a proxy expects it.
    let router = axum::Router::new().fallback(move |uri: http::Uri| async move {
        let connection = if close { "close" } else { "keep-alive" };
        let body = if uri.scheme().is_none() && uri.authority().is_none() { "ok".to_owned() } else { format!("absolute form: {uri}") };
        ([(http::header::CONNECTION, connection)], body)
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address, connections)
}

#[tokio::test]
async fn each_caller_connection_keeps_one_upstream_connection_and_a_closed_one_is_replaced() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 1, &jwks);
    let enforcing = agent(Some(&bundle), &key, Mode::Enforce, false).await;

    // Requests over one caller connection go over one upstream connection, one at a time;
    // another caller connection gets one of its own.
    let (upstream, connections) = counting_upstream(false).await;
    let base = proxy_for(&enforcing, upstream).await;
    let (first, second) = (reqwest::Client::new(), reqwest::Client::new());
    for client in [&first, &first, &first, &second, &second, &first] {
        let response = client.get(format!("{base}/public")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2, "one upstream connection per caller connection");
    // A refused request never reaches the upstream and leaves the connection as it was.
    assert_eq!(first.get(format!("{base}/admin")).send().await.unwrap().status(), 401);
    assert_eq!(first.get(format!("{base}/public")).send().await.unwrap().status(), 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    // An upstream that closes after every answer: each request finds the connection gone
    // and opens another, and no caller sees an error.
    let (closing, opened) = counting_upstream(true).await;
    let base = proxy_for(&enforcing, closing).await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let response = client.get(format!("{base}/public")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(opened.load(Ordering::SeqCst), 4);

    // Concurrent callers each get their answer (no connection is shared between them).
    let (upstream, connections) = counting_upstream(false).await;
    let base = proxy_for(&enforcing, upstream).await;
    let calls = (0..8).map(|_| {
        let base = base.clone();
        tokio::spawn(async move { reqwest::Client::new().get(format!("{base}/public")).send().await.unwrap().status() })
    });
    for status in futures::future::join_all(calls).await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 8);

}

/// An upstream that switches to `echo` (sends back what it receives) when asked with
/// `Upgrade: echo`, and answers anything else with what it was sent of a switch.
async fn switching_upstream() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let router = axum::Router::new().fallback(move |mut request: axum::extract::Request| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let header = |name: http::header::HeaderName| request.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
            let (upgrade, connection) = (header(http::header::UPGRADE), header(http::header::CONNECTION));
            if upgrade.as_deref() != Some("echo") {
                return axum::response::Response::new(axum::body::Body::from(format!("plain: upgrade {upgrade:?}, connection {connection:?}")));
            }
            let switched = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let mut io = hyper_util::rt::TokioIo::new(switched.await.unwrap());
                let mut buffer = [0u8; 1024];
                loop {
                    let read = io.read(&mut buffer).await.unwrap_or(0);
                    if read == 0 || io.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
            axum::response::Response::builder()
                .status(101)
                .header(http::header::CONNECTION, "upgrade")
                .header(http::header::UPGRADE, "echo")
                .header("keep-alive", "timeout=5")
                .header("x-echo", "accepted")
                .body(axum::body::Body::empty())
                .unwrap()
        }
    });
    (serve(router).await, hits)
}

#[tokio::test]
async fn a_protocol_switch_the_bundle_allows_joins_caller_and_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let enforcing = agent(Some(&signed_bundle(&key, 1, &jwks)), &key, Mode::Enforce, false).await;
    let (upstream, hits) = switching_upstream().await;
    let base = proxy_for(&enforcing, upstream).await;
    let ask = |path: &str, protocol: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: {protocol}{extra}");

    // Allowed: the upstream agrees, and from then on the connection is a tunnel to it.
    let (head, mut tunnel) = common::raw_request(&base, &ask("/public", "echo", "")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("connection: upgrade\r\n") && head.contains("upgrade: echo\r\n") && head.contains("x-echo: accepted"), "{head}");
    assert!(!head.contains("keep-alive"), "other hop-by-hop headers are not passed on: {head}");
    for message in [&b"ping"[..], b"a longer message, sent after the first"] {
        tunnel.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tunnel.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
    drop(tunnel);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Refused like any request: the switch never reaches the upstream.
    let (head, _) = common::raw_request(&base, &ask("/pets/1", "echo", "")).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    let (head, _) = common::raw_request(&base, &ask("/pets/1", "echo", &format!("\r\nAuthorization: Bearer {}", jwt("alice", &[])))).await;
    assert!(head.starts_with("http/1.1 101"), "with a token it is allowed: {head}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Declined by the upstream: its ordinary answer, with what it was asked.
    let (head, mut stream) = common::raw_request(&base, &ask("/public", "something-else", "")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut body = String::new();
    let length: usize = head.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes).await.unwrap();
    body.push_str(std::str::from_utf8(&bytes).unwrap());
    assert_eq!(body, "plain: upgrade Some(\"something-else\"), connection Some(\"upgrade\")");

    // `Upgrade` without `Connection: upgrade` asks for nothing: forwarded without it.
    let (head, mut stream) = common::raw_request(&base, "GET /public HTTP/1.1\r\nHost: api.test\r\nUpgrade: echo").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes).await.unwrap();
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), "plain: upgrade None, connection None");

    let records = records(&enforcing).await;
    let outcomes: Vec<(&str, &str)> = records.iter().map(|r| (r.path.as_str(), r.outcome.as_str())).collect();
    assert_eq!(outcomes, [("/public", "allow"), ("/pets/1", "deny"), ("/pets/1", "allow"), ("/public", "allow"), ("/public", "allow")]);
}
