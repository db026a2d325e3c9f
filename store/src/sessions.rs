//! The tower-sessions store over our database, so sessions survive restarts and are shared
//! by every replica. The session's account is also kept in a column, so that all sessions
//! of an account can be ended at once (logout everywhere, password change, disable).

use crate::{AccountId, Db, now_millis};
use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

/// The session key under which the signed-in account id is kept.
pub const ACCOUNT_KEY: &str = "account_id";

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        DbSessionStore { db }
    }
}

fn backend_error(error: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn account_of(record: &Record) -> Option<i64> {
    record.data.get(ACCOUNT_KEY).and_then(serde_json::Value::as_i64)
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|error| session_store::Error::Encode(error.to_string()))?;
        // A fresh random id colliding with a live one is astronomically unlikely, but the
        // contract says to pick another rather than overwrite someone's session.
        loop {
            let inserted = sqlx::query(
                "INSERT INTO session (session_id, account_id, data, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
            )
            .bind(record.id.to_string())
            .bind(account_of(record))
            .bind(&data)
            .bind(millis(record.expiry_date))
            .execute(self.db.pool())
            .await
            .map_err(backend_error)?
            .rows_affected();
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|error| session_store::Error::Encode(error.to_string()))?;
        sqlx::query(
            "INSERT INTO session (session_id, account_id, data, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (session_id) DO UPDATE SET account_id = excluded.account_id, \
             data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(record.id.to_string())
        .bind(account_of(record))
        .bind(data)
        .bind(millis(record.expiry_date))
        .execute(self.db.pool())
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT data, expires_at FROM session WHERE session_id = $1 AND expires_at > $2",
        )
        .bind(session_id.to_string())
        .bind(now_millis())
        .fetch_optional(self.db.pool())
        .await
        .map_err(backend_error)?;
        let Some((data, expires_at)) = row else { return Ok(None) };
        let data = serde_json::from_str(&data)
            .map_err(|error| session_store::Error::Decode(error.to_string()))?;
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_at) * 1_000_000)
            .map_err(|error| session_store::Error::Decode(error.to_string()))?;
        Ok(Some(Record { id: *session_id, data, expiry_date }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM session WHERE session_id = $1")
            .bind(session_id.to_string())
            .execute(self.db.pool())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        sqlx::query("DELETE FROM session WHERE expires_at <= $1")
            .bind(now_millis())
            .execute(self.db.pool())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

/// Ends every session of an account, inside the caller's transaction.
pub async fn delete_sessions_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_id: AccountId,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM session WHERE account_id = $1")
        .bind(account_id.0)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// How many live sessions an account has (for tests and the admin view).
pub async fn count_sessions_of(db: &Db, account_id: AccountId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM session WHERE account_id = $1 AND expires_at > $2")
        .bind(account_id.0)
        .bind(now_millis())
        .fetch_one(db.pool())
        .await
}
