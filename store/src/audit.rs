//! The audit trail: an append-only log in which every entry carries the SHA-256 of its
//! canonical form (RFC 8785 JSON) and its predecessor's hash. Entries are appended inside
//! the transaction of the change they record, so a change without its entry cannot commit.

use crate::checkpoints::{self, CheckpointCheck};
use crate::signing::{self, KeyPurpose, KeySet};
use crate::{AccountId, AuditEntry, AuditFilter, AuditPage, Db, Principal, StoreError, TrailSummary, now_millis};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest free text kept in an entry (labels, user agents); longer input is cut.
const MAX_TEXT_CHARS: usize = 512;

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `user`, `token`, `agent`, `system` or `anonymous`.
    pub kind: &'static str,
    pub id: Option<i64>,
    /// Human-readable: an email, or what an anonymous caller typed.
    pub label: String,
}

impl Actor {
    pub fn user(principal: &Principal) -> Actor {
        Actor { kind: "user", id: Some(principal.account_id.0), label: principal.email.clone() }
    }

    pub fn token(principal: &Principal) -> Actor {
        Actor { kind: "token", id: Some(principal.account_id.0), label: principal.email.clone() }
    }

    pub fn system(label: &str) -> Actor {
        Actor { kind: "system", id: None, label: label.to_owned() }
    }

    pub fn anonymous(label: &str) -> Actor {
        Actor { kind: "anonymous", id: None, label: clip(label) }
    }
}

/// Who, and from where: what every entry records about the request behind a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditContext {
    pub actor: Actor,
    pub source: String,
    pub user_agent: String,
    pub request_id: String,
}

impl AuditContext {
    /// Changes made by Palisade itself or its command line, not over HTTP.
    pub fn system(label: &str) -> AuditContext {
        AuditContext {
            actor: Actor::system(label),
            source: "local".into(),
            user_agent: String::new(),
            request_id: String::new(),
        }
    }
}

/// What happened, to what.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// `object.verb`, e.g. `account.create`, `session.login`.
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    /// `success` or `failure`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    /// A before/after summary. Callers never put secrets here.
    pub details: serde_json::Value,
}

impl Change {
    pub fn success(action: &'static str, target_type: &'static str, target_id: impl ToString) -> Change {
        Change {
            action,
            target_type,
            target_id: target_id.to_string(),
            outcome: "success",
            reason: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn failure(action: &'static str, target_type: &'static str, target_id: impl ToString) -> Change {
        Change { outcome: "failure", ..Change::success(action, target_type, target_id) }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Change {
        self.details = details;
        self
    }
}

/// The hashed part of an entry: everything but the hash itself.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at: i64,
    actor_type: &'a str,
    actor_id: Option<i64>,
    actor_label: &'a str,
    action: &'a str,
    target_type: &'a str,
    target_id: &'a str,
    outcome: &'a str,
    source: &'a str,
    user_agent: &'a str,
    request_id: &'a str,
    reason: Option<&'a str>,
    details: &'a serde_json::Value,
    prev_hash: &'a str,
}

impl AuditEntry {
    /// RFC 8785 canonical JSON of the entry without its hash.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let hashed = Hashed {
            seq: self.seq,
            at: self.at,
            actor_type: &self.actor_type,
            actor_id: self.actor_id,
            actor_label: &self.actor_label,
            action: &self.action,
            target_type: &self.target_type,
            target_id: &self.target_id,
            outcome: &self.outcome,
            source: &self.source,
            user_agent: &self.user_agent,
            request_id: &self.request_id,
            reason: self.reason.as_deref(),
            details: &self.details,
            prev_hash: &self.prev_hash,
        };
        // Strings, integers and JSON values always serialise; there is no failure path.
        serde_jcs::to_vec(&hashed).unwrap_or_default()
    }

    /// The SHA-256 of the canonical form, in hex.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }
}

fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(MAX_TEXT_CHARS).collect()
}

/// Appends an entry for `change` inside `tx`, the transaction that makes the change.
pub async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    context: &AuditContext,
    change: Change,
) -> Result<AuditEntry, StoreError> {
    // Taking the head first serialises concurrent appends until this transaction ends.
    let (seq, prev_hash): (i64, String) = sqlx::query_as(
        "UPDATE audit_head SET seq = seq + 1 WHERE audit_head_id = 1 RETURNING seq, hash",
    )
    .fetch_one(&mut **tx)
    .await?;
    let mut entry = AuditEntry {
        seq,
        at: now_millis(),
        actor_type: context.actor.kind.to_owned(),
        actor_id: context.actor.id,
        actor_label: clip(&context.actor.label),
        action: change.action.to_owned(),
        target_type: change.target_type.to_owned(),
        target_id: clip(&change.target_id),
        outcome: change.outcome.to_owned(),
        source: clip(&context.source),
        user_agent: clip(&context.user_agent),
        request_id: clip(&context.request_id),
        reason: change.reason.as_deref().map(clip),
        details: change.details,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    let details = String::from_utf8(serde_jcs::to_vec(&entry.details).unwrap_or_default()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO audit_entry (seq, at, actor_type, actor_id, actor_label, action, target_type, \
         target_id, outcome, source, user_agent, request_id, reason, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(entry.seq)
    .bind(entry.at)
    .bind(&entry.actor_type)
    .bind(entry.actor_id)
    .bind(&entry.actor_label)
    .bind(&entry.action)
    .bind(&entry.target_type)
    .bind(&entry.target_id)
    .bind(&entry.outcome)
    .bind(&entry.source)
    .bind(&entry.user_agent)
    .bind(&entry.request_id)
    .bind(&entry.reason)
    .bind(details)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE audit_head_id = 1")
        .bind(&entry.hash)
        .execute(&mut **tx)
        .await?;
    Ok(entry)
}

/// Records a change that has no other write of its own (a login, a refused attempt).
pub async fn record(db: &Db, context: &AuditContext, change: Change) -> Result<AuditEntry, StoreError> {
    let mut tx = db.pool().begin().await?;
    let entry = append(&mut tx, context, change).await?;
    tx.commit().await?;
    Ok(entry)
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor_type: row.try_get("actor_type")?,
        actor_id: row.try_get("actor_id")?,
        actor_label: row.try_get("actor_label")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        outcome: row.try_get("outcome")?,
        source: row.try_get("source")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        reason: row.try_get("reason")?,
        // Unparseable details must not hide an entry: keep the text, and the hash will
        // show the entry as altered.
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Entries after `after_seq`, oldest first, at most `limit`.
pub async fn list_entries(db: &Db, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    list_entries_up_to(db, after_seq, i64::MAX, limit).await
}

/// Entries with `after_seq < seq <= up_to_seq`, oldest first, at most `limit`.
async fn list_entries_up_to(db: &Db, after_seq: i64, up_to_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query("SELECT * FROM audit_entry WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3")
        .bind(after_seq)
        .bind(up_to_seq)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(entry_from_row).collect()
}

/// The first place a chain fails verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at sequence {seq}: {problem}")]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

/// Checks entries that follow `(prev_seq, prev_hash)`: consecutive sequence numbers,
/// each linking to its predecessor's hash, each hash matching its content. Any edit,
/// deletion, insertion or reordering breaks one of the three.
pub fn verify_chain(entries: &[AuditEntry], prev_seq: i64, prev_hash: &str) -> Result<(), ChainBreak> {
    let (mut expected_seq, mut expected_prev) = (prev_seq + 1, prev_hash.to_owned());
    for entry in entries {
        let broken = |problem: String| ChainBreak { seq: entry.seq.min(expected_seq), problem };
        if entry.seq != expected_seq {
            return Err(broken(format!("expected sequence {expected_seq}, found {}", entry.seq)));
        }
        if entry.prev_hash != expected_prev {
            return Err(broken("does not link to the previous entry's hash".into()));
        }
        if entry.compute_hash() != entry.hash {
            return Err(broken("content does not match its hash (edited)".into()));
        }
        expected_seq += 1;
        expected_prev = entry.hash.clone();
    }
    Ok(())
}

/// Verifies a whole chain from the genesis and that it ends at the expected head, which
/// also catches a truncated tail.
pub fn verify_with_head(entries: &[AuditEntry], head_seq: i64, head_hash: &str) -> Result<(), ChainBreak> {
    verify_chain(entries, 0, GENESIS_HASH)?;
    let (last_seq, last_hash) = entries.last().map_or((0, GENESIS_HASH), |e| (e.seq, e.hash.as_str()));
    if (last_seq, last_hash) != (head_seq, head_hash) {
        return Err(ChainBreak {
            seq: last_seq + 1,
            problem: format!("the log ends at {last_seq} but the head says {head_seq} (truncated)"),
        });
    }
    Ok(())
}

/// Verifies the whole stored trail: the chain, that it ends where the head says, and every
/// signed checkpoint against `keys`. Pass keys held outside the database for proof against
/// someone who can write to it; [`verify_database_own_keys`] uses the stored ones.
pub async fn verify_database(db: &Db, keys: &KeySet) -> Result<Result<TrailSummary, ChainBreak>, StoreError> {
    // Checkpoints first, then the head: a checkpoint is only ever made at the head's
    // sequence, so an honest head read afterwards is at or past every checkpoint seen.
    let signed = checkpoints::all_checkpoints(db).await?;
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE audit_head_id = 1").fetch_one(db.pool()).await?;
    let mut checkpoints = CheckpointCheck::new(signed, keys);
    let (mut last_seq, mut last_hash) = (0_i64, GENESIS_HASH.to_owned());
    // Entries only up to the head: a change committing meanwhile (on another replica, or
    // one in flight when a process died) lands past it and is checked next time.
    loop {
        let page = list_entries_up_to(db, last_seq, head_seq, 1_000).await?;
        let Some(last) = page.last() else { break };
        let verdict = verify_chain(&page, last_seq, &last_hash)
            .and_then(|()| page.iter().try_for_each(|entry| checkpoints.check(entry)));
        if let Err(broken) = verdict {
            return Ok(Err(broken));
        }
        (last_seq, last_hash) = (last.seq, last.hash.clone());
    }
    if (last_seq, last_hash.as_str()) != (head_seq, head_hash.as_str()) {
        return Ok(Err(ChainBreak {
            seq: last_seq + 1,
            problem: format!("the log ends at {last_seq} but the head says {head_seq} (truncated)"),
        }));
    }
    Ok(checkpoints.finish(last_seq, last_seq))
}

/// [`verify_database`] with the public keys stored beside the trail.
pub async fn verify_database_own_keys(db: &Db) -> Result<Result<TrailSummary, ChainBreak>, StoreError> {
    let records = signing::list_public_keys(db, KeyPurpose::Audit).await?;
    match KeySet::from_public_keys(&records) {
        Ok(keys) => verify_database(db, &keys).await,
        Err(problem) => Ok(Err(ChainBreak { seq: 0, problem: format!("stored signing keys: {problem}") })),
    }
}

/// Most entries one search returns.
pub const MAX_PAGE: i64 = 200;

/// `text` for a LIKE pattern, with its wildcards escaped.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

#[derive(Clone)]
enum Bind {
    Text(String),
    Number(i64),
}

/// A WHERE clause under construction: each `?` becomes the next `$n`.
#[derive(Default)]
struct Conditions {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    /// Adds a condition written with `?` placeholders, one per element of `binds`.
    /// Conditions are our own constants; user input only ever travels in `binds`.
    fn add(&mut self, condition: &str, binds: &[Bind]) {
        let mut values = binds.iter();
        let mut numbered = String::with_capacity(condition.len() + 8);
        for c in condition.chars() {
            if c == '?' {
                if let Some(value) = values.next() {
                    self.binds.push(value.clone());
                }
                numbered.push_str(&format!("${}", self.binds.len()));
            } else {
                numbered.push(c);
            }
        }
        self.conditions.push(numbered);
    }
}

/// Entries matching `filter`, newest first. With `only_for`, just the entries made by that
/// account or about it (what a non-auditor may see).
pub async fn search_entries(
    db: &Db,
    filter: &AuditFilter,
    only_for: Option<AccountId>,
) -> Result<AuditPage, StoreError> {
    let mut query = Conditions::default();
    let like = "LIKE ? ESCAPE '\\'";
    if let Some(actor) = filter.actor.as_deref() {
        query.add(&format!("LOWER(actor_label) {like}"), &[Bind::Text(like_escaped(actor))]);
    }
    if let Some(action) = filter.action.as_deref() {
        // `account` finds every `account.*` action; `account.create` finds just that one.
        let pattern = if action.contains('.') { action.to_owned() } else { format!("{action}.%") };
        query.add("action LIKE ?", &[Bind::Text(pattern)]);
    }
    if let Some(target_type) = filter.target_type.as_deref() {
        query.add("target_type = ?", &[Bind::Text(target_type.to_owned())]);
    }
    if let Some(target_id) = filter.target_id.as_deref() {
        query.add("target_id = ?", &[Bind::Text(target_id.to_owned())]);
    }
    if let Some(outcome) = filter.outcome.as_deref() {
        query.add("outcome = ?", &[Bind::Text(outcome.to_owned())]);
    }
    if let Some(from) = filter.from {
        query.add("at >= ?", &[Bind::Number(from)]);
    }
    if let Some(to) = filter.to {
        query.add("at < ?", &[Bind::Number(to)]);
    }
    if let Some(text) = filter.text.as_deref() {
        let columns = ["actor_label", "action", "target_id", "details", "COALESCE(reason, '')", "source"];
        let any = columns.map(|column| format!("LOWER({column}) {like}")).join(" OR ");
        query.add(&format!("({any})"), &vec![Bind::Text(like_escaped(text)); columns.len()]);
    }
    if let Some(before) = filter.before_seq {
        query.add("seq < ?", &[Bind::Number(before)]);
    }
    if let Some(account) = only_for {
        query.add(
            "((actor_type IN ('user', 'token') AND actor_id = ?) OR (target_type = 'account' AND target_id = ?))",
            &[Bind::Number(account.0), Bind::Text(account.0.to_string())],
        );
    }
    let limit = filter.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let where_clause = if query.conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", query.conditions.join(" AND "))
    };
    // One more than asked tells whether there is a next page.
    let sql = format!("SELECT * FROM audit_entry {where_clause} ORDER BY seq DESC LIMIT {}", limit + 1);
    let mut statement = sqlx::query(&sql);
    for bind in query.binds {
        statement = match bind {
            Bind::Text(text) => statement.bind(text),
            Bind::Number(number) => statement.bind(number),
        };
    }
    let rows = statement.fetch_all(db.pool()).await?;
    let mut entries = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|entry| entry.seq)
    } else {
        None
    };
    Ok(AuditPage { entries, next_cursor })
}

/// Whether the stored trail verifies, for the dashboard.
pub async fn chain_status(db: &Db) -> Result<crate::ChainStatus, StoreError> {
    Ok(match verify_database_own_keys(db).await? {
        Ok(verified) => crate::ChainStatus { verified, first_bad_seq: None, problem: None },
        Err(broken) => crate::ChainStatus {
            verified: TrailSummary::default(),
            first_bad_seq: Some(broken.seq),
            problem: Some(broken.problem),
        },
    })
}
