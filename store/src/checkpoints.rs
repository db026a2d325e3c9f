//! Signed checkpoints over the audit chain. A hash chain alone shows edits, but whoever
//! can write the database can also rewrite every hash after an edit, or cut the tail off;
//! an Ed25519 signature over (sequence, head hash, time, key id) made at intervals pins
//! everything up to that sequence to what was really there.

use crate::audit::ChainBreak;
use crate::signing::{KeySet, Signer};
use crate::{AuditEntry, Checkpoint, Db, StoreError, TrailSummary, now_millis};
use serde::Serialize;
use std::collections::BTreeMap;

/// When to sign: after `every_entries` new entries, or `every_millis` after the last
/// checkpoint if anything was added since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_entries: i64,
    pub every_millis: i64,
}

impl CheckpointPolicy {
    /// Sign whenever the head has moved.
    pub const ALWAYS: CheckpointPolicy = CheckpointPolicy { every_entries: 1, every_millis: 0 };

    fn is_due(&self, head_seq: i64, last: Option<(i64, i64)>, now: i64) -> bool {
        let (last_seq, last_at) = last.unwrap_or((0, i64::MIN / 2));
        head_seq > last_seq && (head_seq - last_seq >= self.every_entries || now - last_at >= self.every_millis)
    }
}

/// What a checkpoint's signature covers: RFC 8785 JSON with a type tag, so the bytes can
/// never be mistaken for any other signed thing.
#[derive(Serialize)]
struct Signed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: i64,
    head_hash: &'a str,
    at: i64,
    key_id: &'a str,
}

pub fn signed_message(checkpoint: &Checkpoint) -> Vec<u8> {
    let signed = Signed {
        kind: "palisade.audit.checkpoint.v1",
        seq: checkpoint.seq,
        head_hash: &checkpoint.head_hash,
        at: checkpoint.at,
        key_id: &checkpoint.key_id,
    };
    serde_jcs::to_vec(&signed).unwrap_or_default()
}

async fn latest_seq_and_time(executor: impl sqlx::Executor<'_, Database = sqlx::Any>) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT seq, at FROM audit_checkpoint ORDER BY seq DESC LIMIT 1")
        .fetch_optional(executor)
        .await?)
}

/// Signs the chain's head if `policy` says it is time; `None` when it is not.
pub async fn checkpoint_if_due(db: &Db, signer: &Signer, policy: CheckpointPolicy) -> Result<Option<Checkpoint>, StoreError> {
    // A cheap look first, so an idle trail costs no write transaction.
    let head_seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE audit_head_id = 1").fetch_one(db.pool()).await?;
    if !policy.is_due(head_seq, latest_seq_and_time(db.pool()).await?, now_millis()) {
        return Ok(None);
    }
    let mut tx = db.pool().begin().await?;
    // Holding the head's lock, the head cannot move while it is signed, and replicas
    // checkpointing at once are serialised.
    let (seq, head_hash): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq WHERE audit_head_id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
    let now = now_millis();
    if !policy.is_due(seq, latest_seq_and_time(&mut *tx).await?, now) {
        return Ok(None);
    }
    let checkpoint = sign(signer, seq, &head_hash, now);
    sqlx::query("INSERT INTO audit_checkpoint (seq, head_hash, at, signing_key_id, signature) VALUES ($1, $2, $3, $4, $5)")
        .bind(checkpoint.seq)
        .bind(&checkpoint.head_hash)
        .bind(checkpoint.at)
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.signature)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(checkpoint))
}

/// Checkpoints with `after_seq < seq <= up_to_seq`, oldest first, at most `limit`.
pub async fn list_checkpoints(db: &Db, after_seq: i64, up_to_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
    let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
        "SELECT seq, head_hash, at, signing_key_id, signature FROM audit_checkpoint \
         WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
    )
    .bind(after_seq)
    .bind(up_to_seq)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, head_hash, at, key_id, signature)| Checkpoint { seq, head_hash, at, key_id, signature })
        .collect())
}

/// Every checkpoint, oldest first.
pub async fn all_checkpoints(db: &Db) -> Result<Vec<Checkpoint>, StoreError> {
    list_checkpoints(db, 0, i64::MAX, i64::MAX).await
}

/// Checks checkpoints against entries as they stream by in sequence order: each
/// checkpoint's signature, and that the entry at its sequence ends in the hash it signed.
pub struct CheckpointCheck<'k> {
    keys: &'k KeySet,
    pending: BTreeMap<i64, Checkpoint>,
    verified: i64,
    last_verified: Option<Checkpoint>,
}

impl<'k> CheckpointCheck<'k> {
    pub fn new(checkpoints: impl IntoIterator<Item = Checkpoint>, keys: &'k KeySet) -> CheckpointCheck<'k> {
        let pending = checkpoints.into_iter().map(|checkpoint| (checkpoint.seq, checkpoint)).collect();
        CheckpointCheck { keys, pending, verified: 0, last_verified: None }
    }

    /// The first sequence a failed checkpoint may point at: everything after the last good one.
    fn first_unproven(&self) -> i64 {
        self.last_verified.as_ref().map_or(1, |checkpoint| checkpoint.seq + 1)
    }

    /// Called with each entry, in order, after its link and hash have been checked.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let Some(checkpoint) = self.pending.remove(&entry.seq) else { return Ok(()) };
        if let Err(problem) = self.keys.verify(&checkpoint.key_id, checkpoint.at, &signed_message(&checkpoint), &checkpoint.signature) {
            return Err(ChainBreak { seq: checkpoint.seq, problem: format!("the checkpoint at {}: {problem}", checkpoint.seq) });
        }
        if checkpoint.head_hash != entry.hash {
            return Err(ChainBreak {
                seq: self.first_unproven(),
                problem: format!(
                    "entries {}..={} were rewritten: they no longer end in the hash signed at {}",
                    self.first_unproven(),
                    checkpoint.seq,
                    checkpoint.seq
                ),
            });
        }
        self.verified += 1;
        self.last_verified = Some(checkpoint);
        Ok(())
    }

    /// After the last entry (`last_seq`, of `entries` checked): a checkpoint beyond it
    /// means the tail was cut off.
    pub fn finish(self, entries: i64, last_seq: i64) -> Result<TrailSummary, ChainBreak> {
        if let Some((seq, _)) = self.pending.first_key_value() {
            return Err(ChainBreak {
                seq: last_seq + 1,
                problem: format!("the trail ends at {last_seq} but a checkpoint signed it up to {seq} (entries cut off)"),
            });
        }
        Ok(TrailSummary { entries, checkpoints: self.verified, last_checkpoint: self.last_verified })
    }
}

/// Verifies entries held in memory from the genesis, with their checkpoints.
pub fn verify_signed(entries: &[AuditEntry], checkpoints: Vec<Checkpoint>, keys: &KeySet) -> Result<TrailSummary, ChainBreak> {
    crate::audit::verify_chain(entries, 0, crate::audit::GENESIS_HASH)?;
    let mut check = CheckpointCheck::new(checkpoints, keys);
    entries.iter().try_for_each(|entry| check.check(entry))?;
    let last_seq = entries.last().map_or(0, |entry| entry.seq);
    check.finish(last_seq, last_seq)
}

/// A checkpoint over `seq` and `head_hash`, signed now by `signer`.
pub fn sign(signer: &Signer, seq: i64, head_hash: &str, at: i64) -> Checkpoint {
    let mut checkpoint = Checkpoint { seq, head_hash: head_hash.to_owned(), at, key_id: signer.key_id.clone(), signature: String::new() };
    checkpoint.signature = signer.sign(&signed_message(&checkpoint));
    checkpoint
}

#[cfg(test)]
mod tests {
    use super::CheckpointPolicy;

    #[test]
    fn checkpoints_fall_due_by_count_or_time_and_only_when_the_head_moved() {
        let policy = CheckpointPolicy { every_entries: 100, every_millis: 60_000 };
        assert!(policy.is_due(1, None, 0), "the first entry is signed at once");
        assert!(!policy.is_due(0, None, 0), "nothing to sign");
        assert!(!policy.is_due(150, Some((100, 1_000)), 30_000), "50 entries, 29 s");
        assert!(policy.is_due(200, Some((100, 1_000)), 30_000), "100 entries");
        assert!(policy.is_due(101, Some((100, 1_000)), 61_000), "60 s");
        assert!(!policy.is_due(100, Some((100, 1_000)), 999_999), "nothing new");
        assert!(CheckpointPolicy::ALWAYS.is_due(101, Some((100, 5)), 5));
    }
}
