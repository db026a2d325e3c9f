//! A second factor for local accounts: TOTP (RFC 6238: SHA-1, six digits, 30-second steps,
//! one step of clock drift either way) with the secret sealed under the master key, and ten
//! single-use recovery codes kept as SHA-256 digests. A code is accepted once: the newest
//! accepted step is stored and only later steps count, so a code seen over a shoulder or in
//! a log cannot be replayed.

use crate::audit::{self, AuditContext, Change};
use crate::signing::MasterKey;
use crate::{AccountId, Db, StoreError, now_millis};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

/// Recovery codes issued at enrollment.
pub const RECOVERY_CODES: usize = 10;
const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
/// Shown in authenticator apps beside the account.
const ISSUER: &str = "Palisade";

/// What an authenticator app needs: the secret (base32, for typing in) and the
/// `otpauth://` URI (for the QR code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

/// Which second factor was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    Totp,
    /// A recovery code, now used up; `left` remain.
    RecoveryCode { left: i64 },
}

fn sealing_context(account: AccountId) -> Vec<u8> {
    format!("palisade totp v1|{}", account.0).into_bytes()
}

fn totp(secret: Vec<u8>, email: &str) -> TOTP {
    // The secret is generated here at 160 bits; `new_unchecked` skips only the length
    // check `new` applies to the secret, and the account name may hold any character.
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS, secret, Some(ISSUER.to_owned()), email.to_owned())
}

fn digest(code: &str) -> String {
    hex::encode(Sha256::digest(normalise_recovery(code).as_bytes()))
}

/// Recovery codes are compared without case, spaces or dashes.
fn normalise_recovery(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// `xxxxx-xxxxx`: ten characters of an alphabet without look-alikes (50 bits).
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// Whether the account has a confirmed second factor.
pub async fn is_enrolled(db: &Db, account: AccountId) -> Result<bool, StoreError> {
    let confirmed: Option<Option<i64>> =
        sqlx::query_scalar("SELECT confirmed_at FROM account_totp WHERE account_id = $1").bind(account.0).fetch_optional(db.pool()).await?;
    Ok(matches!(confirmed, Some(Some(_))))
}

/// Unused recovery codes.
pub async fn recovery_codes_left(db: &Db, account: AccountId) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM recovery_code WHERE account_id = $1 AND used_at IS NULL")
        .bind(account.0)
        .fetch_one(db.pool())
        .await?)
}

/// Starts (or restarts) enrollment with a fresh secret. Refused while a confirmed factor
/// exists: it must be removed first, so nobody replaces it by reaching an open session.
pub async fn begin_enrollment(db: &Db, master: &MasterKey, account: AccountId, email: &str) -> Result<Enrollment, StoreError> {
    let mut secret = vec![0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    let sealed = hex::encode(master.seal(&sealing_context(account), &secret));
    let mut tx = db.pool().begin().await?;
    let existing: Option<Option<i64>> =
        sqlx::query_scalar("SELECT confirmed_at FROM account_totp WHERE account_id = $1").bind(account.0).fetch_optional(&mut *tx).await?;
    match existing {
        Some(Some(_)) => return Err(StoreError::invalid("mfa", "a second factor is already set up; remove it first")),
        Some(None) => {
            sqlx::query("UPDATE account_totp SET sealed_secret = $1, created_at = $2, last_step = 0 WHERE account_id = $3")
                .bind(&sealed)
                .bind(now_millis())
                .bind(account.0)
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query("INSERT INTO account_totp (account_id, sealed_secret, confirmed_at, last_step, created_at) VALUES ($1, $2, NULL, 0, $3)")
                .bind(account.0)
                .bind(&sealed)
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    let totp = totp(secret, email);
    Ok(Enrollment { secret_base32: totp.get_secret_base32(), otpauth_uri: totp.get_url() })
}

/// The time step a six-digit `code` is valid for at `now_ms` (one step of drift either
/// way), if any.
fn matching_step(totp: &TOTP, code: &str, now_ms: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now_ms / 1000).ok()?;
    let step = now / STEP_SECONDS;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|candidate| constant_time_eq(totp.generate(candidate * STEP_SECONDS).as_bytes(), code.as_bytes()))
        .and_then(|matched| i64::try_from(matched).ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn load_totp(db: &Db, master: &MasterKey, account: AccountId, email: &str) -> Result<Option<(TOTP, bool)>, StoreError> {
    let row: Option<(String, Option<i64>)> = sqlx::query_as("SELECT sealed_secret, confirmed_at FROM account_totp WHERE account_id = $1")
        .bind(account.0)
        .fetch_optional(db.pool())
        .await?;
    let Some((sealed, confirmed)) = row else { return Ok(None) };
    let cannot_open = || StoreError::Sealed { purpose: "totp", key_id: account.0.to_string() };
    let sealed = hex::decode(sealed).map_err(|_| cannot_open())?;
    let secret = master.open(&sealing_context(account), &sealed).ok_or_else(cannot_open)?;
    Ok(Some((totp(secret, email), confirmed.is_some())))
}

/// Takes `step` as used if it is newer than the last one: false when the code was already
/// used (or an older one raced it).
async fn take_step(tx: &mut sqlx::Transaction<'_, sqlx::Any>, account: AccountId, step: i64) -> Result<bool, StoreError> {
    let taken = sqlx::query("UPDATE account_totp SET last_step = $1 WHERE account_id = $2 AND last_step < $1")
        .bind(step)
        .bind(account.0)
        .execute(&mut **tx)
        .await?;
    Ok(taken.rows_affected() == 1)
}

/// Confirms enrollment with a code from the authenticator and returns the recovery codes
/// (shown once; only their digests are kept). A wrong code changes nothing.
pub async fn confirm_enrollment(
    db: &Db,
    master: &MasterKey,
    account: AccountId,
    email: &str,
    code: &str,
    now_ms: i64,
    context: &AuditContext,
) -> Result<Vec<String>, StoreError> {
    let (totp, confirmed) = load_totp(db, master, account, email).await?.ok_or(StoreError::NotFound("enrollment"))?;
    if confirmed {
        return Err(StoreError::invalid("mfa", "a second factor is already set up"));
    }
    let step = matching_step(&totp, code, now_ms).ok_or_else(|| StoreError::invalid("code", "is not the code the authenticator shows now"))?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let mut tx = db.pool().begin().await?;
    if !take_step(&mut tx, account, step).await? {
        return Err(StoreError::invalid("code", "was used already; wait for the next one"));
    }
    sqlx::query("UPDATE account_totp SET confirmed_at = $1 WHERE account_id = $2").bind(now_ms).bind(account.0).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM recovery_code WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
    for code in &codes {
        sqlx::query("INSERT INTO recovery_code (account_id, digest, used_at) VALUES ($1, $2, NULL)")
            .bind(account.0)
            .bind(digest(code))
            .execute(&mut *tx)
            .await?;
    }
    audit::append(&mut tx, context, Change::success("mfa.enroll", "account", account.0)).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Checks a second factor at sign-in: a current TOTP code not used before, or an unused
/// recovery code (which is then used up). `None`: refused.
pub async fn verify(
    db: &Db,
    master: &MasterKey,
    account: AccountId,
    email: &str,
    code: &str,
    now_ms: i64,
    context: &AuditContext,
) -> Result<Option<Accepted>, StoreError> {
    let Some((totp, true)) = load_totp(db, master, account, email).await? else { return Ok(None) };
    let mut tx = db.pool().begin().await?;
    let accepted = match matching_step(&totp, code, now_ms) {
        Some(step) => take_step(&mut tx, account, step).await?.then_some(Accepted::Totp),
        None if normalise_recovery(code).len() == 10 => {
            let used = sqlx::query("UPDATE recovery_code SET used_at = $1 WHERE account_id = $2 AND digest = $3 AND used_at IS NULL")
                .bind(now_ms)
                .bind(account.0)
                .bind(digest(code))
                .execute(&mut *tx)
                .await?;
            if used.rows_affected() == 1 {
                let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_code WHERE account_id = $1 AND used_at IS NULL")
                    .bind(account.0)
                    .fetch_one(&mut *tx)
                    .await?;
                let details = serde_json::json!({"left": left});
                audit::append(&mut tx, context, Change::success("mfa.recovery_code", "account", account.0).with_details(details)).await?;
                Some(Accepted::RecoveryCode { left })
            } else {
                None
            }
        }
        None => None,
    };
    tx.commit().await?;
    Ok(accepted)
}

/// Removes the second factor and its recovery codes (the account's owner, or an admin
/// helping someone who lost their device).
pub async fn remove(db: &Db, account: AccountId, context: &AuditContext) -> Result<(), StoreError> {
    let mut tx = db.pool().begin().await?;
    let removed = sqlx::query("DELETE FROM account_totp WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
    if removed.rows_affected() == 0 {
        return Err(StoreError::NotFound("second factor"));
    }
    sqlx::query("DELETE FROM recovery_code WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
    audit::append(&mut tx, context, Change::success("mfa.remove", "account", account.0)).await?;
    tx.commit().await?;
    Ok(())
}

/// The code an authenticator holding `secret_base32` shows at `now_ms`: for tests and for
/// checking a clock.
pub fn code_at(secret_base32: &str, now_ms: i64) -> Option<String> {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_owned()).to_bytes().ok()?;
    Some(totp(secret, "").generate(u64::try_from(now_ms / 1000).ok()?))
}
