//! Client credentials end to end with the real binaries: `palisade serve` as the control
//! plane and `palisade-agent` in front of an upstream. An API key and an HMAC key issued in
//! the control plane are accepted by the agent within moments (the bundle re-issued, the
//! HMAC secret fetched over the agent's signed channel and pinned by the bundle); a revoked
//! key is refused within moments; restarted while the control plane is down, the agent
//! still verifies signatures from the keys it kept. On SQLite and PostgreSQL.
//!
//! Needs `target/debug/palisade-agent` beside `palisade`, as `agent_fleet.rs` does.

mod common;

use agent::signatures::{Message, sign};
use common::processes::{ControlPlane, agent_binary, free_address};
use common::*;
use http::{HeaderMap, HeaderValue};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::{Backend, Role, teams};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(control_plane: &str, token: Option<&str>, data_dir: &Path, api: i64, proxy: SocketAddr, upstream: SocketAddr) -> Running {
    let mut command = Command::new(agent_binary());
    command
        .args(["--control-plane", control_plane, "--data-dir"])
        .arg(data_dir)
        .args(["--api", &api.to_string(), "--listen", &proxy.to_string(), "--upstream", &format!("http://{upstream}")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    if let Some(token) = token {
        command.args(["--enroll-token", token]);
    }
    Running(command.spawn().unwrap())
}

async fn upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        let key = request.headers().get("x-api-key").map_or("none", |_| "leaked");
        format!("upstream saw {} {} with key {key}", request.method(), request.uri().path())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// What a caller sends: an API key, an HMAC signature, or nothing.
#[derive(Clone, Copy)]
enum Caller<'a> {
    Nobody,
    Key(&'a str),
    Signed { key_id: &'a str, secret: &'a str },
}

fn headers(caller: Caller<'_>, path: &str, created: i64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    match caller {
        Caller::Nobody => {}
        Caller::Key(key) => {
            headers.insert("x-api-key", HeaderValue::from_str(key).unwrap());
        }
        Caller::Signed { key_id, secret } => {
            let message = Message { method: "GET", target: path, headers: &headers };
            let (input, signature) = sign(&message, &["@method", "@path"], created, key_id, secret.as_bytes()).unwrap();
            headers.insert("signature-input", HeaderValue::from_str(&input).unwrap());
            headers.insert("signature", HeaderValue::from_str(&signature).unwrap());
        }
    }
    headers
}

/// Polls `path` as `caller` (a fresh signature each time) until it answers `status`; how long.
async fn until(proxy: SocketAddr, path: &str, caller: Caller<'_>, status: u16) -> Duration {
    let (client, started) = (reqwest::Client::new(), Instant::now());
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Each attempt is a new signature: a second (`created`) back per attempt, within the skew.
        let created = store::now_millis() / 1000 - (attempt % 30);
        let answer = client.get(format!("http://{proxy}{path}")).headers(headers(caller, path, created)).send().await;
        if let Ok(answer) = answer {
            let got = answer.status().as_u16();
            if got == status {
                let body = answer.text().await.unwrap();
                assert!(!body.contains("leaked"), "the API key reached the upstream: {body}");
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn issue(app: &TestApp, token: &str, client_app: i64, kind: &str, instance: &str) -> (i64, String, String) {
    let path = format!("/api/v1/client-apps/{client_app}/credentials");
    let issued = app.send(post_json(&path, token, serde_json::json!({"kind": kind, "instance": instance}))).await;
    assert_eq!(issued.status(), http::StatusCode::CREATED);
    let issued = body_json(issued).await;
    let prefix = issued["credential"]["prefix"].as_str().unwrap().to_owned();
    (issued["credential"]["id"].as_i64().unwrap(), prefix, issued["secret"].as_str().unwrap().to_owned())
}

async fn keys_and_signatures_reach_the_running_agent(backend: Backend) {
    let app = TestApp::new(backend).await;
    let work = std::env::temp_dir().join(format!("palisade-credentials-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let team = teams::create_team(&app.db, "Orders", &store::audit::AuditContext::system("test")).await.unwrap().id;
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Orders", "version": "1"},
        "paths": {"/orders/{id}": {"get": {"responses": {"200": {"description": "an order"}}}}}});
    let api = register_document(&app, &token, team.0, &document).await;
    let protection = serde_json::json!({"authentication": {"mode": "required", "methods": [
        {"type": "api_key", "header": "x-api-key"},
        {"type": "hmac", "algorithm": "hmac-sha256", "signed_components": ["@method", "@path"], "clock_skew_seconds": 60}]}});
    let mut put = post_json(&format!("/api/v1/apis/{api}/protection"), &token, protection);
    *put.method_mut() = http::Method::PUT;
    assert_eq!(app.send(put).await.status(), http::StatusCode::OK);
    let created = app.send(post_json(&format!("/api/v1/client-apps?team={}", team.0), &token, serde_json::json!({"name": "Billing", "kind": "service"}))).await;
    let client_app = body_json(created).await["id"].as_i64().unwrap();
    publish(&app, &token, draft(&app, &token, serde_json::json!({})).await).await;

    let upstream = upstream().await;
    let listen = free_address();
    let cp = ControlPlane::start(&app, &work.join("control-plane"), listen);
    let base = cp.base.clone();
    let enrollment = body_json(app.send(post_json("/api/v1/agents/enrollment-tokens", &token, serde_json::json!({}))).await).await;
    let proxy = free_address();
    let running = agent(&base, enrollment["token"].as_str(), &work.join("agent"), api, proxy, upstream);
    until(proxy, "/orders/1", Caller::Nobody, 401).await;

    // Issued in the control plane: accepted by the running agent moments later.
    let (key_id, _, key) = issue(&app, &token, client_app, "api_key", "billing-1").await;
    let took = until(proxy, "/orders/1", Caller::Key(&key), 200).await;
    eprintln!("API key issued to accepted: {took:?}");
    let (_, hmac_id, hmac_secret) = issue(&app, &token, client_app, "hmac", "billing-2").await;
    let signer = Caller::Signed { key_id: &hmac_id, secret: &hmac_secret };
    let took = until(proxy, "/orders/2", signer, 200).await;
    eprintln!("HMAC key issued to accepted (bundle and secret fetched): {took:?}");
    until(proxy, "/orders/2", Caller::Signed { key_id: &hmac_id, secret: "a guess" }, 401).await;

    // Revoked in the control plane: refused moments later.
    let revoke = http::Request::delete(format!("/api/v1/client-apps/{client_app}/credentials/{key_id}"))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.send(revoke).await.status(), http::StatusCode::OK);
    let took = until(proxy, "/orders/3", Caller::Key(&key), 401).await;
    eprintln!("API key revoked to refused: {took:?}");

    // The control plane gone and the agent restarted: the kept keys still verify.
    drop(cp);
    drop(running);
    let _running = agent(&base, None, &work.join("agent"), api, proxy, upstream);
    until(proxy, "/orders/4", signer, 200).await;
    until(proxy, "/orders/4", Caller::Key(&key), 401).await;
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_signatures_reach_the_running_agent_on_sqlite() {
    keys_and_signatures_reach_the_running_agent(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_signatures_reach_the_running_agent_on_postgres() {
    keys_and_signatures_reach_the_running_agent(Backend::Postgres).await;
}
