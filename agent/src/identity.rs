//! The agent's identity: its own Ed25519 key (`agent.key`, mode 0600, never sent anywhere)
//! and what enrollment returned (`identity.json`: agent id, name, labels). The first start
//! enrolls with a single-use token; later starts reuse the identity and ignore any token.

use crate::bundle_store;
use crate::control::{ControlClient, ControlError};
use crate::fsutil;
use ed25519_dalek::SigningKey;
use policy::agent_api::EnrollRequest;
use policy::bundle::TrustStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const KEY_FILE: &str = "agent.key";
pub const IDENTITY_FILE: &str = "identity.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: i64,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Why the agent could not get an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The control plane refused the enrollment (or there is no token to enroll with).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// The key in `dir`, if one was written.
pub fn load_key(dir: &Path) -> Result<Option<SigningKey>, IdentityError> {
    let path = dir.join(KEY_FILE);
    let Some(text) = fsutil::read_optional(&path)
        .map_err(|e| IdentityError::Failed(format!("cannot read {}: {e}", path.display())))?
    else {
        return Ok(None);
    };
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the agent key is readable by others: chmod 600 it");
    }
    let bytes: [u8; 32] = std::str::from_utf8(&text)
        .ok()
        .and_then(|text| hex::decode(text.trim()).ok())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            IdentityError::Failed(format!(
                "{} is not a 32-byte hex Ed25519 key",
                path.display()
            ))
        })?;
    Ok(Some(SigningKey::from_bytes(&bytes)))
}

fn create_key(dir: &Path) -> Result<SigningKey, IdentityError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    let path = dir.join(KEY_FILE);
    fsutil::write_atomic(&path, text.as_bytes(), 0o600)
        .map_err(|e| IdentityError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(key)
}

pub fn load_identity(dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let Some(bytes) = fsutil::read_optional(&path)
        .map_err(|e| IdentityError::Failed(format!("cannot read {}: {e}", path.display())))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| IdentityError::Failed(format!("{} is not an identity: {e}", path.display())))
}

/// The key and identity: from `dir`, or by enrolling with `token` on the first start.
pub async fn ensure(
    dir: &Path,
    token: Option<&str>,
    name: Option<&str>,
    client: &ControlClient,
) -> Result<(SigningKey, Identity), IdentityError> {
    if let Some(identity) = load_identity(dir)? {
        let key = load_key(dir)?.ok_or_else(|| {
            IdentityError::Failed(format!("{IDENTITY_FILE} exists but {KEY_FILE} is missing"))
        })?;
        if token.is_some() {
            tracing::info!(
                agent_id = identity.agent_id,
                "already enrolled; the enrollment token is ignored"
            );
        }
        return Ok((key, identity));
    }
    let token = token.ok_or_else(|| {
        IdentityError::Refused("this agent is not enrolled yet: give --enroll-token".into())
    })?;
    // A key left by an enrollment that failed is used again: nothing was trusted with it.
    let key = match load_key(dir)? {
        Some(key) => key,
        None => create_key(dir)?,
    };
    let request = EnrollRequest {
        token: token.to_owned(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        name: name.map(str::to_owned),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let response = client.enroll(&request).await.map_err(|error| match error {
        ControlError::Refused { message, code, .. } => IdentityError::Refused(format!(
            "enrollment refused: {}",
            if message.is_empty() { code } else { message }
        )),
        other => IdentityError::Failed(format!("enrollment failed: {other}")),
    })?;
    TrustStore::from_announced(&response.trusted_keys).map_err(|e| {
        IdentityError::Failed(format!(
            "the control plane sent bundle keys that cannot be used: {e}"
        ))
    })?;
    // Trust first: identity.json marks a finished enrollment.
    bundle_store::save_trust(dir, &response.trusted_keys)
        .map_err(|e| IdentityError::Failed(format!("cannot write the trusted keys: {e}")))?;
    let identity = Identity {
        agent_id: response.agent_id,
        name: response.name,
        labels: response.labels,
    };
    let bytes =
        serde_json::to_vec_pretty(&identity).map_err(|e| IdentityError::Failed(e.to_string()))?;
    fsutil::write_atomic(&dir.join(IDENTITY_FILE), &bytes, 0o600)
        .map_err(|e| IdentityError::Failed(format!("cannot write {IDENTITY_FILE}: {e}")))?;
    tracing::info!(agent_id = identity.agent_id, name = %identity.name, "enrolled");
    Ok((key, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_with_owner_only_permissions_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_key(dir.path()).unwrap().is_none());
        let key = create_key(dir.path()).unwrap();
        assert_eq!(
            load_key(dir.path()).unwrap().unwrap().to_bytes(),
            key.to_bytes()
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "zz").unwrap();
        assert!(load_key(dir.path()).is_err());
        std::fs::write(dir.path().join(IDENTITY_FILE), "{").unwrap();
        assert!(load_identity(dir.path()).is_err());
    }
}
