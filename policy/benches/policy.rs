//! The policy crate's costs, each beside its baseline in the same run (criterion):
//! evaluating against an estate of 1,000 APIs × 20 operations beside 10 APIs (the route
//! trees should make them equal), verifying a bundle beside SHA-256 of it plus one Ed25519
//! verification (the floor any verifier pays), and compiling 1,000 × 20.
//!
//! Run: `cargo bench -p policy --bench policy`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use policy::bundle::{self, Bundle};
use policy::model::{ApiInput, OperationInput, Snapshot};
use policy::{Prepared, Request, VerifiedCredential, compile, decide, evaluate};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::hint::black_box;

const OPERATIONS_PER_API: i64 = 20;

fn estate(apis: i64) -> Snapshot {
    let protection: store::Protection = serde_json::from_value(serde_json::json!({
        "authentication": {"mode": "required", "methods": [{"type": "jwt", "issuer": "https://login.example.com",
            "audiences": ["api"], "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": ["read"]}]},
        "network": {"source_networks": ["10.0.0.0/8"]},
        "requestor": {"roles": ["reader", "admin"]},
        "rate_limits": [{"requests": 100, "window_seconds": 60}],
    }))
    .unwrap();
    Snapshot {
        apis: (1..=apis)
            .map(|api| ApiInput {
                id: api,
                name: format!("api-{api}"),
                environment: "production".into(),
                protection: protection.clone(),
                operations: (0..OPERATIONS_PER_API)
                    .map(|n| OperationInput {
                        id: api * 100 + n,
                        method: if n % 2 == 0 { "GET".into() } else { "POST".into() },
                        path: format!("/resource-{}/{{id}}/part-{n}", n / 2),
                        protection: Default::default(),
                        response_classes: vec![],
                        response_fields: Vec::new(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Snapshot::default()
    }
}

fn request() -> Request {
    Request {
        api: 7,
        method: "GET".into(),
        path: "/resource-4/8812/part-8".into(),
        source: "10.1.2.3".parse().unwrap(),
        credential: Some(std::sync::Arc::new(VerifiedCredential {
            method: "jwt".into(),
            subject: Some("user-1".into()),
            issuer: Some("https://login.example.com".into()),
            audiences: vec!["api".into()],
            scopes: vec!["read".into()],
            roles: vec!["reader".into()],
            ..VerifiedCredential::default()
        })),
        risk: None,
        device: false,
        consent: None,
    }
}

fn evaluation(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    for apis in [10, 1_000] {
        let prepared = Prepared::new(compile(&estate(apis)).unwrap());
        let request = request();
        assert!(evaluate(&prepared, &request).allow);
        group.bench_with_input(BenchmarkId::new("apis", apis), &prepared, |b, prepared| b.iter(|| evaluate(prepared, black_box(&request))));
        // The agent's call: the same decision without the text of the levels that passed.
        assert_eq!(decide(&prepared, &request).allow, evaluate(&prepared, &request).allow);
        group.bench_with_input(BenchmarkId::new("decide, apis", apis), &prepared, |b, prepared| b.iter(|| decide(prepared, black_box(&request))));
    }
    group.finish();
}

fn verification(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let policy = compile(&estate(100)).unwrap();
    let header = bundle::header(&policy, 1, 0, &bundle::key_id(&key.verifying_key()), BTreeMap::new());
    let signed = bundle::sign(&Bundle { header, policy }, &key);
    let trust = bundle::TrustStore::from_keys([key.verifying_key()]);
    let signature = key.sign(&signed);
    let mut group = c.benchmark_group("verify");
    group.bench_function("baseline: sha-256 + ed25519", |b| {
        b.iter(|| {
            let digest = Sha256::digest(black_box(&signed));
            black_box(digest);
            key.verifying_key().verify(&signed, &signature).unwrap()
        })
    });
    // Verification proper: size, shape, version, key, signature, canonical form, content
    // hash, revision; then the same with the policy parsed into its types (loading).
    group.bench_function("bundle::check", |b| b.iter(|| bundle::check(black_box(&signed), &trust, 0, 0).unwrap()));
    group.bench_function("bundle::verify (check + load)", |b| b.iter(|| bundle::verify(black_box(&signed), &trust, 0, 0).unwrap()));
    group.finish();
}

fn compilation(c: &mut Criterion) {
    let snapshot = estate(1_000);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("1000 apis x 20 operations", |b| b.iter(|| compile(black_box(&snapshot)).unwrap()));
    group.finish();
}

criterion_group!(benches, evaluation, verification, compilation);
criterion_main!(benches);
