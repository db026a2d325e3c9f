//! Per-test databases: a fresh SQLite file or a fresh PostgreSQL database for each test,
//! migrated and removed afterwards, so the same test runs against both backends.
//!
//! PostgreSQL tests never skip silently: when the server is unreachable they fail and say
//! how to point them elsewhere (`PALISADE_TEST_POSTGRES_URL`).

use crate::{Backend, Db};
use std::path::PathBuf;

/// The server that hosts per-test PostgreSQL databases (a maintenance database URL).
pub fn postgres_admin_url() -> String {
    std::env::var("PALISADE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// An honest audit chain of `len` entries, varied in actor, action, reason and details,
/// built in memory for verification tests.
pub fn sample_chain(len: usize) -> Vec<crate::AuditEntry> {
    let mut entries: Vec<crate::AuditEntry> = Vec::with_capacity(len);
    for i in 0..len {
        let prev_hash = entries.last().map_or(crate::audit::GENESIS_HASH.to_owned(), |e| e.hash.clone());
        let mut entry = crate::AuditEntry {
            seq: i as i64 + 1,
            at: 1_700_000_000_000 + i as i64,
            actor_type: "user".into(),
            actor_id: Some(i as i64 % 3),
            actor_label: format!("user{}@example.com", i % 3),
            action: ["account.create", "session.login", "team.create"][i % 3].into(),
            target_type: "account".into(),
            target_id: (i * 7).to_string(),
            outcome: "success".into(),
            source: "10.0.0.1".into(),
            user_agent: "test".into(),
            request_id: format!("req-{i}"),
            reason: (i % 4 == 0).then(|| "because".to_owned()),
            details: serde_json::json!({"after": {"role": "developer", "n": i}}),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entries.push(entry);
    }
    entries
}

/// A database that exists for one test.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteDir(PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

impl TestDb {
    /// A migrated database.
    pub async fn new(backend: Backend) -> TestDb {
        let test_db = TestDb::empty(backend).await;
        test_db.db.migrate().await.expect("migrate the test database");
        test_db
    }

    /// A database with nothing in it, not even the schema (for first-start tests).
    pub async fn empty(backend: Backend) -> TestDb {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("palisade-test-{unique}"));
                let url = format!("sqlite://{}/palisade.db", dir.display());
                (url, Cleanup::SqliteDir(dir))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("palisade_test_{unique}");
                let admin = Db::connect_without_migrating(&admin_url).await.unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL tests need a server at {admin_url} ({error}); start it \
                         (pg_ctlcluster 15 main start) or set PALISADE_TEST_POSTGRES_URL"
                    )
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = replace_database(&admin_url, &name);
                (url, Cleanup::PostgresDatabase { admin_url, name })
            }
        };
        let db = Db::connect_without_migrating(&url).await.expect("connect to the test database");
        TestDb { db, url, cleanup }
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside any async context we could await in: use a thread
                // with its own small runtime. FORCE ends the pool's open connections.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(async {
                            if let Ok(admin) = Db::connect_without_migrating(&admin_url).await {
                                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                    .execute(admin.pool())
                                    .await;
                                admin.close().await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }
}

/// Runs an async test body once on SQLite and once on PostgreSQL:
/// `both_backends!(name, |db: Db| async move { … })` makes `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let test_db = $crate::testing::TestDb::new($crate::Backend::Sqlite).await;
                ($body)(test_db.db.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let test_db = $crate::testing::TestDb::new($crate::Backend::Postgres).await;
                ($body)(test_db.db.clone()).await;
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            super::replace_database("postgres://u@h/db?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(super::replace_database("postgres://u@h", "t1"), "postgres://u@h/t1");
    }
}
