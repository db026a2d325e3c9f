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
        .env("RUST_LOG", "warn");
    command
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
    let verified = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["audit", "verify", "--file", &export_arg])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("1 entries, intact"));
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

    // Bad input: a clear message, a failing exit, and nothing changed.
    let cases: [(&[&str], &str, &str); 5] = [
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
    for args in [&["--help"][..], &["serve", "--help"], &["admin", "--help"], &["admin", "create-user", "--help"], &["admin", "create-token", "--help"], &["admin", "list-tokens", "--help"], &["admin", "revoke-token", "--help"], &["audit", "verify", "--help"]] {
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
    assert_eq!(store::audit::verify_database(&database.db).await.unwrap(), Ok(entries.len() as i64));
}

#[tokio::test]
async fn concurrent_processes_keep_the_chain_linear_on_sqlite() {
    concurrent_processes_keep_the_chain_linear(Backend::Sqlite).await;
}

#[tokio::test]
async fn concurrent_processes_keep_the_chain_linear_on_postgres() {
    concurrent_processes_keep_the_chain_linear(Backend::Postgres).await;
}
