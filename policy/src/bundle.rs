//! Bundles: the compiled policy with a header (format version, revision, creation time,
//! issuing key, content hash, target labels), encoded canonically (RFC 8785 JSON) and
//! signed with Ed25519. The signed file is `{"signed": "<canonical bundle>", "signature":
//! "<hex>"}` and nothing else, so every byte an agent acts on is covered by the signature.

use crate::model::CompiledPolicy;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The bundle format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest signed bundle accepted.
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format_version: u32,
    /// Increases with every bundle issued, rollbacks included.
    pub revision: u64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The signing key's id.
    pub key_id: String,
    /// SHA-256 (hex) of the policy's canonical encoding.
    pub content_hash: String,
    /// Agents whose labels include all of these take the bundle; empty: every agent.
    pub target: BTreeMap<String, String>,
    /// For a rollback: the revision whose policy this re-issues.
    pub rollback_of: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub header: Header,
    pub policy: CompiledPolicy,
}

/// The file as stored and sent: the canonical bundle text and its signature.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedFile {
    signed: String,
    signature: String,
}

/// What is read of a bundle before its signature is checked.
#[derive(Deserialize)]
struct Versioned {
    header: VersionedHeader,
}

#[derive(Deserialize)]
struct VersionedHeader {
    #[serde(default)]
    format_version: u64,
    #[serde(default)]
    key_id: String,
}

/// Why a bundle was refused. The active bundle stays as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the bundle is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    #[error("not a signed bundle: {0}")]
    Malformed(String),
    #[error("bundle format {found} is newer than this agent understands ({supported}); upgrade the agent")]
    UnsupportedFormat { found: u64, supported: u32 },
    #[error("signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signed text is not in canonical form")]
    NotCanonical,
    #[error("the content hash does not match the policy")]
    ContentHashMismatch,
    #[error("revision {revision} is not newer than the active revision {active}")]
    StaleRevision { revision: u64, active: u64 },
}

/// SHA-256 of the policy's canonical encoding, hex.
pub fn content_hash(policy: &CompiledPolicy) -> String {
    let bytes = serde_jcs::to_vec(policy).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// A key id for a verifying key: the first 16 hex characters of SHA-256 of its bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_owned()
}

/// The signed file of a bundle; `sign` returns the hex Ed25519 signature of the bytes it
/// is given (the key stays with its owner: the control plane's sealed key, or a test's).
pub fn encode_signed(bundle: &Bundle, sign: impl FnOnce(&[u8]) -> String) -> Vec<u8> {
    let signed = serde_jcs::to_string(bundle).unwrap_or_default();
    let signature = sign(signed.as_bytes());
    serde_json::to_vec(&SignedFile { signed, signature }).unwrap_or_default()
}

/// Signs a bundle with a key in hand.
pub fn sign(bundle: &Bundle, key: &SigningKey) -> Vec<u8> {
    encode_signed(bundle, |message| hex::encode(key.sign(message).to_bytes()))
}

/// The bundle inside a signed file, without verifying it: for reading back what this
/// control plane itself stored. Agents use [`verify`].
pub fn decode_unverified(bytes: &[u8]) -> Result<Bundle, VerifyError> {
    let file: SignedFile = serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    serde_json::from_str(&file.signed).map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// The header a new bundle for `policy` carries.
pub fn header(policy: &CompiledPolicy, revision: u64, created_at: i64, key_id: &str, target: BTreeMap<String, String>) -> Header {
    Header {
        format_version: FORMAT_VERSION,
        revision,
        created_at,
        key_id: key_id.to_owned(),
        content_hash: content_hash(policy),
        target,
        rollback_of: None,
    }
}

/// Trusted keys from `(key id, public key hex)` pairs; a key whose id is not its own
/// (the first 16 hex characters of SHA-256 of the key) is refused.
pub fn trusted_keys<'a>(records: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<BTreeMap<String, VerifyingKey>, String> {
    records
        .into_iter()
        .map(|(id, public_key)| {
            let bytes: [u8; 32] = hex::decode(public_key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("key {id}: not a 32-byte hex public key"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format!("key {id}: not an Ed25519 public key"))?;
            if key_id(&key) != id {
                return Err(format!("key {id}: the id does not belong to this key"));
            }
            Ok((id.to_owned(), key))
        })
        .collect()
}

/// Verifies a signed bundle against the trusted keys and the active revision (`0` when
/// none is active). Checks, in order: size, shape, format version, key, signature,
/// canonical form and content hash, revision.
pub fn verify(bytes: &[u8], keys: &BTreeMap<String, VerifyingKey>, active_revision: u64) -> Result<Bundle, VerifyError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::TooLarge);
    }
    let file: SignedFile = serde_json::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    // The version is read before the strict parse, so an old agent says "upgrade" rather
    // than failing on a field it has never seen. Nothing but the header is kept.
    let header: Versioned = serde_json::from_str(&file.signed).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let found = header.header.format_version;
    if found != u64::from(FORMAT_VERSION) {
        if found > u64::from(FORMAT_VERSION) {
            return Err(VerifyError::UnsupportedFormat { found, supported: FORMAT_VERSION });
        }
        return Err(VerifyError::Malformed(format!("format version {found}")));
    }
    let key_name = header.header.key_id;
    let key = keys.get(&key_name).ok_or(VerifyError::UnknownKey(key_name))?;
    let signature = hex::decode(&file.signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(VerifyError::BadSignature)?;
    key.verify_strict(file.signed.as_bytes(), &signature).map_err(|_| VerifyError::BadSignature)?;
    let bundle: Bundle = serde_json::from_str(&file.signed).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    // Canonical form, without re-encoding the policy: the text must be the canonical header
    // followed by the policy, and the policy's bytes must hash to the content hash the
    // signer computed over its canonical encoding.
    let prefix = format!("{{\"header\":{},\"policy\":", serde_jcs::to_string(&bundle.header).unwrap_or_default());
    let policy_text = file.signed.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix('}')).ok_or(VerifyError::NotCanonical)?;
    if hex::encode(Sha256::digest(policy_text.as_bytes())) != bundle.header.content_hash {
        return Err(VerifyError::ContentHashMismatch);
    }
    if bundle.header.revision <= active_revision {
        return Err(VerifyError::StaleRevision { revision: bundle.header.revision, active: active_revision });
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn signed_pair() -> (SigningKey, BTreeMap<String, VerifyingKey>) {
        let key = SigningKey::generate(&mut OsRng);
        let keys = BTreeMap::from([(key_id(&key.verifying_key()), key.verifying_key())]);
        (key, keys)
    }

    fn bundle(key: &SigningKey, revision: u64) -> Bundle {
        let policy = CompiledPolicy::default();
        Bundle { header: header(&policy, revision, 1_700_000_000_000, &key_id(&key.verifying_key()), BTreeMap::new()), policy }
    }

    /// The signed file with its `signed` text changed by `edit`, signature kept.
    fn tampered(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
        let mut file: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let signed = file["signed"].as_str().unwrap().to_owned();
        file["signed"] = edit(&signed).into();
        serde_json::to_vec(&file).unwrap()
    }

    #[test]
    fn a_signed_bundle_verifies_and_every_tampering_is_refused() {
        let (key, keys) = signed_pair();
        let good = sign(&bundle(&key, 5), &key);
        assert_eq!(verify(&good, &keys, 4).unwrap().header.revision, 5);

        let flipped = tampered(&good, |s| s.replace("\"revision\":5", "\"revision\":6"));
        assert_eq!(verify(&flipped, &keys, 4), Err(VerifyError::BadSignature));
        let mut stripped: serde_json::Value = serde_json::from_slice(&good).unwrap();
        stripped.as_object_mut().unwrap().remove("signature");
        assert!(matches!(verify(&serde_json::to_vec(&stripped).unwrap(), &keys, 4), Err(VerifyError::Malformed(_))));
        let mut extra: serde_json::Value = serde_json::from_slice(&good).unwrap();
        extra["unsigned_routes"] = serde_json::json!({"GET": []});
        assert!(matches!(verify(&serde_json::to_vec(&extra).unwrap(), &keys, 4), Err(VerifyError::Malformed(_))), "no field outside the signature");
        let (stranger, _) = signed_pair();
        assert!(matches!(verify(&sign(&bundle(&stranger, 5), &stranger), &keys, 4), Err(VerifyError::UnknownKey(_))));
        // Signed by a trusted key but claiming another trusted key's id: the signature fails.
        let mut both = keys.clone();
        let (other, other_keys) = signed_pair();
        both.extend(other_keys);
        let mut lying = bundle(&key, 5);
        lying.header.key_id = key_id(&other.verifying_key());
        assert_eq!(verify(&sign(&lying, &key), &both, 4), Err(VerifyError::BadSignature));
        assert_eq!(verify(&good, &keys, 5), Err(VerifyError::StaleRevision { revision: 5, active: 5 }));
        let mut wrong_hash = bundle(&key, 5);
        wrong_hash.header.content_hash = "00".repeat(32);
        assert_eq!(verify(&sign(&wrong_hash, &key), &keys, 4), Err(VerifyError::ContentHashMismatch));
        let mut future = bundle(&key, 5);
        future.header.format_version = FORMAT_VERSION + 1;
        assert!(matches!(verify(&sign(&future, &key), &keys, 4), Err(VerifyError::UnsupportedFormat { .. })));
        assert!(matches!(verify(b"not json", &keys, 0), Err(VerifyError::Malformed(_))));
        assert_eq!(verify(&vec![b' '; MAX_BUNDLE_BYTES + 1], &keys, 0), Err(VerifyError::TooLarge));
    }

    #[test]
    fn a_re_signed_non_canonical_text_is_refused() {
        let (key, keys) = signed_pair();
        let signed = serde_jcs::to_string(&bundle(&key, 1)).unwrap();
        // The same content with a space: a signature over it verifies, the form does not.
        let loose = signed.replacen(':', ": ", 1);
        let signature = hex::encode(key.sign(loose.as_bytes()).to_bytes());
        let file = serde_json::to_vec(&serde_json::json!({"signed": loose, "signature": signature})).unwrap();
        assert_eq!(verify(&file, &keys, 0), Err(VerifyError::NotCanonical));
    }
}
