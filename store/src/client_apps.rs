//! Client applications (the callers of APIs) and their credentials: one per instance of
//! a calling service. API keys are random, shown once and stored as SHA-256 digests;
//! HMAC signing keys are random, shown once and sealed under the master key (agents need
//! them to verify signatures); mTLS credentials register a certificate identity. Rotating a
//! key issues a successor and lets the old one live for an overlap window so instances can
//! switch without an outage.

use crate::audit::{self, AuditContext, Change};
use crate::signing::MasterKey;
use crate::tokens::{digest, generate_secret};
use crate::{
    ClientApp, ClientAppId, ClientKind, Credential, CredentialId, CredentialKind, Db, IssuedCredential, StoreError, TeamId,
    now_millis,
};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeSet;

/// What every issued API key starts with, so secret scanners can recognise leaked ones.
pub const API_KEY_PREFIX: &str = "pak_";
/// What every HMAC key id starts with.
pub const HMAC_KEY_ID_PREFIX: &str = "phk_";
const SHOWN_PREFIX_CHARS: usize = 12;
const MAX_NAME_CHARS: usize = 120;
const MAX_DESCRIPTION_CHARS: usize = 1_000;
const MAX_INSTANCE_CHARS: usize = 120;
const MAX_IDENTITY_CHARS: usize = 1_024;
pub const DEFAULT_ROTATION_DAYS: i64 = 90;
const MAX_ROTATION_DAYS: i64 = 3_650;
/// How long a rotated key keeps working by default, and at most.
pub const DEFAULT_OVERLAP_SECONDS: i64 = 3_600;
const MAX_OVERLAP_SECONDS: i64 = 7 * 24 * 3_600;
const DAY_MILLIS: i64 = 24 * 3_600 * 1_000;

const APP_COLUMNS: &str = "c.client_app_id, c.name, c.team_id, t.name AS team_name, c.kind, c.description, c.rotation_days, c.created_at";
const CREDENTIAL_COLUMNS: &str =
    "client_credential_id, client_app_id, kind, instance, key_prefix, identity, created_at, expires_at, revoked_at";

fn app_from_row(row: &AnyRow) -> Result<ClientApp, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(ClientApp {
        id: ClientAppId(row.try_get("client_app_id")?),
        name: row.try_get("name")?,
        team_id: TeamId(row.try_get("team_id")?),
        team_name: row.try_get("team_name")?,
        kind: kind.parse().unwrap_or(ClientKind::Service),
        description: row.try_get("description")?,
        rotation_days: row.try_get("rotation_days")?,
        created_at: row.try_get("created_at")?,
        credentials: Vec::new(),
    })
}

fn credential_from_row(row: &AnyRow) -> Result<Credential, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Credential {
        id: CredentialId(row.try_get("client_credential_id")?),
        client_app_id: ClientAppId(row.try_get("client_app_id")?),
        kind: kind.parse().unwrap_or(CredentialKind::ApiKey),
        instance: row.try_get("instance")?,
        prefix: row.try_get("key_prefix")?,
        identity: row.try_get("identity")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn check_rotation(days: i64) -> Result<i64, StoreError> {
    if (1..=MAX_ROTATION_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(StoreError::invalid("rotation_days", format!("between 1 and {MAX_ROTATION_DAYS} days")))
    }
}

/// Registers a client application owned by `team`.
pub async fn create_client_app(
    db: &Db,
    team: TeamId,
    name: &str,
    kind: ClientKind,
    description: &str,
    rotation_days: i64,
    context: &AuditContext,
) -> Result<ClientApp, StoreError> {
    let name = crate::text::clean_name("name", name, MAX_NAME_CHARS)?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(StoreError::invalid("description", "is too long"));
    }
    let rotation_days = check_rotation(rotation_days)?;
    let mut tx = db.pool().begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO client_app (team_id, name, kind, description, rotation_days, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING client_app_id",
    )
    .bind(team.0)
    .bind(&name)
    .bind(kind.as_str())
    .bind(description.trim())
    .bind(rotation_days)
    .bind(now_millis())
    .fetch_one(&mut *tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::NotFound("team"),
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict { field: "client application name" },
        _ => StoreError::from(error),
    })?;
    let details = serde_json::json!({"after": {"name": name, "team_id": team.0, "kind": kind.as_str(), "rotation_days": rotation_days}});
    audit::append(&mut tx, context, Change::success("client_app.create", "client_app", id).with_details(details)).await?;
    tx.commit().await?;
    find_client_app(db, ClientAppId(id)).await
}

/// Every client application with its credentials, by name.
pub async fn list_client_apps(db: &Db) -> Result<Vec<ClientApp>, StoreError> {
    let mut apps = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM client_app c JOIN team t ON t.team_id = c.team_id ORDER BY c.name"))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(app_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let credentials = sqlx::query(&format!("SELECT {CREDENTIAL_COLUMNS} FROM client_credential ORDER BY client_credential_id"))
        .fetch_all(db.pool())
        .await?;
    for row in &credentials {
        let credential = credential_from_row(row)?;
        if let Some(app) = apps.iter_mut().find(|app| app.id == credential.client_app_id) {
            app.credentials.push(credential);
        }
    }
    Ok(apps)
}

/// One client application with its credentials, oldest first.
pub async fn find_client_app(db: &Db, id: ClientAppId) -> Result<ClientApp, StoreError> {
    let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM client_app c JOIN team t ON t.team_id = c.team_id WHERE c.client_app_id = $1"))
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("client application"))?;
    let mut app = app_from_row(&row)?;
    app.credentials = sqlx::query(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM client_credential WHERE client_app_id = $1 ORDER BY client_credential_id"
    ))
    .bind(id.0)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(credential_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(app)
}

/// The team that owns a client application, for ownership checks.
pub async fn find_client_owner(db: &Db, id: ClientAppId) -> Result<TeamId, StoreError> {
    let team: Option<i64> = sqlx::query_scalar("SELECT team_id FROM client_app WHERE client_app_id = $1")
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
    team.map(TeamId).ok_or(StoreError::NotFound("client application"))
}

/// Which of `ids` exist.
pub async fn existing_ids(db: &Db, ids: &[ClientAppId]) -> Result<BTreeSet<ClientAppId>, StoreError> {
    let mut found = BTreeSet::new();
    for id in ids {
        let exists: Option<i64> = sqlx::query_scalar("SELECT client_app_id FROM client_app WHERE client_app_id = $1")
            .bind(id.0)
            .fetch_optional(db.pool())
            .await?;
        found.extend(exists.map(ClientAppId));
    }
    Ok(found)
}

/// Deletes a client application that no protection setting names, with its credentials.
pub async fn delete_client_app(db: &Db, id: ClientAppId, context: &AuditContext) -> Result<(), StoreError> {
    if crate::settings::client_apps_in_use(db).await?.contains(&id) {
        return Err(StoreError::invalid("client_app", "is named in an API's protection settings; remove it there first"));
    }
    let mut tx = db.pool().begin().await?;
    let name: Option<String> = sqlx::query_scalar("DELETE FROM client_app WHERE client_app_id = $1 RETURNING name")
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(name) = name else { return Err(StoreError::NotFound("client application")) };
    let details = serde_json::json!({"before": {"name": name}});
    audit::append(&mut tx, context, Change::success("client_app.delete", "client_app", id.0).with_details(details)).await?;
    tx.commit().await?;
    Ok(())
}

/// Issues a credential for one instance: a new API key or HMAC key (returned once), or a
/// registered mTLS certificate identity.
pub async fn issue_credential(
    db: &Db,
    master: &MasterKey,
    app: ClientAppId,
    kind: CredentialKind,
    instance: &str,
    identity: Option<&str>,
    context: &AuditContext,
) -> Result<IssuedCredential, StoreError> {
    let instance = crate::text::clean_name("instance", instance, MAX_INSTANCE_CHARS)?;
    let identity = match (kind, identity.map(str::trim).filter(|i| !i.is_empty())) {
        (CredentialKind::Mtls, None) => {
            return Err(StoreError::invalid("identity", "give the certificate subject or SAN, like spiffe://acme/orders"));
        }
        (CredentialKind::Mtls, Some(identity)) => Some(crate::text::clean_name("identity", identity, MAX_IDENTITY_CHARS)?),
        (CredentialKind::ApiKey | CredentialKind::Hmac, Some(_)) => {
            return Err(StoreError::invalid("identity", "only an mTLS credential has a certificate identity"));
        }
        (CredentialKind::ApiKey | CredentialKind::Hmac, None) => None,
    };
    let mut tx = db.pool().begin().await?;
    let issued = insert_credential(&mut tx, master, app, kind, &instance, identity.as_deref()).await?;
    let details = serde_json::json!({"after": {"client_app": app.0, "kind": kind.as_str(), "instance": instance,
        "prefix": issued.credential.prefix, "identity": identity}});
    audit::append(&mut tx, context, Change::success("client_credential.issue", "client_credential", issued.credential.id.0).with_details(details))
        .await?;
    tx.commit().await?;
    Ok(issued)
}

/// The context an HMAC key is sealed under: its key id, so a sealed value copied onto
/// another row does not open.
fn hmac_context(key_id: &str) -> Vec<u8> {
    format!("hmac-credential:{key_id}").into_bytes()
}

async fn insert_credential(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    master: &MasterKey,
    app: ClientAppId,
    kind: CredentialKind,
    instance: &str,
    identity: Option<&str>,
) -> Result<IssuedCredential, StoreError> {
    let (secret, prefix, digest_of_key, sealed) = match kind {
        CredentialKind::ApiKey => {
            let secret = generate_secret(API_KEY_PREFIX);
            let prefix = secret[..SHOWN_PREFIX_CHARS].to_owned();
            let digest_of_key = digest(&secret);
            (Some(secret), Some(prefix), Some(digest_of_key), None)
        }
        CredentialKind::Hmac => {
            let key_id = generate_secret(HMAC_KEY_ID_PREFIX)[..HMAC_KEY_ID_PREFIX.len() + 16].to_owned();
            let secret = generate_secret("");
            let sealed = hex::encode(master.seal(&hmac_context(&key_id), secret.as_bytes()));
            // The digest is what bundles pin the secret by (agents fetch the secret itself).
            let digest_of_secret = digest(&secret);
            (Some(secret), Some(key_id), Some(digest_of_secret), Some(sealed))
        }
        CredentialKind::Mtls => (None, None, None, None),
    };
    let row = sqlx::query(&format!(
        "INSERT INTO client_credential (client_app_id, kind, instance, key_prefix, key_digest, sealed_secret, identity, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CREDENTIAL_COLUMNS}"
    ))
    .bind(app.0)
    .bind(kind.as_str())
    .bind(instance)
    .bind(&prefix)
    .bind(digest_of_key)
    .bind(sealed)
    .bind(identity)
    .bind(now_millis())
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::NotFound("client application"),
        _ => StoreError::from(error),
    })?;
    Ok(IssuedCredential { credential: credential_from_row(&row)?, secret })
}

async fn lock_credential(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    app: ClientAppId,
    credential: CredentialId,
) -> Result<Credential, StoreError> {
    // A no-op write first takes SQLite's write lock (and PostgreSQL's row lock) before
    // the credential's state is read.
    let row = sqlx::query(&format!(
        "UPDATE client_credential SET kind = kind WHERE client_credential_id = $1 AND client_app_id = $2 RETURNING {CREDENTIAL_COLUMNS}"
    ))
    .bind(credential.0)
    .bind(app.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("credential"))?;
    credential_from_row(&row)
}

/// Issues a successor to an active API or HMAC key for the same instance; the old key
/// keeps working for `overlap_seconds` (default one hour, at most a week), then expires.
pub async fn rotate_credential(
    db: &Db,
    master: &MasterKey,
    app: ClientAppId,
    credential: CredentialId,
    overlap_seconds: Option<i64>,
    context: &AuditContext,
) -> Result<IssuedCredential, StoreError> {
    let overlap = overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if !(0..=MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(StoreError::invalid("overlap_seconds", format!("between 0 and {MAX_OVERLAP_SECONDS} seconds")));
    }
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let old = lock_credential(&mut tx, app, credential).await?;
    if old.kind == CredentialKind::Mtls {
        return Err(StoreError::invalid("credential", "only keys rotate; register the new certificate identity as a new credential"));
    }
    if !old.is_active(now) {
        return Err(StoreError::invalid("credential", "is revoked or expired; issue a new key instead"));
    }
    let expires_at = now + overlap * 1_000;
    // A key already due to expire sooner keeps its earlier end.
    let expires_at = old.expires_at.map_or(expires_at, |at| at.min(expires_at));
    sqlx::query("UPDATE client_credential SET expires_at = $1 WHERE client_credential_id = $2")
        .bind(expires_at)
        .bind(credential.0)
        .execute(&mut *tx)
        .await?;
    let issued = insert_credential(&mut tx, master, app, old.kind, &old.instance, None).await?;
    let details = serde_json::json!({"before": {"credential": credential.0, "prefix": old.prefix},
        "after": {"credential": issued.credential.id.0, "prefix": issued.credential.prefix, "old_expires_at": expires_at}});
    audit::append(&mut tx, context, Change::success("client_credential.rotate", "client_credential", credential.0).with_details(details))
        .await?;
    tx.commit().await?;
    Ok(issued)
}

/// Revokes a credential at once.
pub async fn revoke_credential(
    db: &Db,
    app: ClientAppId,
    credential: CredentialId,
    context: &AuditContext,
) -> Result<Credential, StoreError> {
    let mut tx = db.pool().begin().await?;
    let old = lock_credential(&mut tx, app, credential).await?;
    if old.revoked_at.is_some() {
        return Err(StoreError::invalid("credential", "is already revoked"));
    }
    let now = now_millis();
    let row = sqlx::query(&format!(
        "UPDATE client_credential SET revoked_at = $1 WHERE client_credential_id = $2 RETURNING {CREDENTIAL_COLUMNS}"
    ))
    .bind(now)
    .bind(credential.0)
    .fetch_one(&mut *tx)
    .await?;
    let details = serde_json::json!({"client_app": app.0, "instance": old.instance, "prefix": old.prefix});
    audit::append(&mut tx, context, Change::success("client_credential.revoke", "client_credential", credential.0).with_details(details))
        .await?;
    tx.commit().await?;
    credential_from_row(&row)
}

/// The client application an active API key belongs to, or `None` (agents get digests
/// in bundles; this serves tests and the CLI).
pub async fn authenticate_api_key(db: &Db, key: &str) -> Result<Option<ClientAppId>, StoreError> {
    let row: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT client_app_id, expires_at, revoked_at FROM client_credential WHERE key_digest = $1 AND kind = 'api_key'",
    )
    .bind(digest(key))
    .fetch_optional(db.pool())
    .await?;
    let now = now_millis();
    Ok(row.and_then(|(app, expires_at, revoked_at)| {
        (revoked_at.is_none() && expires_at.is_none_or(|at| at > now)).then_some(ClientAppId(app))
    }))
}

/// An active credential as the compiler reads it, with no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveKey {
    pub credential_id: CredentialId,
    pub client_app: ClientAppId,
    pub instance: String,
    /// An API key's shown prefix, an HMAC key's id, or an mTLS certificate identity.
    pub prefix: String,
    /// Hex SHA-256 of the API key or of the HMAC secret; empty for mTLS (an identity is
    /// no secret).
    pub digest: String,
    /// When a rotated key stops working.
    pub expires_at: Option<i64>,
}

/// Every credential of `kind` that works now (not revoked, not past a rotation's
/// overlap), by id.
pub async fn list_active_keys(db: &Db, kind: CredentialKind) -> Result<Vec<ActiveKey>, StoreError> {
    // id, application, instance, prefix or identity, digest, expiry.
    type KeyRow = (i64, i64, String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT client_credential_id, client_app_id, instance, COALESCE(key_prefix, identity), \
         CASE WHEN kind = 'mtls' THEN '' ELSE key_digest END, expires_at FROM client_credential \
         WHERE kind = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) ORDER BY client_credential_id",
    )
    .bind(kind.as_str())
    .bind(now_millis())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        // Every row has both (insert_credential writes a key with its digest, an mTLS
        // credential with its identity; HMAC keys issued before their digest was kept get
        // it from `backfill_hmac_digests`).
        .filter_map(|(id, app, instance, prefix, digest, expires_at)| {
            Some(ActiveKey {
                credential_id: CredentialId(id),
                client_app: ClientAppId(app),
                instance,
                prefix: prefix?,
                digest: digest?,
                expires_at,
            })
        })
        .collect())
}

/// An active HMAC key, opened, for compiling into what agents verify signatures with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacKey {
    pub client_app: ClientAppId,
    pub key_id: String,
    pub secret: Vec<u8>,
    /// When a rotated key stops working.
    pub expires_at: Option<i64>,
}

/// Every active HMAC key, opened with the master key. A key that does not open (another
/// master key, or a sealed value moved between rows) is an error, not skipped.
pub async fn active_hmac_keys(db: &Db, master: &MasterKey) -> Result<Vec<HmacKey>, StoreError> {
    let rows: Vec<(i64, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT client_app_id, key_prefix, sealed_secret, expires_at FROM client_credential \
         WHERE kind = 'hmac' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) ORDER BY client_credential_id",
    )
    .bind(now_millis())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(app, key_id, sealed, expires_at)| {
            let secret = hex::decode(&sealed)
                .ok()
                .and_then(|sealed| master.open(&hmac_context(&key_id), &sealed))
                .ok_or(StoreError::Sealed { purpose: "hmac", key_id: key_id.clone() })?;
            Ok(HmacKey { client_app: ClientAppId(app), key_id, secret, expires_at })
        })
        .collect()
}

/// Gives every HMAC key issued before bundles pinned secrets by digest its digest,
/// opening the secret with the master key; returns how many. Run at start.
pub async fn backfill_hmac_digests(db: &Db, master: &MasterKey) -> Result<usize, StoreError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT client_credential_id, key_prefix, sealed_secret FROM client_credential WHERE kind = 'hmac' AND key_digest IS NULL",
    )
    .fetch_all(db.pool())
    .await?;
    let mut filled = 0;
    for (id, key_id, sealed) in rows {
        let Some(secret) = hex::decode(&sealed).ok().and_then(|sealed| master.open(&hmac_context(&key_id), &sealed)) else {
            tracing::warn!(key_id, "an HMAC key does not open with this master key; its callers are refused");
            continue;
        };
        let digest_of_secret = digest(&String::from_utf8_lossy(&secret));
        sqlx::query("UPDATE client_credential SET key_digest = $1 WHERE client_credential_id = $2 AND key_digest IS NULL")
            .bind(digest_of_secret)
            .bind(id)
            .execute(db.pool())
            .await?;
        filled += 1;
    }
    Ok(filled)
}

/// Active API keys older than their application's rotation period, by application name.
pub fn keys_due_for_rotation(apps: &[ClientApp], now: i64) -> Vec<(String, usize)> {
    apps.iter()
        .filter_map(|app| {
            let due = app
                .credentials
                .iter()
                .filter(|c| c.kind == CredentialKind::ApiKey && c.is_active(now) && c.expires_at.is_none())
                .filter(|c| now - c.created_at > app.rotation_days * DAY_MILLIS)
                .count();
            (due > 0).then(|| (app.name.clone(), due))
        })
        .collect()
}
