//! The proxy's time limits on each side of an exchange: an upstream that does not answer,
//! or stops in the middle of its answer, and a caller that stops sending its body, lose
//! the exchange (504, a cut-off answer, 408), as does a caller that stops taking its
//! answer; an upload or download that keeps moving is never cut off however long it takes
//! in all.

mod common;

use agent::config::Mode;
use agent::timeouts::Timeouts;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use common::{agent, records, signed_bundle};
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// The limit every side has in these tests.
const LIMIT: Duration = Duration::from_millis(300);

/// An answer larger than what the sockets between agent and caller can hold.
const BIG: usize = 32 * 1024 * 1024;

/// Chunks `pause` apart, `count` of them.
fn dripping(count: u8, pause: Duration) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(0u8, move |sent| async move {
        if sent == count {
            return None;
        }
        tokio::time::sleep(pause).await;
        Some((Ok(Bytes::from(format!("chunk {sent};"))), sent + 1))
    })
}

/// An upstream whose `x-mode` says how it behaves: `hang` never answers, `stall` sends a
/// head and a first chunk and then nothing, `drip` sends six chunks 100 ms apart, `big`
/// sends [`BIG`] bytes; and a
/// POST is answered, once its body is all read, with its length.
async fn moody_upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|request: Request| async move {
        if request.method() == http::Method::POST {
            let body = axum::body::to_bytes(request.into_body(), usize::MAX).await;
            let answer = body.map_or_else(|error| format!("broken: {error}"), |body| body.len().to_string());
            return axum::response::Response::new(Body::from(answer));
        }
        match request.headers().get("x-mode").and_then(|v| v.to_str().ok()).unwrap_or("") {
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                axum::response::Response::new(Body::from("too late"))
            }
            "stall" => {
                let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"first;"))]);
                let never = futures::stream::pending();
                axum::response::Response::new(Body::from_stream(futures::StreamExt::chain(first, never)))
            }
            "big" => axum::response::Response::new(Body::from(vec![b'x'; BIG])),
            "drip" => axum::response::Response::new(Body::from_stream(dripping(6, Duration::from_millis(100)))),
            _ => axum::response::Response::new(Body::from("ok")),
        }
    });
    common::serve(router).await
}

/// An agent enforcing the public test API, its proxy (every limit [`LIMIT`]) in front of the
/// moody upstream.
async fn proxied() -> (common::Agent, String) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 1, &jwks);
    let agent = agent(Some(&bundle), &key, Mode::Enforce, false).await;
    let timeouts = Timeouts { caller_head: LIMIT, caller_body: LIMIT, upstream: LIMIT };
    let base = common::proxy_kept(&agent, moody_upstream().await, timeouts).await;
    (agent, base)
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_gets_the_caller_a_504_and_the_next_request_a_new_connection() {
    let (agent, base) = proxied().await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client.get(format!("{base}/public")).header("x-mode", "hang").send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "upstream_timeout");
    assert!(waited >= LIMIT, "answered after {waited:?}, before the limit");

    // The same caller connection goes on; the unanswered upstream connection is not used
    // again (its late answer would be taken for this request's).
    let response = client.get(format!("{base}/public")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(agent.decider.stats.errors.load(Ordering::Relaxed), 1);
    let last_error = agent.decider.stats.last_error().unwrap_or_default();
    assert!(last_error.starts_with("upstream timed out"), "{last_error}");
    assert_eq!(records(&agent).await.len(), 2, "both requests were decided");
}

#[tokio::test]
async fn an_answer_that_stops_is_cut_off_and_one_that_keeps_coming_arrives_whole() {
    let (_agent, base) = proxied().await;
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}/public")).header("x-mode", "stall").send().await.unwrap();
    assert_eq!(response.status(), 200, "the head had come");
    let started = Instant::now();
    let body = response.bytes().await;
    assert!(body.is_err(), "the caller sees the answer break off, not a short answer: {body:?}");
    assert!(started.elapsed() >= LIMIT);

    // Six chunks 100 ms apart: 600 ms in all, twice the limit, but never 300 ms without one.
    let response = client.get(format!("{base}/public")).header("x-mode", "drip").send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;chunk 5;");
}

#[tokio::test]
async fn a_caller_that_stops_sending_its_body_gets_408_and_a_steady_upload_goes_through() {
    let (agent, base) = proxied().await;
    let head = common::send_until_closed(&base, b"POST /echo HTTP/1.1\r\nHost: agent\r\nContent-Length: 100\r\n\r\n0123456789").await;
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("\"code\":\"request_timeout\""), "{head}");
    assert_eq!(agent.decider.stats.errors.load(Ordering::Relaxed), 0, "the caller's stall is not the upstream's error");

    // Six chunks 100 ms apart: the caller never idles 300 ms, and the upstream's time to
    // answer counts from the last chunk, not from the start of the 600 ms upload.
    let upload = reqwest::Body::wrap_stream(dripping(6, Duration::from_millis(100)));
    let response = reqwest::Client::new().post(format!("{base}/echo")).body(upload).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "48", "6 × `chunk N;` reached the upstream");
}

#[tokio::test]
async fn a_caller_that_stops_taking_its_answer_loses_the_connection() {
    let (_agent, base) = proxied().await;
    let (head, mut stream) = common::raw_request(&base, "GET /public HTTP/1.1\r\nHost: agent\r\nX-Mode: big").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // The caller reads nothing for a while: the agent's writes stall once the sockets'
    // buffers are full, and it gives up on the caller.
    tokio::time::sleep(LIMIT * 5).await;
    let mut taken = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => taken += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
    assert!(taken < BIG, "the caller got only what was buffered before the agent gave up: {taken} bytes");
}
