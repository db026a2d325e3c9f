//! The loop end to end with the real binaries: `palisade serve` as the control plane,
//! `palisade-agent` as a reverse proxy and a gateway decision endpoint in front of an
//! upstream it did not write, JWTs signed with an RSA key. A publish is enforced on the
//! next requests; then the control plane is stopped (SIGSTOP) and killed (SIGKILL) while
//! traffic flows, the agent is restarted during the outage and serves from disk, a
//! tampered bundle on disk is refused (fail closed), and once the control plane is back
//! every decision made meanwhile has been delivered: none lost. On SQLite and PostgreSQL.
//!
//! Needs `target/debug/palisade-agent` beside `palisade`: `cargo nextest run` (the README's
//! test command) builds every binary of the workspace first.

mod common;

use common::processes::{ControlPlane, agent_binary, free_address, signal};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::{Backend, Role, teams};

const ISSUER: &str = "https://issuer.palisade.test";
const PROVIDER_KEY: &str = include_str!("fixtures/oidc_provider_key.pem");
const IMPOSTOR_KEY: &str = include_str!("fixtures/oidc_impostor_key.pem");

struct Agent {
    child: Child,
}

impl Agent {
    fn start(control_plane: &str, token: Option<&str>, data_dir: &Path, api: i64, proxy: SocketAddr, decide: SocketAddr, upstream: SocketAddr) -> Agent {
        let mut command = Command::new(agent_binary());
        command
            .args(["--control-plane", control_plane, "--data-dir"])
            .arg(data_dir)
            .args(["--api", &api.to_string(), "--listen", &proxy.to_string(), "--upstream", &format!("http://{upstream}")])
            .args(["--decision-listen", &decide.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null());
        if let Some(token) = token {
            command.args(["--enroll-token", token]);
        }
        Agent { child: command.spawn().unwrap() }
    }

    /// A clean stop (SIGTERM): the agent seals its decision spool.
    fn stop(mut self) {
        signal(&self.child, "TERM");
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn jwt(key_pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = serde_json::json!({"iss": ISSUER, "aud": "pets", "sub": "alice", "exp": exp});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap()).unwrap()
}

/// The provider's public key as a JWK, for the protection's static keys.
fn provider_jwk() -> String {
    let key = EncodingKey::from_rsa_pem(PROVIDER_KEY.as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    serde_json::to_string(&jwk).unwrap()
}

/// Counts what the traffic saw and how many decisions the agent must have made.
struct Traffic {
    client: reqwest::Client,
    proxy: SocketAddr,
    decide: SocketAddr,
    decisions: u64,
}

impl Traffic {
    /// A request through the proxy: its status and body.
    async fn get(&mut self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(format!("http://{}{path}", self.proxy));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the agent answers");
        self.decisions += 1;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// nginx's `auth_request` call for a request: the decision endpoint's status.
    async fn decide(&mut self, method: &str, uri: &str, token: Option<&str>) -> u16 {
        let mut request = self
            .client
            .get(format!("http://{}/decide", self.decide))
            .header("X-Original-Method", method)
            .header("X-Original-URI", uri)
            .header("X-Real-IP", "203.0.113.9");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let status = request.send().await.expect("the decision endpoint answers").status().as_u16();
        self.decisions += 1;
        status
    }

    /// Waits until a request to `path` answers `status` (polling every 20 ms); how long.
    async fn until(&mut self, path: &str, token: Option<&str>, status: u16, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let mut request = self.client.get(format!("http://{}{path}", self.proxy));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Ok(response) = request.send().await {
                self.decisions += 1;
                if response.status().as_u16() == status {
                    return started.elapsed();
                }
            }
            assert!(started.elapsed() < within, "{path} never answered {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn upstream() -> SocketAddr {
    let router = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        format!("upstream saw {} {}", request.method(), request.uri().path())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

async fn register_api(app: &TestApp, token: &str, team: i64) -> i64 {
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Fleet pets", "version": "1"}, "paths": {
        "/pets/{id}": {"get": {"responses": {"200": {"description": "a pet"}}}},
        "/health": {"get": {"responses": {"200": {"description": "up"}}}},
    }});
    let request = http::Request::post(format!("/api/v1/apis?team={team}"))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&document).unwrap()))
        .unwrap();
    let response = app.send(request).await;
    assert_eq!(response.status(), http::StatusCode::CREATED);
    body_json(response).await["id"].as_i64().unwrap()
}

async fn protect(app: &TestApp, token: &str, api: i64, protection: serde_json::Value) {
    let mut request = post_json(&format!("/api/v1/apis/{api}/protection"), token, protection);
    *request.method_mut() = http::Method::PUT;
    let response = app.send(request).await;
    assert_eq!(response.status(), http::StatusCode::OK, "{}", body_text(response).await);
}

async fn publish_now(app: &TestApp, token: &str) -> Instant {
    let revision = draft(app, token, serde_json::json!({})).await;
    let published = Instant::now();
    publish(app, token, revision).await;
    published
}

async fn wait_for_decisions(app: &TestApp, agent_id: i64, expected: u64) {
    let started = Instant::now();
    loop {
        let stored = store::agent_reports::count_decisions(&app.db, agent_id).await.unwrap() as u64;
        if stored == expected {
            eprintln!("all {expected} decisions delivered {:?} after the control plane came back", started.elapsed());
            return;
        }
        assert!(stored < expected, "more decisions stored ({stored}) than made ({expected})");
        assert!(started.elapsed() < Duration::from_secs(90), "only {stored} of {expected} decisions arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn the_loop_survives_outages_restarts_and_tampering(backend: Backend) {
    let app = TestApp::new(backend).await;
    let work = std::env::temp_dir().join(format!("palisade-fleet-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (cp_dir, agent_dir) = (work.join("control-plane"), work.join("agent"));
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let team = teams::create_team(&app.db, "Fleet", &store::audit::AuditContext::system("test")).await.unwrap().id;
    let api = register_api(&app, &token, team.0).await;
    protect(&app, &token, api, serde_json::json!({"authentication": {"mode": "public"}})).await;
    publish_now(&app, &token).await;

    let upstream = upstream().await;
    let listen = free_address();
    let control_plane = ControlPlane::start(&app, &cp_dir, listen);
    let base = control_plane.base.clone();
    let created = app.send(post_json("/api/v1/agents/enrollment-tokens", &token, serde_json::json!({"labels": {"env": "test"}}))).await;
    let enrollment = body_json(created).await["token"].as_str().unwrap().to_owned();
    let (proxy, decide) = (free_address(), free_address());
    let agent = Agent::start(&control_plane.base, Some(&enrollment), &agent_dir, api, proxy, decide, upstream);
    let mut traffic = Traffic { client: reqwest::Client::new(), proxy, decide, decisions: 0 };

    // Enrolled, the public revision active: requests reach the upstream.
    let mut waited = Instant::now();
    while reqwest::get(format!("http://{proxy}/pets/1")).await.is_err() {
        assert!(waited.elapsed() < Duration::from_secs(30), "the agent never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    traffic.decisions += 1;
    traffic.until("/pets/1", None, 200, Duration::from_secs(30)).await;
    assert_eq!(traffic.get("/pets/7", None).await, (200, "upstream saw GET /pets/7".into()));
    let (status, problem) = traffic.get("/admin/users", None).await;
    assert_eq!(status, 404, "a route no API declares is denied");
    assert!(problem.contains("undeclared_route") && !problem.contains("upstream saw"), "{problem}");
    let agent_id = store::agents::list_agents(&app.db).await.unwrap()[0].id;

    // A publish that requires a JWT on /pets/{id}: the next requests are decided by it.
    let jwt_required = serde_json::json!({"authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": ISSUER,
        "audiences": ["pets"], "static_keys": [provider_jwk()], "algorithms": ["RS256"]}]}});
    protect(&app, &token, api, jwt_required).await;
    let published = publish_now(&app, &token).await;
    traffic.until("/pets/1", None, 401, Duration::from_secs(10)).await;
    eprintln!("publish to enforced: {:?}", published.elapsed());
    let (good, impostor) = (jwt(PROVIDER_KEY), jwt(IMPOSTOR_KEY));
    assert_eq!(traffic.get("/pets/1", Some(&good)).await.0, 200);
    assert_eq!(traffic.get("/pets/1", Some(&impostor)).await.0, 401);
    assert_eq!(traffic.get("/pets/1", Some("not.a.jwt")).await.0, 401);
    assert_eq!(traffic.decide("GET", "/pets/2", None).await, 401);
    assert_eq!(traffic.decide("GET", "/pets/2?x=1", Some(&good)).await, 200);
    assert_eq!(traffic.decide("DELETE", "/pets/2", Some(&good)).await, 404);

    // Stopped, then killed, while traffic flows: the agent keeps enforcing.
    signal(&control_plane.child, "STOP");
    for _ in 0..20 {
        assert_eq!(traffic.get("/pets/3", Some(&good)).await.0, 200);
        assert_eq!(traffic.get("/pets/3", None).await.0, 401);
    }
    signal(&control_plane.child, "CONT");
    control_plane.kill();
    for _ in 0..20 {
        assert_eq!(traffic.get("/pets/4", Some(&good)).await.0, 200);
        assert_eq!(traffic.decide("GET", "/pets/4", None).await, 401);
    }

    // Restarted during the outage: it enforces from the bundle on disk.
    agent.stop();
    let restarted = Instant::now();
    let agent = Agent::start(&base, None, &agent_dir, api, proxy, decide, upstream);
    waited = Instant::now();
    while reqwest::get(format!("http://{proxy}/pets/1")).await.is_err() {
        assert!(waited.elapsed() < Duration::from_secs(30), "the restarted agent never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    traffic.decisions += 1;
    traffic.until("/pets/5", Some(&good), 200, Duration::from_secs(30)).await;
    eprintln!("restarted during the outage, serving from disk after {:?}", restarted.elapsed());
    assert_eq!(traffic.get("/pets/5", None).await.0, 401, "still the JWT revision");

    // A bundle tampered with on disk is refused at start: every request is refused.
    agent.stop();
    let bundle_file = agent_dir.join("bundle.signed");
    let mut bytes = std::fs::read(&bundle_file).unwrap();
    // The attacker points the policy at their own issuer: same length, signature broken.
    let at = bytes.windows(15).position(|w| w == b"issuer.palisade").expect("the issuer is in the bundle");
    bytes[at..at + 15].copy_from_slice(b"issuer.attacker");
    std::fs::write(&bundle_file, &bytes).unwrap();
    let agent = Agent::start(&base, None, &agent_dir, api, proxy, decide, upstream);
    traffic.until("/pets/6", Some(&good), 503, Duration::from_secs(30)).await;
    let (status, problem) = traffic.get("/pets/6", Some(&good)).await;
    assert_eq!(status, 503);
    assert!(problem.contains("no_verified_bundle"), "{problem}");
    agent.stop();

    // The control plane back: the agent fetches a good bundle again, and every decision
    // made through the outage, the restarts and the refusal arrives exactly once.
    let control_plane = ControlPlane::start(&app, &cp_dir, listen);
    let agent = Agent::start(&control_plane.base, None, &agent_dir, api, proxy, decide, upstream);
    traffic.until("/pets/8", Some(&good), 200, Duration::from_secs(30)).await;
    assert_eq!(traffic.get("/pets/8", None).await.0, 401);
    wait_for_decisions(&app, agent_id, traffic.decisions).await;
    // Its heartbeat reports the revision meant for it: no drift.
    waited = Instant::now();
    loop {
        let fleet = store::agent_reports::fleet(&app.db, store::now_millis()).await.unwrap();
        if fleet[0].agent.status.is_some() && !fleet[0].drifted() {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(30), "the agent never reported its revision: {fleet:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop();
    drop(control_plane);
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_survives_outages_restarts_and_tampering_on_sqlite() {
    the_loop_survives_outages_restarts_and_tampering(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_survives_outages_restarts_and_tampering_on_postgres() {
    the_loop_survives_outages_restarts_and_tampering(Backend::Postgres).await;
}
