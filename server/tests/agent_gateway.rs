//! The gateway shape end to end, with parts we did not write: nginx (Debian) in front of an
//! upstream (nginx again), asking `palisade-agent`'s decision endpoint through
//! `auth_request`; callers authenticate with JWT access tokens from a real OpenID provider
//! (npm `oidc-provider`, client-credentials grant), which the agent verifies against the
//! provider's JWKS. A publish through the control plane decides the very next requests.
//!
//! Needs nginx and `e2e/node_modules` (the README's test command installs both) and
//! `target/debug/palisade-agent` (built by `cargo nextest run`).

mod common;

use common::*;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::{Backend, Role, teams};

const CLIENT: (&str, &str) = ("pets-reader", "pets-reader-secret-0123456789");

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Stops the process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM, so nginx's master takes its workers with it (SIGKILL would orphan them).
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).stderr(Stdio::null()).status();
        let _ = self.0.wait();
    }
}

/// Starts `command` and waits for a line of its standard output containing `ready`.
fn start_until(mut command: Command, ready: &str) -> (Running, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        if line.contains(ready) {
            return (Running(child), line);
        }
    }
    panic!("{command:?} did not start");
}

fn provider(port: u16) -> Running {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/oidc/machine_provider.mjs");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/node_modules/oidc-provider").exists(),
        "npm oidc-provider is missing: run `npm ci` in e2e/ (scripts/test does)"
    );
    let mut command = Command::new("node");
    command.arg(script).env("OIDC_PORT", port.to_string()).stderr(Stdio::null());
    start_until(command, "oidc-provider listening").0
}

/// nginx on `gateway`, asking the agent at `decide` before proxying to an upstream that
/// nginx serves itself on `upstream`.
fn nginx(work: &Path, gateway: SocketAddr, upstream: SocketAddr, decide: SocketAddr) -> Running {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|path| path.exists());
    let nginx = nginx.expect("nginx is missing: apt-get install nginx (scripts/test does)");
    let root = work.join("nginx");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let config = format!(
        r#"worker_processes 1;
user root;
daemon off;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body; proxy_temp_path {root}/proxy; fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
    server {{
        listen {upstream};
        location / {{ default_type text/plain; return 200 "upstream $request_method $uri\n"; }}
    }}
    server {{
        listen {gateway};
        location = /_palisade {{
            internal;
            proxy_pass http://{decide}/decide;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
        }}
        location / {{
            auth_request /_palisade;
            proxy_pass http://{upstream};
        }}
    }}
}}
"#,
        root = root.display()
    );
    std::fs::write(root.join("nginx.conf"), config).unwrap();
    let child = Command::new(nginx)
        .args(["-p"])
        .arg(&root)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

async fn access_token(client: &reqwest::Client, provider: &str, scope: &str) -> String {
    let response = client
        .post(format!("{provider}/token"))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "the provider issued no token: {}", response.text().await.unwrap());
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_asks_the_agent_and_a_publish_decides_the_next_request() {
    let app = TestApp::new(Backend::Sqlite).await;
    let work = std::env::temp_dir().join(format!("palisade-gateway-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let client = reqwest::Client::new();

    let provider_port = free_address().port();
    let _provider = provider(provider_port);
    let issuer = format!("http://127.0.0.1:{provider_port}");

    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let team = teams::create_team(&app.db, "Gateway", &store::audit::AuditContext::system("test")).await.unwrap().id;
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Gateway pets", "version": "1"}, "paths": {
        "/pets/{id}": {"get": {"responses": {"200": {"description": "a pet"}}}},
    }});
    let request = http::Request::post(format!("/api/v1/apis?team={}", team.0))
        .header(http::header::HOST, "localhost")
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&document).unwrap()))
        .unwrap();
    let api = body_json(app.send(request).await).await["id"].as_i64().unwrap();
    let protect = |scopes: &[&str]| {
        let protection = serde_json::json!({"authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": issuer,
            "audiences": ["pets"], "jwks_url": format!("{issuer}/jwks"), "algorithms": ["RS256"], "required_scopes": scopes}]}});
        let mut request = post_json(&format!("/api/v1/apis/{api}/protection"), &token, protection);
        *request.method_mut() = http::Method::PUT;
        request
    };
    assert_eq!(app.send(protect(&["pets:read"])).await.status(), http::StatusCode::OK);
    let revision = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, revision).await;

    // The control plane, the agent as a decision endpoint, nginx in front.
    let mut control_plane = Command::new(env!("CARGO_BIN_EXE_palisade"));
    control_plane
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PALISADE_DATABASE_URL", app.database_url())
        .env("PALISADE_MASTER_KEY", app.master_key_hex())
        .env("PALISADE_DATA_DIR", work.join("control-plane"))
        .env("PALISADE_ADMIN_PASSWORD", "an admin password for the gateway test")
        .env("RUST_LOG", "error");
    let (_control_plane, line) = start_until(control_plane, "Palisade is listening on ");
    let base = line.split("Palisade is listening on ").nth(1).unwrap().trim().to_owned();
    let created = app.send(post_json("/api/v1/agents/enrollment-tokens", &token, serde_json::json!({"labels": {"tier": "edge"}}))).await;
    let enrollment = body_json(created).await["token"].as_str().unwrap().to_owned();
    let decide = free_address();
    let agent_binary = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-agent");
    let agent = Running(
        Command::new(agent_binary)
            .args(["--control-plane", &base, "--enroll-token", &enrollment, "--data-dir"])
            .arg(work.join("agent"))
            .args(["--api", &api.to_string(), "--decision-listen", &decide.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (gateway, upstream) = (free_address(), free_address());
    let nginx = nginx(&work, gateway, upstream, decide);

    let reader = access_token(&client, &issuer, "pets:read").await;
    let writer = access_token(&client, &issuer, "pets:read pets:write").await;
    let get = |token: Option<String>| {
        let client = client.clone();
        async move {
            let mut request = client.get(format!("http://{gateway}/pets/1"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    Some((status, response.text().await.unwrap_or_default()))
                }
                Err(_) => None,
            }
        }
    };

    // Enrolled and enforcing: a token from the provider passes, none is refused.
    wait_until("the gateway lets a valid token through", Duration::from_secs(30), async || {
        get(Some(reader.clone())).await.is_some_and(|(status, _)| status == 200)
    })
    .await;
    assert_eq!(get(Some(reader.clone())).await, Some((200, "upstream GET /pets/1\n".into())));
    assert_eq!(get(None).await.map(|(status, _)| status), Some(401));
    assert_eq!(get(Some(format!("{reader}x"))).await.map(|(status, _)| status), Some(401), "a broken signature");
    // A route no API declares never reaches the upstream (nginx turns the agent's 404 into 500).
    let undeclared = client.get(format!("http://{gateway}/admin")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(undeclared.status().as_u16(), 500);
    assert!(!undeclared.text().await.unwrap().contains("upstream"));

    // A publish that asks for pets:write: the reader's next requests are refused, the
    // writer's pass.
    assert_eq!(app.send(protect(&["pets:write"])).await.status(), http::StatusCode::OK);
    let revision = draft(&app, &token, serde_json::json!({})).await;
    let published = Instant::now();
    publish(&app, &token, revision).await;
    wait_until("the new revision decides", Duration::from_secs(10), async || {
        get(Some(reader.clone())).await.is_some_and(|(status, _)| status == 401)
    })
    .await;
    eprintln!("publish to enforced behind nginx: {:?}", published.elapsed());
    assert_eq!(get(Some(writer.clone())).await, Some((200, "upstream GET /pets/1\n".into())));

    // Every decision reaches the control plane, with the reason for each denial.
    let agent_id = store::agents::list_agents(&app.db).await.unwrap()[0].id;
    wait_until("decisions uploaded", Duration::from_secs(30), async || {
        let stored = store::agent_reports::list_decisions(&app.db, Some(agent_id), None, 1_000).await.unwrap();
        stored.iter().any(|decision| decision.row.reason.as_deref() == Some("credential_not_accepted") || decision.row.reason.as_deref() == Some("invalid_token"))
            && stored.iter().any(|decision| decision.row.reason.as_deref() == Some("undeclared_route"))
            && stored.iter().any(|decision| decision.row.revision == Some(revision) && decision.row.outcome == "allow")
    })
    .await;
    drop((nginx, agent));
    let _ = std::fs::remove_dir_all(&work);
}
