//! The request contract's cost beside its baseline in the same run (criterion): checking a
//! JSON body with `Checker::check_body` (media type, parse, the compiled schema) beside
//! parsing the same bytes and asking a `jsonschema` validator of the same schema directly;
//! and checking a request's parameters (path, query, header, from their text, with the
//! undeclared-query check) beside two floors: one validation per value already typed, and
//! the text read by hand into the schema's types first.
//!
//! Run: `cargo bench -p policy --features schemas --bench contract`.

use criterion::{Criterion, criterion_group, criterion_main};
use policy::contract::{Checker, build};
use serde_json::json;
use std::hint::black_box;
use store::protection::ContractRule;

fn components() -> serde_json::Value {
    json!({"schemas": {
        "Order": {"type": "object", "required": ["customer", "lines", "currency"], "additionalProperties": false, "properties": {
            "customer": {"$ref": "#/components/schemas/Customer"},
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/components/schemas/Line"}},
            "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
            "note": {"type": "string", "maxLength": 500, "nullable": true}}},
        "Customer": {"type": "object", "required": ["id", "email"], "properties": {
            "id": {"type": "integer", "minimum": 1}, "email": {"type": "string", "maxLength": 254}, "name": {"type": "string"}}},
        "Line": {"type": "object", "required": ["sku", "quantity", "price"], "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,20}$"}, "quantity": {"type": "integer", "minimum": 1},
            "price": {"type": "number", "minimum": 0}}}
    }})
}

fn bench(c: &mut Criterion) {
    let parameters = json!([
        {"name": "storeId", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}},
        {"name": "dryRun", "in": "query", "schema": {"type": "boolean"}},
        {"name": "X-Request-Id", "in": "header", "required": true, "schema": {"type": "string", "maxLength": 64}}
    ]);
    let body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}});
    let rule = ContractRule { reject_unknown_query: true, max_body_bytes: None };
    let contract = build(&rule, &parameters, &body, &components(), "3.0.3").unwrap();
    let checker = Checker::new(&contract).unwrap();
    let lines: Vec<_> = (0..10).map(|n| json!({"sku": format!("SKU-{n:04}"), "quantity": n + 1, "price": 9.5})).collect();
    let order = serde_json::to_vec(&json!({"customer": {"id": 7, "email": "a@example.com"}, "lines": lines, "currency": "EUR", "note": null})).unwrap();

    // The floor: the same bytes parsed and the same standalone schema asked directly.
    let schema = contract.body.as_ref().unwrap().json_schema.clone().unwrap();
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft4).should_validate_formats(false).build(&schema).unwrap();
    let mut group = c.benchmark_group("body (10 order lines)");
    group.bench_function("baseline: parse + jsonschema is_valid", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&order)).unwrap();
            assert!(validator.is_valid(&value));
        })
    });
    group.bench_function("Checker::check_body", |b| b.iter(|| checker.check_body(Some("application/json"), black_box(&order)).unwrap()));
    group.finish();

    let path = vec![("storeId".to_owned(), "42".to_owned())];
    let header = |name: &str| if name == "x-request-id" { vec!["9f1c2b7a"] } else { Vec::new() };
    let validators: Vec<_> = contract
        .parameters
        .iter()
        .map(|p| jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(p.schema.as_ref().unwrap()).unwrap())
        .collect();
    let mut group = c.benchmark_group("parameters (path, query, header)");
    group.bench_function("baseline: one is_valid per value", |b| {
        let values = [json!(42), json!(true), json!("9f1c2b7a")];
        b.iter(|| {
            for (validator, value) in validators.iter().zip(&values) {
                assert!(validator.is_valid(black_box(value)));
            }
        })
    });
    group.bench_function("baseline: the text read by hand into the schema's types, then is_valid", |b| {
        let (id, dry_run, request_id) = ("42", "true", "9f1c2b7a");
        b.iter(|| {
            let values = [
                json!(black_box(id).parse::<i64>().unwrap()),
                json!(black_box(dry_run).parse::<bool>().unwrap()),
                serde_json::Value::String(black_box(request_id).to_owned()),
            ];
            for (validator, value) in validators.iter().zip(&values) {
                assert!(validator.is_valid(value));
            }
        })
    });
    group.bench_function("Checker::check_parameters", |b| {
        b.iter(|| checker.check_parameters(black_box(&path), Some("dryRun=true"), header).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
