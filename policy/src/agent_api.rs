//! The agent API's wire format, shared by the control plane and `palisade-agent`: what
//! enrollment sends and returns, how every later call is signed with the agent's own
//! Ed25519 key, the status heartbeat, the revision notices pushed to agents, and the
//! decision-log records uploaded in gzip batches.
//!
//! A signed call carries `Authorization: Palisade-Agent id=<agent>,ts=<unix ms>,
//! nonce=<32 hex>,sig=<128 hex>`. The signature covers a fixed text (see [`signing_text`])
//! made of the method, the path with its query, the time, the nonce and the SHA-256 of the
//! body, so a captured call cannot be replayed (the nonce is spent, the time window is
//! short) nor altered (any byte of the body changes the digest).

use crate::bundle::AnnouncedKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The authorization scheme of signed agent calls.
pub const SCHEME: &str = "Palisade-Agent";
/// How far a signed call's time may be from the control plane's clock.
pub const MAX_CLOCK_SKEW_MILLIS: i64 = 5 * 60 * 1000;
/// The largest decision-log batch, compressed.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// The largest decision-log batch once inflated (a bound against gzip bombs).
pub const MAX_BATCH_INFLATED_BYTES: usize = 16 * 1024 * 1024;
/// The most records in one batch.
pub const MAX_BATCH_RECORDS: usize = 5_000;

/// `POST /agent/v1/enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The single-use enrollment token (`pae_…`).
    pub token: String,
    /// The agent's own Ed25519 public key, hex. Its private key never leaves the agent.
    pub public_key: String,
    #[serde(default)]
    pub name: Option<String>,
    pub version: String,
}

/// What enrollment returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: i64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The bundle-signing keys to trust; later keys arrive announced inside bundles.
    pub trusted_keys: Vec<AnnouncedKey>,
}

/// The revision an agent is meant to run, as pushed on the event stream
/// (`event: revision`) and returned by a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionNotice {
    /// `None` while nothing is published for the agent's labels.
    pub revision: Option<i64>,
}

/// Request counters since the agent started: allowed, denied, monitored (would have been
/// denied, let through in monitor mode), errors.
pub use store::AgentCounters as Counters;

/// `POST /agent/v1/agents/{id}/status`: the heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    pub version: String,
    /// The revision the agent enforces, if any.
    pub active_revision: Option<i64>,
    /// The content hash of that revision's policy.
    pub bundle_hash: Option<String>,
    /// The last thing that went wrong (a refused bundle, an unreachable upstream), if any.
    #[serde(default)]
    pub last_error: Option<String>,
    pub uptime_seconds: u64,
    #[serde(default)]
    pub counters: Counters,
    /// Decision records waiting on disk for upload.
    #[serde(default)]
    pub spooled_decisions: u64,
}

/// One decision, as uploaded (one JSON object per line in a gzip batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// Unique per agent (a UUID): a batch sent twice after a crash is stored once.
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub revision: Option<i64>,
    pub method: String,
    pub path: String,
    /// The matched operation, when a route matched.
    #[serde(default)]
    pub api_id: Option<i64>,
    #[serde(default)]
    pub operation_id: Option<i64>,
    /// `allow`, `deny`, or `monitor` (would have been denied; let through).
    pub outcome: String,
    pub status: u16,
    /// The reason code of a denial (`undeclared_route`, `missing_scope`, …).
    #[serde(default)]
    pub reason: Option<String>,
    pub source: String,
    /// The caller: `app:<id>`, `sub:<subject>`, or absent when unauthenticated.
    #[serde(default)]
    pub caller: Option<String>,
    /// Microseconds spent deciding.
    pub decision_micros: u64,
}

/// What a decision-log upload answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceipt {
    /// Records stored now.
    pub accepted: u64,
    /// Records already stored by an earlier upload of the same batch.
    pub duplicates: u64,
}

/// `GET /agent/v1/agents/{id}/hmac-keys`: the secrets of the HMAC keys that work now.
/// Agents keep only those whose SHA-256 their signed bundle names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSecrets {
    pub keys: Vec<HmacSecret>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSecret {
    pub key_id: String,
    /// The secret as issued to the caller; its bytes are the HMAC key.
    pub secret: String,
}

/// Never the secret in logs.
impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSecret").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// The text a signed call's signature covers.
pub fn signing_text(method: &str, path_and_query: &str, timestamp_millis: i64, nonce: &str, body: &[u8]) -> String {
    let body_digest = hex::encode(Sha256::digest(body));
    format!("palisade-agent-v1\n{method}\n{path_and_query}\n{timestamp_millis}\n{nonce}\n{body_digest}")
}

/// The parts of an `Authorization: Palisade-Agent …` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCall {
    pub agent_id: i64,
    pub timestamp_millis: i64,
    pub nonce: String,
    pub signature: String,
}

impl SignedCall {
    /// Signs a call as agent `agent_id`.
    pub fn sign(
        key: &SigningKey,
        agent_id: i64,
        method: &str,
        path_and_query: &str,
        timestamp_millis: i64,
        nonce: &str,
        body: &[u8],
    ) -> SignedCall {
        let text = signing_text(method, path_and_query, timestamp_millis, nonce, body);
        let signature = hex::encode(key.sign(text.as_bytes()).to_bytes());
        SignedCall { agent_id, timestamp_millis, nonce: nonce.to_owned(), signature }
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("{SCHEME} id={},ts={},nonce={},sig={}", self.agent_id, self.timestamp_millis, self.nonce, self.signature)
    }

    /// Reads a header value; `None` for anything but a well-formed one.
    pub fn parse(header: &str) -> Option<SignedCall> {
        let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=')?;
            if fields.insert(name, value).is_some() {
                return None;
            }
        }
        if fields.len() != 4 {
            return None;
        }
        let nonce = *fields.get("nonce")?;
        let signature = *fields.get("sig")?;
        let hex_of = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_of(nonce, 32) || !hex_of(signature, 128) {
            return None;
        }
        Some(SignedCall {
            agent_id: fields.get("id")?.parse().ok().filter(|id| *id > 0)?,
            timestamp_millis: fields.get("ts")?.parse().ok()?,
            nonce: nonce.to_ascii_lowercase(),
            signature: signature.to_ascii_lowercase(),
        })
    }

    /// Checks the signature against the agent's public key (hex).
    pub fn verify(&self, public_key_hex: &str, method: &str, path_and_query: &str, body: &[u8]) -> bool {
        let Some(key) = hex::decode(public_key_hex).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) else { return false };
        let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
        let Some(signature) = hex::decode(&self.signature).ok().and_then(|bytes| <[u8; 64]>::try_from(bytes).ok()) else {
            return false;
        };
        let text = signing_text(method, path_and_query, self.timestamp_millis, &self.nonce, body);
        key.verify(text.as_bytes(), &Signature::from_bytes(&signature)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_call_verifies_and_round_trips_through_its_header() {
        let key = SigningKey::generate(&mut OsRng);
        let public = hex::encode(key.verifying_key().to_bytes());
        let call = SignedCall::sign(&key, 7, "POST", "/agent/v1/agents/7/status", 1_000, NONCE, b"{}");
        let parsed = SignedCall::parse(&call.header()).expect("parses");
        assert_eq!(parsed, call);
        assert!(parsed.verify(&public, "POST", "/agent/v1/agents/7/status", b"{}"));
    }

    #[test]
    fn any_change_to_what_is_signed_fails_verification() {
        let key = SigningKey::generate(&mut OsRng);
        let public = hex::encode(key.verifying_key().to_bytes());
        let call = SignedCall::sign(&key, 7, "POST", "/agent/v1/agents/7/status", 1_000, NONCE, b"{}");
        assert!(!call.verify(&public, "GET", "/agent/v1/agents/7/status", b"{}"));
        assert!(!call.verify(&public, "POST", "/agent/v1/agents/8/status", b"{}"));
        assert!(!call.verify(&public, "POST", "/agent/v1/agents/7/status", b"{ }"));
        let later = SignedCall { timestamp_millis: 1_001, ..call.clone() };
        assert!(!later.verify(&public, "POST", "/agent/v1/agents/7/status", b"{}"));
        let other = SigningKey::generate(&mut OsRng);
        assert!(!call.verify(&hex::encode(other.verifying_key().to_bytes()), "POST", "/agent/v1/agents/7/status", b"{}"));
        assert!(!call.verify("not hex", "POST", "/agent/v1/agents/7/status", b"{}"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = "a".repeat(128);
        for header in [
            String::new(),
            "Bearer x".to_owned(),
            format!("Palisade-Agent id=1,ts=2,nonce={NONCE}"),
            format!("Palisade-Agent id=1,ts=2,nonce={NONCE},sig={sig},extra=1"),
            format!("Palisade-Agent id=1,id=1,ts=2,nonce={NONCE},sig={sig}"),
            format!("Palisade-Agent id=0,ts=2,nonce={NONCE},sig={sig}"),
            format!("Palisade-Agent id=x,ts=2,nonce={NONCE},sig={sig}"),
            format!("Palisade-Agent id=1,ts=2,nonce=short,sig={sig}"),
            format!("Palisade-Agent id=1,ts=2,nonce={NONCE},sig=zz"),
        ] {
            assert_eq!(SignedCall::parse(&header), None, "{header}");
        }
        assert!(SignedCall::parse(&format!("Palisade-Agent id=1, ts=2, nonce={NONCE}, sig={sig}")).is_some());
    }
}
