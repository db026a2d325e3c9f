//! Signed checkpoints and their keys: whoever can rewrite the stored trail (re-hashing
//! everything after an edit, or cutting the tail and moving the head) is caught by the
//! signatures; keys are sealed, rotate, and stay verifiable after rotation.

use proptest::prelude::*;
use store::audit::{self, AuditContext, Change, GENESIS_HASH};
use store::checkpoints::{self, CheckpointPolicy, checkpoint_if_due, sign, verify_signed};
use store::signing::{self, KeyPurpose, KeySet, MasterKey, Signer};
use store::{AuditEntry, Checkpoint, Db, StoreError, both_backends};

fn context() -> AuditContext {
    AuditContext::system("test")
}

async fn add_entries(db: &Db, count: usize) {
    for i in 0..count {
        audit::record(db, &context(), Change::success("team.create", "team", i)).await.unwrap();
    }
}

both_backends!(keys_are_created_once_sealed_and_rotated, |db: Db| async move {
    let (master, _) = MasterKey::generate();
    let first = signing::ensure_signer(&db, &master, KeyPurpose::Audit, &context()).await.unwrap();
    let again = signing::ensure_signer(&db, &master, KeyPurpose::Audit, &context()).await.unwrap();
    assert_eq!(first.key_id, again.key_id, "one key, unsealed again");
    let entries = audit::list_entries(&db, 0, 10).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["signing_key.create"]);
    assert_eq!(entries[0].details["public_key"], first.public_key_hex());

    // Another master key cannot open it, and says what to do.
    let (stranger, _) = MasterKey::generate();
    let refused = signing::active_signer(&db, &stranger, KeyPurpose::Audit).await.unwrap_err();
    assert!(matches!(refused, StoreError::Sealed { .. }), "{refused}");
    assert!(refused.to_string().contains("rotate"), "{refused}");
    // Nor does a sealed secret moved from one key's row to another's.
    let second = signing::rotate(&db, &master, KeyPurpose::Audit, 0, &context()).await.unwrap().0;
    sqlx::query("UPDATE signing_key SET sealed_secret = (SELECT sealed_secret FROM signing_key WHERE signing_key_id = $1) WHERE signing_key_id = $2")
        .bind(&first.key_id)
        .bind(&second.key_id)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(matches!(signing::active_signer(&db, &master, KeyPurpose::Audit).await, Err(StoreError::Sealed { .. })));

    // Rotation by someone without the lost master key is the way back.
    let third = signing::rotate(&db, &stranger, KeyPurpose::Audit, 0, &context()).await.unwrap().0;
    assert_eq!(signing::active_signer(&db, &stranger, KeyPurpose::Audit).await.unwrap().unwrap().key_id, third.key_id);
    let keys = signing::list_public_keys(&db, KeyPurpose::Audit).await.unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.iter().filter(|key| key.retired_at.is_none()).count(), 1, "{keys:?}");
    let rotations = audit::list_entries(&db, 0, 10).await.unwrap();
    assert_eq!(rotations[2].action, "signing_key.rotate");
    assert_eq!(rotations[2].details["retired_key_id"], second.key_id);
});

both_backends!(checkpoints_sign_the_head_when_due, |db: Db| async move {
    let signer = Signer::generate();
    sqlx::query("INSERT INTO signing_key (signing_key_id, purpose, public_key, sealed_secret, created_at) VALUES ($1, 'audit', $2, '', 0)")
        .bind(&signer.key_id)
        .bind(signer.public_key_hex())
        .execute(db.pool())
        .await
        .unwrap();
    let policy = CheckpointPolicy { every_entries: 5, every_millis: 3_600_000 };
    assert_eq!(checkpoint_if_due(&db, &signer, policy).await.unwrap(), None, "nothing to sign");
    add_entries(&db, 3).await;
    let first = checkpoint_if_due(&db, &signer, policy).await.unwrap().expect("the first entries are signed at once");
    assert_eq!(first.seq, 3);
    add_entries(&db, 4).await;
    assert_eq!(checkpoint_if_due(&db, &signer, policy).await.unwrap(), None, "4 of 5 entries, within the hour");
    add_entries(&db, 1).await;
    assert_eq!(checkpoint_if_due(&db, &signer, policy).await.unwrap().unwrap().seq, 8);

    // Replicas checkpointing at once sign each head once.
    add_entries(&db, 2).await;
    let signer = std::sync::Arc::new(signer);
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (db, signer) = (db.clone(), signer.clone());
            tokio::spawn(async move { checkpoint_if_due(&db, &signer, CheckpointPolicy::ALWAYS).await })
        })
        .collect();
    let mut signed = 0;
    for racer in racers {
        if racer.await.unwrap().unwrap().is_some() {
            signed += 1;
        }
    }
    assert_eq!(signed, 1);
    let stored = checkpoints::all_checkpoints(&db).await.unwrap();
    assert_eq!(stored.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 8, 10]);
    let keys = KeySet::from_public_keys(&signing::list_public_keys(&db, KeyPurpose::Audit).await.unwrap()).unwrap();
    assert_eq!(audit::verify_database(&db, &keys).await.unwrap().unwrap().checkpoints, 3);
});

/// Rewrites the stored chain from `seq` on, re-hashing and re-linking every later entry
/// and moving the head: the chain alone verifies afterwards.
async fn rewrite_from(db: &Db, seq: i64) {
    let entries = audit::list_entries(db, 0, 10_000).await.unwrap();
    let mut previous = entries.iter().find(|e| e.seq == seq - 1).map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
    for mut entry in entries.into_iter().filter(|e| e.seq >= seq) {
        if entry.seq == seq {
            entry.actor_label = "mallory@example.com".into();
        }
        entry.prev_hash = previous;
        entry.hash = entry.compute_hash();
        previous = entry.hash.clone();
        sqlx::query("UPDATE audit_entry SET actor_label = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&entry.actor_label)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .bind(entry.seq)
            .execute(db.pool())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_head SET hash = $1").bind(&previous).execute(db.pool()).await.unwrap();
}

both_backends!(rewrites_and_cut_tails_behind_a_checkpoint_are_caught, |db: Db| async move {
    let (master, _) = MasterKey::generate();
    let signer = signing::ensure_signer(&db, &master, KeyPurpose::Audit, &context()).await.unwrap();
    add_entries(&db, 5).await;
    checkpoint_if_due(&db, &signer, CheckpointPolicy::ALWAYS).await.unwrap().unwrap();
    add_entries(&db, 3).await;
    let verified = audit::verify_database_own_keys(&db).await.unwrap().unwrap();
    assert_eq!((verified.entries, verified.checkpoints, verified.last_checkpoint.as_ref().unwrap().seq), (9, 1, 6));

    // An edit after the checkpoint, re-hashed: the chain cannot tell; it is the unsigned tail.
    rewrite_from(&db, 8).await;
    assert!(audit::verify_database_own_keys(&db).await.unwrap().is_ok());
    // The same before the checkpoint is caught, naming everything it no longer vouches for.
    rewrite_from(&db, 3).await;
    let broken = audit::verify_database_own_keys(&db).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 1, "{broken}");
    assert!(broken.problem.contains("1..=6"), "{broken}");
});

both_backends!(a_cut_tail_and_a_forged_signature_are_caught, |db: Db| async move {
    let (master, _) = MasterKey::generate();
    let signer = signing::ensure_signer(&db, &master, KeyPurpose::Audit, &context()).await.unwrap();
    add_entries(&db, 5).await;
    checkpoint_if_due(&db, &signer, CheckpointPolicy::ALWAYS).await.unwrap().unwrap();
    // Cut the last two entries and move the head back, as someone covering tracks would.
    sqlx::query("DELETE FROM audit_entry WHERE seq > 4").execute(db.pool()).await.unwrap();
    let (hash,): (String,) = sqlx::query_as("SELECT hash FROM audit_entry WHERE seq = 4").fetch_one(db.pool()).await.unwrap();
    sqlx::query("UPDATE audit_head SET seq = 4, hash = $1").bind(&hash).execute(db.pool()).await.unwrap();
    let broken = audit::verify_database_own_keys(&db).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 5, "{broken}");
    assert!(broken.problem.contains("cut off"), "{broken}");
    sqlx::query("DELETE FROM audit_checkpoint").execute(db.pool()).await.unwrap();
    assert!(audit::verify_database_own_keys(&db).await.unwrap().is_ok(), "without its checkpoint the cut is the unsigned tail");

    add_entries(&db, 2).await;
    let signed = checkpoint_if_due(&db, &signer, CheckpointPolicy::ALWAYS).await.unwrap().unwrap();
    let forged = format!("{}{}", &signed.signature[..10], "0".repeat(signed.signature.len() - 10));
    sqlx::query("UPDATE audit_checkpoint SET signature = $1").bind(&forged).execute(db.pool()).await.unwrap();
    let broken = audit::verify_database_own_keys(&db).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, signed.seq);
    assert!(broken.problem.contains("does not verify"), "{broken}");
    // Keys held elsewhere catch a key swapped in the database.
    let outside = KeySet::from_public_keys(&[Signer::generate().public_key_info(KeyPurpose::Audit, 0)]).unwrap();
    assert!(audit::verify_database(&db, &outside).await.unwrap().unwrap_err().problem.contains("unknown key"));
});

fn chain(len: usize) -> Vec<AuditEntry> {
    store::testing::sample_chain(len)
}

/// A checkpoint every `every` entries.
fn signed(entries: &[AuditEntry], every: usize, signer: &Signer) -> Vec<Checkpoint> {
    entries.iter().filter(|e| (e.seq as usize).is_multiple_of(every)).map(|e| sign(signer, e.seq, &e.hash, e.at)).collect()
}

/// Edits entry `index` and re-hashes everything after it.
fn rewrite(entries: &mut [AuditEntry], index: usize) {
    entries[index].outcome = "failure".into();
    for i in index..entries.len() {
        if i > 0 {
            entries[i].prev_hash = entries[i - 1].hash.clone();
        }
        entries[i].hash = entries[i].compute_hash();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_history_cannot_be_rewritten_or_cut(len in 1usize..40, every in 1usize..8, at in any::<usize>(), cut in any::<bool>()) {
        let signer = Signer::generate();
        let keys = KeySet::from_public_keys(&[signer.public_key_info(KeyPurpose::Audit, 0)]).unwrap();
        let honest = chain(len);
        let checkpoints = signed(&honest, every, &signer);
        prop_assert!(verify_signed(&honest, checkpoints.clone(), &keys).is_ok(), "honest trails verify");
        let last_signed = len / every * every;
        prop_assume!(last_signed > 0);
        let mut tampered = honest.clone();
        if cut {
            // Keep fewer entries than the last checkpoint signed.
            tampered.truncate(at % last_signed);
        } else {
            rewrite(&mut tampered, at % last_signed);
        }
        let verdict = verify_signed(&tampered, checkpoints, &keys);
        prop_assert!(verdict.is_err(), "cut={cut} at={at} went unnoticed");
    }
}
