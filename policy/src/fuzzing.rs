//! The fuzz harnesses: what `policy/fuzz` feeds arbitrary bytes to under cargo-fuzz, and
//! what the corpus-replay test runs on every CI. Each must return without panicking on
//! any input, and checks the invariants that make the input interesting.

use crate::bundle::{self, Bundle, TrustStore};
use crate::evaluate::{VerifiedCredential, evaluate};
use crate::model::{ApiInput, OperationInput, Snapshot};
use crate::{Prepared, Request, compile};
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

/// The key the seed bundles are signed with: fixed, so the corpus stays valid.
pub fn seed_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A small estate: authenticated routes with templates, a public health check.
pub fn seed_snapshot() -> Snapshot {
    let protection = |value: serde_json::Value| serde_json::from_value(value).unwrap_or_default();
    let operation = |id: i64, method: &str, path: &str, rules: serde_json::Value| OperationInput {
        id,
        method: method.into(),
        path: path.into(),
        protection: protection(rules),
        response_classes: Vec::new(),
        response_fields: Vec::new(),
        ..Default::default()
    };
    Snapshot {
        apis: vec![ApiInput {
            id: 1,
            name: "Pets".into(),
            environment: "production".into(),
            protection: protection(serde_json::json!({
                "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
                "network": {"source_networks": ["10.0.0.0/8", "2001:db8::/32"]},
            })),
            operations: vec![
                operation(1, "GET", "/pets/{id}", serde_json::json!({"requestor": {"object_owner": {"parameter": "id", "claim": "sub"}}})),
                operation(2, "POST", "/pets", serde_json::json!({"requestor": {"roles": ["writer"]}})),
                operation(3, "GET", "/pets/{id}/photos/{photo}", serde_json::json!({})),
                operation(4, "GET", "/healthz", serde_json::json!({"authentication": {"mode": "public"}})),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::from([(7, "Portal".to_owned())]),
        known_classes: Vec::new(),
        ..Default::default()
    }
}

/// A signed seed bundle at `revision`.
pub fn seed_bundle(revision: u64) -> Vec<u8> {
    let key = seed_key();
    let policy = compile(&seed_snapshot()).unwrap_or_default();
    let header = bundle::header(&policy, revision, 1_700_000_000_000, &bundle::key_id(&key.verifying_key()), BTreeMap::new());
    bundle::sign(&Bundle { header, policy }, &key)
}

/// Decoding and verifying arbitrary bytes as a bundle: refused with a reason, or, when
/// accepted, signed by the trusted key over exactly the canonical text it carries.
pub fn verify_bytes(data: &[u8]) {
    let trust = TrustStore::from_keys([seed_key().verifying_key()]);
    let checked = bundle::check(data, &trust, 0, 1_700_000_000_000);
    let verified = bundle::verify(data, &trust, 0, 1_700_000_000_000);
    match (checked, verified) {
        (Ok(checked), Ok(bundle)) => {
            assert_eq!(checked.header, bundle.header);
            assert_eq!(bundle::content_hash(&bundle.policy), bundle.header.content_hash, "an accepted bundle's hash is its policy's");
        }
        (Err(check_error), Err(verify_error)) => assert_eq!(check_error, verify_error),
        // Checked but not loadable: the signer signed a policy this build cannot read.
        (Ok(_), Err(error)) => assert!(matches!(error, bundle::VerifyError::Malformed(_)), "{error}"),
        (Err(error), Ok(_)) => panic!("verify accepted what check refused: {error}"),
    }
    let _ = bundle::decode_unverified(data);
}

fn estate() -> &'static Prepared {
    static ESTATE: OnceLock<Prepared> = OnceLock::new();
    ESTATE.get_or_init(|| Prepared::new(compile(&seed_snapshot()).unwrap_or_default()))
}

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get"];

/// Evaluating a request built from arbitrary bytes: byte 0 picks the method, byte 1 the
/// credential and source, the rest (lossy UTF-8) is the path. Whatever the path, a
/// request without credentials is never allowed past authentication, and only the health
/// check is public.
pub fn evaluate_bytes(data: &[u8]) {
    let (method, flags, path) = match data {
        [method, flags, rest @ ..] => (METHODS[usize::from(*method) % METHODS.len()], *flags, String::from_utf8_lossy(rest).into_owned()),
        _ => return,
    };
    let credential = (flags & 1 == 1).then(|| VerifiedCredential {
        method: "api_key".into(),
        client_app: Some(7),
        subject: Some("42".into()),
        roles: if flags & 2 == 2 { vec!["writer".into()] } else { Vec::new() },
        ..VerifiedCredential::default()
    });
    let source = if flags & 4 == 4 { IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)) } else { IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)) };
    let request = Request { api: 1, method: method.into(), path, source, credential: credential.map(std::sync::Arc::new), risk: None, device: false, consent: None };
    let decision = evaluate(estate(), &request);
    if decision.allow {
        let matched = decision.matched.as_ref().map(|m| m.template.as_str());
        assert!(request.credential.is_some() || matched == Some("/healthz"), "allowed without credentials: {request:?} -> {matched:?}");
        assert!(matched.is_some(), "allowed without a route: {request:?}");
    }
}
