//! Enforcement agents and their enrollment: admins and security make single-use,
//! expiring, revocable enrollment tokens (stored as digests) carrying the labels the agent
//! will have; an agent presents one with its own Ed25519 public key and becomes known by
//! that key. Revoking an agent cuts it off at its next call.

use crate::audit::{self, Actor, AuditContext, Change};
use crate::error::ResultExt;
use crate::tokens::{digest, generate_secret};
use crate::{Db, Labels, StoreError, now_millis};
pub use crate::{Agent, AgentCounters, AgentStatus, EnrollmentToken};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

/// What every enrollment token starts with, so secret scanners can recognise leaked ones.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "pae_";
/// The longest an enrollment token may stay usable (7 days).
pub const MAX_TOKEN_TTL_MILLIS: i64 = 7 * 24 * 3_600_000;
const MAX_NAME_CHARS: usize = 64;
const MAX_VERSION_CHARS: usize = 64;

/// What an agent brings to enrollment.
#[derive(Clone, Debug, Default)]
pub struct EnrollmentRequest {
    pub token: String,
    pub public_key: String,
    pub name: Option<String>,
    pub version: String,
}

fn labels_from(text: &str) -> Result<Labels, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Database(sqlx::Error::Decode(error.into())))
}

fn token_from_row(row: &AnyRow) -> Result<EnrollmentToken, StoreError> {
    Ok(EnrollmentToken {
        id: row.try_get("enrollment_token_id")?,
        labels: labels_from(&row.try_get::<String, _>("labels")?)?,
        name: row.try_get("name")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        agent_id: row.try_get("agent_id")?,
    })
}

fn agent_from_row(row: &AnyRow) -> Result<Agent, StoreError> {
    let reported_at: Option<i64> = row.try_get("status_at")?;
    let status = match reported_at {
        None => None,
        Some(reported_at) => Some(AgentStatus {
            active_revision: row.try_get("active_revision")?,
            bundle_hash: row.try_get("bundle_hash")?,
            last_error: row.try_get("last_error")?,
            uptime_seconds: row.try_get::<Option<i64>, _>("uptime_seconds")?.unwrap_or_default(),
            counters: row
                .try_get::<Option<String>, _>("counters")?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            spooled_decisions: row.try_get::<Option<i64>, _>("spooled_decisions")?.unwrap_or_default(),
            reported_at,
        }),
    };
    Ok(Agent {
        id: row.try_get("agent_id")?,
        name: row.try_get("name")?,
        labels: labels_from(&row.try_get::<String, _>("labels")?)?,
        public_key: row.try_get("public_key")?,
        version: row.try_get("version")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        revoked_at: row.try_get("revoked_at")?,
        status,
    })
}

const TOKEN_COLUMNS: &str =
    "enrollment_token_id, labels, name, created_by, created_at, expires_at, used_at, revoked_at, agent_id";
const AGENT_COLUMNS: &str = "agent_id, name, labels, public_key, version, enrolled_at, last_seen_at, revoked_at, \
     active_revision, bundle_hash, last_error, uptime_seconds, counters, spooled_decisions, status_at";

fn check_name(name: Option<&str>) -> Result<Option<String>, StoreError> {
    let Some(name) = name.map(str::trim).filter(|name| !name.is_empty()) else { return Ok(None) };
    crate::text::clean_name("name", name, MAX_NAME_CHARS).map(Some)
}

/// Makes an enrollment token valid for `ttl_millis` (1 minute to 7 days). Returns the
/// token as listed and its secret, which is shown once and never stored.
pub async fn create_enrollment_token(
    db: &Db,
    labels: &Labels,
    name: Option<&str>,
    ttl_millis: i64,
    context: &AuditContext,
) -> Result<(EnrollmentToken, String), StoreError> {
    if !(60_000..=MAX_TOKEN_TTL_MILLIS).contains(&ttl_millis) {
        return Err(StoreError::invalid("expires", "from 1 minute to 7 days"));
    }
    for (key, value) in labels {
        crate::check_label(key, value).map_err(|message| StoreError::invalid("labels", message))?;
    }
    let name = check_name(name)?;
    let secret = generate_secret(ENROLLMENT_TOKEN_PREFIX);
    let labels_text = serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned());
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO enrollment_token (token_digest, labels, name, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING enrollment_token_id",
    )
    .bind(digest(&secret))
    .bind(&labels_text)
    .bind(&name)
    .bind(&context.actor.label)
    .bind(now)
    .bind(now + ttl_millis)
    .fetch_one(&mut *tx)
    .await?;
    let details = json!({"labels": labels, "name": name, "expires_at": now + ttl_millis});
    audit::append(&mut tx, context, Change::success("agent.enrollment_token.create", "enrollment_token", id).with_details(details)).await?;
    tx.commit().await?;
    Ok((find_enrollment_token(db, id).await?, secret))
}

pub async fn find_enrollment_token(db: &Db, id: i64) -> Result<EnrollmentToken, StoreError> {
    let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM enrollment_token WHERE enrollment_token_id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("enrollment token"))?;
    token_from_row(&row)
}

/// Every enrollment token, newest first.
pub async fn list_enrollment_tokens(db: &Db) -> Result<Vec<EnrollmentToken>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM enrollment_token ORDER BY enrollment_token_id DESC"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(token_from_row).collect()
}

/// Revokes an unused token. A used one has nothing left to revoke: revoke its agent.
pub async fn revoke_enrollment_token(db: &Db, id: i64, context: &AuditContext) -> Result<EnrollmentToken, StoreError> {
    let mut tx = db.pool().begin().await?;
    let revoked: Option<i64> = sqlx::query_scalar(
        "UPDATE enrollment_token SET revoked_at = $1 WHERE enrollment_token_id = $2 AND used_at IS NULL AND revoked_at IS NULL \
         RETURNING enrollment_token_id",
    )
    .bind(now_millis())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if revoked.is_none() {
        drop(tx);
        find_enrollment_token(db, id).await?;
        return Err(StoreError::invalid("enrollment token", "is already used or revoked"));
    }
    audit::append(&mut tx, context, Change::success("agent.enrollment_token.revoke", "enrollment_token", id)).await?;
    tx.commit().await?;
    find_enrollment_token(db, id).await
}

/// Why enrollment was refused: one answer for a token that is unknown, used, expired or
/// revoked, so the answer tells a guesser nothing.
pub const TOKEN_REFUSED: &str = "is unknown, used, expired or revoked";

/// Enrolls an agent: spends the token and records the agent under its public key, in one
/// transaction (two agents racing with one token: one wins). The agent's labels are the
/// token's; its name the token's, else the one it asked for, else `agent-<id>`.
pub async fn enroll(db: &Db, request: &EnrollmentRequest, context: &AuditContext) -> Result<Agent, StoreError> {
    let public_key = check_public_key(&request.public_key)?;
    let version = request.version.trim();
    if version.is_empty() || version.len() > MAX_VERSION_CHARS || !version.chars().all(|c| c.is_ascii_graphic()) {
        return Err(StoreError::invalid("version", "1 to 64 visible characters"));
    }
    let asked_name = check_name(request.name.as_deref())?;
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    // The write comes first: it takes SQLite's write lock, and the `used_at IS NULL`
    // condition lets exactly one of two racing enrollments through.
    let spent = sqlx::query(
        "UPDATE enrollment_token SET used_at = $1 \
         WHERE token_digest = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
         RETURNING enrollment_token_id, labels, name",
    )
    .bind(now)
    .bind(digest(request.token.trim()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(spent) = spent else { return Err(StoreError::invalid("token", TOKEN_REFUSED)) };
    let token_id: i64 = spent.try_get("enrollment_token_id")?;
    let labels_text: String = spent.try_get("labels")?;
    let token_name: Option<String> = spent.try_get("name")?;
    let agent_id: i64 = sqlx::query_scalar(
        "INSERT INTO agent (name, labels, public_key, version, enrolled_at) VALUES ($1, $2, $3, $4, $5) RETURNING agent_id",
    )
    .bind(token_name.clone().or(asked_name.clone()).unwrap_or_default())
    .bind(&labels_text)
    .bind(&public_key)
    .bind(version)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .on_unique("public key")?;
    let name = token_name.or(asked_name).unwrap_or_else(|| format!("agent-{agent_id}"));
    sqlx::query("UPDATE agent SET name = $1 WHERE agent_id = $2").bind(&name).bind(agent_id).execute(&mut *tx).await?;
    sqlx::query("UPDATE enrollment_token SET agent_id = $1 WHERE enrollment_token_id = $2")
        .bind(agent_id)
        .bind(token_id)
        .execute(&mut *tx)
        .await?;
    let context = AuditContext { actor: Actor { kind: "agent", id: Some(agent_id), label: name.clone() }, ..context.clone() };
    let details = json!({"name": name, "labels": labels_from(&labels_text)?, "public_key": public_key, "version": version,
        "enrollment_token_id": token_id});
    audit::append(&mut tx, &context, Change::success("agent.enroll", "agent", agent_id).with_details(details)).await?;
    tx.commit().await?;
    find_agent(db, agent_id).await
}

/// An Ed25519 public key in hex: 32 bytes that are a point on the curve.
fn check_public_key(text: &str) -> Result<String, StoreError> {
    let invalid = || StoreError::invalid("public key", "must be an Ed25519 public key, 64 hex characters");
    let bytes: [u8; 32] = hex::decode(text.trim()).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(invalid)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| invalid())?;
    Ok(hex::encode(bytes))
}

pub async fn find_agent(db: &Db, id: i64) -> Result<Agent, StoreError> {
    let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agent WHERE agent_id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("agent"))?;
    agent_from_row(&row)
}

/// Every agent, in enrollment order.
pub async fn list_agents(db: &Db) -> Result<Vec<Agent>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agent ORDER BY agent_id")).fetch_all(db.pool()).await?;
    rows.iter().map(agent_from_row).collect()
}

/// Revokes an agent: its key is refused from its next call on. Audited.
pub async fn revoke_agent(db: &Db, id: i64, reason: &str, context: &AuditContext) -> Result<Agent, StoreError> {
    if reason.trim().is_empty() {
        return Err(StoreError::invalid("reason", "say why the agent is cut off"));
    }
    let mut tx = db.pool().begin().await?;
    let revoked: Option<i64> = sqlx::query_scalar("UPDATE agent SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL RETURNING agent_id")
        .bind(now_millis())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if revoked.is_none() {
        drop(tx);
        find_agent(db, id).await?;
        return Err(StoreError::invalid("agent", "is already revoked"));
    }
    let change = Change { reason: Some(reason.trim().to_owned()), ..Change::success("agent.revoke", "agent", id) };
    audit::append(&mut tx, context, change).await?;
    tx.commit().await?;
    find_agent(db, id).await
}
