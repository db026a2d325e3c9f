//! Ed25519 signing keys, kept in the database with their secret half sealed
//! (ChaCha20-Poly1305) under a master key that never enters the database. Rotation retires
//! a key instead of deleting it, so everything it signed stays verifiable.

use crate::audit::{self, AuditContext, Change};
use crate::error::ResultExt;
use crate::{Db, PublicKeyInfo, StoreError, now_millis};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// What a key signs. Each purpose has at most one active key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPurpose {
    Audit,
    /// Policy bundles for agents.
    Bundle,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Audit => "audit",
            KeyPurpose::Bundle => "bundle",
        }
    }
}

const NONCE_BYTES: usize = 12;

/// The key that seals signing keys at rest. From `PALISADE_MASTER_KEY` or a 0600 file.
pub struct MasterKey(ChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A key written as 64 hex characters (32 bytes).
    pub fn parse(text: &str) -> Result<MasterKey, String> {
        let bytes = hex::decode(text.trim()).ok().filter(|bytes| bytes.len() == 32).ok_or_else(|| {
            "a master key is 64 hex characters (32 random bytes), e.g. from `openssl rand -hex 32`".to_owned()
        })?;
        let cipher = ChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(MasterKey(cipher))
    }

    /// A fresh random key and its hex text.
    pub fn generate() -> (MasterKey, String) {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let text = hex::encode(bytes);
        (MasterKey::parse(&text).expect("32 random bytes are a key"), text)
    }

    /// Reads the key file, or creates it (mode 0600, fsynced) when it does not exist yet.
    /// A file that others can read is refused rather than trusted.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                refuse_loose_permissions(path)?;
                MasterKey::parse(&text).map_err(|e| format!("{shown}: {e}"))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = MasterKey::generate();
                match create_private_file(path, format!("{text}\n").as_bytes()) {
                    Ok(()) => Ok(key),
                    // Another process created it first: use theirs.
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
                        MasterKey::parse(&text).map_err(|e| format!("{shown}: {e}"))
                    }
                    Err(error) => Err(format!("cannot create the master key file {shown}: {error}")),
                }
            }
            Err(error) => Err(format!("cannot read the master key file {shown}: {error}")),
        }
    }

    /// Seals `secret`; `context` (purpose and key id) is bound in, so a sealed value
    /// copied onto another row does not open.
    pub(crate) fn seal(&self, context: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: context })
            .expect("ChaCha20-Poly1305 encrypts any message under 256 GiB");
        [nonce.as_slice(), &sealed].concat()
    }

    pub(crate) fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.0.decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context }).ok()
    }
}

#[cfg(unix)]
fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    // The file's name must survive a crash too.
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn refuse_loose_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the master key file {} is readable by others (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_loose_permissions(_: &Path) -> Result<(), String> {
    Ok(())
}

/// An unsealed signing key, held only in memory.
pub struct Signer {
    pub key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// A new random key, not stored anywhere.
    pub fn generate() -> Signer {
        let key = SigningKey::generate(&mut OsRng);
        Signer { key_id: key_id_of(&key.verifying_key()), key }
    }

    /// The record verifiers need.
    pub fn public_key_info(&self, purpose: KeyPurpose, created_at: i64) -> PublicKeyInfo {
        PublicKeyInfo {
            key_id: self.key_id.clone(),
            purpose: purpose.as_str().to_owned(),
            public_key: self.public_key_hex(),
            created_at,
            retired_at: None,
        }
    }

    /// Signs `message`; the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }
}

/// The key id of a public key: the first 8 bytes of its SHA-256, in hex.
fn key_id_of(public_key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public_key.to_bytes())[..8])
}

fn sealing_context(purpose: KeyPurpose, key_id: &str) -> Vec<u8> {
    format!("palisade signing key v1|{}|{key_id}", purpose.as_str()).into_bytes()
}

/// Public keys that signatures are checked against, with their retirement times.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, (VerifyingKey, Option<i64>)>,
}

impl KeySet {
    /// Builds the set from published key records; a malformed record is an error, not
    /// a silently missing key.
    pub fn from_public_keys(records: &[PublicKeyInfo]) -> Result<KeySet, String> {
        let mut keys = HashMap::new();
        for record in records {
            let bytes: [u8; 32] = hex::decode(&record.public_key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("key {}: the public key is not 64 hex characters", record.key_id))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format!("key {}: not an Ed25519 public key", record.key_id))?;
            if key_id_of(&key) != record.key_id {
                return Err(format!("key {}: the id does not match the public key", record.key_id));
            }
            keys.insert(record.key_id.clone(), (key, record.retired_at));
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a signature made at `at` (Unix ms) by `key_id`. A retired key's signatures
    /// count only up to its retirement, so a leaked old key cannot vouch for new history.
    pub fn verify(&self, key_id: &str, at: i64, message: &[u8], signature_hex: &str) -> Result<(), String> {
        let (key, retired_at) = self.keys.get(key_id).ok_or_else(|| format!("signed by unknown key {key_id}"))?;
        if retired_at.is_some_and(|retired| at > retired) {
            return Err(format!("signed by key {key_id} after it was retired"));
        }
        let bytes: [u8; 64] = hex::decode(signature_hex)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| "the signature is not 128 hex characters".to_owned())?;
        key.verify_strict(message, &Signature::from_bytes(&bytes))
            .map_err(|_| format!("the signature by key {key_id} does not verify"))
    }
}

/// The active key for `purpose`, unsealed; `None` before one was created.
pub async fn active_signer(db: &Db, master: &MasterKey, purpose: KeyPurpose) -> Result<Option<Signer>, StoreError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT signing_key_id, sealed_secret FROM signing_key WHERE purpose = $1 AND retired_at IS NULL",
    )
    .bind(purpose.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.map(|(key_id, sealed)| unseal(master, purpose, key_id, &sealed)).transpose()
}

/// Any key for `purpose` by id, retired or not, unsealed: a retiring bundle key signs the
/// bundle that announces its successor.
pub async fn signer_by_id(db: &Db, master: &MasterKey, purpose: KeyPurpose, key_id: &str) -> Result<Signer, StoreError> {
    let sealed: Option<String> = sqlx::query_scalar("SELECT sealed_secret FROM signing_key WHERE purpose = $1 AND signing_key_id = $2")
        .bind(purpose.as_str())
        .bind(key_id)
        .fetch_optional(db.pool())
        .await?;
    let sealed = sealed.ok_or(StoreError::NotFound("signing key"))?;
    unseal(master, purpose, key_id.to_owned(), &sealed)
}

fn unseal(master: &MasterKey, purpose: KeyPurpose, key_id: String, sealed: &str) -> Result<Signer, StoreError> {
    let cannot_open = || StoreError::Sealed { purpose: purpose.as_str(), key_id: key_id.clone() };
    let sealed = hex::decode(sealed).map_err(|_| cannot_open())?;
    let secret: [u8; 32] = master
        .open(&sealing_context(purpose, &key_id), &sealed)
        .and_then(|secret| secret.try_into().ok())
        .ok_or_else(cannot_open)?;
    let key = SigningKey::from_bytes(&secret);
    if key_id_of(&key.verifying_key()) != key_id {
        return Err(cannot_open());
    }
    Ok(Signer { key_id, key })
}

/// The active key for `purpose`, created (and audited) on first use.
pub async fn ensure_signer(
    db: &Db,
    master: &MasterKey,
    purpose: KeyPurpose,
    context: &AuditContext,
) -> Result<Signer, StoreError> {
    if let Some(signer) = active_signer(db, master, purpose).await? {
        return Ok(signer);
    }
    match create_key(db, master, purpose, None, context).await {
        Ok((signer, _)) => Ok(signer),
        // Another replica created one at the same moment: use that.
        Err(StoreError::Conflict { .. }) => {
            active_signer(db, master, purpose).await?.ok_or(StoreError::NotFound("active signing key"))
        }
        Err(error) => Err(error),
    }
}

/// Retires the active key for `purpose` and makes a new one, in one transaction. The old
/// key's signatures count for `overlap_ms` more (0 for audit keys: a checkpoint is signed
/// once; bundle keys overlap so agents can switch without a restart). Returns the new key
/// and the id of the one it replaced.
pub async fn rotate(
    db: &Db,
    master: &MasterKey,
    purpose: KeyPurpose,
    overlap_ms: i64,
    context: &AuditContext,
) -> Result<(Signer, Option<String>), StoreError> {
    create_key(db, master, purpose, Some(overlap_ms.max(0)), context).await
}

async fn create_key(
    db: &Db,
    master: &MasterKey,
    purpose: KeyPurpose,
    retire_with_overlap: Option<i64>,
    context: &AuditContext,
) -> Result<(Signer, Option<String>), StoreError> {
    let retire_active = retire_with_overlap.is_some();
    let signer = Signer::generate();
    let key_id = signer.key_id.clone();
    let public_key = signer.public_key_hex();
    let sealed = master.seal(&sealing_context(purpose, &key_id), signer.key.as_bytes());
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let mut retired = None;
    if retire_active {
        retired = sqlx::query_scalar::<_, String>(
            "UPDATE signing_key SET retired_at = $1 WHERE purpose = $2 AND retired_at IS NULL RETURNING signing_key_id",
        )
        .bind(now + retire_with_overlap.unwrap_or(0))
        .bind(purpose.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO signing_key (signing_key_id, purpose, public_key, sealed_secret, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key_id)
    .bind(purpose.as_str())
    .bind(&public_key)
    .bind(hex::encode(sealed))
    .bind(now)
    .execute(&mut *tx)
    .await
    .on_unique("signing key")?;
    let action = if retire_active { "signing_key.rotate" } else { "signing_key.create" };
    let details = serde_json::json!({
        "purpose": purpose.as_str(),
        "public_key": public_key,
        "retired_key_id": retired,
    });
    audit::append(&mut tx, context, Change::success(action, "signing_key", &key_id).with_details(details)).await?;
    tx.commit().await?;
    Ok((signer, retired))
}

/// Every key for `purpose`, oldest first: what verifiers need.
pub async fn list_public_keys(db: &Db, purpose: KeyPurpose) -> Result<Vec<PublicKeyInfo>, StoreError> {
    let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT signing_key_id, purpose, public_key, created_at, retired_at FROM signing_key \
         WHERE purpose = $1 ORDER BY created_at, signing_key_id",
    )
    .bind(purpose.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key_id, purpose, public_key, created_at, retired_at)| PublicKeyInfo {
            key_id,
            purpose,
            public_key,
            created_at,
            retired_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let (master, _) = MasterKey::generate();
        let sealed = master.seal(b"audit|k1", b"secret bytes");
        assert_eq!(master.open(b"audit|k1", &sealed).as_deref(), Some(&b"secret bytes"[..]));
        assert_eq!(master.open(b"audit|k2", &sealed), None, "moved to another row");
        let (other, _) = MasterKey::generate();
        assert_eq!(other.open(b"audit|k1", &sealed), None, "another master key");
        let mut flipped = sealed.clone();
        flipped[NONCE_BYTES + 1] ^= 1;
        assert_eq!(master.open(b"audit|k1", &flipped), None, "tampered ciphertext");
        assert_eq!(master.open(b"audit|k1", &sealed[..5]), None, "cut short");
    }

    #[test]
    fn master_keys_are_64_hex_characters() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse(&format!("{}\n", "ab".repeat(32))).is_ok(), "a trailing newline is fine");
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
        assert!(MasterKey::parse(&"ab".repeat(33)).is_err());
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let folder = std::env::temp_dir().join(format!("palisade-master-{}", uuid_like()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let sealed = first.seal(b"c", b"x");
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(b"c", &sealed).as_deref(), Some(&b"x"[..]), "the same key comes back");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = MasterKey::load_or_create(&path).unwrap_err();
            assert!(refused.contains("chmod 600"), "{refused}");
        }
        std::fs::write(folder.join("bad.key"), "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(folder.join("bad.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(MasterKey::load_or_create(&folder.join("bad.key")).unwrap_err().contains("64 hex"));
        std::fs::remove_dir_all(&folder).unwrap();
    }

    fn uuid_like() -> String {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    #[test]
    fn key_sets_check_ids_retirement_and_signatures() {
        let signer = Signer::generate();
        let record = PublicKeyInfo { retired_at: Some(1_000), ..signer.public_key_info(KeyPurpose::Audit, 0) };
        let keys = KeySet::from_public_keys(std::slice::from_ref(&record)).unwrap();
        let signature = signer.sign(b"message");
        assert_eq!(keys.verify(&signer.key_id, 999, b"message", &signature), Ok(()));
        assert!(keys.verify(&signer.key_id, 999, b"massage", &signature).is_err());
        assert!(keys.verify(&signer.key_id, 1_001, b"message", &signature).unwrap_err().contains("retired"));
        assert!(keys.verify("0000000000000000", 999, b"message", &signature).unwrap_err().contains("unknown key"));
        assert!(keys.verify(&signer.key_id, 999, b"message", "zz").is_err());
        let wrong_id = PublicKeyInfo { key_id: "0123456789abcdef".into(), ..record.clone() };
        assert!(KeySet::from_public_keys(&[wrong_id]).unwrap_err().contains("does not match"));
        let not_hex = PublicKeyInfo { public_key: "xyz".into(), ..record };
        assert!(KeySet::from_public_keys(&[not_hex]).is_err());
    }
}
