//! The whole agent (`app::run_until`) against a stand-in control plane that checks every
//! signature: enrollment, bundle fetch and ETags, revision notices on the event stream,
//! heartbeats, decision uploads, revocation, and a restart with the control plane down.

mod common;

use agent::app::{self, Failure};
use agent::config::{Config, Mode};
use agent::control::{BundleFetch, ControlClient, ControlError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{announced, serve, signed_bundle};
use ed25519_dalek::SigningKey;
use policy::agent_api::{
    AgentStatus, BatchReceipt, DecisionRecord, EnrollRequest, EnrollResponse, RevisionNotice,
    SignedCall,
};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

const AGENT_ID: i64 = 7;

struct ControlPlane {
    bundle_key: SigningKey,
    jwks: String,
    revision: watch::Sender<i64>,
    agent_key: Mutex<Option<String>>,
    nonces: Mutex<HashSet<String>>,
    bad_calls: AtomicUsize,
    signed_calls: AtomicUsize,
    not_modified: AtomicUsize,
    revoked: AtomicBool,
    statuses: Mutex<Vec<AgentStatus>>,
    decisions: Mutex<Vec<DecisionRecord>>,
}

type Cp = Arc<ControlPlane>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

impl ControlPlane {
    /// Checks the signature and the nonce of a call; the answer to give instead, if any.
    fn refusal(
        &self,
        headers: &HeaderMap,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Option<Response> {
        let signed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(SignedCall::parse)
            .filter(|call| {
                let key = self.agent_key.lock().unwrap().clone();
                call.agent_id == AGENT_ID
                    && key.is_some_and(|key| call.verify(&key, method, path_and_query, body))
                    && (call.timestamp_millis - agent::now_millis()).abs() <= 60_000
                    && self.nonces.lock().unwrap().insert(call.nonce.clone())
            });
        if signed.is_none() {
            self.bad_calls.fetch_add(1, Ordering::SeqCst);
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "the call is not signed by this agent",
            ));
        }
        self.signed_calls.fetch_add(1, Ordering::SeqCst);
        self.revoked.load(Ordering::SeqCst).then(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "agent_revoked",
                "this agent was revoked",
            )
        })
    }

    fn bundle(&self) -> Vec<u8> {
        signed_bundle(&self.bundle_key, *self.revision.borrow() as u64, &self.jwks)
    }
}

async fn enroll(State(cp): State<Cp>, axum::Json(request): axum::Json<EnrollRequest>) -> Response {
    if request.token != "pae_good" {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_enrollment_token",
            "the enrollment token is not valid or was used",
        );
    }
    *cp.agent_key.lock().unwrap() = Some(request.public_key.clone());
    axum::Json(EnrollResponse {
        agent_id: AGENT_ID,
        name: request.name.unwrap_or_else(|| "agent-7".into()),
        labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
        trusted_keys: vec![announced(&cp.bundle_key)],
    })
    .into_response()
}

async fn bundle(State(cp): State<Cp>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(refusal) = cp.refusal(&parts.headers, "GET", parts.uri.path(), b"") {
        return refusal;
    }
    let etag = format!("\"rev-{}\"", *cp.revision.borrow());
    if parts
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        cp.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([("etag", etag)], cp.bundle()).into_response()
}

async fn events(State(cp): State<Cp>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(refusal) = cp.refusal(&parts.headers, "GET", parts.uri.path(), b"") {
        return refusal;
    }
    let stream = futures::stream::unfold(
        (cp.revision.subscribe(), true),
        |(mut revisions, first)| async move {
            if !first {
                revisions.changed().await.ok()?;
            }
            let revision = *revisions.borrow_and_update();
            let event =
                format!(": keep-alive\n\nevent: revision\ndata: {{\"revision\":{revision}}}\n\n");
            Some((Ok::<_, std::convert::Infallible>(event), (revisions, false)))
        },
    );
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn status(State(cp): State<Cp>, headers: HeaderMap, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    if let Some(refusal) = cp.refusal(&headers, "POST", &path, &body) {
        return refusal;
    }
    let status: AgentStatus = serde_json::from_slice(&body).unwrap();
    cp.statuses.lock().unwrap().push(status);
    axum::Json(RevisionNotice {
        revision: Some(*cp.revision.borrow()),
    })
    .into_response()
}

async fn decisions(State(cp): State<Cp>, headers: HeaderMap, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    if let Some(refusal) = cp.refusal(&headers, "POST", &path, &body) {
        return refusal;
    }
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["content-encoding"], "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let records: Vec<DecisionRecord> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let accepted = records.len() as u64;
    cp.decisions.lock().unwrap().extend(records);
    axum::Json(BatchReceipt {
        accepted,
        duplicates: 0,
    })
    .into_response()
}

async fn control_plane() -> (Cp, String) {
    let (revision, _) = watch::channel(1);
    let cp = Arc::new(ControlPlane {
        bundle_key: SigningKey::generate(&mut rand::rngs::OsRng),
        jwks: common::jwks_server().await,
        revision,
        agent_key: Mutex::new(None),
        nonces: Mutex::new(HashSet::new()),
        bad_calls: AtomicUsize::new(0),
        signed_calls: AtomicUsize::new(0),
        not_modified: AtomicUsize::new(0),
        revoked: AtomicBool::new(false),
        statuses: Mutex::new(Vec::new()),
        decisions: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/agents/7/bundle", get(bundle))
        .route("/agent/v1/agents/7/events", get(events))
        .route("/agent/v1/agents/7/status", post(status))
        .route("/agent/v1/agents/7/decisions", post(decisions))
        .with_state(cp.clone());
    let address = serve(router).await;
    (cp, format!("http://{address}"))
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(
    control_plane: &str,
    dir: &Path,
    token: Option<&str>,
    decision_listen: SocketAddr,
) -> Config {
    Config {
        control_plane: control_plane.parse().unwrap(),
        enroll_token: token.map(str::to_owned),
        data_dir: dir.to_owned(),
        api: common::API,
        proxy: None,
        decision_listen: Some(decision_listen),
        decision_client_certs: None,
        spool_max_bytes: agent::spool::DEFAULT_MAX_BYTES,
        timeouts: Default::default(),
        mode: Mode::Enforce,
        fail_open: false,
        name: Some("edge-1".into()),
    }
}

/// Runs the agent in the background; dropping or sending on the sender stops it.
fn start(
    config: Config,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), Failure>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app::run_until(config, async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

/// What the decision endpoint answers for `GET /public`, or `None` while it is not up.
async fn decide(address: SocketAddr) -> Option<u16> {
    let response = reqwest::Client::new()
        .get(format!("http://{address}/decide"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/public")
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

async fn eventually(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {within:?}");
}

#[tokio::test]
async fn a_refused_or_impossible_enrollment_stops_the_agent() {
    let (cp, url) = control_plane().await;
    let dir = tempfile::tempdir().unwrap();
    let refused = app::run_until(
        config(&url, dir.path(), Some("pae_bad"), free_port()),
        async {},
    )
    .await;
    match refused {
        Err(Failure::Enrollment(message)) => {
            assert!(message.contains("not valid or was used"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("identity.json").exists());
    let no_token = app::run_until(config(&url, dir.path(), None, free_port()), async {}).await;
    assert!(matches!(no_token, Err(Failure::Enrollment(_))));
    assert_eq!(cp.bad_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_agent_enrolls_follows_its_bundle_reports_and_survives_an_outage() {
    let (cp, url) = control_plane().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let (stop, running) = start(config(&url, dir.path(), Some("pae_good"), listen));

    eventually(
        "the bundle is enforced",
        Duration::from_secs(10),
        async || decide(listen).await == Some(200),
    )
    .await;
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(dir.path().join("agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("identity.json")).unwrap()).unwrap();
    assert_eq!(
        (identity["agent_id"].as_i64(), identity["name"].as_str()),
        (Some(AGENT_ID), Some("edge-1"))
    );
    assert!(dir.path().join("bundle.signed").exists() && dir.path().join("trust.json").exists());

    // A new revision reaches the agent through the event stream, well before any poll.
    eventually(
        "a heartbeat reports revision 1",
        Duration::from_secs(5),
        async || {
            cp.statuses
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.active_revision == Some(1) && s.bundle_hash.is_some())
        },
    )
    .await;
    cp.revision.send_replace(2);
    eventually(
        "revision 2 is in force",
        Duration::from_secs(5),
        async || {
            cp.statuses
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.active_revision == Some(2))
        },
    )
    .await;

    // Decisions are spooled, sealed and uploaded.
    eventually(
        "the decision reaches the control plane",
        Duration::from_secs(10),
        async || {
            cp.decisions
                .lock()
                .unwrap()
                .iter()
                .any(|d| d.path == "/public" && d.outcome == "allow")
        },
    )
    .await;
    assert_eq!(
        cp.bad_calls.load(Ordering::SeqCst),
        0,
        "every call was signed, with a fresh nonce"
    );

    // Revoked: the agent goes quiet but keeps enforcing.
    cp.revoked.store(true, Ordering::SeqCst);
    cp.revision.send_replace(3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = cp.signed_calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        cp.signed_calls.load(Ordering::SeqCst) - calls <= 1,
        "a revoked agent retries at most once a minute per loop"
    );
    assert_eq!(
        decide(listen).await,
        Some(200),
        "the last good bundle is still enforced"
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // The client on its own, with the agent's key: revocation, ETags, the heartbeat.
    let key = agent::identity::load_key(dir.path()).unwrap().unwrap();
    let client = ControlClient::new(url.parse().unwrap())
        .unwrap()
        .signed_as(key, AGENT_ID);
    assert_eq!(client.fetch_bundle(None).await, Err(ControlError::Revoked));
    cp.revoked.store(false, Ordering::SeqCst);
    let BundleFetch::Bundle { bytes, etag } = client.fetch_bundle(None).await.unwrap() else {
        panic!("no bundle")
    };
    assert_eq!(
        (bytes.is_empty(), etag.as_deref()),
        (false, Some("\"rev-3\""))
    );
    let before = cp.not_modified.load(Ordering::SeqCst);
    assert_eq!(
        client.fetch_bundle(etag.as_deref()).await,
        Ok(BundleFetch::NotModified)
    );
    assert_eq!(cp.not_modified.load(Ordering::SeqCst), before + 1);
    let notice = client
        .post_status(&AgentStatus {
            version: "test".into(),
            ..AgentStatus::default()
        })
        .await
        .unwrap();
    assert_eq!(notice.revision, Some(3));
    assert_eq!(cp.bad_calls.load(Ordering::SeqCst), 0);

    // The control plane gone: a restart serves from disk at once; a token is ignored.
    let down = format!("http://{}", free_port());
    let listen = free_port();
    let (stop, running) = start(config(&down, dir.path(), Some("pae_ignored"), listen));
    eventually(
        "the bundle on disk is enforced",
        Duration::from_secs(5),
        async || decide(listen).await == Some(200),
    )
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // A bundle changed on disk is refused: the agent fails closed.
    let path = dir.path().join("bundle.signed");
    let tampered =
        std::fs::read_to_string(&path)
            .unwrap()
            .replacen("\"/public\"", "\"/publik\"", 1);
    std::fs::write(&path, tampered).unwrap();
    let listen = free_port();
    let (stop, running) = start(config(&down, dir.path(), None, listen));
    eventually("the agent answers", Duration::from_secs(5), async || {
        decide(listen).await.is_some()
    })
    .await;
    assert_eq!(decide(listen).await, Some(503));
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}
