//! HTTP/2 through the proxy: callers in HTTP/2 (prior knowledge here; over TLS by ALPN in
//! `mtls.rs`) are decided stream by stream beside HTTP/1.1 callers on the same listener,
//! and an upstream spoken to in HTTP/2 takes every caller's requests over one connection,
//! with gRPC's `te: trailers` and its trailers passed through and a stream it leaves
//! unanswered given up on its own.

mod common;

use agent::config::Mode;
use agent::preface::Protocol;
use agent::timeouts::Timeouts;
use axum::body::Bytes;
use axum::extract::Request;
use common::{agent, jwks_server, records, signed_bundle};
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An HTTP/1.1 upstream that answers which HTTP reached it, and a POST with its body's length.
async fn http1_upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|request: Request| async move {
        let version = format!("{:?}", request.version());
        if request.method() == http::Method::POST {
            let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
            return format!("{version} {}", body.len());
        }
        version
    });
    common::serve(router).await
}

/// An upstream that speaks only HTTP/2 (prior knowledge), counting the connections made
/// to it. It answers what reached it (HTTP version, `te`, `host`) with a gRPC status in
/// trailers; a request with `x-mode` is never answered.
async fn http2_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                if request.headers().contains_key("x-mode") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                let seen = format!("{:?} te={:?} host={:?} authority={:?}", request.version(), header("te"), header("host"), request.uri().authority().map(|a| a.to_string()));
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let frames = futures::stream::iter([Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(seen))), Ok(hyper::body::Frame::trailers(trailers))]);
                Ok::<_, Infallible>(http::Response::new(http_body_util::StreamBody::new(frames)))
            });
            tokio::spawn(hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service));
        }
    });
    (address, connections)
}

/// An agent enforcing the common test API (`/public`, `/echo`, JWT-protected `/pets/{id}`).
async fn enforcing() -> common::Agent {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let bundle = signed_bundle(&key, 1, &jwks_server().await);
    agent(Some(&bundle), &key, Mode::Enforce, false).await
}

#[tokio::test]
async fn http2_callers_are_decided_stream_by_stream_beside_http1_callers() {
    let agent = enforcing().await;
    let base = common::proxy_for(&agent, http1_upstream().await).await;
    let http2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();

    // Twenty streams at once on one connection, each its own decision, each forwarded
    // over HTTP/1.1 (the caller connection's own pool).
    let answers = futures::future::join_all((0..20).map(|_| http2.get(format!("{base}/public")).send())).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.version(), http::Version::HTTP_2);
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "HTTP/1.1");
    }
    let posted = http2.post(format!("{base}/echo")).body(vec![b'x'; 100_000]).send().await.unwrap();
    assert_eq!(posted.text().await.unwrap(), "HTTP/1.1 100000");

    // Refused as over HTTP/1.1: a problem, and nothing forwarded.
    let refused = http2.get(format!("{base}/pets/1")).send().await.unwrap();
    assert_eq!((refused.version(), refused.status().as_u16()), (http::Version::HTTP_2, 401));
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let unknown = http2.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    // An HTTP/1.1 caller on the same listener is served as ever.
    let http1 = reqwest::Client::new().get(format!("{base}/public")).send().await.unwrap();
    assert_eq!((http1.version(), http1.text().await.unwrap()), (http::Version::HTTP_11, "HTTP/1.1".to_owned()));

    let records = records(&agent).await;
    assert_eq!(records.len(), 24, "every stream decided once");
    assert_eq!(records.iter().filter(|r| r.outcome == "allow").count(), 22);
}

#[tokio::test]
async fn an_http2_upstream_takes_every_caller_over_one_connection_with_trailers() {
    let agent = enforcing().await;
    let (upstream, connections) = http2_upstream().await;
    let limit = Duration::from_millis(300);
    let timeouts = Timeouts { upstream: limit, ..Timeouts::default() };
    let base = common::proxy_speaking(&agent, upstream, Protocol::Http2, timeouts).await;
    let authority = format!("{upstream}");

    // HTTP/1.1 callers, on connections of their own, share the upstream's one connection,
    // which is given the `Host` as `:authority`; `TE: trailers` (a caller that reads
    // trailers) goes on as HTTP/2 allows it, and no other `TE`.
    for te in [None, Some("trailers"), Some("gzip")] {
        let mut request = reqwest::Client::new().get(format!("{base}/public"));
        if let Some(te) = te {
            request = request.header("te", te).header("connection", "te");
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let passed = if te == Some("trailers") { "Some(\"trailers\")" } else { "None" };
        assert_eq!(answer.text().await.unwrap(), format!("HTTP/2.0 te={passed} host=None authority=Some({authority:?})"));
    }

    // An HTTP/2 caller as gRPC is one: `te: trailers` goes through, and so do the trailers.
    let tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("{base}/public")).header("te", "trailers").body(Empty::<Bytes>::new()).unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    let whole = answer.into_body().collect().await.unwrap();
    assert_eq!(whole.trailers().map(|t| t["grpc-status"].clone()), Some(http::HeaderValue::from_static("0")));
    assert_eq!(whole.to_bytes(), format!("HTTP/2.0 te=Some(\"trailers\") host=None authority=Some({authority:?})"));

    // A stream the upstream leaves unanswered is given up (504) while another goes on.
    let http = reqwest::Client::new();
    let (late, meanwhile) = tokio::join!(http.get(format!("{base}/public")).header("x-mode", "hang").send(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        http.get(format!("{base}/public")).send().await
    });
    let late = late.unwrap();
    assert_eq!(late.status(), 504);
    assert_eq!(late.json::<serde_json::Value>().await.unwrap()["code"], "upstream_timeout");
    assert_eq!(meanwhile.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/public")).send().await.unwrap().status(), 200, "after the reset");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one upstream connection for every caller");
    assert_eq!(agent.decider.stats.errors.load(Ordering::Relaxed), 1);
}
