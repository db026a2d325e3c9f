//! Audit append throughput against a plain insert of the same row, on SQLite and
//! PostgreSQL, measured in the same run. Each append is its own transaction, as in
//! Palisade: lock the head, hash, insert, move the head, commit. The baseline inserts the
//! same columns into a table without the chain, one transaction each.
//!
//! Run: `cargo bench -p store --bench audit_append` (PostgreSQL from
//! PALISADE_TEST_POSTGRES_URL, default 127.0.0.1:5432). Prints entries/s and the ratio.

use std::time::Instant;
use store::audit::{self, AuditContext, Change};
use store::testing::TestDb;
use store::{Backend, Db};

const PER_ROUND: usize = 300;
const ROUNDS: usize = 5;

fn change(i: usize) -> Change {
    Change::success("team.create", "team", i).with_details(serde_json::json!({"after": {"name": format!("Team {i}")}}))
}

async fn appends(db: &Db, context: &AuditContext) -> f64 {
    let started = Instant::now();
    for i in 0..PER_ROUND {
        audit::record(db, context, change(i)).await.expect("append");
    }
    PER_ROUND as f64 / started.elapsed().as_secs_f64()
}

async fn plain_inserts(db: &Db, next_seq: &mut i64) -> f64 {
    let started = Instant::now();
    for i in 0..PER_ROUND {
        *next_seq += 1;
        let details = serde_json::json!({"after": {"name": format!("Team {i}")}}).to_string();
        let mut tx = db.pool().begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO bench_plain (seq, at, actor_type, actor_id, actor_label, action, target_type, \
             target_id, outcome, source, user_agent, request_id, reason, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(*next_seq)
        .bind(store::now_millis())
        .bind("system")
        .bind(None::<i64>)
        .bind("bench")
        .bind("team.create")
        .bind("team")
        .bind(i.to_string())
        .bind("success")
        .bind("local")
        .bind("")
        .bind("")
        .bind(None::<String>)
        .bind(details)
        .bind(audit::GENESIS_HASH)
        .bind(format!("{:064x}", *next_seq))
        .execute(&mut *tx)
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
    }
    PER_ROUND as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn measure(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = &test_db.db;
    let integer = if backend == Backend::Sqlite { "INTEGER" } else { "BIGINT" };
    sqlx::query(&format!(
        "CREATE TABLE bench_plain (seq {integer} PRIMARY KEY, at {integer} NOT NULL, actor_type TEXT NOT NULL, \
         actor_id {integer}, actor_label TEXT NOT NULL, action TEXT NOT NULL, target_type TEXT NOT NULL, \
         target_id TEXT NOT NULL, outcome TEXT NOT NULL, source TEXT NOT NULL, user_agent TEXT NOT NULL, \
         request_id TEXT NOT NULL, reason TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE)"
    ))
    .execute(db.pool())
    .await
    .expect("baseline table");
    for index in ["at", "target_type, target_id", "actor_type, actor_id"] {
        let name = index.replace(", ", "_");
        sqlx::query(&format!("CREATE INDEX bench_plain_{name}_idx ON bench_plain ({index})"))
            .execute(db.pool())
            .await
            .expect("baseline index");
    }
    let context = AuditContext::system("bench");
    let (mut chained, mut plain, mut next_seq) = (Vec::new(), Vec::new(), 0_i64);
    // Alternate, so drift in the machine's load hits both alike.
    for _ in 0..ROUNDS {
        chained.push(appends(db, &context).await);
        plain.push(plain_inserts(db, &mut next_seq).await);
    }
    let (chained, plain) = (median(chained), median(plain));
    println!(
        "{backend:?}: audit append {chained:.0} entries/s, plain insert {plain:.0} rows/s, ratio {:.2}x \
         (median of {ROUNDS} rounds of {PER_ROUND})",
        chained / plain
    );
    assert!(audit::verify_database_own_keys(db).await.expect("verify").is_ok(), "the benchmarked chain verifies");
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs this with --bench absent: stay quick there.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    measure(Backend::Sqlite).await;
    measure(Backend::Postgres).await;
}
