//! Agent enrollment against SQLite and PostgreSQL alike: a token admits one agent with
//! the token's labels; used, expired, revoked and unknown tokens get one answer; bad keys
//! and versions change nothing; two agents racing with one token: one wins.

use store::agents::{self, EnrollmentRequest, TOKEN_REFUSED};
use store::audit::AuditContext;
use store::{Db, Labels, StoreError, both_backends};

fn ctx() -> AuditContext {
    AuditContext::system("test")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn key(seed: u8) -> String {
    hex::encode(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes())
}

fn request(token: &str, seed: u8) -> EnrollmentRequest {
    EnrollmentRequest { token: token.into(), public_key: key(seed), name: Some("edge-1".into()), version: "0.1.0".into() }
}

fn refused_token(result: Result<agents::Agent, StoreError>) {
    match result {
        Err(StoreError::Invalid { field: "token", message }) => assert_eq!(message, TOKEN_REFUSED),
        other => panic!("expected the token to be refused, got {other:?}"),
    }
}

both_backends!(a_token_admits_one_agent_with_its_labels, |db: Db| async move {
    let (token, secret) =
        agents::create_enrollment_token(&db, &labels(&[("env", "prod"), ("region", "eu")]), None, 3_600_000, &ctx()).await.unwrap();
    assert!(secret.starts_with("pae_"));
    assert_eq!(token.used_at, None);
    let stored: String = sqlx::query_scalar("SELECT token_digest FROM enrollment_token").fetch_one(db.pool()).await.unwrap();
    assert_ne!(stored, secret, "only the digest is kept");

    let agent = agents::enroll(&db, &request(&secret, 1), &ctx()).await.unwrap();
    assert_eq!(agent.labels, labels(&[("env", "prod"), ("region", "eu")]));
    assert_eq!(agent.name, "edge-1", "the name it asked for, the token having none");
    assert_eq!(agent.public_key, key(1));
    let token = agents::find_enrollment_token(&db, token.id).await.unwrap();
    assert_eq!(token.agent_id, Some(agent.id));
    assert!(token.used_at.is_some());
    // Used: refused, and nothing changes.
    refused_token(agents::enroll(&db, &request(&secret, 2), &ctx()).await);
    assert_eq!(agents::list_agents(&db).await.unwrap().len(), 1);

    // A token's name wins over the agent's; with neither, `agent-<id>`.
    let (_, named) = agents::create_enrollment_token(&db, &Labels::new(), Some("gateway-a"), 60_000, &ctx()).await.unwrap();
    assert_eq!(agents::enroll(&db, &request(&named, 3), &ctx()).await.unwrap().name, "gateway-a");
    let (_, plain) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    let unnamed = EnrollmentRequest { name: None, ..request(&plain, 4) };
    let agent = agents::enroll(&db, &unnamed, &ctx()).await.unwrap();
    assert_eq!(agent.name, format!("agent-{}", agent.id));

    // Revoked: marked, audited, once.
    let revoked = agents::revoke_agent(&db, agent.id, "decommissioned", &ctx()).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(agents::revoke_agent(&db, agent.id, "again", &ctx()).await.is_err());
    assert!(agents::revoke_agent(&db, 999_999, "nobody", &ctx()).await.is_err());
});

both_backends!(unusable_tokens_and_bad_requests_change_nothing, |db: Db| async move {
    // Unknown, expired and revoked tokens get the same answer as a used one.
    refused_token(agents::enroll(&db, &request("pae_0000", 1), &ctx()).await);
    let (expiring, secret) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    sqlx::query("UPDATE enrollment_token SET expires_at = 1 WHERE enrollment_token_id = $1").bind(expiring.id).execute(db.pool()).await.unwrap();
    refused_token(agents::enroll(&db, &request(&secret, 1), &ctx()).await);
    let (revocable, secret) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    agents::revoke_enrollment_token(&db, revocable.id, &ctx()).await.unwrap();
    assert!(agents::revoke_enrollment_token(&db, revocable.id, &ctx()).await.is_err(), "once");
    refused_token(agents::enroll(&db, &request(&secret, 1), &ctx()).await);

    // Bad keys and versions are refused before the token is spent.
    let (good, secret) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    for public_key in ["", "zz", &"00".repeat(31), &"ab".repeat(33)] {
        let bad = EnrollmentRequest { public_key: public_key.to_owned(), ..request(&secret, 1) };
        assert!(matches!(agents::enroll(&db, &bad, &ctx()).await, Err(StoreError::Invalid { field: "public key", .. })), "{public_key:?}");
    }
    let bad_version = EnrollmentRequest { version: "1.0 beta".into(), ..request(&secret, 1) };
    assert!(agents::enroll(&db, &bad_version, &ctx()).await.is_err());
    assert_eq!(agents::find_enrollment_token(&db, good.id).await.unwrap().used_at, None, "still usable");
    // One key, one agent.
    agents::enroll(&db, &request(&secret, 1), &ctx()).await.unwrap();
    let (_, another) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    assert!(matches!(agents::enroll(&db, &request(&another, 1), &ctx()).await, Err(StoreError::Conflict { .. })));

    // Token settings are checked.
    assert!(agents::create_enrollment_token(&db, &Labels::new(), None, 1_000, &ctx()).await.is_err(), "too short");
    assert!(agents::create_enrollment_token(&db, &Labels::new(), None, 8 * 86_400_000, &ctx()).await.is_err(), "too long");
    assert!(agents::create_enrollment_token(&db, &labels(&[("env", "a b")]), None, 60_000, &ctx()).await.is_err());
    assert_eq!(agents::list_agents(&db).await.unwrap().len(), 1);
});

both_backends!(two_agents_racing_with_one_token_enroll_one, |db: Db| async move {
    let (_, secret) = agents::create_enrollment_token(&db, &Labels::new(), None, 60_000, &ctx()).await.unwrap();
    let first = request(&secret, 1);
    let second = request(&secret, 2);
    let context = ctx();
    let (a, b) = tokio::join!(agents::enroll(&db, &first, &context), agents::enroll(&db, &second, &context));
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1, "exactly one: {a:?} {b:?}");
    assert_eq!(agents::list_agents(&db).await.unwrap().len(), 1);
});
