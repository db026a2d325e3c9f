//! Accounts, teams, tokens, sessions and throttling against SQLite and PostgreSQL alike.

use store::accounts::{self, NewAccount};
use store::login_throttle::{self, ThrottlePolicy, Verdict};
use store::sessions::{self, DbSessionStore};
use store::{AccountId, ApiTokenId, Db, Role, StoreError, TeamId, both_backends, teams, tokens};
use store::audit::AuditContext;
use tower_sessions::session::{Id, Record};

fn ctx() -> AuditContext {
    AuditContext::system("test")
}
use tower_sessions::session_store::SessionStore;

fn new_account(email: &str, role: Role, team_ids: Vec<TeamId>) -> NewAccount {
    NewAccount {
        email: email.into(),
        display_name: String::new(),
        role,
        team_ids,
        password_hash: Some("$argon2id$placeholder".into()),
    }
}

both_backends!(accounts_are_created_with_teams, |db: Db| async move {
    let payments = teams::create_team(&db, "Payments", &ctx()).await.unwrap();
    let identity = teams::create_team(&db, "Identity", &ctx()).await.unwrap();
    let account = accounts::create_account(
        &db,
        new_account(" Dev@Example.com ", Role::Developer, vec![payments.id, identity.id, payments.id]), &ctx())
    .await
    .unwrap();
    assert_eq!(account.email, "dev@example.com");
    assert_eq!(account.display_name, "dev");
    assert!(account.has_password);
    let names: Vec<_> = account.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Identity", "Payments"]);

    let listed = teams::list_teams(&db).await.unwrap();
    assert!(listed.iter().all(|team| team.member_count == 1), "{listed:?}");
    assert_eq!(accounts::list_accounts(&db).await.unwrap(), vec![account.clone()]);
    assert_eq!(accounts::find_account_by_email(&db, "DEV@example.com").await.unwrap(), account);
});

both_backends!(duplicates_and_bad_references_change_nothing, |db: Db| async move {
    accounts::create_account(&db, new_account("a@example.com", Role::Admin, vec![]), &ctx()).await.unwrap();
    let duplicate = accounts::create_account(&db, new_account("A@example.com", Role::Auditor, vec![]), &ctx()).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict { field: "email" })), "{duplicate:?}");
    let missing_team =
        accounts::create_account(&db, new_account("b@example.com", Role::Developer, vec![TeamId(999)]), &ctx()).await;
    assert!(matches!(missing_team, Err(StoreError::Invalid { field: "team", .. })), "{missing_team:?}");
    assert!(accounts::find_account_by_email(&db, "b@example.com").await.is_err(), "rolled back");
    assert_eq!(accounts::count_accounts(&db).await.unwrap(), 1);
    teams::create_team(&db, "Ops", &ctx()).await.unwrap();
    assert!(matches!(teams::create_team(&db, "Ops", &ctx()).await, Err(StoreError::Conflict { .. })));
});

both_backends!(the_last_admin_cannot_be_demoted_or_disabled, |db: Db| async move {
    let admin = accounts::create_account(&db, new_account("root@example.com", Role::Admin, vec![]), &ctx()).await.unwrap();
    let demote = accounts::update_account(&db, admin.id, "Root", Role::Auditor, &[], &ctx()).await;
    assert!(matches!(demote, Err(StoreError::Invalid { field: "role", .. })), "{demote:?}");
    assert!(accounts::set_disabled(&db, admin.id, true, &ctx()).await.is_err());
    let second = accounts::create_account(&db, new_account("two@example.com", Role::Admin, vec![]), &ctx()).await.unwrap();
    let demoted = accounts::update_account(&db, admin.id, "Root", Role::Auditor, &[], &ctx()).await.unwrap();
    assert_eq!(demoted.role, Role::Auditor);
    assert_eq!(demoted.display_name, "Root");
    assert!(accounts::set_disabled(&db, second.id, true, &ctx()).await.is_err(), "now the last admin");
});

both_backends!(disabling_and_password_changes_end_sessions, |db: Db| async move {
    let a = accounts::create_account(&db, new_account("s@example.com", Role::Security, vec![]), &ctx()).await.unwrap();
    let b = accounts::create_account(&db, new_account("t@example.com", Role::Security, vec![]), &ctx()).await.unwrap();
    let store = DbSessionStore::new(db.clone());
    for account in [a.id, a.id, b.id] {
        let mut record = Record {
            id: Id::default(),
            data: [(sessions::ACCOUNT_KEY.to_owned(), serde_json::json!(account.0))].into(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        assert_eq!(store.load(&record.id).await.unwrap().unwrap().data, record.data);
    }
    assert_eq!(sessions::count_sessions_of(&db, a.id).await.unwrap(), 2);
    let login = accounts::find_login(&db, "S@example.com").await.unwrap().unwrap();
    assert!(accounts::find_session_principal(&db, a.id, login.session_generation).await.unwrap().is_some());

    accounts::set_password_hash(&db, a.id, "$argon2id$new", &ctx()).await.unwrap();
    assert_eq!(sessions::count_sessions_of(&db, a.id).await.unwrap(), 0);
    assert_eq!(sessions::count_sessions_of(&db, b.id).await.unwrap(), 1, "others keep theirs");
    assert!(
        accounts::find_session_principal(&db, a.id, login.session_generation).await.unwrap().is_none(),
        "a session from before the change is refused even if it were still stored"
    );

    accounts::set_disabled(&db, b.id, true, &ctx()).await.unwrap();
    assert_eq!(sessions::count_sessions_of(&db, b.id).await.unwrap(), 0);
    assert!(accounts::find_principal(&db, b.id).await.unwrap().is_none());
    let enabled = accounts::set_disabled(&db, b.id, false, &ctx()).await.unwrap();
    assert!(!enabled.is_disabled());
});

both_backends!(sessions_expire_and_can_be_deleted, |db: Db| async move {
    let store = DbSessionStore::new(db.clone());
    let mut expired = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
    };
    store.create(&mut expired).await.unwrap();
    assert!(store.load(&expired.id).await.unwrap().is_none());
    let mut live = Record { expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(5), ..expired.clone() };
    live.id = Id::default();
    store.create(&mut live).await.unwrap();
    store.save(&Record { data: [("k".to_owned(), serde_json::json!("v"))].into(), ..live.clone() }).await.unwrap();
    assert_eq!(store.load(&live.id).await.unwrap().unwrap().data["k"], "v");
    store.delete(&live.id).await.unwrap();
    assert!(store.load(&live.id).await.unwrap().is_none());
});

both_backends!(tokens_authenticate_until_revoked_or_expired, |db: Db| async move {
    let owner = accounts::create_account(&db, new_account("o@example.com", Role::Developer, vec![]), &ctx()).await.unwrap();
    let other = accounts::create_account(&db, new_account("p@example.com", Role::Developer, vec![]), &ctx()).await.unwrap();
    let (token, secret) = tokens::create_token(&db, owner.id, "ci", None, &ctx()).await.unwrap();
    assert!(secret.starts_with(&token.prefix));
    let principal = tokens::authenticate_token(&db, &secret).await.unwrap().unwrap();
    assert_eq!(principal.account_id, owner.id);
    assert!(tokens::list_tokens(&db, owner.id).await.unwrap()[0].last_used_at.is_some());
    assert!(tokens::authenticate_token(&db, "pal_0000").await.unwrap().is_none());
    assert!(tokens::authenticate_token(&db, &secret.to_uppercase()).await.unwrap().is_none());

    let duplicate = tokens::create_token(&db, owner.id, "ci", None, &ctx()).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict { field: "name" })));
    assert!(tokens::create_token(&db, other.id, "ci", None, &ctx()).await.is_ok(), "names are per account");
    assert!(tokens::create_token(&db, owner.id, "old", Some(1), &ctx()).await.is_err(), "expiry in the past");

    let refused = tokens::revoke_token(&db, token.id, Some(other.id), &ctx()).await;
    assert!(matches!(refused, Err(StoreError::NotFound(_))), "another account's token");
    assert!(tokens::authenticate_token(&db, &secret).await.unwrap().is_some());
    tokens::revoke_token(&db, token.id, Some(owner.id), &ctx()).await.unwrap();
    assert!(tokens::authenticate_token(&db, &secret).await.unwrap().is_none());
    assert!(tokens::revoke_token(&db, ApiTokenId(12345), None, &ctx()).await.is_err());

    let (_, soon) = tokens::create_token(&db, owner.id, "short", Some(store::now_millis() + 3_000), &ctx()).await.unwrap();
    assert!(tokens::authenticate_token(&db, &soon).await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    assert!(tokens::authenticate_token(&db, &soon).await.unwrap().is_none(), "expired");

    accounts::set_disabled(&db, other.id, true, &ctx()).await.unwrap();
    let (_, disabled_secret) = tokens::create_token(&db, other.id, "x", None, &ctx()).await.unwrap();
    assert!(tokens::authenticate_token(&db, &disabled_secret).await.unwrap().is_none());
});

both_backends!(password_setup_links_work_once, |db: Db| async move {
    let mut invited = new_account("new@example.com", Role::Auditor, vec![]);
    invited.password_hash = None;
    let account = accounts::create_account(&db, invited, &ctx()).await.unwrap();
    assert!(!account.has_password);
    let token = accounts::create_password_setup(&db, account.id, 60_000, &ctx()).await.unwrap();
    assert_eq!(accounts::find_password_setup(&db, &token).await.unwrap().id, account.id);
    let done = accounts::complete_password_setup(&db, &token, "$argon2id$x", &ctx()).await.unwrap();
    assert_eq!(done.id, account.id);
    assert!(accounts::find_account(&db, account.id).await.unwrap().has_password);
    assert!(accounts::complete_password_setup(&db, &token, "$argon2id$y", &ctx()).await.is_err(), "used");
    let expired = accounts::create_password_setup(&db, account.id, -1, &ctx()).await.unwrap();
    assert!(accounts::find_password_setup(&db, &expired).await.is_err());
    assert!(accounts::create_password_setup(&db, AccountId(4242), 60_000, &ctx()).await.is_err());
});

both_backends!(throttling_grows_and_caps, |db: Db| async move {
    let policy = ThrottlePolicy::default();
    let now = store::now_millis();
    let check = |now| {
        let db = db.clone();
        async move { login_throttle::check(&db, &policy, "v@example.com", "10.0.0.1", now).await.unwrap() }
    };
    for i in 0..5 {
        assert_eq!(check(now + i).await, Verdict::Allowed);
        login_throttle::record_failure(&db, "v@example.com", "10.0.0.1", now + i, &ctx()).await.unwrap();
    }
    assert!(matches!(check(now + 5).await, Verdict::RetryAfter(_)), "sixth try must wait");
    assert_eq!(check(now + 4 + 1_000).await, Verdict::Allowed, "after the delay");
    for i in 5..100 {
        login_throttle::record_failure(&db, "v@example.com", "10.0.0.2", now + i, &ctx()).await.unwrap();
    }
    match check(now + 2 * 3_600_000 / 3).await {
        Verdict::RetryAfter(wait) => assert!(wait.as_secs() > 60, "locked for the hour's rest: {wait:?}"),
        Verdict::Allowed => panic!("100 failures in an hour must lock the account"),
    }
    let other = login_throttle::check(&db, &policy, "w@example.com", "10.0.0.9", now + 10).await.unwrap();
    assert_eq!(other, Verdict::Allowed, "other accounts from other sources are unaffected");
    login_throttle::clear_account(&db, "v@example.com").await.unwrap();
    assert_eq!(check(now + 200).await, Verdict::Allowed);
    assert_eq!(login_throttle::prune(&db, now + 2 * 3_600_000).await.unwrap(), 0, "cleared already");
});
