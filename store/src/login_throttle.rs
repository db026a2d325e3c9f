//! Login throttling per account and per source address, kept in the database so that it
//! holds across replicas: a growing delay after a few failures, and a hard cap per hour.

use crate::audit::{self, AuditContext, Change};
use crate::{Db, StoreError};
use std::time::Duration;

const HOUR_MILLIS: i64 = 3_600_000;

/// How many failures are free, and the hard cap.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures for one account before each further attempt must wait.
    pub free_account_failures: i64,
    /// Failures for one account in an hour after which it is locked for the hour's rest.
    pub max_account_failures_per_hour: i64,
    /// Failures from one source address before each further attempt must wait.
    pub free_source_failures: i64,
    /// The longest single delay.
    pub max_delay: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_account_failures: 5,
            max_account_failures_per_hour: 100,
            free_source_failures: 20,
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// Whether a login attempt may go ahead now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    RetryAfter(Duration),
}

struct Window {
    count: i64,
    oldest: Option<i64>,
    newest: Option<i64>,
}

async fn window(db: &Db, column: &str, key: &str, since: i64) -> Result<Window, StoreError> {
    // `column` is one of two constants below, never user input.
    let (count, oldest, newest): (i64, Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT COUNT(*), MIN(failed_at), MAX(failed_at) FROM login_failure \
         WHERE {column} = $1 AND failed_at > $2"
    ))
    .bind(key)
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    Ok(Window { count, oldest, newest })
}

/// Doubling delay: one second after the first failure past the free ones.
fn backoff(failures: i64, free: i64, last: i64, now: i64, max: Duration) -> Option<Duration> {
    if failures < free {
        return None;
    }
    let exponent = u32::try_from(failures - free).unwrap_or(u32::MAX).min(20);
    let delay = Duration::from_secs(1u64 << exponent).min(max);
    let ready_at = last + delay.as_millis() as i64;
    (ready_at > now).then(|| Duration::from_millis((ready_at - now) as u64))
}

/// Decides whether `email` may try to log in from `source` at `now`.
pub async fn check(
    db: &Db,
    policy: &ThrottlePolicy,
    email: &str,
    source: &str,
    now: i64,
) -> Result<Verdict, StoreError> {
    let since = now - HOUR_MILLIS;
    let account = window(db, "email", email, since).await?;
    if account.count >= policy.max_account_failures_per_hour {
        let unlock_at = account.oldest.unwrap_or(now) + HOUR_MILLIS;
        return Ok(Verdict::RetryAfter(Duration::from_millis((unlock_at - now).max(1000) as u64)));
    }
    let source_window = window(db, "source", source, since).await?;
    let waits = [
        backoff(
            account.count,
            policy.free_account_failures,
            account.newest.unwrap_or(now),
            now,
            policy.max_delay,
        ),
        backoff(
            source_window.count,
            policy.free_source_failures,
            source_window.newest.unwrap_or(now),
            now,
            policy.max_delay,
        ),
    ];
    Ok(waits.into_iter().flatten().max().map_or(Verdict::Allowed, Verdict::RetryAfter))
}

/// Counts a failed sign-in and writes its audit entry, together.
pub async fn record_failure(
    db: &Db,
    email: &str,
    source: &str,
    now: i64,
    context: &AuditContext,
) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("INSERT INTO login_failure (email, source, failed_at) VALUES ($1, $2, $3)")
        .bind(email)
        .bind(source)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit::append(&mut tx, context, Change::failure("session.login", "session", "-")).await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets an account's failures after it logs in successfully.
pub async fn clear_account(db: &Db, email: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_failure WHERE email = $1").bind(email).execute(db.pool()).await?;
    Ok(())
}

/// Drops failures older than the one-hour window.
pub async fn prune(db: &Db, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM login_failure WHERE failed_at <= $1")
        .bind(now - HOUR_MILLIS)
        .execute(db.pool())
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(900);
        assert_eq!(backoff(4, 5, 0, 0, max), None);
        assert_eq!(backoff(5, 5, 0, 0, max), Some(Duration::from_secs(1)));
        assert_eq!(backoff(7, 5, 0, 0, max), Some(Duration::from_secs(4)));
        assert_eq!(backoff(7, 5, 0, 3_000, max), Some(Duration::from_secs(1)));
        assert_eq!(backoff(7, 5, 0, 4_000, max), None, "the delay has passed");
        assert_eq!(backoff(60, 5, 0, 0, max), Some(max));
        assert_eq!(backoff(i64::MAX, 5, 0, 0, max), Some(max));
    }
}
