//! Golden tests for the compiler: each OpenAPI fixture in `../shared/fixtures/openapi/` is
//! registered, given the same protection, compiled from the stored inventory, and the
//! compiled policy must equal `policy/tests/golden/<fixture>.json` byte for byte (canonical
//! JSON), on SQLite and on PostgreSQL. `PALISADE_UPDATE_GOLDEN=1` rewrites the files after
//! a deliberate change; review their diff before committing.

mod common;

use common::*;
use store::audit::AuditContext;
use store::openapi::{self, Format};
use store::{apis, client_apps, settings, teams};

const FIXTURES: [&str; 5] = [
    "petstore-expanded.yaml",
    "spotify.json",
    "plaid.json",
    "adyen-checkout-3.1.json",
    "openbanking-uk-account-info.json",
];

fn golden_path(fixture: &str) -> std::path::PathBuf {
    let name = fixture.rsplit_once('.').map_or(fixture, |(stem, _)| stem);
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/golden").join(format!("{name}.json"))
}

app_test!(compiled_fixtures_match_their_golden_files, |app: TestApp| async move {
    // Moves the whole TestApp in: a block that used only some of its fields would capture
    // just those, and the test database would be dropped before the body ran.
    let app = app;
    let context = AuditContext::system("golden");
    let team = teams::create_team(&app.db, "Golden", &context).await.unwrap().id;
    let portal = client_apps::create_client_app(&app.db, team, "Portal", store::ClientKind::Web, "", 90, &context).await.unwrap();
    let protection: store::Protection = serde_json::from_value(serde_json::json!({
        "authentication": {"mode": "required", "methods": [
            {"type": "jwt", "issuer": "https://login.example.com", "audiences": ["golden"],
             "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": ["read"]},
            {"type": "api_key", "header": "x-api-key"}]},
        "network": {"source_networks": ["10.0.0.0/8"]},
        "data": {"grants": [{"client_app": portal.id, "classes": ["email"]}], "otherwise": "mask"},
        "rate_limits": [{"requests": 100, "window_seconds": 60}],
    }))
    .unwrap();
    for fixture in FIXTURES {
        let path = format!("{}/../../shared/fixtures/openapi/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let spec = openapi::parse(&std::fs::read(&path).unwrap(), Format::Detect).unwrap();
        let api = apis::create_api(&app.db, team, "golden", &spec, &context).await.unwrap();
        settings::update_api_protection(&app.db, api.summary.id, &protection, &context).await.unwrap();
    }
    let snapshot = app::publishing::ssr::snapshot(&app.db).await.unwrap();
    let compiled = policy::compile(&snapshot).unwrap_or_else(|problems| panic!("{problems:?}"));
    for (index, fixture) in FIXTURES.iter().enumerate() {
        let api = compiled.apis.values().nth(index).unwrap();
        // Ids are left out: they depend on the order rows were written, not on the compiler.
        let mut value = serde_json::to_value(api).unwrap();
        for routes in value["routes"].as_object_mut().unwrap().values_mut() {
            for route in routes.as_array_mut().unwrap() {
                let route = route.as_object_mut().unwrap();
                route.remove("api_id");
                route.remove("operation_id");
            }
        }
        let text = format!("{}\n", serde_json::to_string_pretty(&value).unwrap());
        let golden = golden_path(fixture);
        if std::env::var_os("PALISADE_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}; run with PALISADE_UPDATE_GOLDEN=1 once", golden.display()));
        assert!(expected == text, "{fixture}: the compiled policy differs from {}", golden.display());
    }
    // The same inventory compiles to the same bytes, every time.
    let again = policy::compile(&app::publishing::ssr::snapshot(&app.db).await.unwrap()).unwrap();
    assert_eq!(policy::bundle::content_hash(&again), policy::bundle::content_hash(&compiled));
});
