//! Publish → active on a fleet of simulated agents (BENCHMARKS.md, "Agents").
//!
//! The control plane runs in this process (`server::router` on SQLite, served on a real
//! TCP port with `axum::serve`, as `palisade serve` does). N agents (default 1,000;
//! `FANOUT_AGENTS`) enroll over HTTP with their own Ed25519 keys and each holds its event
//! stream (`GET /agent/v1/agents/{id}/events`, signed). Then a bundle is published through
//! REST, and for every agent the time is taken from the publish request until it has
//! received the notice, downloaded the bundle (signed call) and verified and accepted it
//! (`policy::bundle::Active::accept` with the keys given at enrollment). The baseline,
//! in the same run: one agent alone doing the same after a publish.
//!
//! `cargo bench -p server --bench agent_fanout`. The agents share the process and its two
//! cores with the control plane: every agent's signature and bundle verification is
//! done here too, which real agents would do on their own machines.

use app::state::{AppState, AuthSettings};
use ed25519_dalek::SigningKey;
use leptos::config::LeptosOptions;
use policy::agent_api::SignedCall;
use policy::bundle::{Active, AnnouncedKey, TrustStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::audit::AuditContext;
use store::passwords::Passwords;
use store::testing::TestDb;
use store::{Backend, Role};
use tokio::sync::watch;

struct SimAgent {
    id: i64,
    key: SigningKey,
    trusted: Vec<AnnouncedKey>,
}

fn signed(client: &reqwest::Client, base: &str, agent: &SimAgent, path: &str) -> reqwest::RequestBuilder {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let call = SignedCall::sign(&agent.key, agent.id, "GET", path, store::now_millis(), &nonce, b"");
    client.get(format!("{base}{path}")).header(http::header::AUTHORIZATION, call.header())
}

/// Reads server-sent events until one named `revision` carries `wanted` (or any revision
/// when `wanted` is `None`); returns that revision.
async fn next_revision(response: &mut reqwest::Response, buffer: &mut String, wanted: Option<i64>) -> Option<i64> {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|line| line.strip_prefix(name)).map(|v| v.trim().to_owned());
            if field("event:").as_deref() == Some("revision") {
                let data: serde_json::Value = serde_json::from_str(&field("data:").unwrap_or_default()).ok()?;
                let revision = data["revision"].as_i64();
                if wanted.is_none() || revision == wanted {
                    return revision.or(Some(0));
                }
            }
        }
        let chunk = response.chunk().await.ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn json_call(client: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: serde_json::Value) -> serde_json::Value {
    let response = client
        .request(method, &url)
        .bearer_auth(token)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Makes a draft and publishes it; the instant the publish request was sent and the revision.
async fn publish(client: &reqwest::Client, base: &str, token: &str) -> (Instant, i64) {
    let draft = json_call(client, reqwest::Method::POST, format!("{base}/api/v1/bundles"), token, serde_json::json!({"target": {}})).await;
    let revision = draft["bundle"]["revision"].as_i64().unwrap();
    let started = Instant::now();
    json_call(client, reqwest::Method::POST, format!("{base}/api/v1/bundles/{revision}/publish"), token, serde_json::json!({"reason": "fan-out"})).await;
    (started, revision)
}

/// When one agent got there, counted from the publish request.
struct Stages {
    notice: Duration,
    downloaded: Duration,
    active: Duration,
    /// CPU time of the verification alone.
    verifying: Duration,
}

/// Follows one agent from its open stream to its bundle in force.
async fn follow(
    client: reqwest::Client,
    base: String,
    agent: Arc<SimAgent>,
    mut response: reqwest::Response,
    mut buffer: String,
    mut published: watch::Receiver<Option<(Instant, i64)>>,
) -> Stages {
    let (started, revision) = published.wait_for(Option::is_some).await.unwrap().unwrap();
    let got = next_revision(&mut response, &mut buffer, Some(revision)).await;
    assert_eq!(got, Some(revision), "agent {} missed the notice", agent.id);
    let notice = started.elapsed();
    let path = format!("/agent/v1/agents/{}/bundle", agent.id);
    let fetched = signed(&client, &base, &agent, &path).send().await.unwrap();
    assert_eq!(fetched.status(), 200, "agent {}", agent.id);
    let bytes = fetched.bytes().await.unwrap();
    let downloaded = started.elapsed();
    // As the agent does: verification is CPU work, off the async workers.
    let trusted = agent.trusted.clone();
    let verifying = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let mut active = Active::new(TrustStore::from_announced(&trusted).unwrap());
        let accepted = active.accept(&bytes, store::now_millis()).expect("the bundle verifies").header.revision;
        assert_eq!(accepted, revision as u64);
        began.elapsed()
    })
    .await
    .unwrap();
    Stages { notice, downloaded, active: started.elapsed(), verifying }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let agents: usize = std::env::var("FANOUT_AGENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000);

    let database = TestDb::new(Backend::Sqlite).await;
    let db = database.db.clone();
    let (master, _) = store::signing::MasterKey::generate();
    let state = AppState {
        db: db.clone(),
        passwords: Passwords::new().unwrap(),
        leptos_options: LeptosOptions::builder().output_name("palisade").site_root("target/site").build(),
        auth: Arc::new(AuthSettings { mfa_required_roles: Vec::new(), ..AuthSettings::default() }),
        master: Arc::new(master),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = server::router(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });

    let system = AuditContext::system("bench");
    let account = store::accounts::create_account(
        &db,
        store::accounts::NewAccount { email: "bench@example.com".into(), display_name: String::new(), role: Role::Security, team_ids: Vec::new(), password_hash: None },
        &system,
    )
    .await
    .unwrap();
    let token = store::tokens::create_token(&db, account.id, "bench", None, &system).await.unwrap().1;
    // One connection per event stream, and as many again for the bundle downloads.
    let client = reqwest::Client::builder().pool_max_idle_per_host(2 * agents + 16).build().unwrap();

    // A small API so the bundle is not empty.
    let team = store::teams::create_team(&db, "Fan-out", &system).await.unwrap().id;
    let paths: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| (format!("/resource-{i}/{{id}}"), serde_json::json!({"get": {"responses": {"200": {"description": "ok"}}}})))
        .collect();
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Fan-out", "version": "1"}, "paths": paths});
    let api = json_call(&client, reqwest::Method::POST, format!("{base}/api/v1/apis?team={}", team.0), &token, document).await["id"].as_i64().unwrap();
    json_call(&client, reqwest::Method::PUT, format!("{base}/api/v1/apis/{api}/protection"), &token, serde_json::json!({"authentication": {"mode": "public"}})).await;

    let enroll = |labels: serde_json::Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let created = json_call(&client, reqwest::Method::POST, format!("{base}/api/v1/agents/enrollment-tokens"), &token, serde_json::json!({"labels": labels})).await;
            let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let body = serde_json::json!({"token": created["token"], "public_key": hex::encode(key.verifying_key().to_bytes()), "version": "bench"});
            let enrolled = client
                .post(format!("{base}/agent/v1/enroll"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(enrolled.status(), 201);
            let enrolled: serde_json::Value = serde_json::from_str(&enrolled.text().await.unwrap()).unwrap();
            Arc::new(SimAgent { id: enrolled["agent_id"].as_i64().unwrap(), key, trusted: serde_json::from_value(enrolled["trusted_keys"].clone()).unwrap() })
        }
    };
    let open = |agent: Arc<SimAgent>| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut response = signed(&client, &base, &agent, &format!("/agent/v1/agents/{}/events", agent.id)).send().await.unwrap();
            assert_eq!(response.status(), 200, "agent {}", agent.id);
            let mut buffer = String::new();
            next_revision(&mut response, &mut buffer, None).await.expect("the first notice");
            (agent, response, buffer)
        }
    };

    // Baseline: one agent alone.
    let lone = open(enroll(serde_json::json!({"fleet": "alone"})).await).await;
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(follow(client.clone(), base.clone(), lone.0, lone.1, lone.2, rx));
    tx.send(Some(publish(&client, &base, &token).await)).unwrap();
    let alone = task.await.unwrap().active;

    // The fleet: enrolled one after another, streams opened 50 at a time.
    let started = Instant::now();
    let mut fleet = Vec::with_capacity(agents);
    for _ in 0..agents {
        fleet.push(enroll(serde_json::json!({"fleet": "bench"})).await);
    }
    eprintln!("{agents} agents enrolled in {:?}", started.elapsed());
    let started = Instant::now();
    let mut streams = Vec::with_capacity(agents);
    for chunk in fleet.chunks(50) {
        streams.extend(futures::future::join_all(chunk.iter().cloned().map(&open)).await);
    }
    eprintln!("{agents} event streams open in {:?}", started.elapsed());

    let (tx, rx) = watch::channel(None);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(agent, response, buffer)| tokio::spawn(follow(client.clone(), base.clone(), agent, response, buffer, rx.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(Some(publish(&client, &base, &token).await)).unwrap();
    let mut stages = Vec::with_capacity(agents);
    for task in tasks {
        stages.push(task.await.unwrap());
    }
    let sorted = |pick: fn(&Stages) -> Duration| {
        let mut times: Vec<Duration> = stages.iter().map(pick).collect();
        times.sort();
        times
    };
    let line = |what: &str, times: &[Duration]| {
        println!("  {what:<22} p50 {:>8}   p99 {:>8}   max {:>8}", ms(percentile(times, 50.0)), ms(percentile(times, 99.0)), ms(*times.last().unwrap()));
    };
    let times = sorted(|s| s.active);
    let p99 = percentile(&times, 99.0);
    println!("publish → active, {agents} agents on their event streams, SQLite, in-process control plane");
    line("notice received", &sorted(|s| s.notice));
    line("bundle downloaded", &sorted(|s| s.downloaded));
    line("verified and active", &times);
    let verifying: Duration = stages.iter().map(|s| s.verifying).sum();
    println!("  verification CPU, all agents together: {} ({:.2} ms each)", ms(verifying), verifying.as_secs_f64() * 1000.0 / agents as f64);
    println!("  one agent alone (baseline, same run): {}", ms(alone));
    println!("  p99 ÷ one agent alone: {:.1}×", p99.as_secs_f64() / alone.as_secs_f64());
    println!("  goal p99 ≤ 2 s: {}", if p99 <= Duration::from_secs(2) { "met" } else { "NOT met" });
    drop(database);
}
