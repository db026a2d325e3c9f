//! Import time and peak memory for GitHub's full REST description (npm `@octokit/openapi`,
//! installed in e2e/node_modules by `scripts/test`): parse and check, then register it in
//! a fresh SQLite and PostgreSQL database, then re-import it unchanged. Reports operations
//! per second for each step and the process's peak resident memory.
//!
//! Run: `cargo bench -p store --bench openapi_import`.

use std::time::Instant;
use store::apis;
use store::audit::AuditContext;
use store::openapi::{self, Format};
use store::testing::TestDb;
use store::{Backend, teams};

fn peak_resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let path = format!("{}/../e2e/node_modules/@octokit/openapi/generated/api.github.com.json", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run `cd e2e && npm ci`"));
    let before = peak_resident_mib();
    let started = Instant::now();
    let spec = openapi::parse(&bytes, Format::Json).expect("GitHub's description parses");
    let parsed = started.elapsed().as_secs_f64();
    let operations = spec.operations.len() as f64;
    println!(
        "parse and check: {:.1} MB, {} operations in {parsed:.2} s ({:.0} operations/s); peak memory {:.0} MiB (was {before:.0} MiB)",
        bytes.len() as f64 / 1e6,
        spec.operations.len(),
        operations / parsed,
        peak_resident_mib()
    );
    let context = AuditContext::system("bench");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let test_db = TestDb::new(backend).await;
        let team = teams::create_team(&test_db.db, "Platform", &context).await.expect("team").id;
        let started = Instant::now();
        let api = apis::create_api(&test_db.db, team, "production", &spec, &context).await.expect("create");
        let created = started.elapsed().as_secs_f64();
        let started = Instant::now();
        apis::reimport_spec(&test_db.db, api.summary.id, &spec, &context).await.expect("re-import");
        let reimported = started.elapsed().as_secs_f64();
        println!(
            "{backend:?}: register {created:.2} s ({:.0} operations/s), re-import unchanged {reimported:.2} s; \
             whole import (parse + register) {:.2} s; peak memory {:.0} MiB",
            operations / created,
            parsed + created,
            peak_resident_mib()
        );
    }
}
