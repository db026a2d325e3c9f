//! The last known good bundle on disk: the exact signed bytes (`bundle.signed`) and the
//! bundle keys trusted after accepting it (`trust.json`). Both are verified again at start,
//! before the control plane is asked anything, so an agent restarted during an outage
//! enforces what it enforced before; a file that does not verify is refused, never trusted.

use crate::fsutil;
use policy::bundle::{Active, AnnouncedKey, TrustStore};
use std::io;
use std::path::Path;

pub const BUNDLE_FILE: &str = "bundle.signed";
pub const TRUST_FILE: &str = "trust.json";

/// Writes the trusted keys (at enrollment, and after each accepted bundle).
pub fn save_trust(dir: &Path, trust: &[AnnouncedKey]) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(trust).map_err(io::Error::other)?;
    fsutil::write_atomic(&dir.join(TRUST_FILE), &bytes, 0o600)
}

/// Keeps an accepted bundle and the trust it left. The bundle goes first: if the agent
/// dies between the two writes, the old trust still verifies the new bundle (it just did),
/// whereas new trust might no longer verify the old bundle after a key rotation.
pub fn save(dir: &Path, bytes: &[u8], trust: &[AnnouncedKey]) -> io::Result<()> {
    fsutil::write_atomic(&dir.join(BUNDLE_FILE), bytes, 0o600)?;
    save_trust(dir, trust)
}

/// What was found on disk.
#[derive(Debug)]
pub struct Loaded {
    /// The trust and, when it verified, the last known good bundle.
    pub active: Active,
    /// Its exact bytes, when it verified.
    pub bytes: Option<Vec<u8>>,
    /// Why a bundle on disk was refused.
    pub refused: Option<String>,
}

/// Reads the trust and re-verifies the bundle at `now` (Unix ms). An unreadable trust file
/// is an error: without it no bundle can ever be verified.
pub fn load(dir: &Path, now: i64) -> Result<Loaded, String> {
    let trust_path = dir.join(TRUST_FILE);
    let trust_bytes = fsutil::read_optional(&trust_path)
        .map_err(|e| format!("cannot read {}: {e}", trust_path.display()))?
        .ok_or_else(|| {
            format!(
                "{} is missing; remove identity.json to enroll again",
                trust_path.display()
            )
        })?;
    let records: Vec<AnnouncedKey> = serde_json::from_slice(&trust_bytes)
        .map_err(|e| format!("{} is not a list of keys: {e}", trust_path.display()))?;
    let trust = TrustStore::from_announced(&records)
        .map_err(|e| format!("{}: {e}", trust_path.display()))?;
    let mut active = Active::new(trust);
    let bundle_path = dir.join(BUNDLE_FILE);
    let bytes = match fsutil::read_optional(&bundle_path) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Ok(Loaded {
                active,
                bytes: None,
                refused: Some(format!("cannot read {}: {error}", bundle_path.display())),
            });
        }
    };
    let Some(bytes) = bytes else {
        return Ok(Loaded {
            active,
            bytes: None,
            refused: None,
        });
    };
    match active.accept(&bytes, now) {
        Ok(_) => Ok(Loaded {
            active,
            bytes: Some(bytes),
            refused: None,
        }),
        Err(error) => Ok(Loaded {
            active,
            bytes: None,
            refused: Some(format!("the bundle on disk was refused: {error}")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use policy::CompiledPolicy;
    use policy::bundle::{Bundle, header, key_id, sign};
    use rand::rngs::OsRng;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_700_000_000_000;

    fn announced(key: &SigningKey) -> AnnouncedKey {
        AnnouncedKey {
            key_id: key_id(&key.verifying_key()),
            public_key: hex::encode(key.verifying_key().as_bytes()),
            trusted_until: None,
        }
    }

    fn signed(key: &SigningKey, revision: u64) -> Vec<u8> {
        let policy = CompiledPolicy::default();
        sign(
            &Bundle {
                header: header(
                    &policy,
                    revision,
                    NOW,
                    &key_id(&key.verifying_key()),
                    BTreeMap::new(),
                ),
                policy,
            },
            key,
        )
    }

    #[test]
    fn a_saved_bundle_loads_again_and_a_tampered_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(&mut OsRng);
        save_trust(dir.path(), &[announced(&key)]).unwrap();
        let empty = load(dir.path(), NOW).unwrap();
        assert!(empty.active.bundle.is_none() && empty.refused.is_none());

        let bytes = signed(&key, 7);
        save(dir.path(), &bytes, &[announced(&key)]).unwrap();
        let loaded = load(dir.path(), NOW).unwrap();
        assert_eq!(loaded.active.revision(), 7);
        assert_eq!(loaded.bytes.as_deref(), Some(bytes.as_slice()));

        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"revision\":7", "\"revision\":8");
        std::fs::write(dir.path().join(BUNDLE_FILE), tampered).unwrap();
        let refused = load(dir.path(), NOW).unwrap();
        assert!(
            refused.active.bundle.is_none(),
            "a tampered file is not enforced"
        );
        assert!(refused.refused.unwrap().contains("signature"));

        // Signed by a key the agent never trusted.
        let stranger = SigningKey::generate(&mut OsRng);
        std::fs::write(dir.path().join(BUNDLE_FILE), signed(&stranger, 9)).unwrap();
        assert!(load(dir.path(), NOW).unwrap().active.bundle.is_none());

        std::fs::write(dir.path().join(TRUST_FILE), b"garbage").unwrap();
        assert!(load(dir.path(), NOW).is_err());
        std::fs::remove_file(dir.path().join(TRUST_FILE)).unwrap();
        assert!(load(dir.path(), NOW).is_err());
    }
}
