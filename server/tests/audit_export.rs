//! The out-of-band sinks. The JSON Lines file: a failing sink loses nothing once it
//! recovers, never duplicates, repairs a torn last line, carries the signed checkpoints
//! (late ones too), and verifies on its own with only the public keys. The webhook: down
//! or failing, it resumes from its stored cursor and delivers everything in order.

use server::audit_export::{ExportLine, export_once, verify_file};
use server::audit_webhook::Webhook;
use store::audit::{self, AuditContext, Change};
use store::checkpoints::{CheckpointPolicy, checkpoint_if_due};
use store::signing::{self, KeyPurpose, KeySet, MasterKey, Signer};
use store::testing::TestDb;
use store::{Backend, Db};

async fn signer(db: &Db) -> (Signer, KeySet) {
    let (master, _) = MasterKey::generate();
    let signer = signing::ensure_signer(db, &master, KeyPurpose::Audit, &AuditContext::system("test")).await.unwrap();
    let keys = KeySet::from_public_keys(&signing::list_public_keys(db, KeyPurpose::Audit).await.unwrap()).unwrap();
    (signer, keys)
}

async fn checkpoint(db: &Db, signer: &Signer) {
    checkpoint_if_due(db, signer, CheckpointPolicy::ALWAYS).await.unwrap().expect("something to sign");
}

async fn add_entries(db: &Db, count: usize) {
    for i in 0..count {
        audit::record(db, &AuditContext::system("test"), Change::success("team.create", "team", i)).await.unwrap();
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

async fn a_failing_sink_catches_up(backend: Backend) {
    let database = TestDb::new(backend).await;
    let db = &database.db;
    let (signer, keys) = signer(db).await; // entry 1: the key's creation
    let dir = std::env::temp_dir().join(format!("palisade-export-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    // The sink's folder is blocked by a file: every write fails.
    let blocked = dir.join("sink");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let path = blocked.join("audit.jsonl");
    add_entries(db, 5).await;
    checkpoint(db, &signer).await;
    assert!(export_once(db, &path).await.is_err());
    add_entries(db, 3).await;
    checkpoint(db, &signer).await;
    assert!(export_once(db, &path).await.is_err(), "still down");

    // The sink recovers: everything written meanwhile arrives, once, checkpoints after
    // the entries they sign.
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(&blocked).unwrap();
    assert_eq!(export_once(db, &path).await.unwrap(), 9 + 2);
    assert_eq!(export_once(db, &path).await.unwrap(), 0, "nothing twice");
    let kinds: Vec<String> = lines(&path).iter().map(|line| match serde_json::from_str(line).unwrap() {
        ExportLine::Entry(entry) => format!("e{}", entry.seq),
        ExportLine::Checkpoint(checkpoint) => format!("c{}", checkpoint.seq),
    }).collect();
    assert_eq!(kinds, ["e1", "e2", "e3", "e4", "e5", "e6", "c6", "e7", "e8", "e9", "c9"]);
    add_entries(db, 2).await;
    assert_eq!(export_once(db, &path).await.unwrap(), 2);
    let verified = verify_file(&path, &keys).unwrap();
    assert_eq!((verified.entries, verified.checkpoints, verified.last_checkpoint.unwrap().seq), (11, 2, 9));

    // A checkpoint over entries already exported follows late, and still verifies.
    checkpoint(db, &signer).await;
    assert_eq!(export_once(db, &path).await.unwrap(), 1);
    assert_eq!(verify_file(&path, &keys).unwrap().checkpoints, 3);

    // A crash mid-write leaves a torn line: it is cut, and export continues cleanly.
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(br#"{"type":"entry","seq":12,"at""#);
    std::fs::write(&path, torn).unwrap();
    add_entries(db, 1).await;
    assert_eq!(export_once(db, &path).await.unwrap(), 1);
    assert_eq!(verify_file(&path, &keys).unwrap().entries, 12);
    let honest = lines(&path);

    // Tampering with the copy is caught without the database.
    let mut edited = honest.clone();
    edited[3] = edited[3].replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
    write_lines(&path, &edited);
    let broken = verify_file(&path, &keys).unwrap_err();
    assert!(broken.contains("sequence 4"), "{broken}");
    let mut deleted = honest.clone();
    deleted.remove(4);
    write_lines(&path, &deleted);
    assert!(verify_file(&path, &keys).unwrap_err().contains("sequence 5"), "the first problem is named");

    // An edit with every later hash recomputed passes the chain, not the checkpoint.
    write_lines(&path, &rewritten(&honest, 4));
    let broken = verify_file(&path, &keys).unwrap_err();
    assert!(broken.contains("sequence 1") && broken.contains("1..=6 were rewritten"), "{broken}");
    // The same rewrite after the second checkpoint names the range from there.
    write_lines(&path, &rewritten(&honest, 8));
    assert!(verify_file(&path, &keys).unwrap_err().contains("7..=9 were rewritten"));

    // Checked against keys that did not sign it, the file does not verify.
    write_lines(&path, &honest);
    let strangers = KeySet::from_public_keys(&[]).unwrap();
    assert!(verify_file(&path, &strangers).unwrap_err().contains("unknown key"));
    std::fs::write(&path, "garbage\n").unwrap();
    assert!(verify_file(&path, &keys).unwrap_err().contains("line 1"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The file with entry `seq` edited and every later entry re-hashed and re-linked: what
/// someone who can write the file but holds no signing key can do at best.
fn rewritten(lines: &[String], seq: i64) -> Vec<String> {
    let mut previous_hash: Option<String> = None;
    lines
        .iter()
        .map(|line| match serde_json::from_str::<ExportLine>(line).unwrap() {
            ExportLine::Entry(mut entry) if entry.seq >= seq => {
                if entry.seq == seq {
                    entry.actor_label = "mallory@example.com".into();
                }
                if let Some(hash) = previous_hash.take() {
                    entry.prev_hash = hash;
                }
                entry.hash = entry.compute_hash();
                previous_hash = Some(entry.hash.clone());
                serde_json::to_string(&ExportLine::Entry(entry)).unwrap()
            }
            _ => line.clone(),
        })
        .collect()
}

/// A webhook receiver on a free port: it stores what it accepts, and fails while told to.
struct Receiver {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn receiver() -> Receiver {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::Ordering;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (store, fail) = (received.clone(), failing.clone());
    let app = axum::Router::new().route(
        "/collect",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (store, fail) = (store.clone(), fail.clone());
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sink-token") {
                    return StatusCode::UNAUTHORIZED;
                }
                if fail.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                store.lock().unwrap().extend(body.lines().map(str::to_owned));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/collect?source=test", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, received, failing }
}

async fn a_failing_webhook_resumes(backend: Backend) {
    use std::sync::atomic::Ordering;
    let database = TestDb::new(backend).await;
    let db = &database.db;
    let (signer, keys) = signer(db).await;
    let receiver = receiver().await;
    add_entries(db, 450).await;
    checkpoint(db, &signer).await;

    let webhook = Webhook::new(receiver.url.clone(), Some("sink-token".into())).unwrap();
    assert!(webhook.deliver_once(db).await.unwrap_err().contains("503"));
    assert!(receiver.received.lock().unwrap().is_empty());
    let wrong_token = Webhook::new(receiver.url.clone(), Some("wrong".into())).unwrap();
    receiver.failing.store(false, Ordering::SeqCst);
    assert!(wrong_token.deliver_once(db).await.unwrap_err().contains("401"));

    // Back up: everything arrives, in order, in batches.
    assert_eq!(webhook.deliver_once(db).await.unwrap(), 451 + 1);
    // A restarted Palisade (a new sink object) resumes from the stored cursor.
    let restarted = Webhook::new(receiver.url.clone(), Some("sink-token".into())).unwrap();
    assert_eq!(restarted.deliver_once(db).await.unwrap(), 0, "nothing twice");
    add_entries(db, 3).await;
    assert_eq!(restarted.deliver_once(db).await.unwrap(), 3);

    // What the receiver holds is a complete trail that verifies on its own.
    let lines = receiver.received.lock().unwrap().clone();
    let dir = std::env::temp_dir().join(format!("palisade-webhook-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("received.jsonl");
    write_lines(&copy, &lines);
    let verified = verify_file(&copy, &keys).unwrap();
    assert_eq!((verified.entries, verified.checkpoints), (454, 1));
    std::fs::remove_dir_all(dir).unwrap();

    // A webhook that is not there at all fails cleanly, without naming its URL (which
    // may hold a secret).
    let gone = Webhook::new("http://127.0.0.1:1/collect?key=secret".into(), None).unwrap();
    let error = gone.deliver_once(db).await.unwrap_err();
    assert!(!error.contains("secret"), "{error}");
}

#[tokio::test]
async fn a_failing_webhook_resumes_on_sqlite() {
    a_failing_webhook_resumes(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_failing_webhook_resumes_on_postgres() {
    a_failing_webhook_resumes(Backend::Postgres).await;
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test]
async fn a_failing_sink_catches_up_on_sqlite() {
    a_failing_sink_catches_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_failing_sink_catches_up_on_postgres() {
    a_failing_sink_catches_up(Backend::Postgres).await;
}

/// The periodic export and the flush at shutdown can overlap: the file still gets each
/// line once.
#[tokio::test]
async fn concurrent_exports_write_each_line_once() {
    let database = TestDb::new(Backend::Sqlite).await;
    let (signer, keys) = signer(&database.db).await;
    add_entries(&database.db, 60).await;
    checkpoint(&database.db, &signer).await;
    let dir = std::env::temp_dir().join(format!("palisade-export-race-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let exports: Vec<_> = (0..4)
        .map(|_| {
            let (db, path) = (database.db.clone(), path.clone());
            tokio::spawn(async move { export_once(&db, &path).await.unwrap() })
        })
        .collect();
    let mut written = 0;
    for export in exports {
        written += export.await.unwrap();
    }
    assert_eq!(written, 61 + 1, "every line written once, by whichever export came first");
    assert_eq!(verify_file(&path, &keys).unwrap().entries, 61);
    std::fs::remove_dir_all(dir).unwrap();
}
