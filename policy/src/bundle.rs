//! Bundles: the compiled policy with a header (format version, revision, creation time,
//! issuing key, content hash, target labels, where it came from, the keys agents should
//! trust next), encoded canonically (RFC 8785 JSON) and signed with Ed25519. The signed
//! file is `{"signature":"<hex>","signed":<canonical bundle>}` byte for byte (itself the
//! canonical form of that object) and nothing else, so every byte an agent acts on is
//! covered by the signature, and checking it needs no unescaping or copying.
//!
//! Key rotation needs no agent restart: every bundle announces the key set its signer
//! vouches for, and an agent that accepts a bundle adopts that set ([`TrustStore::adopt`]).
//! After a rotation the control plane issues a bundle signed by the old key that announces
//! the new one, with the old key's end of trust (the overlap window).

use crate::model::CompiledPolicy;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The bundle format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest signed bundle accepted.
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;
/// Most keys a bundle may announce: a rotation adds one, an overlap ends one.
pub const MAX_ANNOUNCED_KEYS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format_version: u32,
    /// Increases with every bundle issued, re-issues included.
    pub revision: u64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The signing key's id.
    pub key_id: String,
    /// SHA-256 (hex) of the policy's canonical encoding.
    pub content_hash: String,
    /// Agents whose labels include all of these take the bundle; empty: every agent.
    pub target: BTreeMap<String, String>,
    /// Whether the policy was compiled for this bundle or re-issued from an earlier one.
    pub origin: Origin,
    /// The keys an agent should trust once it accepts this bundle (the signing key among
    /// them); empty: keep the keys it has.
    pub keys: Vec<AnnouncedKey>,
}

/// Where a bundle's policy comes from. A re-issue is a new, newer revision carrying an
/// earlier revision's policy, so agents that refuse older revisions still take it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Origin {
    /// Compiled from the inventory.
    #[default]
    Compiled,
    /// A rollback to `of`.
    Rollback { of: u64 },
    /// A canary `of` promoted to every agent.
    Promotion { of: u64 },
    /// `of` re-issued under a label pin.
    Pin { of: u64 },
    /// `of` re-issued, signed by the retiring key, to announce a new bundle key.
    KeyAnnouncement { of: u64 },
    /// `of`'s rules re-issued with the client credentials as they are now (one was
    /// issued, rotated or revoked).
    Credentials { of: u64 },
}

impl Origin {
    /// The revision this re-issues, if any.
    pub fn reissue_of(self) -> Option<u64> {
        match self {
            Origin::Compiled => None,
            Origin::Rollback { of } | Origin::Promotion { of } | Origin::Pin { of } | Origin::KeyAnnouncement { of } | Origin::Credentials { of } => {
                Some(of)
            }
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Origin::Compiled => "compiled",
            Origin::Rollback { .. } => "rollback",
            Origin::Promotion { .. } => "promotion",
            Origin::Pin { .. } => "pin",
            Origin::KeyAnnouncement { .. } => "key_announcement",
            Origin::Credentials { .. } => "credentials",
        }
    }
}

/// A bundle-signing key as announced to agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncedKey {
    pub key_id: String,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// Unix milliseconds after which its signatures are refused (a retiring key's overlap
    /// window); `None` while it is the active key.
    pub trusted_until: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub header: Header,
    pub policy: CompiledPolicy,
}

/// The file's fixed frame: `{"signature":"<128 hex>","signed":<bundle>}`.
const FILE_OPEN: &str = "{\"signature\":\"";
const FILE_MIDDLE: &str = "\",\"signed\":";

/// The frame revisions stored before the current one used: the bundle as a JSON string.
/// Read (never verified) so a control plane upgraded in place can still show and roll
/// back to them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    signed: String,
    #[allow(dead_code)]
    signature: String,
}

/// The signature and the signed text of a file in the frame.
fn split_file(bytes: &[u8]) -> Result<(&str, &str), VerifyError> {
    let malformed = || VerifyError::Malformed("expected {\"signature\":\"<hex>\",\"signed\":<bundle>}".to_owned());
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Malformed("not UTF-8".to_owned()))?;
    let rest = text.strip_prefix(FILE_OPEN).ok_or_else(malformed)?;
    let (signature, rest) = rest.split_once(FILE_MIDDLE).ok_or_else(malformed)?;
    let signed = rest.strip_suffix('}').ok_or_else(malformed)?;
    Ok((signature, signed))
}

/// What is read of a header before the strict parse.
#[derive(Deserialize)]
struct VersionedHeader {
    #[serde(default)]
    format_version: u64,
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
    #[error("signed by key {0:?}, whose overlap window has ended")]
    ExpiredKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signed text is not in canonical form")]
    NotCanonical,
    #[error("the content hash does not match the policy")]
    ContentHashMismatch,
    #[error("revision {revision} is not newer than the active revision {active}")]
    StaleRevision { revision: u64, active: u64 },
    #[error("the announced keys are not usable: {0}")]
    BadKeySet(String),
}

/// A trusted bundle key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: VerifyingKey,
    /// Unix milliseconds after which it is no longer trusted.
    pub trusted_until: Option<i64>,
}

/// The bundle keys an agent (or `palisade bundle verify`) trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: BTreeMap<String, TrustedKey>,
}

impl TrustStore {
    /// Trust from announced records; a key whose id is not its own (the first 16 hex
    /// characters of SHA-256 of the key) or that is not an Ed25519 key is refused.
    pub fn from_announced(records: &[AnnouncedKey]) -> Result<TrustStore, String> {
        if records.len() > MAX_ANNOUNCED_KEYS {
            return Err(format!("more than {MAX_ANNOUNCED_KEYS} keys"));
        }
        let mut keys = BTreeMap::new();
        for record in records {
            let id = &record.key_id;
            let bytes: [u8; 32] = hex::decode(&record.public_key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("key {id}: not a 32-byte hex public key"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format!("key {id}: not an Ed25519 public key"))?;
            if key_id(&key) != *id {
                return Err(format!("key {id}: the id does not belong to this key"));
            }
            keys.insert(id.clone(), TrustedKey { key, trusted_until: record.trusted_until });
        }
        Ok(TrustStore { keys })
    }

    /// Trust in keys held in hand (tests, benches).
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> TrustStore {
        TrustStore { keys: keys.into_iter().map(|key| (key_id(&key), TrustedKey { key, trusted_until: None })).collect() }
    }

    /// The key `id` if it is trusted at `now`.
    pub fn key(&self, id: &str, now: i64) -> Result<&VerifyingKey, VerifyError> {
        let trusted = self.keys.get(id).ok_or_else(|| VerifyError::UnknownKey(id.to_owned()))?;
        if trusted.trusted_until.is_some_and(|until| now > until) {
            return Err(VerifyError::ExpiredKey(id.to_owned()));
        }
        Ok(&trusted.key)
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The keys as records, to keep beside the active bundle.
    pub fn announced(&self) -> Vec<AnnouncedKey> {
        self.keys
            .iter()
            .map(|(id, trusted)| AnnouncedKey {
                key_id: id.clone(),
                public_key: hex::encode(trusted.key.as_bytes()),
                trusted_until: trusted.trusted_until,
            })
            .collect()
    }

    /// Takes the key set a verified bundle announces (its signer vouched for it). A bundle
    /// that announces none leaves the trust as it is.
    pub fn adopt(&mut self, header: &Header) -> Result<(), VerifyError> {
        if header.keys.is_empty() {
            return Ok(());
        }
        *self = TrustStore::from_announced(&header.keys).map_err(VerifyError::BadKeySet)?;
        Ok(())
    }
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
    format!("{FILE_OPEN}{signature}{FILE_MIDDLE}{signed}}}").into_bytes()
}

/// Signs a bundle with a key in hand.
pub fn sign(bundle: &Bundle, key: &SigningKey) -> Vec<u8> {
    encode_signed(bundle, |message| hex::encode(key.sign(message).to_bytes()))
}

/// The bundle inside a signed file, without verifying it: for reading back what this
/// control plane itself stored. Agents use [`verify`].
pub fn decode_unverified(bytes: &[u8]) -> Result<Bundle, VerifyError> {
    let malformed = |e: serde_json::Error| VerifyError::Malformed(e.to_string());
    let framed = split_file(bytes).and_then(|(_, signed)| serde_json::from_str(signed).map_err(malformed));
    framed.or_else(|error| match serde_json::from_slice::<LegacyFile>(bytes) {
        Ok(legacy) => serde_json::from_str(&legacy.signed).map_err(malformed),
        Err(_) => Err(error),
    })
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
        origin: Origin::Compiled,
        keys: Vec::new(),
    }
}

/// A bundle whose signature, form, hash and revision were checked, before its policy is
/// parsed: what verification costs, apart from loading.
#[derive(Debug)]
pub struct Checked<'a> {
    pub header: Header,
    signed: &'a str,
    policy_at: std::ops::Range<usize>,
}

impl Checked<'_> {
    /// The canonical text of the policy, exactly as signed.
    pub fn policy_text(&self) -> &str {
        &self.signed[self.policy_at.clone()]
    }

    /// Parses the policy into the bundle.
    pub fn load(self) -> Result<Bundle, VerifyError> {
        let policy = serde_json::from_str(self.policy_text()).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        Ok(Bundle { header: self.header, policy })
    }
}

/// Verifies a signed bundle against the trusted keys at `now` (Unix ms) and the active
/// revision (`0` when none is active), and loads it.
pub fn verify(bytes: &[u8], trust: &TrustStore, active_revision: u64, now: i64) -> Result<Bundle, VerifyError> {
    check(bytes, trust, active_revision, now)?.load()
}

/// Checks, in order: size, shape, format version, key, signature, canonical form and
/// content hash, announced keys, revision. Only the header is parsed: the policy is covered
/// by the signature and the content hash, and parsed when loaded.
pub fn check<'a>(bytes: &'a [u8], trust: &TrustStore, active_revision: u64, now: i64) -> Result<Checked<'a>, VerifyError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::TooLarge);
    }
    let malformed = |e: serde_json::Error| VerifyError::Malformed(e.to_string());
    let (signature_hex, signed) = split_file(bytes)?;
    // Canonical JSON sorts keys, so the text is `{"header":…,"policy":…}`: the header is
    // read on its own, and the policy's bytes are left to the signature and the hash.
    const OPEN: &str = "{\"header\":";
    const BETWEEN: &str = ",\"policy\":";
    let after_open = signed.strip_prefix(OPEN).ok_or(VerifyError::NotCanonical)?;
    let mut stream = serde_json::Deserializer::from_str(after_open).into_iter::<serde_json::Value>();
    let header_value = stream.next().ok_or(VerifyError::NotCanonical)?.map_err(malformed)?;
    let header_end = OPEN.len() + stream.byte_offset();
    // The version is read before the strict parse, so an old agent says "upgrade" rather
    // than failing on a field it has never seen.
    let found = VersionedHeader::deserialize(&header_value).map_err(malformed)?.format_version;
    if found != u64::from(FORMAT_VERSION) {
        if found > u64::from(FORMAT_VERSION) {
            return Err(VerifyError::UnsupportedFormat { found, supported: FORMAT_VERSION });
        }
        return Err(VerifyError::Malformed(format!("format version {found}")));
    }
    let header = Header::deserialize(header_value).map_err(malformed)?;
    let key = trust.key(&header.key_id, now)?;
    let signature = hex::decode(signature_hex)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(VerifyError::BadSignature)?;
    key.verify_strict(signed.as_bytes(), &signature).map_err(|_| VerifyError::BadSignature)?;
    // Canonical form: the header text is its canonical encoding, the policy follows, and
    // the policy's bytes hash to what the signer computed over its canonical encoding.
    let canonical_header = serde_jcs::to_string(&header).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if signed[OPEN.len()..header_end] != canonical_header {
        return Err(VerifyError::NotCanonical);
    }
    if !signed[header_end..].starts_with(BETWEEN) || !signed.ends_with('}') {
        return Err(VerifyError::NotCanonical);
    }
    let policy_at = header_end + BETWEEN.len()..signed.len() - 1;
    if hex::encode(Sha256::digest(&signed.as_bytes()[policy_at.clone()])) != header.content_hash {
        return Err(VerifyError::ContentHashMismatch);
    }
    if !header.keys.is_empty() {
        let announced = TrustStore::from_announced(&header.keys).map_err(VerifyError::BadKeySet)?;
        if announced.keys.get(&header.key_id).is_none_or(|signer| signer.key != *key) {
            return Err(VerifyError::BadKeySet("the signing key is not among them".into()));
        }
    }
    if header.revision <= active_revision {
        return Err(VerifyError::StaleRevision { revision: header.revision, active: active_revision });
    }
    Ok(Checked { header, signed, policy_at })
}

/// What an agent runs: the bundle it accepted last and the keys it trusts. A bundle is
/// taken whole or not at all: any refusal leaves both as they were.
#[derive(Clone, Debug, Default)]
pub struct Active {
    pub bundle: Option<Bundle>,
    pub trust: TrustStore,
}

impl Active {
    /// Starts from the keys given at enrollment.
    pub fn new(trust: TrustStore) -> Active {
        Active { bundle: None, trust }
    }

    pub fn revision(&self) -> u64 {
        self.bundle.as_ref().map_or(0, |bundle| bundle.header.revision)
    }

    /// Verifies `bytes` against the trusted keys and the active revision at `now`, then
    /// makes it active and adopts the keys it announces.
    pub fn accept(&mut self, bytes: &[u8], now: i64) -> Result<&Bundle, VerifyError> {
        let bundle = verify(bytes, &self.trust, self.revision(), now)?;
        let mut trust = self.trust.clone();
        trust.adopt(&bundle.header)?;
        self.trust = trust;
        Ok(self.bundle.insert(bundle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    const NOW: i64 = 1_700_000_000_000;

    fn signed_pair() -> (SigningKey, TrustStore) {
        let key = SigningKey::generate(&mut OsRng);
        let trust = TrustStore::from_keys([key.verifying_key()]);
        (key, trust)
    }

    fn bundle(key: &SigningKey, revision: u64) -> Bundle {
        let policy = CompiledPolicy::default();
        Bundle { header: header(&policy, revision, NOW, &key_id(&key.verifying_key()), BTreeMap::new()), policy }
    }

    fn announced(key: &SigningKey, trusted_until: Option<i64>) -> AnnouncedKey {
        AnnouncedKey { key_id: key_id(&key.verifying_key()), public_key: hex::encode(key.verifying_key().as_bytes()), trusted_until }
    }

    /// The signed file with its `signed` text changed by `edit`, signature kept.
    fn tampered(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
        let (signature, signed) = split_file(bytes).unwrap();
        framed(signature, &edit(signed))
    }

    fn framed(signature: &str, signed: &str) -> Vec<u8> {
        format!("{FILE_OPEN}{signature}{FILE_MIDDLE}{signed}}}").into_bytes()
    }

    #[test]
    fn a_signed_bundle_verifies_and_every_tampering_is_refused() {
        let (key, keys) = signed_pair();
        let good = sign(&bundle(&key, 5), &key);
        assert_eq!(verify(&good, &keys, 4, NOW).unwrap().header.revision, 5);

        let flipped = tampered(&good, |s| s.replace("\"revision\":5", "\"revision\":6"));
        assert_eq!(verify(&flipped, &keys, 4, NOW), Err(VerifyError::BadSignature));
        let (signature, signed) = split_file(&good).unwrap();
        let stripped = format!("{{\"signed\":{signed}}}");
        assert!(matches!(verify(stripped.as_bytes(), &keys, 4, NOW), Err(VerifyError::Malformed(_))));
        assert_eq!(verify(&framed("", signed), &keys, 4, NOW), Err(VerifyError::BadSignature), "an empty signature");
        // Fields outside the signed text, before or after it, are refused.
        let after = framed(signature, &format!("{signed},\"unsigned_routes\":{{\"GET\":[]}}"));
        assert!(verify(&after, &keys, 4, NOW).is_err(), "no field after the signed text");
        let before = format!("{FILE_OPEN}{signature}\",\"unsigned\":1{FILE_MIDDLE}{signed}}}");
        assert!(verify(before.as_bytes(), &keys, 4, NOW).is_err(), "no field before it");
        let pretty = serde_json::to_vec_pretty(&serde_json::json!({"signature": signature, "signed": serde_json::from_str::<serde_json::Value>(signed).unwrap()})).unwrap();
        assert!(matches!(verify(&pretty, &keys, 4, NOW), Err(VerifyError::Malformed(_))), "only the canonical frame");
        let (stranger, _) = signed_pair();
        assert!(matches!(verify(&sign(&bundle(&stranger, 5), &stranger), &keys, 4, NOW), Err(VerifyError::UnknownKey(_))));
        // Signed by a trusted key but claiming another trusted key's id: the signature fails.
        let (other, _) = signed_pair();
        let both = TrustStore::from_keys([key.verifying_key(), other.verifying_key()]);
        let mut lying = bundle(&key, 5);
        lying.header.key_id = key_id(&other.verifying_key());
        assert_eq!(verify(&sign(&lying, &key), &both, 4, NOW), Err(VerifyError::BadSignature));
        assert_eq!(verify(&good, &keys, 5, NOW), Err(VerifyError::StaleRevision { revision: 5, active: 5 }));
        let mut wrong_hash = bundle(&key, 5);
        wrong_hash.header.content_hash = "00".repeat(32);
        assert_eq!(verify(&sign(&wrong_hash, &key), &keys, 4, NOW), Err(VerifyError::ContentHashMismatch));
        let mut future = bundle(&key, 5);
        future.header.format_version = FORMAT_VERSION + 1;
        assert!(matches!(verify(&sign(&future, &key), &keys, 4, NOW), Err(VerifyError::UnsupportedFormat { .. })));
        assert!(matches!(verify(b"not json", &keys, 0, NOW), Err(VerifyError::Malformed(_))));
        assert_eq!(verify(&vec![b' '; MAX_BUNDLE_BYTES + 1], &keys, 0, NOW), Err(VerifyError::TooLarge));
        // A field added to the signed text, signed again by a trusted key: still refused.
        let padded = serde_jcs::to_string(&bundle(&key, 5)).unwrap().replacen("\"policy\":", "\"padding\":1,\"policy\":", 1);
        let file = framed(&hex::encode(key.sign(padded.as_bytes()).to_bytes()), &padded);
        assert_eq!(verify(&file, &keys, 4, NOW), Err(VerifyError::NotCanonical));
    }

    #[test]
    fn revisions_stored_in_the_earlier_frame_still_read() {
        let (key, _) = signed_pair();
        let signed = serde_jcs::to_string(&bundle(&key, 2)).unwrap();
        let legacy = serde_json::to_vec(&serde_json::json!({"signed": signed, "signature": "00"})).unwrap();
        assert_eq!(decode_unverified(&legacy).unwrap().header.revision, 2);
    }

    #[test]
    fn a_refused_bundle_leaves_the_active_one_and_the_trust_unchanged() {
        let (key, trust) = signed_pair();
        let mut active = Active::new(trust);
        active.accept(&sign(&bundle(&key, 3), &key), NOW).unwrap();
        let (before, trust_before) = (active.bundle.clone(), active.trust.clone());
        let good = sign(&bundle(&key, 4), &key);
        let (stranger, _) = signed_pair();
        let mut forged_keys = bundle(&stranger, 9);
        forged_keys.header.keys = vec![announced(&stranger, None)];
        let attempts: Vec<Vec<u8>> = vec![
            tampered(&good, |s| s.replace("\"revision\":4", "\"revision\":40")),
            tampered(&good, |s| s.replacen("{\"header\"", "{\"header\" ", 1)),
            sign(&bundle(&key, 3), &key),
            sign(&bundle(&key, 2), &key),
            sign(&forged_keys, &stranger),
            b"{}".to_vec(),
            good[..good.len() / 2].to_vec(),
        ];
        for attempt in attempts {
            assert!(active.accept(&attempt, NOW).is_err());
            assert_eq!((&active.bundle, &active.trust), (&before, &trust_before), "nothing changes on a refusal");
        }
        assert_eq!(active.accept(&good, NOW).unwrap().header.revision, 4);
    }

    #[test]
    fn a_re_signed_non_canonical_text_is_refused() {
        let (key, keys) = signed_pair();
        let signed = serde_jcs::to_string(&bundle(&key, 1)).unwrap();
        // The same content with a space: a signature over it verifies, the form does not.
        for loose in [signed.replacen(':', ": ", 1), signed.replacen("\"revision\":1", "\"revision\": 1", 1)] {
            let signature = hex::encode(key.sign(loose.as_bytes()).to_bytes());
            assert_eq!(verify(&framed(&signature, &loose), &keys, 0, NOW), Err(VerifyError::NotCanonical));
        }
    }

    #[test]
    fn a_new_key_is_trusted_once_the_old_key_announces_it_and_the_old_one_only_through_the_overlap() {
        let (old, mut trust) = signed_pair();
        let new = SigningKey::generate(&mut OsRng);
        let overlap_ends = NOW + 3_600_000;

        // Before any announcement, the new key is a stranger.
        assert!(matches!(verify(&sign(&bundle(&new, 2), &new), &trust, 1, NOW), Err(VerifyError::UnknownKey(_))));

        let mut announcement = bundle(&old, 2);
        announcement.header.origin = Origin::KeyAnnouncement { of: 1 };
        announcement.header.keys = vec![announced(&old, Some(overlap_ends)), announced(&new, None)];
        let accepted = verify(&sign(&announcement, &old), &trust, 1, NOW).unwrap();
        trust.adopt(&accepted.header).unwrap();
        assert_eq!(trust.key_ids().count(), 2);

        // The new key signs from now on; the old one still counts inside the window.
        assert!(verify(&sign(&bundle(&new, 3), &new), &trust, 2, NOW).is_ok());
        assert!(verify(&sign(&bundle(&old, 3), &old), &trust, 2, overlap_ends).is_ok());
        assert_eq!(verify(&sign(&bundle(&old, 3), &old), &trust, 2, overlap_ends + 1), Err(VerifyError::ExpiredKey(key_id(&old.verifying_key()))));

        // A later bundle that announces only the new key ends trust in the old one.
        let mut only_new = bundle(&new, 3);
        only_new.header.keys = vec![announced(&new, None)];
        trust.adopt(&verify(&sign(&only_new, &new), &trust, 2, NOW).unwrap().header).unwrap();
        assert!(matches!(verify(&sign(&bundle(&old, 4), &old), &trust, 3, NOW), Err(VerifyError::UnknownKey(_))));
    }

    #[test]
    fn announcements_that_are_forged_or_malformed_are_refused_and_change_no_trust() {
        let (old, trust) = signed_pair();
        let (attacker, _) = signed_pair();
        // An attacker's bundle announcing its own key: signed by an unknown key.
        let mut forged = bundle(&attacker, 2);
        forged.header.keys = vec![announced(&attacker, None)];
        assert!(matches!(verify(&sign(&forged, &attacker), &trust, 1, NOW), Err(VerifyError::UnknownKey(_))));
        // The old key's announcement with the key list edited after signing.
        let mut real = bundle(&old, 2);
        real.header.keys = vec![announced(&old, None)];
        let signed = sign(&real, &old);
        let attacker_hex = hex::encode(attacker.verifying_key().as_bytes());
        let edited = tampered(&signed, |s| s.replace(&hex::encode(old.verifying_key().as_bytes()), &attacker_hex));
        assert_eq!(verify(&edited, &trust, 1, NOW), Err(VerifyError::BadSignature));
        // A key listed under another key's id, and a list without the signer.
        let mut wrong_id = bundle(&old, 2);
        wrong_id.header.keys = vec![announced(&old, None), AnnouncedKey { key_id: key_id(&old.verifying_key()), ..announced(&attacker, None) }];
        assert!(matches!(verify(&sign(&wrong_id, &old), &trust, 1, NOW), Err(VerifyError::BadKeySet(_))));
        let mut without_signer = bundle(&old, 2);
        without_signer.header.keys = vec![announced(&attacker, None)];
        assert!(matches!(verify(&sign(&without_signer, &old), &trust, 1, NOW), Err(VerifyError::BadKeySet(_))));
        let mut too_many = bundle(&old, 2);
        too_many.header.keys = std::iter::once(announced(&old, None))
            .chain((0..MAX_ANNOUNCED_KEYS).map(|_| announced(&SigningKey::generate(&mut OsRng), None)))
            .collect();
        assert!(matches!(verify(&sign(&too_many, &old), &trust, 1, NOW), Err(VerifyError::BadKeySet(_))));
    }
}
