//! The agent API on both databases, attacked as well as used: enrollment spends a token
//! once; every later call must carry the enrolled agent's signature, a fresh nonce and a
//! current time, and name the agent itself; the bundle meant for an agent's labels comes
//! with an ETag and verifies with the keys given at enrollment; a publish is pushed on the
//! event stream within a second; heartbeats feed the fleet view; decision batches are
//! bounded, stored once and refused whole when bad; a revoked agent is cut off. On
//! PostgreSQL, a publish made through one replica reaches an agent connected to another.

mod common;

use axum::body::Body;
use common::*;
use ed25519_dalek::SigningKey;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use policy::agent_api::{AgentStatus, DecisionRecord, SignedCall};
use std::io::Write;
use std::time::{Duration, Instant};
use store::Role;

struct TestAgent {
    key: SigningKey,
    id: i64,
    trusted_keys: Vec<policy::bundle::AnnouncedKey>,
}

fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn now() -> i64 {
    store::now_millis()
}

impl TestAgent {
    fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Request<Body> {
        self.request_as(self.id, now(), &nonce(), method, path, body)
    }

    fn request_as(&self, id: i64, at: i64, nonce: &str, method: &str, path: &str, body: Vec<u8>) -> Request<Body> {
        let call = SignedCall::sign(&self.key, id, method, path, at, nonce, &body);
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, call.header())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    fn status(&self, active: Option<i64>) -> Request<Body> {
        let status = AgentStatus {
            version: "0.1.0".into(),
            active_revision: active,
            bundle_hash: active.map(|_| "sha256:abc".into()),
            uptime_seconds: 12,
            ..AgentStatus::default()
        };
        self.request("POST", &format!("/agent/v1/agents/{}/status", self.id), serde_json::to_vec(&status).unwrap())
    }
}

async fn enrollment_token(app: &TestApp, token: &str, labels: serde_json::Value) -> String {
    let created = app.send(post_json("/api/v1/agents/enrollment-tokens", token, serde_json::json!({"labels": labels}))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    body_json(created).await["token"].as_str().unwrap().to_owned()
}

fn enroll_request(token: &str, key: &SigningKey) -> Request<Body> {
    let body = serde_json::json!({"token": token, "public_key": hex::encode(key.verifying_key().to_bytes()), "version": "0.1.0"});
    Request::post("/agent/v1/enroll")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

async fn enroll(app: &TestApp, token: &str) -> TestAgent {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let response = app.send(enroll_request(token, &key)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = body_json(response).await;
    TestAgent {
        key,
        id: body["agent_id"].as_i64().unwrap(),
        trusted_keys: serde_json::from_value(body["trusted_keys"].clone()).unwrap(),
    }
}

async fn code_of(response: http::Response<Body>) -> (StatusCode, String) {
    let status = response.status();
    (status, body_json(response).await["code"].as_str().unwrap_or_default().to_owned())
}

fn gzip(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in lines {
        writeln!(encoder, "{line}").unwrap();
    }
    encoder.finish().unwrap()
}

fn record(id: &str) -> serde_json::Value {
    serde_json::to_value(DecisionRecord {
        id: id.into(),
        at: now(),
        revision: Some(1),
        method: "GET".into(),
        path: "/pets/1".into(),
        api_id: Some(1),
        operation_id: Some(1),
        outcome: "deny".into(),
        status: 403,
        reason: Some("missing_scope".into()),
        source: "10.0.0.1".into(),
        caller: Some("sub:alice".into()),
        decision_micros: 14,
    })
    .unwrap()
}

fn decisions(agent: &TestAgent, body: Vec<u8>, gzip: bool) -> Request<Body> {
    let mut request = agent.request("POST", &format!("/agent/v1/agents/{}/decisions", agent.id), body);
    request.headers_mut().insert(header::CONTENT_TYPE, "application/x-ndjson".parse().unwrap());
    if gzip {
        request.headers_mut().insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    }
    request
}

/// Reads server-sent events from a streaming body.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    /// The next event's name and data, or `None` if none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| block.lines().find_map(|line| line.strip_prefix(name)).map(|v| v.trim().to_owned());
                match field("event:") {
                    Some(event) => return Some((event, field("data:").unwrap_or_default())),
                    None => continue, // a keep-alive comment
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = tokio::time::timeout(left, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

async fn open_events(app: &TestApp, agent: &TestAgent) -> Events {
    let response = app.send(agent.request("GET", &format!("/agent/v1/agents/{}/events", agent.id), Vec::new())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    Events { body: response.into_body(), buffer: String::new() }
}

app_test!(enrollment_spends_the_token_once_and_hands_over_the_trusted_keys, |app: TestApp| async move {
    let app = app;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let developer = app.create_user("dev@example.com", Role::Developer, &[]).await;
    let dev_token = app.token_for(&developer).await;

    // Only security and admins make enrollment tokens.
    let refused = app.send(post_json("/api/v1/agents/enrollment-tokens", &dev_token, serde_json::json!({}))).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad = app.send(post_json("/api/v1/agents/enrollment-tokens", &token, serde_json::json!({"expires_minutes": 0}))).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_labels =
        app.send(post_json("/api/v1/agents/enrollment-tokens", &token, serde_json::json!({"labels": {"bad key!": "x"}}))).await;
    assert_eq!(bad_labels.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let secret = enrollment_token(&app, &token, serde_json::json!({"env": "prod"})).await;
    let listed = body_json(app.send(bearer_get("/api/v1/agents/enrollment-tokens", Some(&token))).await).await;
    assert!(!listed.to_string().contains(&secret), "the secret is never listed");
    assert_eq!(app.send(bearer_get("/api/v1/agents/enrollment-tokens", Some(&dev_token))).await.status(), StatusCode::FORBIDDEN);

    // A key that is not a curve point, then garbage: refused, the token still good.
    let body = serde_json::json!({"token": secret, "public_key": "00".repeat(31), "version": "0.1.0"});
    let request = Request::post("/agent/v1/enroll")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    assert_eq!(code_of(app.send(request).await).await, (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into()));
    let garbage = Request::post("/agent/v1/enroll")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(app.send(garbage).await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let agent = enroll(&app, &secret).await;
    assert!(!agent.trusted_keys.is_empty(), "the bundle key set comes with enrollment");
    // The same token again, and a made-up one: one answer.
    let again = app.send(enroll_request(&secret, &SigningKey::from_bytes(&[9; 32]))).await;
    assert_eq!(code_of(again).await, (StatusCode::UNAUTHORIZED, "enrollment_refused".into()));
    let made_up = app.send(enroll_request("pae_madeup", &SigningKey::from_bytes(&[8; 32]))).await;
    assert_eq!(code_of(made_up).await, (StatusCode::UNAUTHORIZED, "enrollment_refused".into()));

    let fleet = body_json(app.send(bearer_get("/api/v1/agents", Some(&dev_token))).await).await;
    assert_eq!(fleet[0]["id"], agent.id);
    assert_eq!(fleet[0]["labels"]["env"], "prod");
    assert_eq!(fleet[0]["health"], "pending", "no heartbeat yet");
    let entries = store::audit::search_entries(&app.db, &store::AuditFilter { action: Some("agent.enroll".into()), ..Default::default() }, None)
        .await
        .unwrap();
    assert_eq!(entries.entries.len(), 1);
});

app_test!(signed_calls_refuse_forgery_replay_stale_times_and_other_agents, |app: TestApp| async move {
    let app = app;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let agent = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;
    let other = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;
    let status_path = format!("/agent/v1/agents/{}/status", agent.id);

    assert_eq!(app.send(agent.status(None)).await.status(), StatusCode::OK);

    // The very same call again: a replay.
    let fixed_nonce = nonce();
    let at = now();
    let first = app.send(agent.request_as(agent.id, at, &fixed_nonce, "POST", &status_path, b"{\"version\":\"1\",\"uptime_seconds\":1}".to_vec())).await;
    assert_eq!(first.status(), StatusCode::OK);
    let replay = app.send(agent.request_as(agent.id, at, &fixed_nonce, "POST", &status_path, b"{\"version\":\"1\",\"uptime_seconds\":1}".to_vec())).await;
    assert_eq!(code_of(replay).await, (StatusCode::UNAUTHORIZED, "replayed_call".into()));

    // Altered in flight: the body no longer matches the signature.
    let mut altered = agent.status(None);
    *altered.body_mut() = Body::from("{\"version\":\"evil\",\"uptime_seconds\":1}");
    assert_eq!(code_of(app.send(altered).await).await, (StatusCode::UNAUTHORIZED, "bad_signature".into()));

    // Signed by another key in this agent's name; an agent that does not exist.
    let forger = TestAgent { key: SigningKey::from_bytes(&[7; 32]), id: agent.id, trusted_keys: Vec::new() };
    assert_eq!(code_of(app.send(forger.status(None)).await).await, (StatusCode::UNAUTHORIZED, "bad_signature".into()));
    let ghost = TestAgent { key: SigningKey::from_bytes(&[7; 32]), id: 9_999, trusted_keys: Vec::new() };
    assert_eq!(code_of(app.send(ghost.status(None)).await).await, (StatusCode::UNAUTHORIZED, "bad_signature".into()));

    // Ten minutes old.
    let stale = agent.request_as(agent.id, now() - 600_000, &nonce(), "POST", &status_path, b"{}".to_vec());
    assert_eq!(code_of(app.send(stale).await).await, (StatusCode::UNAUTHORIZED, "stale_call".into()));

    // Unsigned, or a bearer token instead.
    let unsigned = Request::get(format!("/agent/v1/agents/{}/bundle", agent.id)).header(header::HOST, "localhost").body(Body::empty()).unwrap();
    assert_eq!(code_of(app.send(unsigned).await).await, (StatusCode::UNAUTHORIZED, "unsigned_call".into()));
    assert_eq!(app.send(bearer_get(&format!("/agent/v1/agents/{}/bundle", agent.id), Some(&token))).await.status(), StatusCode::UNAUTHORIZED);

    // Properly signed, but for the other agent's resources.
    let theirs = agent.request("GET", &format!("/agent/v1/agents/{}/bundle", other.id), Vec::new());
    assert_eq!(code_of(app.send(theirs).await).await, (StatusCode::FORBIDDEN, "not_your_agent".into()));
    let theirs = agent.request("POST", &format!("/agent/v1/agents/{}/status", other.id), b"{}".to_vec());
    assert_eq!(code_of(app.send(theirs).await).await, (StatusCode::FORBIDDEN, "not_your_agent".into()));

    // A heartbeat that does not parse changes nothing.
    let bad = agent.request("POST", &status_path, b"{\"version\": 5}".to_vec());
    assert_eq!(app.send(bad).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = agent.request("POST", &status_path, b"{\"version\":\"1\",\"uptime_seconds\":1,\"active_revision\":-4}".to_vec());
    assert_eq!(app.send(bad).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
});

app_test!(agents_fetch_hmac_secrets_for_themselves_only, |app: TestApp| async move {
    let context = store::audit::AuditContext::system("test");
    let team = store::teams::create_team(&app.db, "Orders", &context).await.unwrap().id;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let client = store::client_apps::create_client_app(&app.db, team, "Orders", store::ClientKind::Service, "", 90, &context).await.unwrap();
    let issued = store::client_apps::issue_credential(&app.db, &app.state.master, client.id, store::CredentialKind::Hmac, "orders-1", None, &context)
        .await
        .unwrap();
    let (key_id, secret) = (issued.credential.prefix.unwrap(), issued.secret.unwrap());
    let agent = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;
    let other = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;

    let path = format!("/agent/v1/agents/{}/hmac-keys", agent.id);
    let answer = app.send(agent.request("GET", &path, Vec::new())).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
    let secrets: policy::agent_api::HmacSecrets = serde_json::from_value(body_json(answer).await).unwrap();
    assert_eq!(secrets.keys.len(), 1);
    assert_eq!((secrets.keys[0].key_id.as_str(), secrets.keys[0].secret.as_str()), (key_id.as_str(), secret.as_str()));

    // Only for itself, only signed, and not once revoked.
    let theirs = agent.request("GET", &format!("/agent/v1/agents/{}/hmac-keys", other.id), Vec::new());
    assert_eq!(code_of(app.send(theirs).await).await, (StatusCode::FORBIDDEN, "not_your_agent".into()));
    assert_eq!(app.send(bearer_get(&path, Some(&token))).await.status(), StatusCode::UNAUTHORIZED);
    let revoked = app.send(post_json(&format!("/api/v1/agents/{}/revoke", agent.id), &token, serde_json::json!({"reason": "lost"}))).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(code_of(app.send(agent.request("GET", &path, Vec::new())).await).await, (StatusCode::UNAUTHORIZED, "agent_revoked".into()));
});

app_test!(agents_get_the_bundle_meant_for_their_labels_with_etags_and_pushed_notices, |app: TestApp| async move {
    let app = app;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let prod = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({"env": "prod"})).await).await;
    let canary = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({"env": "canary"})).await).await;
    let bundle_of = |agent: &TestAgent, etag: Option<&str>| {
        let mut request = agent.request("GET", &format!("/agent/v1/agents/{}/bundle", agent.id), Vec::new());
        if let Some(etag) = etag {
            request.headers_mut().insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        }
        request
    };

    assert_eq!(code_of(app.send(bundle_of(&prod, None)).await).await, (StatusCode::NOT_FOUND, "no_bundle".into()));
    let mut prod_events = open_events(&app, &prod).await;
    let mut canary_events = open_events(&app, &canary).await;
    assert_eq!(prod_events.next(Duration::from_secs(5)).await, Some(("revision".into(), "{\"revision\":null}".into())));
    assert_eq!(canary_events.next(Duration::from_secs(5)).await, Some(("revision".into(), "{\"revision\":null}".into())));

    // A publish for every agent is pushed to both within a second.
    let everyone = draft(&app, &token, serde_json::json!({})).await;
    let published = Instant::now();
    publish(&app, &token, everyone).await;
    let notice = format!("{{\"revision\":{everyone}}}");
    assert_eq!(prod_events.next(Duration::from_secs(5)).await, Some(("revision".into(), notice.clone())));
    let pushed_after = published.elapsed();
    assert_eq!(canary_events.next(Duration::from_secs(5)).await, Some(("revision".into(), notice)));
    eprintln!("publish to push notice: {pushed_after:?}");

    let response = app.send(bundle_of(&prod, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[header::ETAG].to_str().unwrap().to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    // It verifies with the keys given at enrollment, as the agent checks it.
    let mut active = policy::bundle::Active::new(policy::bundle::TrustStore::from_announced(&prod.trusted_keys).unwrap());
    assert_eq!(active.accept(&bytes, now()).unwrap().header.revision, everyone as u64);
    let unchanged = app.send(bundle_of(&prod, Some(&etag))).await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert!(unchanged.into_body().collect().await.unwrap().to_bytes().is_empty());

    // A canary reaches only the canary agent; the other hears nothing.
    let canary_revision = draft(&app, &token, serde_json::json!({"env": "canary"})).await;
    publish(&app, &token, canary_revision).await;
    assert_eq!(canary_events.next(Duration::from_secs(5)).await, Some(("revision".into(), format!("{{\"revision\":{canary_revision}}}"))));
    assert_eq!(prod_events.next(Duration::from_millis(500)).await, None);
    assert_eq!(app.send(bundle_of(&prod, Some(&etag))).await.status(), StatusCode::NOT_MODIFIED, "still on its revision");
    let canary_bundle = app.send(bundle_of(&canary, Some(&etag))).await;
    assert_eq!(canary_bundle.status(), StatusCode::OK);
    assert_eq!(canary_bundle.headers()[header::ETAG], format!("\"{canary_revision}\"").as_str());

    // Heartbeats: the fleet shows what each runs and the drift.
    let answer = body_json(app.send(prod.status(Some(everyone))).await).await;
    assert_eq!(answer["revision"], everyone, "a heartbeat answers what the agent is meant to run");
    assert_eq!(app.send(canary.status(Some(everyone))).await.status(), StatusCode::OK);
    let fleet = body_json(app.send(bearer_get("/api/v1/agents", Some(&token))).await).await;
    let row = |id: i64| fleet.as_array().unwrap().iter().find(|row| row["id"] == id).unwrap().clone();
    assert_eq!((row(prod.id)["health"].as_str(), row(prod.id)["drift"].as_bool()), (Some("healthy"), Some(false)));
    assert_eq!(row(canary.id)["active_revision"], everyone);
    assert_eq!(row(canary.id)["meant_revision"], canary_revision);
    assert_eq!(row(canary.id)["drift"], true, "the canary agent has not taken its revision yet");
    assert_eq!(app.send(canary.status(Some(canary_revision))).await.status(), StatusCode::OK);
    let convergence = body_json(app.send(bearer_get(&format!("/api/v1/bundles/{everyone}/convergence"), Some(&token))).await).await;
    assert_eq!((convergence["targets"].as_u64(), convergence["percent_now"].as_u64()), (Some(2), Some(100)));
    let convergence = body_json(app.send(bearer_get(&format!("/api/v1/bundles/{canary_revision}/convergence"), Some(&token))).await).await;
    assert_eq!((convergence["targets"].as_u64(), convergence["percent_now"].as_u64()), (Some(1), Some(100)));

    // Revoked: the stream says so and ends, and every call is refused from then on.
    let revoke = app.send(post_json(&format!("/api/v1/agents/{}/revoke", prod.id), &token, serde_json::json!({"reason": "host retired"}))).await;
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(body_json(revoke).await["health"], "revoked");
    assert_eq!(prod_events.next(Duration::from_secs(5)).await.map(|(event, _)| event), Some("revoked".into()));
    assert_eq!(prod_events.next(Duration::from_secs(1)).await, None, "the stream ends");
    assert_eq!(code_of(app.send(prod.status(Some(everyone))).await).await, (StatusCode::UNAUTHORIZED, "agent_revoked".into()));
    assert_eq!(code_of(app.send(bundle_of(&prod, None)).await).await, (StatusCode::UNAUTHORIZED, "agent_revoked".into()));
    let again = app.send(post_json(&format!("/api/v1/agents/{}/revoke", prod.id), &token, serde_json::json!({"reason": "again"}))).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
});

app_test!(decision_batches_are_gzip_bounded_stored_once_and_refused_whole, |app: TestApp| async move {
    let app = app;
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let agent = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;
    let batch = gzip(&[record("a"), record("b"), record("c")]);

    let stored = app.send(decisions(&agent, batch.clone(), true)).await;
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(body_json(stored).await, serde_json::json!({"accepted": 3, "duplicates": 0}));
    // Sent again after a crash: stored once.
    let resent = body_json(app.send(decisions(&agent, batch, true)).await).await;
    assert_eq!(resent, serde_json::json!({"accepted": 0, "duplicates": 3}));
    assert_eq!(store::agent_reports::count_decisions(&app.db, agent.id).await.unwrap(), 3);
    let page = body_json(app.send(bearer_get(&format!("/api/v1/decisions?agent={}&limit=2", agent.id), Some(&token))).await).await;
    assert_eq!((page[0]["reason"].as_str(), page.as_array().unwrap().len()), (Some("missing_scope"), 2));
    let before = page[1]["id"].as_i64().unwrap();
    let rest = body_json(app.send(bearer_get(&format!("/api/v1/decisions?agent={}&before={before}", agent.id), Some(&token))).await).await;
    assert_eq!(rest.as_array().unwrap().len(), 1, "the next page");
    assert_eq!(app.send(bearer_get("/api/v1/decisions?limit=0", Some(&token))).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Calls to a route no API declares add up as candidate shadow APIs.
    let mut shadow = record("s1");
    (shadow["path"], shadow["reason"], shadow["status"]) = ("/internal/export".into(), "undeclared_route".into(), 404.into());
    let mut again = shadow.clone();
    again["id"] = "s2".into();
    assert_eq!(app.send(decisions(&agent, gzip(&[shadow, again]), true)).await.status(), StatusCode::OK);
    let shadows = body_json(app.send(bearer_get("/api/v1/decisions/undeclared-routes", Some(&token))).await).await;
    assert_eq!((shadows[0]["path"].as_str(), shadows[0]["requests"].as_i64()), (Some("/internal/export"), Some(2)));
    assert_eq!(store::agent_reports::count_decisions(&app.db, agent.id).await.unwrap(), 5);

    // Not compressed; not gzip; one bad record among good ones: nothing stored.
    let plain = decisions(&agent, record("d").to_string().into_bytes(), false);
    assert_eq!(app.send(plain).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.send(decisions(&agent, b"not gzip".to_vec(), true)).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut bad = record("f");
    bad["outcome"] = "maybe".into();
    let mixed = app.send(decisions(&agent, gzip(&[record("e"), bad]), true)).await;
    assert_eq!(mixed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_field = {
        let mut extra = record("g");
        extra["secret"] = "x".into();
        extra
    };
    assert_eq!(app.send(decisions(&agent, gzip(&[unknown_field]), true)).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(store::agent_reports::count_decisions(&app.db, agent.id).await.unwrap(), 5);

    // A gzip bomb: small on the wire, past the inflated bound.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; policy::agent_api::MAX_BATCH_INFLATED_BYTES + 10]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < policy::agent_api::MAX_BATCH_BYTES);
    assert_eq!(app.send(decisions(&agent, bomb, true)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Too many records.
    let many: Vec<serde_json::Value> = (0..=policy::agent_api::MAX_BATCH_RECORDS).map(|n| record(&format!("m{n}"))).collect();
    assert_eq!(app.send(decisions(&agent, gzip(&many), true)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Over the wire bound.
    let huge: Vec<u8> = (0..policy::agent_api::MAX_BATCH_BYTES + 1).map(|n| (n % 251) as u8).collect();
    assert_eq!(app.send(decisions(&agent, huge, true)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A full batch in one go, then read back newest first.
    let full: Vec<serde_json::Value> = (0..policy::agent_api::MAX_BATCH_RECORDS).map(|n| record(&format!("full{n}"))).collect();
    let receipt = body_json(app.send(decisions(&agent, gzip(&full), true)).await).await;
    assert_eq!(receipt["accepted"], policy::agent_api::MAX_BATCH_RECORDS);
    let newest = store::agent_reports::list_decisions(&app.db, Some(agent.id), None, 2).await.unwrap();
    assert_eq!(newest[0].row.record_id, format!("full{}", policy::agent_api::MAX_BATCH_RECORDS - 1));
    assert_eq!(newest[0].row.reason.as_deref(), Some("missing_scope"));
});

/// Two `palisade` replicas on one PostgreSQL: an agent streaming from one hears of a
/// publish made through the other within a second (LISTEN/NOTIFY; the fallback poll is 30 s).
#[tokio::test]
async fn a_publish_on_one_replica_reaches_an_agent_streaming_from_another() {
    let app = TestApp::new(store::Backend::Postgres).await;
    let replica = server::router(app.state.clone());
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let agent = enroll(&app, &enrollment_token(&app, &token, serde_json::json!({})).await).await;
    let response = tower::ServiceExt::oneshot(replica, agent.request("GET", &format!("/agent/v1/agents/{}/events", agent.id), Vec::new()))
        .await
        .unwrap();
    let mut events = Events { body: response.into_body(), buffer: String::new() };
    assert_eq!(events.next(Duration::from_secs(5)).await, Some(("revision".into(), "{\"revision\":null}".into())));
    let revision = draft(&app, &token, serde_json::json!({})).await;
    let published = Instant::now();
    publish(&app, &token, revision).await;
    // Well inside the 30 s fallback poll: only NOTIFY can have carried it.
    assert_eq!(events.next(Duration::from_secs(10)).await, Some(("revision".into(), format!("{{\"revision\":{revision}}}"))));
    eprintln!("publish on one replica to the notice on the other: {:?}", published.elapsed());
}
