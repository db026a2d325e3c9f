//! The agent's listeners as it serves them: the proxy's caller connections, with bodies
//! streamed both ways over the connection's own upstream connection (large, and slow), a
//! time limit on a request's head (slowloris) and on idleness, and a graceful stop; the
//! decision endpoint with the same limit and stop.

mod common;

use agent::config::Mode;
use agent::connections;
use agent::timeouts::Timeouts;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use common::{agent, records, signed_bundle};
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A large answer: 8 MiB of a pattern that shows a byte lost or moved.
fn big_answer() -> Vec<u8> {
    (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// An upstream that streams a POST's body back as it comes, and answers a GET by its
/// `x-mode`: `big` (8 MiB), `slow` (five chunks 30 ms apart), `wait` (after 600 ms).
async fn streaming_upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|request: Request| async move {
        if request.method() == http::Method::POST {
            return axum::response::Response::new(request.into_body());
        }
        let mode = request.headers().get("x-mode").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        match mode.as_str() {
            "big" => axum::response::Response::new(Body::from(big_answer())),
            "slow" => {
                let chunks = futures::stream::unfold(0u8, |sent| async move {
                    if sent == 5 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Some((Ok::<_, std::io::Error>(Bytes::from(format!("chunk {sent};"))), sent + 1))
                });
                axum::response::Response::new(Body::from_stream(chunks))
            }
            "wait" => {
                tokio::time::sleep(Duration::from_millis(600)).await;
                axum::response::Response::new(Body::from("done"))
            }
            _ => axum::response::Response::new(Body::from("ok")),
        }
    });
    common::serve(router).await
}

/// The agent's proxy in front of `upstream`, a caller having `head_timeout` for a head.
async fn proxy(agent: &common::Agent, upstream: SocketAddr, head_timeout: Duration) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    common::proxy_with(agent, upstream, agent::preface::Protocol::Http1, Timeouts { caller_head: head_timeout, ..Timeouts::default() }).await
}

async fn enforcing_agent() -> common::Agent {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let jwks = common::jwks_server().await;
    let bundle = signed_bundle(&key, 1, &jwks);
    agent(Some(&bundle), &key, Mode::Enforce, false).await
}

#[tokio::test]
async fn bodies_stream_both_ways_over_the_connections_own_upstream_connection() {
    let agent = enforcing_agent().await;
    let (base, _stop, _serving) = proxy(&agent, streaming_upstream().await, Timeouts::default().caller_head).await;
    // One client, so one caller connection: every exchange below reuses it and its
    // upstream connection.
    let client = reqwest::Client::new();
    let expected = big_answer();
    for _ in 0..2 {
        let response = client.get(format!("{base}/public")).header("x-mode", "big").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert!(body[..] == expected[..], "8 MiB came back as {} bytes, or changed", body.len());

        let upload: Vec<u8> = expected.iter().rev().copied().collect();
        let response = client.post(format!("{base}/echo")).body(upload.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.bytes().await.unwrap();
        assert!(echoed[..] == upload[..], "an 8 MiB upload came back as {} bytes, or changed", echoed.len());

        // An answer whose parts come slowly: each reaches the caller as the upstream sends it.
        let response = client.get(format!("{base}/public")).header("x-mode", "slow").send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;");

        let response = client.get(format!("{base}/public")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(records(&agent).await.len(), 8);
}

/// Reads until the connection ends; what was read, or `None` if nothing ended it within
/// `guard` (a bound against a hung test, far above what is expected).
async fn read_to_close(stream: &mut tokio::net::TcpStream, guard: Duration) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let ended = tokio::time::timeout(guard, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    ended.ok().map(|()| read)
}

#[tokio::test]
async fn a_caller_that_trickles_its_head_or_idles_loses_the_connection() {
    let agent = enforcing_agent().await;
    let (base, _stop, _serving) = proxy(&agent, streaming_upstream().await, Duration::from_millis(300)).await;
    let address = base.trim_start_matches("http://");

    // Slowloris: a head begun and never finished, a byte at a time.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /public HTTP/1.1\r\nHost: agent\r\n").await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = slow.write_all(b"X").await;
    }
    let read = read_to_close(&mut slow, Duration::from_secs(20)).await.expect("the trickling caller is cut off");
    assert!(read.is_empty(), "no answer is made to a head never finished: {:?}", String::from_utf8_lossy(&read));

    // A caller that sends one request and then nothing is closed after the same time.
    let (head, mut idle) = common::raw_request(&base, "GET /public HTTP/1.1\r\nHost: agent").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let rest = read_to_close(&mut idle, Duration::from_secs(20)).await.expect("the idle connection is closed");
    assert_eq!(rest, b"ok");

    // Meanwhile others are served, and the unfinished head left no decision.
    assert_eq!(reqwest::get(format!("{base}/public")).await.unwrap().text().await.unwrap(), "ok");
    let records = records(&agent).await;
    assert_eq!(records.len(), 2, "one record each for the two complete requests");
}

#[tokio::test]
async fn a_stop_lets_the_request_under_way_finish_and_takes_no_new_connections() {
    let agent = enforcing_agent().await;
    let (base, stop, serving) = proxy(&agent, streaming_upstream().await, Timeouts::default().caller_head).await;
    let idle = reqwest::Client::new();
    assert_eq!(idle.get(format!("{base}/public")).send().await.unwrap().status(), 200);

    let under_way = {
        let base = base.clone();
        tokio::spawn(async move { reqwest::Client::new().get(format!("{base}/public")).header("x-mode", "wait").send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    assert_eq!(under_way.await.unwrap(), "done", "the request under way is answered");
    // Every connection closes (the idle keep-alive one too) and serving ends.
    tokio::time::timeout(Duration::from_secs(20), serving).await.expect("serving ends once the connections have closed").unwrap();
    let refused = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "no connection is taken after the stop");
}

#[tokio::test]
async fn the_decision_endpoint_has_the_same_head_limit_and_graceful_stop() {
    let agent = enforcing_agent().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let router = agent::proxy::decision_router(agent.decider.clone(), None);
    let serving = tokio::spawn(connections::serve_router(connections::no_delay(listener), router, stopped, Duration::from_millis(300)));
    let base = format!("http://{address}");

    // Decided, with the connection's own address when the gateway sends no X-Real-IP.
    let gateway = reqwest::Client::new();
    let decided = gateway.get(format!("{base}/decide")).header("x-original-method", "GET").header("x-original-uri", "/public").send().await.unwrap();
    assert_eq!(decided.status(), 200);

    // A trickled head is cut off without an answer or a decision.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /decide HTTP/1.1\r\nX-Original-Method: GET\r\n").await.unwrap();
    let read = read_to_close(&mut slow, Duration::from_secs(20)).await.expect("the trickling caller is cut off");
    assert!(read.is_empty(), "{:?}", String::from_utf8_lossy(&read));

    // A stop closes the gateway's idle keep-alive connection, ends serving, and takes no
    // new connection.
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), serving).await.expect("serving ends once the connections have closed").unwrap();
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "no connection is taken after the stop");

    let records = records(&agent).await;
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].path.as_str(), records[0].source.as_str()), ("/public", "127.0.0.1"));
}
