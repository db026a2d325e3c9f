//! Crash safety: `palisade serve` is killed with SIGKILL, again and again, while a client
//! is making changes. Afterwards every acknowledged change is there with its audit entry,
//! and the chain verifies. Runs on SQLite and PostgreSQL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use store::testing::TestDb;
use store::{AuditFilter, Backend, audit, teams};

const PASSWORD: &str = "crash test password";

fn start(url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PALISADE_DATABASE_URL", url)
        .env("PALISADE_ADMIN_PASSWORD", PASSWORD)
        .env("PALISADE_DATA_DIR", std::env::temp_dir().join(format!("palisade-crash-{}", std::process::id())))
        .env("PALISADE_AUDIT_CHECKPOINT_ENTRIES", "10")
        // The admin acts with a password alone here; mfa.rs covers the requirement.
        .env("PALISADE_MFA_REQUIRED_ROLES", "none")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        if let Some(base) = line.unwrap().strip_prefix("Palisade is listening on http://") {
            return (child, base.to_owned());
        }
    }
    panic!("palisade did not start");
}

/// One HTTP/1.1 request on its own connection: (status, raw response), or `None` when the
/// server died under it.
fn request(address: &str, method: &str, path: &str, cookie: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nOrigin: http://{address}\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response))
}

fn sign_in(address: &str) -> String {
    let body = format!("email=admin%40localhost&password={}", PASSWORD.replace(' ', "+"));
    let (status, response) = request(address, "POST", "/auth/login", "", &body).expect("sign-in answered");
    assert_eq!(status, 303, "{response}");
    response
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|cookie| cookie.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

async fn acknowledged_changes_survive_sigkill(backend: Backend) {
    let database = TestDb::empty(backend).await;
    let mut acknowledged: Vec<String> = Vec::new();
    let mut attempted = 0;
    for round in 0..5 {
        let (mut child, address) = start(&database.url);
        let cookie = sign_in(&address);
        // A writer hammers the server with changes; the test kills it mid-stream.
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = {
            let address = address.clone();
            let progress = progress.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut tried = 0;
                for i in 0..10_000 {
                    let name = format!("crash-{round}-{i}");
                    tried += 1;
                    match request(&address, "POST", "/rpc/create_team", &cookie, &format!("name={name}")) {
                        Some((200, _)) => {
                            done.push(name);
                            progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Some((status, response)) => panic!("unexpected {status}: {response}"),
                        None => break,
                    }
                }
                (done, tried)
            })
        };
        // Kill mid-stream: after some changes went through (however slow the machine is),
        // at a different moment each round.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while progress.load(std::sync::atomic::Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let (done, tried) = writer.join().unwrap();
        acknowledged.extend(done);
        attempted += tried;
    }
    assert!(acknowledged.len() >= 15, "the writer got some changes in ({} of {attempted})", acknowledged.len());

    let db = &database.db;
    let stored: Vec<String> = teams::list_teams(db).await.unwrap().into_iter().map(|t| t.name).collect();
    let mut audited: Vec<String> = Vec::new();
    let mut filter = AuditFilter { action: Some("team.create".into()), limit: Some(200), ..Default::default() };
    loop {
        let page = audit::search_entries(db, &filter, None).await.unwrap();
        audited.extend(page.entries.iter().map(|e| e.details["after"]["name"].as_str().unwrap_or_default().to_owned()));
        match page.next_cursor {
            Some(before) => filter.before_seq = Some(before),
            None => break,
        }
    }
    eprintln!("{backend:?}: {} changes acknowledged of {attempted} attempted across 5 SIGKILLs", acknowledged.len());
    for name in &acknowledged {
        assert!(stored.contains(name), "acknowledged team {name} lost");
        assert!(audited.contains(name), "acknowledged team {name} has no audit entry");
    }
    // Nothing half-done either: every stored team has its entry and vice versa.
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    audited.sort();
    assert_eq!(stored_sorted, audited);
    let verified = audit::verify_database_own_keys(db).await.unwrap().expect("the trail verifies after the crashes");
    assert!(verified.entries > 0 && verified.checkpoints > 0, "{verified:?}");
}

#[tokio::test]
async fn acknowledged_changes_survive_sigkill_on_sqlite() {
    acknowledged_changes_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_changes_survive_sigkill_on_postgres() {
    acknowledged_changes_survive_sigkill(Backend::Postgres).await;
}
