//! The audit hash chain: random tampering is always caught, honest logs never flagged;
//! entries commit and roll back with their change; concurrent appends stay linear.

use proptest::prelude::*;
use store::AuditEntry;
use store::audit::{self, AuditContext, Change, GENESIS_HASH, verify_chain, verify_with_head};
use store::{Db, both_backends};

fn chain(len: usize) -> Vec<AuditEntry> {
    store::testing::sample_chain(len)
}

#[derive(Clone, Debug)]
enum Tamper {
    Edit { index: usize, field: u8 },
    Delete { index: usize },
    Insert { index: usize },
    Swap { index: usize },
    Truncate { keep: usize },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 0u8..6).prop_map(|(index, field)| Tamper::Edit { index, field }),
        any::<usize>().prop_map(|index| Tamper::Delete { index }),
        any::<usize>().prop_map(|index| Tamper::Insert { index }),
        any::<usize>().prop_map(|index| Tamper::Swap { index }),
        any::<usize>().prop_map(|keep| Tamper::Truncate { keep }),
    ]
}

/// Applies the tampering; `false` when it could not apply (too short a log to swap).
fn apply(entries: &mut Vec<AuditEntry>, tamper: &Tamper) -> bool {
    let len = entries.len();
    match *tamper {
        Tamper::Edit { index, field } => {
            let entry = &mut entries[index % len];
            match field {
                0 => entry.actor_label.push('x'),
                1 => entry.outcome = "failure".into(),
                2 => entry.details = serde_json::json!({"after": {"role": "admin"}}),
                3 => entry.at += 1,
                4 => entry.target_id.push('9'),
                // An attacker who recomputes the edited entry's hash still breaks the link.
                _ => {
                    entry.action = "account.delete".into();
                    entry.hash = entry.compute_hash();
                }
            }
        }
        Tamper::Delete { index } => {
            entries.remove(index % len);
        }
        Tamper::Insert { index } => {
            let mut forged = entries[index % len].clone();
            forged.request_id = "forged".into();
            forged.hash = forged.compute_hash();
            entries.insert(index % len + 1, forged);
        }
        Tamper::Swap { index } => {
            if len < 2 {
                return false;
            }
            let i = index % (len - 1);
            entries.swap(i, i + 1);
        }
        Tamper::Truncate { keep } => {
            entries.truncate(keep % len);
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_tampering_is_detected(len in 1usize..40, tamper in tamper()) {
        let honest = chain(len);
        let head = honest.last().unwrap().clone();
        let mut entries = honest.clone();
        prop_assume!(apply(&mut entries, &tamper));
        let verdict = verify_with_head(&entries, head.seq, &head.hash);
        prop_assert!(verdict.is_err(), "{tamper:?} went unnoticed");
        let broken = verdict.unwrap_err();
        prop_assert!(broken.seq >= 1 && broken.seq <= len as i64 + 1, "{broken:?}");
    }

    #[test]
    fn honest_logs_always_verify(len in 0usize..60) {
        let entries = chain(len);
        let (seq, hash) = entries.last().map_or((0, GENESIS_HASH.to_owned()), |e| (e.seq, e.hash.clone()));
        prop_assert_eq!(verify_with_head(&entries, seq, &hash), Ok(()));
        prop_assert_eq!(verify_chain(&entries, 0, GENESIS_HASH), Ok(()));
    }
}

#[test]
fn the_first_bad_sequence_is_named() {
    let mut entries = chain(10);
    entries[6].actor_label = "mallory@example.com".into();
    let broken = verify_chain(&entries, 0, GENESIS_HASH).unwrap_err();
    assert_eq!(broken.seq, 7);
    entries = chain(10);
    entries.remove(3);
    assert_eq!(verify_chain(&entries, 0, GENESIS_HASH).unwrap_err().seq, 4);
}

#[test]
fn the_canonical_form_is_stable() {
    let entry = chain(1).remove(0);
    let canonical = String::from_utf8(entry.canonical_bytes()).unwrap();
    assert!(canonical.starts_with(r#"{"action":"account.create","actor_id":0,"#), "{canonical}");
    assert!(!canonical.contains(r#""hash""#), "the hash does not cover itself");
    assert_eq!(entry.compute_hash(), entry.hash);
}

fn context() -> AuditContext {
    AuditContext::system("test")
}

both_backends!(entries_commit_and_roll_back_with_their_change, |db: Db| async move {
    let mut tx = db.pool().begin().await.unwrap();
    audit::append(&mut tx, &context(), Change::success("team.create", "team", 1)).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(audit::list_entries(&db, 0, 10).await.unwrap().is_empty(), "rolled back with the change");

    for i in 0..5 {
        let change = Change::success("team.create", "team", i)
            .with_details(serde_json::json!({"after": {"name": format!("Team {i}"), "n": 1.5}}));
        audit::record(&db, &context(), change).await.unwrap();
    }
    let entries = audit::list_entries(&db, 0, 100).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    assert_eq!(audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries), Ok(5));
});

both_backends!(tampering_in_the_database_is_found, |db: Db| async move {
    for i in 0..6 {
        audit::record(&db, &context(), Change::success("account.create", "account", i)).await.unwrap();
    }
    sqlx::query("UPDATE audit_entry SET actor_label = 'someone else' WHERE seq = 4").execute(db.pool()).await.unwrap();
    let broken = audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries).unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
    sqlx::query("UPDATE audit_entry SET actor_label = 'system' WHERE seq = 4").execute(db.pool()).await.unwrap();
    // The label is `test`: putting back the wrong value is still caught…
    assert!(audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries).is_err());
    sqlx::query("UPDATE audit_entry SET actor_label = 'test' WHERE seq = 4").execute(db.pool()).await.unwrap();
    assert_eq!(audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries), Ok(6), "…and the true one verifies again");

    sqlx::query("DELETE FROM audit_entry WHERE seq = 6").execute(db.pool()).await.unwrap();
    let truncated = audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries).unwrap_err();
    assert_eq!(truncated.seq, 6, "{truncated}");
    sqlx::query("DELETE FROM audit_entry WHERE seq = 2").execute(db.pool()).await.unwrap();
    assert_eq!(audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries).unwrap_err().seq, 2);
});

both_backends!(concurrent_appends_stay_linear, |db: Db| async move {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            audit::record(&db, &AuditContext::system("writer"), Change::success("team.create", "team", i)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(audit::verify_database_own_keys(&db).await.unwrap().map(|s| s.entries), Ok(40));
});

both_backends!(search_filters_pages_and_scopes, |db: Db| async move {
    use store::audit::Actor;
    use store::{AccountId, AuditFilter};
    let as_user = |id: i64, email: &str| AuditContext {
        actor: Actor { kind: "user", id: Some(id), label: email.into() },
        source: "10.1.2.3".into(),
        user_agent: "ua".into(),
        request_id: "r".into(),
    };
    for i in 0..30 {
        let (who, email) = if i % 2 == 0 { (1, "alice@example.com") } else { (2, "bob@example.com") };
        let change = Change::success(if i % 3 == 0 { "team.create" } else { "account.update" }, "account", 100 + i)
            .with_details(serde_json::json!({"after": {"note": format!("100%_done-{i}")}}));
        audit::record(&db, &as_user(who, email), change).await.unwrap();
    }
    audit::record(&db, &as_user(2, "bob@example.com"), Change::failure("session.login", "account", 1)).await.unwrap();

    let all = audit::search_entries(&db, &AuditFilter { limit: Some(200), ..Default::default() }, None).await.unwrap();
    assert_eq!(all.entries.len(), 31);
    assert_eq!(all.entries[0].seq, 31, "newest first");
    assert_eq!(all.next_cursor, None);

    let first = audit::search_entries(&db, &AuditFilter { limit: Some(10), ..Default::default() }, None).await.unwrap();
    assert_eq!(first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (22..=31).rev().collect::<Vec<_>>());
    let second = audit::search_entries(&db, &AuditFilter { limit: Some(10), before_seq: first.next_cursor, ..Default::default() }, None)
        .await
        .unwrap();
    assert_eq!(second.entries[0].seq, 21, "the cursor continues where the page ended");

    let count = |filter: AuditFilter, only: Option<AccountId>| {
        let db = db.clone();
        async move { audit::search_entries(&db, &AuditFilter { limit: Some(200), ..filter }, only).await.unwrap().entries.len() }
    };
    assert_eq!(count(AuditFilter { actor: Some("ALICE".into()), ..Default::default() }, None).await, 15);
    assert_eq!(count(AuditFilter { action: Some("team".into()), ..Default::default() }, None).await, 10);
    assert_eq!(count(AuditFilter { action: Some("team.create".into()), ..Default::default() }, None).await, 10);
    assert_eq!(count(AuditFilter { action: Some("team.".into()), ..Default::default() }, None).await, 0, "a dotted action is exact");
    assert_eq!(count(AuditFilter { outcome: Some("failure".into()), ..Default::default() }, None).await, 1);
    assert_eq!(count(AuditFilter { target_id: Some("105".into()), ..Default::default() }, None).await, 1);
    assert_eq!(count(AuditFilter { text: Some("100%_DONE-7".into()), ..Default::default() }, None).await, 1, "wildcards are literal");
    assert_eq!(count(AuditFilter { text: Some("%".into()), ..Default::default() }, None).await, 30, "only entries with a % in them");
    assert_eq!(count(AuditFilter { from: Some(store::now_millis() + 60_000), ..Default::default() }, None).await, 0);
    assert_eq!(count(AuditFilter { to: Some(store::now_millis() + 60_000), ..Default::default() }, None).await, 31);
    // Scoped to an account: what it did, and what was done to it.
    assert_eq!(count(AuditFilter::default(), Some(AccountId(1))).await, 15 + 1, "alice's 15, and bob's login attempt on account 1");
    assert_eq!(count(AuditFilter::default(), Some(AccountId(2))).await, 16);
    assert_eq!(count(AuditFilter::default(), Some(AccountId(999))).await, 0);
    let hostile = AuditFilter { actor: Some("' OR 1=1 --".into()), text: Some("\\".into()), ..Default::default() };
    assert_eq!(count(hostile, None).await, 0, "input is data, never SQL");
});
