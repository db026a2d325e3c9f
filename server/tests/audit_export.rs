//! The JSON Lines export: a failing sink loses nothing once it recovers, never duplicates,
//! repairs a torn last line, and an exported file verifies on its own (tampering caught).

use server::audit_export::{export_once, verify_file};
use store::audit::{self, AuditContext, Change};
use store::testing::TestDb;
use store::{Backend, Db};

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
    let dir = std::env::temp_dir().join(format!("palisade-export-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    // The sink's folder is blocked by a file: every write fails.
    let blocked = dir.join("sink");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let path = blocked.join("audit.jsonl");
    add_entries(&database.db, 5).await;
    assert!(export_once(&database.db, &path).await.is_err());
    add_entries(&database.db, 3).await;
    assert!(export_once(&database.db, &path).await.is_err(), "still down");

    // The sink recovers: everything written meanwhile arrives, once.
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(&blocked).unwrap();
    assert_eq!(export_once(&database.db, &path).await.unwrap(), 8);
    assert_eq!(export_once(&database.db, &path).await.unwrap(), 0, "nothing twice");
    add_entries(&database.db, 2).await;
    assert_eq!(export_once(&database.db, &path).await.unwrap(), 2);
    assert_eq!(verify_file(&path), Ok(10));

    // A crash mid-write leaves a torn line: it is cut, and export continues cleanly.
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(br#"{"type":"entry","seq":11,"at""#);
    std::fs::write(&path, torn).unwrap();
    add_entries(&database.db, 1).await;
    assert_eq!(export_once(&database.db, &path).await.unwrap(), 1);
    assert_eq!(verify_file(&path), Ok(11));

    // Tampering with the copy is caught without the database.
    let mut edited = lines(&path);
    edited[3] = edited[3].replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let broken = verify_file(&path).unwrap_err();
    assert!(broken.contains("sequence 4"), "{broken}");
    let mut deleted = lines(&path);
    deleted.remove(6);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    assert!(verify_file(&path).unwrap_err().contains("sequence 4"), "the first problem is named");
    std::fs::write(&path, "garbage\n").unwrap();
    assert!(verify_file(&path).unwrap_err().contains("line 1"));
    std::fs::remove_dir_all(dir).unwrap();
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
