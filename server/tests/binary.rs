//! The `palisade` binary itself: first start on an empty database (schema, admin account,
//! printed password), `--demo`, the admin CLI, and a clean stop — on SQLite and PostgreSQL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use store::testing::TestDb;
use store::{Backend, Role, accounts, tokens};

fn palisade(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PALISADE_DATABASE_URL", url)
        .env("PALISADE_DATA_DIR", data_dir(url))
        .env("RUST_LOG", "warn");
    command
}

/// One data folder (and so one master key) per test database.
fn data_dir(url: &str) -> std::path::PathBuf {
    let name: String = url.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    std::env::temp_dir().join(format!("palisade-bin-{}", &name[name.len().saturating_sub(48)..]))
}

/// Starts `palisade serve` on a free port; returns the child, its base URL and what it
/// printed up to "listening".
fn serve(url: &str, extra: &[&str]) -> (Child, String, Vec<String>) {
    let mut child = palisade(url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(base) = line.strip_prefix("Palisade is listening on ") {
            let base = base.to_owned();
            lines.push(line);
            return (child, base, lines);
        }
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("palisade exited before listening: {lines:?}");
}

fn stop(mut child: Child) {
    // SIGTERM: a graceful stop that exits 0.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

async fn http_get(base: &str, path: &str) -> (u16, String) {
    let address = base.trim_start_matches("http://").to_owned();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        (status, response)
    })
    .await
    .unwrap()
}

async fn first_start_creates_schema_and_admin(backend: Backend) {
    let database = TestDb::empty(backend).await;
    let export = std::env::temp_dir().join(format!("palisade-first-start-{}-{:?}.jsonl", std::process::id(), backend));
    let _ = std::fs::remove_file(&export);
    let export_arg = export.display().to_string();
    let (child, base, printed) = serve(&database.url, &["--audit-export-file", &export_arg]);
    let announced = printed.iter().find(|l| l.starts_with("Created the admin account")).expect("admin announced");
    let password = announced.rsplit(": ").next().unwrap().to_owned();
    assert!(password.len() >= 12, "{announced}");
    assert_eq!(http_get(&base, "/readyz").await.0, 200);
    assert_eq!(http_get(&base, "/healthz").await.0, 200);
    // The exporter copies the admin's creation out of band within a second or two
    // (up to 30 s allowed for a busy machine).
    for _ in 0..300 {
        if std::fs::metadata(&export).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(child);
    // The admin's creation and the signing key's, and the checkpoint signed at the stop.
    let verified = palisade(&database.url).args(["audit", "verify", "--file", &export_arg]).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let said = String::from_utf8_lossy(&verified.stdout).to_string();
    assert!(said.contains("2 entries intact, 1 signed checkpoints"), "{said}");
    assert!(said.contains("0 later entries not yet signed"), "{said}");
    std::fs::remove_file(&export).unwrap();

    database.db.migrate().await.unwrap();
    let admin = accounts::find_account_by_email(&database.db, "admin@localhost").await.unwrap();
    assert_eq!(admin.role, Role::Admin);
    let login = accounts::find_login(&database.db, "admin@localhost").await.unwrap().unwrap();
    let passwords = store::passwords::Passwords::new().unwrap();
    assert!(passwords.verify(&password, login.password_hash.as_deref()).await.unwrap(), "the printed password works");

    // A second start neither creates another admin nor prints a password.
    let (child, _, printed) = serve(&database.url, &["--demo"]);
    assert!(!printed.iter().any(|l| l.contains("Created the admin account")), "{printed:?}");
    assert!(printed.iter().any(|l| l.starts_with("Demo data loaded")), "{printed:?}");
    stop(child);
    let all = accounts::list_accounts(&database.db).await.unwrap();
    assert_eq!(all.iter().filter(|a| a.role == Role::Admin).count(), 1);
    for role in Role::ALL {
        assert!(all.iter().any(|a| a.role == role), "demo has a {role}");
    }
    // Two APIs with real gaps: the public customer lookup returns personal data.
    let estate = store::apis::estate_posture(&database.db).await.unwrap();
    assert_eq!(estate.apis.len(), 2);
    let identity = estate.apis.iter().find(|a| a.api.name == "Customer Identity API").unwrap();
    let posture = store::apis::find_posture(&database.db, identity.api.id).await.unwrap();
    assert!(posture.findings.iter().any(|f| f.rule == "sensitive-data-without-authentication"
        && f.operation.as_deref() == Some("GET /customers/lookup")), "{:?}", posture.findings);
    assert!(identity.api.data_classes.contains(&"national_id".to_owned()), "{:?}", identity.api.data_classes);
    // The Payments API is protected and scores better; its client holds a key per instance.
    let payments = estate.apis.iter().find(|a| a.api.team_name == "Payments").unwrap();
    let protected = store::apis::find_api(&database.db, payments.api.id).await.unwrap();
    assert!(protected.protection.authentication.is_some() && protected.protection.data.is_some());
    assert!(payments.score > identity.score, "{} > {}", payments.score, identity.score);
    let clients = store::client_apps::list_client_apps(&database.db).await.unwrap();
    assert_eq!(clients.iter().map(|c| c.credentials.len()).sum::<usize>(), 2);
    let (child, _, printed) = serve(&database.url, &["--demo"]);
    assert!(printed.iter().any(|l| l == "Demo data already present."), "{printed:?}");
    stop(child);
}

#[tokio::test]
async fn first_start_creates_schema_and_admin_on_sqlite() {
    first_start_creates_schema_and_admin(Backend::Sqlite).await;
}

#[tokio::test]
async fn first_start_creates_schema_and_admin_on_postgres() {
    first_start_creates_schema_and_admin(Backend::Postgres).await;
}

fn run_admin(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = palisade(url)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn admin_cli_creates_users_and_tokens(backend: Backend) {
    let database = TestDb::new(backend).await;
    let url = database.url.as_str();
    let created = run_admin(url, &["create-user", "--email", "Dev@Example.com", "--role", "developer", "--team", "Payments"], "a long enough password\n");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let dev = accounts::find_account_by_email(&database.db, "dev@example.com").await.unwrap();
    assert_eq!(dev.role, Role::Developer);
    assert_eq!(dev.teams.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["Payments"]);

    let token = run_admin(url, &["create-token", "--email", "dev@example.com", "--name", "ci"], "");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let secret = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let principal = tokens::authenticate_token(&database.db, &secret).await.unwrap().expect("the printed token works");
    assert_eq!(principal.account_id, dev.id);
    let listed = run_admin(url, &["list-tokens", "--email", "dev@example.com"], "");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("ci\tpal_") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&secret), "secrets are never listed");
    let revoked = run_admin(url, &["revoke-token", "--email", "dev@example.com", "--name", "ci"], "");
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(tokens::authenticate_token(&database.db, &secret).await.unwrap().is_none(), "revoked by the CLI");
    let again = run_admin(url, &["revoke-token", "--email", "dev@example.com", "--name", "ci"], "");
    assert!(!again.status.success());

    // An enrollment token for an agent: printed once, carrying its labels, usable once.
    let enrollment = run_admin(url, &["create-enrollment-token", "--label", "env=prod", "--label", "region=eu", "--name", "edge-1"], "");
    assert!(enrollment.status.success(), "{}", String::from_utf8_lossy(&enrollment.stderr));
    let secret = String::from_utf8(enrollment.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("pae_"), "{secret}");
    let key = hex::encode(ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
    let request = store::agents::EnrollmentRequest { token: secret, public_key: key, name: None, version: "test".into() };
    let agent = store::agents::enroll(&database.db, &request, &store::audit::AuditContext::system("test")).await.unwrap();
    assert_eq!((agent.name.as_str(), agent.labels.get("region").map(String::as_str)), ("edge-1", Some("eu")));

    // Bad input: a clear message, a failing exit, and nothing changed.
    let cases: [(&[&str], &str, &str); 7] = [
        (&["create-enrollment-token", "--label", "env"], "", "key=value"),
        (&["create-enrollment-token", "--expires-minutes", "0"], "", "expires-minutes"),
        (&["create-user", "--email", "x@example.com", "--role", "developer"], "", "standard input"),
        (&["create-user", "--email", "x@example.com", "--role", "developer"], "short\n", "at least 12"),
        (&["create-user", "--email", "x@example.com", "--role", "root"], "a long enough password\n", "root"),
        (&["create-user", "--email", "dev@example.com", "--role", "auditor"], "a long enough password\n", "already taken"),
        (&["create-token", "--email", "ghost@example.com", "--name", "ci"], "", "not found"),
    ];
    for (args, stdin, expected) in cases {
        let output = run_admin(url, args, stdin);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(accounts::find_account_by_email(&database.db, "x@example.com").await.is_err());
    assert_eq!(accounts::count_accounts(&database.db).await.unwrap(), 1);

    // Everything above was audited, and `palisade audit verify` says the chain is intact…
    let verified = palisade(url).args(["audit", "verify"]).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let said = String::from_utf8_lossy(&verified.stdout).to_string();
    assert!(said.contains("intact") && said.contains("entries"), "{said}");
    // …until someone edits an entry behind Palisade's back.
    sqlx::query("UPDATE audit_entry SET actor_label = 'nobody' WHERE seq = 2").execute(database.db.pool()).await.unwrap();
    let tampered = palisade(url).args(["audit", "verify"]).output().unwrap();
    assert!(!tampered.status.success());
    let said = String::from_utf8_lossy(&tampered.stderr).to_string();
    assert!(said.contains("sequence 2"), "{said}");
}

#[tokio::test]
async fn admin_cli_creates_users_and_tokens_on_sqlite() {
    admin_cli_creates_users_and_tokens(Backend::Sqlite).await;
}

#[tokio::test]
async fn admin_cli_creates_users_and_tokens_on_postgres() {
    admin_cli_creates_users_and_tokens(Backend::Postgres).await;
}

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["serve", "--help"], &["admin", "--help"], &["admin", "create-user", "--help"], &["admin", "create-token", "--help"], &["admin", "list-tokens", "--help"], &["admin", "revoke-token", "--help"], &["audit", "verify", "--help"], &["audit", "keys", "--help"], &["audit", "rotate-key", "--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_palisade")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{args:?}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_palisade")).args(["serve", "--listen", "nowhere"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--listen"));
    let bad_url = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["admin", "create-token", "--email", "a@b.c", "--name", "x"])
        .env("PALISADE_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!bad_url.status.success());
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("unsupported database URL"));
}

/// Two processes (each a stream of `palisade admin` runs) appending to one database at the
/// same time: every entry lands, in one linear chain.
async fn concurrent_processes_keep_the_chain_linear(backend: Backend) {
    let database = TestDb::new(backend).await;
    let created = run_admin(&database.url, &["create-user", "--email", "ops@example.com", "--role", "admin"], "a long enough password\n");
    assert!(created.status.success());
    let before = store::audit::list_entries(&database.db, 0, 10_000).await.unwrap().len();
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let url = database.url.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    let name = format!("w{writer}-{i}");
                    let output = run_admin(&url, &["create-token", "--email", "ops@example.com", "--name", &name], "");
                    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let entries = store::audit::list_entries(&database.db, 0, 10_000).await.unwrap();
    assert_eq!(entries.len(), before + 24);
    assert_eq!(store::audit::verify_database_own_keys(&database.db).await.unwrap().map(|s| s.entries), Ok(entries.len() as i64));
}

#[tokio::test]
async fn concurrent_processes_keep_the_chain_linear_on_sqlite() {
    concurrent_processes_keep_the_chain_linear(Backend::Sqlite).await;
}

#[tokio::test]
async fn concurrent_processes_keep_the_chain_linear_on_postgres() {
    concurrent_processes_keep_the_chain_linear(Backend::Postgres).await;
}

fn output_text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Signed checkpoints end to end: the key is generated on first start and sealed under a
/// 0600 master key file; the export verifies with nothing but the published public keys;
/// a cut tail and a forged checkpoint are caught; a rotated key keeps old checkpoints
/// verifiable; the wrong master key stops the server instead of signing with a new key.
#[tokio::test]
async fn checkpoints_are_signed_exported_and_rotated() {
    let database = TestDb::empty(Backend::Sqlite).await;
    let url = database.url.as_str();
    let folder = data_dir(url);
    let _ = std::fs::remove_dir_all(&folder);
    let export = folder.join("audit.jsonl");
    let (child, _, _) = serve(url, &["--audit-checkpoint-entries", "1"]);
    stop(child);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(folder.join("master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the master key file is private");
    }
    let sealed: String = sqlx::query_scalar("SELECT sealed_secret FROM signing_key").fetch_one(database.db.pool()).await.unwrap();
    // Nonce, the 32-byte secret encrypted, and the tag: 60 bytes, never the bare secret.
    assert_eq!(sealed.len(), 120, "stored sealed: {sealed}");

    // Publish the keys, then verify the file with them alone: no database.
    let keys = palisade(url).args(["audit", "keys"]).output().unwrap();
    assert!(keys.status.success(), "{}", output_text(&keys));
    let keys_file = folder.join("keys.json");
    std::fs::write(&keys_file, &keys.stdout).unwrap();
    let offline = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .env_clear()
            .env("PALISADE_DATABASE_URL", "postgres://127.0.0.1:1/unreachable")
            .args(["audit", "verify", "--file"])
            .arg(file)
            .arg("--keys")
            .arg(&keys_file)
            .output()
            .unwrap()
    };
    let verified = offline(&export);
    assert!(verified.status.success(), "{}", output_text(&verified));
    assert!(output_text(&verified).contains("with the given keys: 2 entries intact"), "{}", output_text(&verified));

    // Cut the last entry but keep the checkpoint that signed it: caught, and named.
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut: Vec<&str> = lines.iter().copied().filter(|line| !line.contains(r#""seq":2,"#) || line.contains(r#""type":"checkpoint""#)).collect();
    assert_eq!(cut.len(), lines.len() - 1);
    let cut_file = folder.join("cut.jsonl");
    std::fs::write(&cut_file, cut.join("\n") + "\n").unwrap();
    let caught = offline(&cut_file);
    assert!(!caught.status.success());
    assert!(output_text(&caught).contains("sequence 2") && output_text(&caught).contains("cut off"), "{}", output_text(&caught));

    // A checkpoint whose signature was forged is caught too.
    let forged: Vec<String> = lines
        .iter()
        .map(|line| {
            if line.contains(r#""type":"checkpoint""#) {
                let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["signature"] = serde_json::Value::String("00".repeat(64));
                value.to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    let forged_file = folder.join("forged.jsonl");
    std::fs::write(&forged_file, forged.join("\n") + "\n").unwrap();
    let caught = offline(&forged_file);
    assert!(!caught.status.success());
    assert!(output_text(&caught).contains("does not verify"), "{}", output_text(&caught));

    // Rotate, serve again, and both keys' checkpoints verify; the old key is retired.
    let rotated = palisade(url).args(["audit", "rotate-key"]).output().unwrap();
    assert!(rotated.status.success(), "{}", output_text(&rotated));
    let (child, _, _) = serve(url, &["--audit-checkpoint-entries", "1"]);
    stop(child);
    let keys = palisade(url).args(["audit", "keys"]).output().unwrap();
    let published: Vec<store::PublicKeyInfo> = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(published.len(), 2);
    assert!(published[0].retired_at.is_some() && published[1].retired_at.is_none(), "{published:?}");
    std::fs::write(&keys_file, &keys.stdout).unwrap();
    let verified = offline(&export);
    assert!(verified.status.success(), "{}", output_text(&verified));
    assert!(output_text(&verified).contains("2 signed checkpoints"), "{}", output_text(&verified));
    let in_database = palisade(url).args(["audit", "verify", "--keys"]).arg(&keys_file).output().unwrap();
    assert!(in_database.status.success(), "{}", output_text(&in_database));
    assert!(output_text(&in_database).contains(&format!("signed by key {}", published[1].key_id)), "{}", output_text(&in_database));

    // The wrong master key: the server refuses to start rather than sign with a new key.
    let refused = palisade(url)
        .env("PALISADE_MASTER_KEY", "ab".repeat(32))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(output_text(&refused).contains("cannot be unsealed"), "{}", output_text(&refused));
    let _ = std::fs::remove_dir_all(&folder);
}

/// A single sign-on provider in configuration (`PALISADE_OIDC_*`): created at the first
/// start with its secret sealed, left alone by a start with the same settings, brought in
/// line by one with new settings; an incomplete configuration stops the start.
#[tokio::test]
async fn a_configured_provider_is_kept_in_line_with_the_environment() {
    let database = TestDb::new(Backend::Sqlite).await;
    let url = database.url.clone();
    let with_provider = |mapping: &str| {
        let mut command = palisade(&url);
        command
            .env("PALISADE_OIDC_ISSUER", "https://login.example.com/realms/corp")
            .env("PALISADE_OIDC_CLIENT_ID", "palisade")
            .env("PALISADE_OIDC_CLIENT_SECRET", "configured-secret-value")
            .env("PALISADE_OIDC_ROLE_MAPPING", mapping)
            .env("PALISADE_OIDC_NAME", "Corp login");
        command
    };
    let start = |mut command: Command| {
        let mut child = command.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        for line in reader.lines() {
            if line.unwrap().starts_with("Palisade is listening on ") {
                return child;
            }
        }
        panic!("palisade exited before listening");
    };
    let provider_changes = |db: store::Db| async move {
        let filter = store::AuditFilter { action: Some("sso_provider".into()), ..Default::default() };
        store::audit::search_entries(&db, &filter, None).await.unwrap().entries.len()
    };
    stop(start(with_provider("ciso=security, platform=admin")));
    let providers = store::sso_providers::list(&database.db).await.unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].slug, "sso");
    assert_eq!(providers[0].display_name, "Corp login");
    assert_eq!(providers[0].mapping.roles.len(), 2);
    assert_eq!(providers[0].mapping.roles[1].role, Role::Admin);
    let sealed: String = sqlx::query_scalar("SELECT sealed_client_secret FROM sso_provider").fetch_one(database.db.pool()).await.unwrap();
    assert!(!sealed.is_empty() && !sealed.contains("configured-secret-value"));
    assert_eq!(provider_changes(database.db.clone()).await, 1);

    stop(start(with_provider("ciso=security, platform=admin")));
    assert_eq!(provider_changes(database.db.clone()).await, 1, "the same settings write nothing");
    stop(start(with_provider("ciso=security")));
    assert_eq!(provider_changes(database.db.clone()).await, 2);
    assert_eq!(store::sso_providers::list(&database.db).await.unwrap()[0].mapping.roles.len(), 1);

    let incomplete = palisade(&url)
        .env("PALISADE_OIDC_ISSUER", "https://login.example.com")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!incomplete.status.success());
    assert!(output_text(&incomplete).contains("PALISADE_OIDC_CLIENT_ID"), "{}", output_text(&incomplete));
}
