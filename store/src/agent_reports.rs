//! What enrolled agents tell the control plane, and what it needs to hear them safely: the
//! nonces of signed calls (each spent once), heartbeats (with the first time each agent ran
//! each revision, for fleet convergence), uploaded decisions (stored once per record id),
//! and the generation counter that bundle and pin changes bump.

use crate::{AgentCounters, AgentStatus};
use crate::{Db, StoreError, now_millis};
use serde::{Deserialize, Serialize};
use sqlx::Row;

const MAX_ERROR_CHARS: usize = 500;
const MAX_HASH_CHARS: usize = 128;
const MAX_VERSION_CHARS: usize = 64;
/// Rows per INSERT when storing a batch: well under SQLite's bound-parameter limit.
const ROWS_PER_INSERT: usize = 200;

/// Spends a signed call's nonce and notes that the agent was seen. `false` when the nonce
/// was spent before: the call is a replay.
pub async fn spend_nonce(db: &Db, agent_id: i64, nonce: &str) -> Result<bool, StoreError> {
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let spent = sqlx::query("INSERT INTO agent_nonce (agent_id, nonce, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(agent_id)
        .bind(nonce)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if spent.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE agent SET last_seen_at = $1 WHERE agent_id = $2").bind(now).bind(agent_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// Forgets nonces older than `before` (Unix ms): calls that old are refused by their time
/// stamp anyway. Returns how many were forgotten.
pub async fn prune_nonces(db: &Db, before: i64) -> Result<u64, StoreError> {
    let pruned = sqlx::query("DELETE FROM agent_nonce WHERE seen_at < $1").bind(before).execute(db.pool()).await?;
    Ok(pruned.rows_affected())
}

/// A heartbeat as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusReport {
    pub version: String,
    pub active_revision: Option<i64>,
    pub bundle_hash: Option<String>,
    pub last_error: Option<String>,
    pub uptime_seconds: u64,
    pub counters: AgentCounters,
    pub spooled_decisions: u64,
}

fn bounded(field: &'static str, text: Option<&str>, max: usize) -> Result<Option<String>, StoreError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) if text.chars().any(char::is_control) => Err(StoreError::invalid(field, "must not hold control characters")),
        // An error text is cut rather than refused: the heartbeat matters more than its length.
        Some(text) => Ok(Some(text.chars().take(max).collect())),
    }
}

/// Stores an agent's heartbeat; the first report of a revision also records when the agent
/// began running it.
pub async fn record_status(db: &Db, agent_id: i64, report: &StatusReport) -> Result<AgentStatus, StoreError> {
    let version = report.version.trim();
    if version.is_empty() || version.len() > MAX_VERSION_CHARS || !version.chars().all(|c| c.is_ascii_graphic()) {
        return Err(StoreError::invalid("version", "1 to 64 visible characters"));
    }
    if report.active_revision.is_some_and(|revision| revision < 1) {
        return Err(StoreError::invalid("active_revision", "must be a revision number"));
    }
    let bundle_hash = bounded("bundle_hash", report.bundle_hash.as_deref(), MAX_HASH_CHARS)?;
    if bundle_hash.as_deref().is_some_and(|hash| !hash.chars().all(|c| c.is_ascii_alphanumeric() || c == ':')) {
        return Err(StoreError::invalid("bundle_hash", "must be a content hash"));
    }
    let last_error = bounded("last_error", report.last_error.as_deref(), MAX_ERROR_CHARS)?;
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "UPDATE agent SET version = $1, active_revision = $2, bundle_hash = $3, last_error = $4, uptime_seconds = $5, \
         counters = $6, spooled_decisions = $7, status_at = $8, last_seen_at = $8 WHERE agent_id = $9",
    )
    .bind(version)
    .bind(report.active_revision)
    .bind(&bundle_hash)
    .bind(&last_error)
    .bind(as_i64(report.uptime_seconds))
    .bind(serde_json::to_string(&report.counters).unwrap_or_else(|_| "{}".to_owned()))
    .bind(as_i64(report.spooled_decisions))
    .bind(now)
    .bind(agent_id)
    .execute(&mut *tx)
    .await?;
    if let Some(revision) = report.active_revision {
        sqlx::query("INSERT INTO agent_activation (agent_id, revision, activated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(agent_id)
            .bind(revision)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(AgentStatus {
        active_revision: report.active_revision,
        bundle_hash,
        last_error,
        uptime_seconds: as_i64(report.uptime_seconds),
        counters: report.counters,
        spooled_decisions: as_i64(report.spooled_decisions),
        reported_at: now,
    })
}

/// When each agent first reported running `revision`, earliest first.
pub async fn list_activations(db: &Db, revision: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT agent_id, activated_at FROM agent_activation WHERE revision = $1 ORDER BY activated_at, agent_id")
            .bind(revision)
            .fetch_all(db.pool())
            .await?;
    Ok(rows)
}

/// One decision as uploaded by an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRow {
    pub record_id: String,
    pub decided_at: i64,
    pub revision: Option<i64>,
    pub method: String,
    pub path: String,
    pub api_id: Option<i64>,
    pub operation_id: Option<i64>,
    pub outcome: String,
    pub status: i64,
    pub reason: Option<String>,
    pub source: String,
    pub caller: Option<String>,
    pub decision_micros: i64,
}

/// A stored decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDecision {
    pub decision_log_id: i64,
    pub agent_id: i64,
    pub received_at: i64,
    #[serde(flatten)]
    pub row: DecisionRow,
}

const OUTCOMES: [&str; 3] = ["allow", "deny", "monitor"];

fn check_row(row: &DecisionRow) -> Result<(), StoreError> {
    let short = |text: &str, max: usize| !text.is_empty() && text.len() <= max && !text.chars().any(char::is_control);
    let invalid = |message: &'static str| Err(StoreError::invalid("decisions", message));
    if !short(&row.record_id, 64) {
        return invalid("a record id is missing or too long");
    }
    if !OUTCOMES.contains(&row.outcome.as_str()) {
        return invalid("an outcome is not allow, deny or monitor");
    }
    if !short(&row.method, 16) || !short(&row.path, 2_048) || !short(&row.source, 64) {
        return invalid("a method, path or source is missing or too long");
    }
    if row.reason.as_deref().is_some_and(|reason| !short(reason, 64)) || row.caller.as_deref().is_some_and(|caller| !short(caller, 512)) {
        return invalid("a reason or caller is too long");
    }
    if !(100..=599).contains(&row.status) || row.decided_at < 0 || row.decision_micros < 0 {
        return invalid("a status, time or duration is out of range");
    }
    Ok(())
}

/// Stores a batch of decisions from one agent in one transaction: all of it or, on bad
/// input, none of it. Records it sent before are skipped. Returns (stored, duplicates).
pub async fn insert_decisions(db: &Db, agent_id: i64, rows: &[DecisionRow]) -> Result<(u64, u64), StoreError> {
    for row in rows {
        check_row(row)?;
    }
    let now = now_millis();
    let mut stored = 0;
    let mut tx = db.pool().begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO decision_log (agent_id, record_id, decided_at, received_at, revision, method, path, api_id, \
             operation_id, outcome, status, reason, source, caller, decision_micros) VALUES ",
        );
        for index in 0..chunk.len() {
            let base = index * 15;
            let placeholders: Vec<String> = (1..=15).map(|n| format!("${}", base + n)).collect();
            if index > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({})", placeholders.join(", ")));
        }
        sql.push_str(" ON CONFLICT (agent_id, record_id) DO NOTHING");
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(agent_id)
                .bind(&row.record_id)
                .bind(row.decided_at)
                .bind(now)
                .bind(row.revision)
                .bind(&row.method)
                .bind(&row.path)
                .bind(row.api_id)
                .bind(row.operation_id)
                .bind(&row.outcome)
                .bind(row.status)
                .bind(&row.reason)
                .bind(&row.source)
                .bind(&row.caller)
                .bind(row.decision_micros);
        }
        stored += query.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok((stored, rows.len() as u64 - stored))
}

/// Decisions, newest first: at most `limit`, from one agent or all, before a cursor
/// (a `decision_log_id`) for paging.
pub async fn list_decisions(db: &Db, agent_id: Option<i64>, before: Option<i64>, limit: u32) -> Result<Vec<StoredDecision>, StoreError> {
    let rows = sqlx::query(
        "SELECT decision_log_id, agent_id, record_id, decided_at, received_at, revision, method, path, api_id, operation_id, \
         outcome, status, reason, source, caller, decision_micros FROM decision_log \
         WHERE (CAST($1 AS BIGINT) IS NULL OR agent_id = $1) AND (CAST($2 AS BIGINT) IS NULL OR decision_log_id < $2) \
         ORDER BY decision_log_id DESC LIMIT $3",
    )
    .bind(agent_id)
    .bind(before)
    .bind(i64::from(limit.clamp(1, 1_000)))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredDecision {
                decision_log_id: row.try_get("decision_log_id")?,
                agent_id: row.try_get("agent_id")?,
                received_at: row.try_get("received_at")?,
                row: DecisionRow {
                    record_id: row.try_get("record_id")?,
                    decided_at: row.try_get("decided_at")?,
                    revision: row.try_get("revision")?,
                    method: row.try_get("method")?,
                    path: row.try_get("path")?,
                    api_id: row.try_get("api_id")?,
                    operation_id: row.try_get("operation_id")?,
                    outcome: row.try_get("outcome")?,
                    status: row.try_get("status")?,
                    reason: row.try_get("reason")?,
                    source: row.try_get("source")?,
                    caller: row.try_get("caller")?,
                    decision_micros: row.try_get("decision_micros")?,
                },
            })
        })
        .collect()
}

/// How many decisions an agent has uploaded.
pub async fn count_decisions(db: &Db, agent_id: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM decision_log WHERE agent_id = $1").bind(agent_id).fetch_one(db.pool()).await?)
}

/// The counter every bundle or pin change bumps (by database triggers, in the changing
/// transaction): when it moves, what agents are meant to run may have changed.
pub async fn bundle_generation(db: &Db) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT generation FROM bundle_generation WHERE only_row = 1").fetch_one(db.pool()).await?)
}

/// Every agent with the revision meant for it and its health at `now`.
pub async fn fleet(db: &Db, now: i64) -> Result<Vec<crate::FleetAgent>, StoreError> {
    let pins = crate::bundles::list_pins(db).await?;
    let newest = crate::bundles::newest_by_target(db).await?;
    Ok(crate::agents::list_agents(db)
        .await?
        .into_iter()
        .map(|agent| crate::FleetAgent {
            meant_revision: crate::bundles::meant_for(&agent.labels, &pins, &newest),
            health: crate::AgentHealth::of(&agent, now),
            agent,
        })
        .collect())
}

/// How a published revision reached its target agents.
pub async fn convergence(db: &Db, revision: i64) -> Result<crate::Convergence, StoreError> {
    let bundle = crate::bundles::find_bundle(db, revision).await?;
    let published_at = bundle.published_at.ok_or_else(|| StoreError::invalid("revision", "is a draft: it was never published"))?;
    let targets: Vec<i64> = crate::agents::list_agents(db)
        .await?
        .into_iter()
        .filter(|agent| agent.revoked_at.is_none() && agent.enrolled_at <= published_at && crate::labels_match(&bundle.target, &agent.labels))
        .map(|agent| agent.id)
        .collect();
    // Running a later revision also counts: an agent may skip one published moments apart.
    let reached: Vec<(i64, i64)> =
        sqlx::query_as("SELECT agent_id, MIN(activated_at) FROM agent_activation WHERE revision >= $1 GROUP BY agent_id")
            .bind(revision)
            .fetch_all(db.pool())
            .await?;
    let mut reached_after: Vec<i64> =
        reached.into_iter().filter(|(agent, _)| targets.contains(agent)).map(|(_, at)| (at - published_at).max(0)).collect();
    reached_after.sort_unstable();
    Ok(crate::Convergence { revision, published_at, targets: targets.len() as u64, reached_after })
}

/// A route callers used that no API declares: a candidate shadow API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeclaredRoute {
    pub method: String,
    pub path: String,
    pub requests: i64,
    pub agents: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Routes agents denied as undeclared since `since` (Unix ms), most requested first.
pub async fn list_undeclared_routes(db: &Db, since: i64, limit: u32) -> Result<Vec<UndeclaredRoute>, StoreError> {
    let rows = sqlx::query(
        "SELECT method, path, COUNT(*) AS requests, COUNT(DISTINCT agent_id) AS agents, MIN(decided_at) AS first_seen, \
         MAX(decided_at) AS last_seen FROM decision_log WHERE reason = 'undeclared_route' AND decided_at >= $1 \
         GROUP BY method, path ORDER BY COUNT(*) DESC, method, path LIMIT $2",
    )
    .bind(since)
    .bind(i64::from(limit.clamp(1, 1_000)))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UndeclaredRoute {
                method: row.try_get("method")?,
                path: row.try_get("path")?,
                requests: row.try_get("requests")?,
                agents: row.try_get("agents")?,
                first_seen: row.try_get("first_seen")?,
                last_seen: row.try_get("last_seen")?,
            })
        })
        .collect()
}
