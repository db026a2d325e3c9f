//! Shared by the agent's integration tests: a bundle signed in the test, JWTs from the
//! fixture RSA key and a JWKS server for them, and servers on port 0.

#![allow(dead_code)]

use agent::active::Enforcer;
use agent::authn::Authenticator;
use agent::bundle_store;
use agent::config::Mode;
use agent::decide::Decider;
use agent::preface::Protocol;
use agent::limits::RateLimits;
use agent::proxy::Proxy;
use agent::timeouts::Timeouts;
use agent::spool;
use agent::status::Stats;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use policy::agent_api::DecisionRecord;
use policy::bundle::{AnnouncedKey, Bundle, header, key_id, sign};
use policy::model::{ApiInput, OperationInput};
use policy::{Snapshot, compile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const API: i64 = 1;
pub const ISSUER: &str = "https://login.example.com";
const RSA_PEM: &str = include_str!("../../../server/tests/fixtures/oidc_provider_key.pem");

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Serves `router` on 127.0.0.1, port 0, with the peer address available.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

/// An upstream that answers every request with what it received (method, target,
/// headers, body length), and counts the requests that reached it.
pub async fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .fallback(
            |State(hits): State<Arc<AtomicUsize>>, request: Request| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let (parts, body) = request.into_parts();
                let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let headers: serde_json::Map<String, Value> = parts
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or("?"))))
                    .collect();
                let answer = json!({
                    "method": parts.method.as_str(),
                    "target": parts.uri.path_and_query().map(|pq| pq.as_str()),
                    "headers": headers,
                    "body_len": body.len(),
                    "body_head": String::from_utf8_lossy(&body[..body.len().min(16)]),
                });
                (
                    [("x-upstream", "yes"), ("keep-alive", "timeout=5")],
                    axum::Json(answer),
                )
            },
        )
        .with_state(hits.clone());
    (serve(router).await, hits)
}

fn signing_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap()
}

/// A JWKS server holding the fixture key as `k1`; its URL.
pub async fn jwks_server() -> String {
    let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = JwkSet { keys: vec![jwk] };
    let router = Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(set.clone()) }),
    );
    format!("http://{}/jwks", serve(router).await)
}

/// An RS256 token from the fixture key for `sub` with `roles`.
pub fn jwt(sub: &str, roles: &[&str]) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({"iss": ISSUER, "aud": "pets", "sub": sub, "exp": unix_seconds() + 600, "roles": roles});
    jsonwebtoken::encode(&header, &claims, &signing_key()).unwrap()
}

/// An operation of the estate with `protection` as its override.
pub fn operation(id: i64, method: &str, path: &str, protection: Value) -> OperationInput {
    OperationInput {
        id,
        method: method.into(),
        path: path.into(),
        protection: serde_json::from_value(protection).unwrap(),
        response_classes: vec![],
        response_fields: Vec::new(),
        ..Default::default()
    }
}

/// The estate: public routes, an echo, JWT-protected pets, an admin route and a rate limit.
pub fn snapshot(jwks_url: &str) -> Snapshot {
    let public = json!({"authentication": {"mode": "public"}});
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Pets".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({
                "authentication": {"mode": "required", "methods": [
                    {"type": "jwt", "issuer": ISSUER, "audiences": ["pets"], "jwks_url": jwks_url, "algorithms": ["RS256"]}]},
            }))
            .unwrap(),
            operations: vec![
                operation(10, "GET", "/public", public.clone()),
                operation(11, "POST", "/echo", public.clone()),
                operation(12, "GET", "/pets/{id}", json!({})),
                operation(13, "GET", "/limited", json!({"authentication": {"mode": "public"}, "rate_limits": [{"requests": 2, "window_seconds": 60}]})),
                operation(14, "GET", "/admin", json!({"requestor": {"roles": ["admin"]}})),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::new(),
        known_classes: vec![],
        ..Default::default()
    }
}

pub fn announced(key: &SigningKey) -> AnnouncedKey {
    AnnouncedKey {
        key_id: key_id(&key.verifying_key()),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        trusted_until: None,
    }
}

/// The estate compiled and signed by `key` as `revision`.
pub fn signed_bundle(key: &SigningKey, revision: u64, jwks_url: &str) -> Vec<u8> {
    signed_snapshot(key, revision, &snapshot(jwks_url))
}

/// `estate` compiled and signed by `key` as `revision`.
pub fn signed_snapshot(key: &SigningKey, revision: u64, estate: &Snapshot) -> Vec<u8> {
    let policy = compile(estate).expect("the estate compiles");
    let header = header(
        &policy,
        revision,
        agent::now_millis(),
        &key_id(&key.verifying_key()),
        BTreeMap::new(),
    );
    sign(&Bundle { header, policy }, key)
}

pub struct Agent {
    pub decider: Arc<Decider>,
    pub spool: spool::Spool,
    _dir: tempfile::TempDir,
}

/// A decider over a bundle saved to and loaded back from a data directory, as at start.
pub async fn agent(bundle: Option<&[u8]>, key: &SigningKey, mode: Mode, fail_open: bool) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let enforcer = Arc::new(Enforcer::new(API));
    bundle_store::save_trust(dir.path(), &[announced(key)]).unwrap();
    if let Some(bytes) = bundle {
        bundle_store::save(dir.path(), bytes, &[announced(key)]).unwrap();
    }
    let loaded = bundle_store::load(dir.path(), agent::now_millis()).unwrap();
    assert_eq!(loaded.refused, None);
    if let Some(bundle) = &loaded.active.bundle {
        enforcer.install(bundle);
    }
    let spool = spool::open(dir.path(), stats.clone()).unwrap();
    let decider = Arc::new(Decider {
        enforcer,
        authn: Arc::new(Authenticator::new(reqwest::Client::new())),
        limits: RateLimits::default(),
        mode,
        fail_open,
        stats,
        log: spool.log.clone(),
        record_ids: Default::default(),
        keyring: Arc::new(agent::signatures::Keyring::in_memory()),
        replay: Default::default(),
    });
    Agent {
        decider,
        spool,
        _dir: dir,
    }
}

/// A decision endpoint served as the agent serves it (`connections::serve_router`); its
/// address.
pub async fn serve_decisions(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Never stopped: the test's runtime ends it.
    let (keep, never) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        agent::connections::serve_router(agent::connections::no_delay(listener), router, never, Timeouts::default().caller_head).await;
        drop(keep);
    });
    address
}

/// The agent's proxy in front of `upstream`, served as the agent serves it, never stopped
/// (the test's runtime ends it); its base URL.
pub async fn proxy_for(agent: &Agent, upstream: SocketAddr) -> String {
    proxy_kept(agent, upstream, Timeouts::default()).await
}

/// As [`proxy_for`], with `timeouts`.
pub async fn proxy_kept(agent: &Agent, upstream: SocketAddr, timeouts: Timeouts) -> String {
    proxy_speaking(agent, upstream, Protocol::Http1, timeouts).await
}

/// As [`proxy_kept`], speaking `protocol` to the upstream.
pub async fn proxy_speaking(agent: &Agent, upstream: SocketAddr, protocol: Protocol, timeouts: Timeouts) -> String {
    let (base, stop, serving) = proxy_with(agent, upstream, protocol, timeouts).await;
    // A dropped switch would stop it: kept while it serves.
    tokio::spawn(async move {
        let _ = serving.await;
        drop(stop);
    });
    base
}

/// The agent's proxy in front of `upstream`, spoken to in `protocol`, with `timeouts`: its
/// base URL, its stop switch and the serving task.
pub async fn proxy_with(agent: &Agent, upstream: SocketAddr, protocol: Protocol, timeouts: Timeouts) -> (String, tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let url = format!("http://{upstream}").parse().unwrap();
    let proxy = Proxy::new(agent.decider.clone(), &url, protocol, timeouts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(agent::connections::serve(agent::connections::no_delay(listener), Arc::new(proxy), stopped));
    (format!("http://{address}"), stop, serving)
}

/// The records the agent spooled, once sealed.
pub async fn records(agent: &Agent) -> Vec<DecisionRecord> {
    let log = agent.spool.log.clone();
    tokio::task::spawn_blocking(move || log.seal_now())
        .await
        .unwrap();
    let mut found = Vec::new();
    for (_, path) in spool::batches(&agent.spool.dir).unwrap() {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            found.push(serde_json::from_str(line).unwrap());
        }
    }
    found
}

/// Sends `head` (a request's head, `\r\n`-separated, without the blank line) over a new
/// connection to `base` (`http://host:port`) and reads the answer's head: what a WebSocket
/// client does before the connection becomes its own. The head in lower case, and the
/// connection.
pub async fn raw_request(base: &str, head: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the answer's head ended early: {:?}", String::from_utf8_lossy(&answer));
        answer.push(byte[0]);
    }
    (String::from_utf8(answer).unwrap().to_ascii_lowercase(), stream)
}

/// Sends `sent` (a request, perhaps unfinished) over a new connection to `base` and reads
/// until the agent closes it: what came back, in lower case. Fails if the connection is
/// still open after 20 s (a bound against a hung test, far above what is expected).
pub async fn send_until_closed(base: &str, sent: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed after the answer");
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}
