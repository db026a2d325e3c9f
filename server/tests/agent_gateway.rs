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
/// The certificate identity registered as an mTLS credential in the gateway mTLS test.
const ORDERS: &str = "spiffe://acme/orders";

/// An empty scratch directory of this test process's own under the system's temporary one.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
/// nginx serves itself on `upstream`. With `tls` (certificate and key files), the gateway
/// speaks HTTPS, asks callers for a client certificate (any: `optional_no_ca`, so that
/// only the agent judges it) and passes it on to the agent as URL-escaped PEM.
fn nginx(work: &Path, gateway: SocketAddr, upstream: SocketAddr, decide: SocketAddr, tls: Option<(&Path, &Path)>) -> Running {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|path| path.exists());
    let nginx = nginx.expect("nginx is missing: apt-get install nginx (scripts/test does)");
    let root = work.join("nginx");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let (listen_tls, certificates, pass_certificate) = match tls {
        None => ("", String::new(), ""),
        Some((cert, key)) => (
            " ssl",
            format!("ssl_certificate {}; ssl_certificate_key {}; ssl_verify_client optional_no_ca;", cert.display(), key.display()),
            "proxy_set_header X-Client-Cert $ssl_client_escaped_cert;",
        ),
    };
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
        listen {gateway}{listen_tls};
        {certificates}
        location = /_palisade {{
            internal;
            proxy_pass http://{decide}/decide;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            {pass_certificate}
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

/// An API with `GET /pets/{id}`, imported for `team`; its id.
async fn pets_api(app: &TestApp, token: &str, team: store::TeamId) -> i64 {
    let document = serde_json::json!({"openapi": "3.0.3", "info": {"title": "Gateway pets", "version": "1"}, "paths": {
        "/pets/{id}": {"get": {"responses": {"200": {"description": "a pet"}}}},
    }});
    let created = app.send(post_json(&format!("/api/v1/apis?team={}", team.0), token, document)).await;
    body_json(created).await["id"].as_i64().unwrap()
}

/// The request that sets `api`'s protection.
fn protect(token: &str, api: i64, protection: serde_json::Value) -> http::Request<axum::body::Body> {
    let mut request = post_json(&format!("/api/v1/apis/{api}/protection"), token, protection);
    *request.method_mut() = http::Method::PUT;
    request
}

/// `palisade serve` on the test's database, on a port of its own; its base URL.
fn control_plane(app: &TestApp, work: &Path) -> (Running, String) {
    let mut control_plane = Command::new(env!("CARGO_BIN_EXE_palisade"));
    control_plane
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PALISADE_DATABASE_URL", app.database_url())
        .env("PALISADE_MASTER_KEY", app.master_key_hex())
        .env("PALISADE_DATA_DIR", work.join("control-plane"))
        .env("PALISADE_ADMIN_PASSWORD", "an admin password for the gateway test")
        .env("RUST_LOG", "error");
    let (running, line) = start_until(control_plane, "Palisade is listening on ");
    (running, line.split("Palisade is listening on ").nth(1).unwrap().trim().to_owned())
}

/// `palisade-agent` enrolled at `base` with a new token, enforcing `api` as a decision
/// endpoint on `decide`, with `extra` arguments.
async fn decision_agent(app: &TestApp, token: &str, base: &str, work: &Path, api: i64, decide: SocketAddr, extra: &[&std::ffi::OsStr]) -> Running {
    let created = app.send(post_json("/api/v1/agents/enrollment-tokens", token, serde_json::json!({"labels": {"tier": "edge"}}))).await;
    let enrollment = body_json(created).await["token"].as_str().unwrap().to_owned();
    let agent_binary = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-agent");
    Running(
        Command::new(agent_binary)
            .args(["--control-plane", base, "--enroll-token", &enrollment, "--data-dir"])
            .arg(work.join("agent"))
            .args(["--api", &api.to_string(), "--decision-listen", &decide.to_string()])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
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
    let work = fresh_dir("palisade-gateway");
    let client = reqwest::Client::new();

    let provider_port = free_address().port();
    let _provider = provider(provider_port);
    let issuer = format!("http://127.0.0.1:{provider_port}");

    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let team = teams::create_team(&app.db, "Gateway", &store::audit::AuditContext::system("test")).await.unwrap().id;
    let api = pets_api(&app, &token, team).await;
    let protect = |scopes: &[&str]| {
        let protection = serde_json::json!({"authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": issuer,
            "audiences": ["pets"], "jwks_url": format!("{issuer}/jwks"), "algorithms": ["RS256"], "required_scopes": scopes}]}});
        protect(&token, api, protection)
    };
    assert_eq!(app.send(protect(&["pets:read"])).await.status(), http::StatusCode::OK);
    let revision = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, revision).await;

    // The control plane, the agent as a decision endpoint, nginx in front.
    let (_control_plane, base) = control_plane(&app, &work);
    let decide = free_address();
    let agent = decision_agent(&app, &token, &base, &work, api, decide, &[]).await;
    let (gateway, upstream) = (free_address(), free_address());
    let nginx = nginx(&work, gateway, upstream, decide, None);

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

/// A certificate authority named `name`.
fn authority(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A certificate `issuer` signs for `sans` and `usage`: PEM certificate and PEM key.
fn certificate(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, sans: Vec<rcgen::SanType>, usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    params.distinguished_name.push(rcgen::DnType::CommonName, "gateway test");
    let key = rcgen::KeyPair::generate().unwrap();
    (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
}

fn client_identity(uri: &str, issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> reqwest::Identity {
    let (cert, key) = certificate(issuer, vec![rcgen::SanType::URI(uri.try_into().unwrap())], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_on_client_certificates_that_the_agent_verifies_itself() {
    let app = TestApp::new(Backend::Sqlite).await;
    let work = fresh_dir("palisade-gateway-mtls");

    // The API takes only mTLS; the orders service holds an mTLS credential for ORDERS.
    let security = app.create_user("ciso@example.com", Role::Security, &[]).await;
    let token = app.token_for(&security).await;
    let team = teams::create_team(&app.db, "Gateway", &store::audit::AuditContext::system("test")).await.unwrap().id;
    let developer = app.create_user("dev@example.com", Role::Developer, &[team]).await;
    let dev_token = app.token_for(&developer).await;
    let api = pets_api(&app, &token, team).await;
    let mtls_only = serde_json::json!({"authentication": {"mode": "required", "methods": [{"type": "mtls"}]}});
    assert_eq!(app.send(protect(&token, api, mtls_only)).await.status(), http::StatusCode::OK);
    let created = app.send(post_json(&format!("/api/v1/client-apps?team={}", team.0), &dev_token, serde_json::json!({"name": "Orders service", "kind": "service"}))).await;
    let client_app = body_json(created).await["id"].as_i64().unwrap();
    let credential = serde_json::json!({"kind": "mtls", "instance": "orders-1", "identity": ORDERS});
    let issued = app.send(post_json(&format!("/api/v1/client-apps/{client_app}/credentials"), &dev_token, credential)).await;
    assert_eq!(issued.status(), http::StatusCode::CREATED);
    let revision = draft(&app, &token, serde_json::json!({})).await;
    publish(&app, &token, revision).await;

    // The callers' CA, which the agent trusts; nginx's own certificate; a CA nobody trusts.
    let callers = authority("Acme callers");
    let rogue = authority("Rogue");
    let (server_cert, server_key) = certificate(&callers, vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let file = |name: &str, text: &str| {
        let path = work.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (ca_file, cert_file, key_file) = (file("callers.pem", &callers.pem()), file("gateway.pem", &server_cert), file("gateway.key", &server_key));

    let (_control_plane, base) = control_plane(&app, &work);
    let decide = free_address();
    let agent = decision_agent(&app, &token, &base, &work, api, decide, &["--decision-client-ca".as_ref(), ca_file.as_os_str()]).await;
    let (gateway, upstream) = (free_address(), free_address());
    let nginx = nginx(&work, gateway, upstream, decide, Some((&cert_file, &key_file)));

    let caller = |identity: Option<reqwest::Identity>| {
        let mut builder = reqwest::Client::builder().use_rustls_tls().add_root_certificate(reqwest::Certificate::from_pem(callers.pem().as_bytes()).unwrap());
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    };
    let get = async |client: &reqwest::Client| match client.get(format!("https://{gateway}/pets/1")).send().await {
        Ok(response) => Some(response.status().as_u16()),
        Err(_) => None,
    };
    let orders = caller(Some(client_identity(ORDERS, &callers)));
    wait_until("the gateway lets the orders service through", Duration::from_secs(30), async || get(&orders).await == Some(200)).await;
    let answer = orders.get(format!("https://{gateway}/pets/1")).send().await.unwrap().text().await.unwrap();
    assert_eq!(answer, "upstream GET /pets/1\n");

    // A certificate for ORDERS from a CA the agent does not trust, which nginx
    // (optional_no_ca) passes on all the same; no certificate; a certificate from the
    // trusted CA for an identity no credential holds: none reaches the upstream.
    assert_eq!(get(&caller(Some(client_identity(ORDERS, &rogue)))).await, Some(401), "a look-alike from another CA");
    assert_eq!(get(&caller(None)).await, Some(401));
    assert_eq!(get(&caller(Some(client_identity("spiffe://acme/stranger", &callers)))).await, Some(401));

    // The untrusted certificate was refused before any decision (so before the later two,
    // whose records are uploaded in order); the other two were decided, and said why.
    let agent_id = store::agents::list_agents(&app.db).await.unwrap()[0].id;
    wait_until("decisions uploaded", Duration::from_secs(30), async || {
        let stored = store::agent_reports::list_decisions(&app.db, Some(agent_id), None, 1_000).await.unwrap();
        let decided: Vec<(&str, Option<&str>)> = stored
            .iter()
            .filter(|decision| decision.row.revision == Some(revision))
            .map(|decision| (decision.row.outcome.as_str(), decision.row.reason.as_deref()))
            .collect();
        let denials: Vec<_> = decided.iter().filter(|(outcome, _)| *outcome != "allow").collect();
        if denials.len() > 2 {
            panic!("the refused certificate was decided: {decided:?}");
        }
        denials.len() == 2
            && decided.contains(&("deny", Some("unauthenticated")))
            && decided.contains(&("deny", Some("credential_not_accepted")))
            && decided.iter().filter(|(outcome, _)| *outcome == "allow").count() >= 2
    })
    .await;
    wait_until("the agent reports the certificate it refused", Duration::from_secs(30), async || {
        let agent = store::agents::list_agents(&app.db).await.unwrap().remove(0);
        agent.status.and_then(|status| status.last_error).is_some_and(|error| error.contains("not trusted"))
    })
    .await;
    drop((nginx, agent));
    let _ = std::fs::remove_dir_all(&work);
}
