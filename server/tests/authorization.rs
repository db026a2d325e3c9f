//! Every route and server function, for an anonymous caller, each role, and a developer of
//! another team: any allow that the table does not expect fails the test, and so does any
//! route or server function the table does not know (new ones must be added here).

mod common;

use common::*;
use http::{Method, StatusCode};
use std::collections::{BTreeMap, BTreeSet};
use store::{Role, teams};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Anonymous,
    Admin,
    Security,
    Developer,
    /// A developer whose teams own nothing the other developer's do.
    OtherTeamDeveloper,
    Auditor,
}

const CALLERS: [Caller; 6] = [
    Caller::Anonymous,
    Caller::Admin,
    Caller::Security,
    Caller::Developer,
    Caller::OtherTeamDeveloper,
    Caller::Auditor,
];

/// Who may: the roles a route admits.
#[derive(Clone, Copy, Debug)]
enum Allowed {
    Anyone,
    SignedIn,
    Roles(&'static [Role]),
    /// Changes to what the Payments team owns: its developers, security and admins.
    PaymentsWriters,
}

impl Allowed {
    fn admits(self, caller: Caller) -> bool {
        match (self, role_of(caller)) {
            (Allowed::Anyone, _) => true,
            (_, None) => false,
            (Allowed::SignedIn, Some(_)) => true,
            (Allowed::Roles(roles), Some(role)) => roles.contains(&role),
            (Allowed::PaymentsWriters, Some(role)) => {
                matches!(role, Role::Admin | Role::Security) || caller == Caller::Developer
            }
        }
    }
}

fn role_of(caller: Caller) -> Option<Role> {
    match caller {
        Caller::Anonymous => None,
        Caller::Admin => Some(Role::Admin),
        Caller::Security => Some(Role::Security),
        Caller::Developer | Caller::OtherTeamDeveloper => Some(Role::Developer),
        Caller::Auditor => Some(Role::Auditor),
    }
}

const READERS: &[Role] = &[Role::Admin, Role::Auditor];
/// Organisation-wide settings (custom data classes) and bundles.
const DEFINERS: &[Role] = &[Role::Admin, Role::Security];
const ADMINS: &[Role] = &[Role::Admin];

#[derive(Clone, Debug)]
struct Objects {
    client_app: i64,
    rotate_key: i64,
    revoke_key: i64,
    doomed_app: i64,
    class: String,
    /// A published canary bundle (to promote and pin), and a pin (to release).
    canary: i64,
    pin: i64,
    /// An unused enrollment token and an enrolled agent, to revoke.
    enrollment_token: i64,
    agent: i64,
}

struct World {
    app: TestApp,
    sessions: BTreeMap<Caller, Option<String>>,
    tokens: BTreeMap<Caller, Option<String>>,
    target_id: i64,
    team_id: i64,
    /// An API owned by Payments, and its one operation.
    api_id: i64,
    operation_id: i64,
    /// Per caller, so each one's writes have something of their own to act on: a Payments
    /// client application with two API keys (to rotate, to revoke), another to delete,
    /// and a custom data class to delete.
    objects: BTreeMap<Caller, Objects>,
    /// A live invitation, so the set-up page has something to show.
    setup_token: String,
}

async fn world(app: TestApp) -> World {
    let payments = teams::create_team(&app.db, "Payments", &store::audit::AuditContext::system("test")).await.unwrap();
    let identity = teams::create_team(&app.db, "Identity", &store::audit::AuditContext::system("test")).await.unwrap();
    let mut sessions = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    for caller in CALLERS {
        let Some(role) = role_of(caller) else {
            sessions.insert(caller, None);
            tokens.insert(caller, None);
            continue;
        };
        let team = if caller == Caller::OtherTeamDeveloper { identity.id } else { payments.id };
        let email = format!("{caller:?}@example.com").to_lowercase();
        let account = app.create_user(&email, role, &[team]).await;
        tokens.insert(caller, Some(app.token_for(&account).await));
        sessions.insert(caller, Some(app.session_for(&email).await));
    }
    let target = app.create_user("target@example.com", Role::Developer, &[payments.id]).await;
    let setup_token = store::accounts::create_password_setup(&app.db, target.id, 3_600_000, &store::audit::AuditContext::system("test")).await.unwrap();
    let spec = store::openapi::parse(&matrix_document("Owned by Payments"), store::openapi::Format::Json).unwrap();
    let api = store::apis::create_api(&app.db, payments.id, "production", &spec, &store::audit::AuditContext::system("test")).await.unwrap();
    let system = store::audit::AuditContext::system("test");
    let mut objects = BTreeMap::new();
    for caller in CALLERS {
        let name = format!("{caller:?}").to_lowercase();
        let service = store::ClientKind::Service;
        let client_app = store::client_apps::create_client_app(&app.db, payments.id, &format!("app {name}"), service, "", 90, &system).await.unwrap();
        let doomed = store::client_apps::create_client_app(&app.db, payments.id, &format!("doomed {name}"), service, "", 90, &system).await.unwrap();
        let key = |instance: &'static str| {
            let (db, system, master) = (app.db.clone(), system.clone(), app.state.master.clone());
            async move {
                let kind = store::CredentialKind::ApiKey;
                store::client_apps::issue_credential(&db, &master, client_app.id, kind, instance, None, &system).await.unwrap().credential.id.0
            }
        };
        let (rotate_key, revoke_key) = (key("rotate").await, key("revoke").await);
        let class = format!("class_{name}");
        store::custom_classes::create_custom_class(&app.db, &class, "", &[format!("kw{name}")], &[], &system).await.unwrap();
        let labels = store::Labels::from([("matrix".to_owned(), name.clone())]);
        let (db, master) = (&app.db, &app.state.master);
        let canary = app::publishing::ssr::create_draft(db, master, &labels, &system).await.unwrap().unwrap().0.revision;
        store::bundles::publish_bundle(db, canary, "matrix canary", &system).await.unwrap();
        app::publishing::ssr::pin(db, master, &labels, canary, "matrix pin", &system).await.unwrap();
        let pin = store::bundles::list_pins(db).await.unwrap().into_iter().find(|pin| pin.labels == labels).unwrap().pin_id;
        let (enrollment_token, _) = store::agents::create_enrollment_token(db, &labels, None, 3_600_000, &system).await.unwrap();
        let (_, agent_token) = store::agents::create_enrollment_token(db, &labels, None, 3_600_000, &system).await.unwrap();
        let agent_key = hex::encode(ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()).verifying_key().to_bytes());
        let enrollment = store::agents::EnrollmentRequest { token: agent_token, public_key: agent_key, name: None, version: "1".into() };
        let agent = store::agents::enroll(db, &enrollment, &system).await.unwrap().id;
        let (enrollment_token, agent) = (enrollment_token.id, agent);
        objects.insert(
            caller,
            Objects { client_app: client_app.id.0, rotate_key, revoke_key, doomed_app: doomed.id.0, class, canary, pin, enrollment_token, agent },
        );
    }
    World {
        app,
        sessions,
        tokens,
        target_id: target.id.0,
        team_id: payments.id.0,
        api_id: api.summary.id.0,
        operation_id: api.operations[0].id,
        objects,
        setup_token,
    }
}

fn check(route: &str, caller: Caller, allowed: Allowed, status: StatusCode, detail: &str) {
    if allowed.admits(caller) {
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN && !status.is_server_error(),
            "{route} should admit {caller:?}, got {status}: {detail}"
        );
    } else {
        let expected = if caller == Caller::Anonymous { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
        assert_eq!(status, expected, "{route} must refuse {caller:?}: {detail}");
    }
}

/// Every server function: who may call it, and arguments that reach its body.
fn server_functions(world: &World, caller: Caller) -> Vec<(&'static str, Allowed, String)> {
    let (target, team, api, operation) = (world.target_id, world.team_id, world.api_id, world.operation_id);
    let own = &world.objects[&caller];
    let (client_app, rotate_key, revoke_key, doomed_app, class) = (own.client_app, own.rotate_key, own.revoke_key, own.doomed_app, &own.class);
    let unique = format!("{caller:?}").to_lowercase();
    let document = encode(&String::from_utf8(matrix_document(&format!("Matrix {unique}"))).unwrap());
    vec![
        ("whoami", Allowed::Anyone, String::new()),
        ("check_setup_link", Allowed::Anyone, "token=pps_nothing".into()),
        ("complete_setup", Allowed::Anyone, "token=pps_nothing&password=a+long+enough+one&password_again=a+long+enough+one".into()),
        ("take_flash", Allowed::SignedIn, String::new()),
        ("change_password", Allowed::SignedIn, "current_password=wrong+password+here&new_password=another+long+password".into()),
        ("list_my_tokens", Allowed::SignedIn, String::new()),
        ("create_my_token", Allowed::SignedIn, format!("name=matrix-{unique}&expires_in_days=30")),
        ("revoke_my_token", Allowed::SignedIn, "token_id=999999".into()),
        ("mfa_status", Allowed::SignedIn, String::new()),
        ("begin_mfa", Allowed::SignedIn, String::new()),
        ("confirm_mfa", Allowed::SignedIn, "code=000000".into()),
        ("remove_mfa", Allowed::SignedIn, "code=000000".into()),
        ("list_teams", Allowed::SignedIn, String::new()),
        ("list_users", Allowed::Roles(READERS), String::new()),
        ("get_user", Allowed::Roles(READERS), format!("account_id={target}")),
        ("create_user", Allowed::Roles(ADMINS), format!("email={unique}.new%40example.com&display_name=&role=developer&team_id={team}&password=")),
        ("update_user", Allowed::Roles(ADMINS), format!("account_id={target}&display_name=Target&role=developer")),
        ("set_user_team", Allowed::Roles(ADMINS), format!("account_id={target}&team_id={team}&member=true")),
        ("set_user_disabled", Allowed::Roles(ADMINS), format!("account_id={target}&disabled=false")),
        ("reset_user_password", Allowed::Roles(ADMINS), format!("account_id={target}&password=")),
        ("reset_user_mfa", Allowed::Roles(ADMINS), format!("account_id={target}")),
        ("get_sign_in_policy", Allowed::Roles(READERS), String::new()),
        // Leaves the matrix's own setting (nothing required) as it was.
        ("set_sign_in_policy", Allowed::Roles(ADMINS), String::new()),
        ("create_team", Allowed::Roles(ADMINS), format!("name=team-{unique}")),
        ("sign_in_providers", Allowed::Anyone, String::new()),
        ("list_sso_providers", Allowed::Roles(READERS), String::new()),
        // A provider per admin caller; the matrix's sign-in never goes through it.
        ("save_sso_provider", Allowed::Roles(ADMINS), format!("slug=matrix-{unique}&display_name=Matrix&issuer_url=https%3A%2F%2Fidp.example.com\
            &client_id=palisade&client_secret=s3cret&groups_claim=groups&role_mapping=matrix+%3D+auditor&enabled=on")),
        ("delete_sso_provider", Allowed::Roles(ADMINS), "id=999999".into()),
        ("list_user_identities", Allowed::Roles(READERS), format!("account_id={target}")),
        ("unlink_user_identity", Allowed::Roles(ADMINS), format!("account_id={target}&provider_id=999999")),
        ("search_audit", Allowed::SignedIn, "filters[action]=account&filters[from]=2020-01-01".into()),
        ("audit_chain_status", Allowed::Roles(READERS), String::new()),
        ("list_apis", Allowed::SignedIn, String::new()),
        ("get_api", Allowed::SignedIn, format!("api_id={api}")),
        ("get_api_posture", Allowed::SignedIn, format!("api_id={api}")),
        ("get_estate_posture", Allowed::SignedIn, String::new()),
        ("import_api", Allowed::PaymentsWriters, format!("team_id={team}&environment=production&document={document}")),
        ("set_api_lifecycle", Allowed::PaymentsWriters, format!("api_id={api}&lifecycle=active&sunset=")),
        ("reimport_api", Allowed::PaymentsWriters, format!("api_id={api}&document={document}")),
        ("set_protection", Allowed::PaymentsWriters, format!("api_id={api}&document=%7B%7D")),
        ("set_operation_protection", Allowed::PaymentsWriters, format!("api_id={api}&operation_id={operation}&document=")),
        (
            "set_authentication",
            Allowed::PaymentsWriters,
            format!("api_id={api}&mode=unset&jwt_issuer=&jwt_audiences=&jwt_jwks_url=&jwt_algorithms=&jwt_scopes=&mtls_identities="),
        ),
        ("set_data_rule", Allowed::PaymentsWriters, format!("api_id={api}&client_app_id={client_app}&classes=email&otherwise=mask")),
        ("set_rate_limit", Allowed::PaymentsWriters, format!("api_id={api}&client_app_id=0&requests=10&window_seconds=60")),
        ("set_enforcement", Allowed::PaymentsWriters, format!("api_id={api}&mode=monitor")),
        ("set_contract", Allowed::PaymentsWriters, format!("api_id={api}&enabled=on&reject_unknown_query=on&max_body_kib=64")),
        (
            "set_class_edit",
            Allowed::PaymentsWriters,
            format!("api_id={api}&operation_id={operation}&change=add&class=email&direction=response&field=200.body.contact"),
        ),
        ("list_client_apps", Allowed::SignedIn, String::new()),
        ("create_client_app", Allowed::PaymentsWriters, format!("team_id={team}&name=new-{unique}&kind=service&description=&rotation_days=90")),
        ("delete_client_app", Allowed::PaymentsWriters, format!("client_app_id={doomed_app}")),
        ("issue_credential", Allowed::PaymentsWriters, format!("client_app_id={client_app}&kind=api_key&instance=i-{unique}&identity=")),
        ("rotate_credential", Allowed::PaymentsWriters, format!("client_app_id={client_app}&credential_id={rotate_key}&overlap_minutes=5")),
        ("revoke_credential", Allowed::PaymentsWriters, format!("client_app_id={client_app}&credential_id={revoke_key}")),
        ("list_data_classes", Allowed::SignedIn, String::new()),
        ("create_data_class", Allowed::Roles(DEFINERS), format!("name=new_{unique}&description=&keywords=kw&patterns=")),
        ("delete_data_class", Allowed::Roles(DEFINERS), format!("name={class}")),
        ("preview_policy", Allowed::SignedIn, String::new()),
        ("list_bundles", Allowed::SignedIn, String::new()),
        ("create_draft", Allowed::Roles(DEFINERS), String::new()),
        // Revisions that do not exist: the permission check comes first; publishing and
        // rolling back for real are exercised through REST and in `bundles.rs`.
        ("publish_bundle", Allowed::Roles(DEFINERS), "revision=999999&reason=matrix".into()),
        ("rollback_bundle", Allowed::Roles(DEFINERS), "revision=999999&reason=matrix".into()),
        ("promote_bundle", Allowed::Roles(DEFINERS), "revision=999999&reason=matrix".into()),
        ("list_pins", Allowed::SignedIn, String::new()),
        ("pin_group", Allowed::Roles(DEFINERS), "labels=matrix%3Dnone&revision=999999&reason=matrix".into()),
        ("release_pin", Allowed::Roles(DEFINERS), "pin_id=999999&reason=matrix".into()),
        // An overlap out of range: the permission check comes first; `bundles.rs` rotates.
        ("rotate_bundle_key", Allowed::Roles(DEFINERS), "overlap_hours=0&reason=matrix".into()),
        ("run_policy_cases", Allowed::SignedIn, "cases=%7B%22cases%22%3A%5B%5D%7D&against=draft".into()),
        ("explain_request", Allowed::SignedIn, format!("case[against]=draft&case[api_id]={api}&case[method]=GET&case[path]=%2Fthings%2F1")),
        ("list_fleet", Allowed::SignedIn, String::new()),
        ("list_enrollment_tokens", Allowed::Roles(DEFINERS), String::new()),
        ("create_enrollment_token", Allowed::Roles(DEFINERS), format!("labels=matrix%3D{unique}&name=&expires_minutes=60&api_id={api}")),
        ("revoke_enrollment_token", Allowed::Roles(DEFINERS), format!("enrollment_token_id={}", own.enrollment_token)),
        ("revoke_agent", Allowed::Roles(DEFINERS), format!("agent_id={}&reason=matrix", own.agent)),
    ]
}

app_test!(server_functions_admit_only_their_roles, |app: TestApp| async move {
    let world = world(app).await;
    let registered: BTreeSet<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.trim_start_matches("/rpc/").to_owned())
        .collect();
    let tabled: BTreeSet<String> =
        server_functions(&world, Caller::Admin).iter().map(|(name, ..)| (*name).to_owned()).collect();
    assert_eq!(registered, tabled, "every server function must be in this table, and only those");
    for caller in CALLERS {
        for (name, allowed, body) in server_functions(&world, caller) {
            let response = world.app.send(rpc(name, &body, world.sessions[&caller].as_deref())).await;
            let status = response.status();
            let detail = body_text(response).await;
            check(&format!("/rpc/{name}"), caller, allowed, status, &detail);
        }
    }
});

/// Every dashboard page: who may see it. Pages refuse with 403; anonymous visitors of a
/// signed-in page are redirected to sign in.
fn pages(world: &World) -> Vec<(String, Allowed)> {
    vec![
        ("/login".into(), Allowed::Anyone),
        ("/setup-password".into(), Allowed::Anyone),
        ("/".into(), Allowed::SignedIn),
        ("/apis".into(), Allowed::SignedIn),
        (format!("/apis/{}", world.api_id), Allowed::SignedIn),
        (format!("/apis/{}/operations/{}", world.api_id, world.operation_id), Allowed::SignedIn),
        ("/clients".into(), Allowed::SignedIn),
        ("/data-classes".into(), Allowed::SignedIn),
        ("/agents".into(), Allowed::SignedIn),
        ("/policies".into(), Allowed::SignedIn),
        ("/consent".into(), Allowed::SignedIn),
        ("/risk".into(), Allowed::SignedIn),
        ("/audit".into(), Allowed::SignedIn),
        ("/settings".into(), Allowed::SignedIn),
        ("/settings/tokens".into(), Allowed::SignedIn),
        ("/settings/users".into(), Allowed::Roles(READERS)),
        (format!("/settings/users/{}", world.target_id), Allowed::Roles(READERS)),
        ("/settings/teams".into(), Allowed::Roles(READERS)),
        ("/settings/sso".into(), Allowed::Roles(READERS)),
    ]
}

app_test!(pages_admit_only_their_roles, |app: TestApp| async move {
    let world = world(app).await;
    let listed: BTreeSet<String> = leptos_axum::generate_route_list(app::App)
        .iter()
        .map(|route| {
            route
                .path()
                .replace("{id}", &world.target_id.to_string())
                .replace("{api_id}", &world.api_id.to_string())
                .replace("{operation_id}", &world.operation_id.to_string())
        })
        .collect();
    let tabled: BTreeSet<String> = pages(&world).into_iter().map(|(path, _)| path).collect();
    assert_eq!(listed, tabled, "every page must be in this table, and only those");
    for caller in CALLERS {
        for (path, allowed) in pages(&world) {
            let url = if path == "/setup-password" { format!("{path}?token={}", world.setup_token) } else { path.clone() };
            let response = world.app.send(get(&url, world.sessions[&caller].as_deref())).await;
            let status = response.status();
            if caller == Caller::Anonymous && !allowed.admits(caller) {
                assert_eq!(status, StatusCode::SEE_OTHER, "{path} must send anonymous visitors to sign in");
                assert!(location(&response).starts_with("/login?next="), "{path}");
                continue;
            }
            let html = body_text(response).await;
            if allowed.admits(caller) {
                assert_eq!(status, StatusCode::OK, "{path} should show for {caller:?}");
                assert!(!html.contains("Not allowed"), "{path} for {caller:?}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{path} must refuse {caller:?}");
                assert!(html.contains("Not allowed"), "{path} explains the refusal");
                assert!(!html.contains("target@example.com"), "{path} leaks no data to {caller:?}");
            }
        }
    }
});

// Browser routes that are not pages or server functions: who may use them.
app_test!(browser_downloads_admit_only_signed_in_users, |app: TestApp| async move {
    let world = world(app).await;
    for caller in CALLERS {
        let response = world.app.send(get("/audit/export?format=csv", world.sessions[&caller].as_deref())).await;
        if caller == Caller::Anonymous {
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "anonymous downloads go to sign-in");
        } else {
            assert_eq!(response.status(), StatusCode::OK, "{caller:?}");
        }
    }
});

/// The roles an OpenAPI operation admits, from its security requirement.
fn documented_access(operation: &serde_json::Value) -> Allowed {
    let requirements = operation["security"].as_array().expect("every operation declares security");
    if requirements.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
        return Allowed::Anyone;
    }
    let roles: Vec<Role> = requirements[0]["bearer"]
        .as_array()
        .expect("bearer roles")
        .iter()
        .map(|role| role.as_str().unwrap().parse().expect("a role name"))
        .collect();
    Allowed::Roles(Box::leak(roles.into_boxed_slice()))
}

app_test!(rest_routes_admit_only_documented_roles, |app: TestApp| async move {
    let world = world(app).await;
    let document = serde_json::to_value(server::api::openapi()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 4, "{paths:?}");
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let allowed = documented_access(operation);
            for caller in CALLERS {
                let route = format!("{} {path}", method.to_uppercase());
                // A draft is publishable only while nothing newer was published, and other
                // routes publish: each caller publishes a draft made just before.
                let draft = if path.ends_with("/publish") && allowed.admits(caller) {
                    let system = store::audit::AuditContext::system("test");
                    let created = app::publishing::ssr::create_draft(&world.app.db, &world.app.state.master, &store::Labels::new(), &system).await;
                    created.unwrap().unwrap().0.revision
                } else {
                    world.objects[&caller].canary
                };
                let (uri, body) = rest_call(&world, method, path, caller, draft);
                let mut builder = http::Request::builder().method(method.to_uppercase().as_str()).uri(uri.as_str());
                if let Some(token) = world.tokens[&caller].as_deref() {
                    builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
                }
                let body = match body {
                    None => axum::body::Body::empty(),
                    Some(bytes) => {
                        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                        axum::body::Body::from(bytes)
                    }
                };
                let response = world.app.send(builder.body(body).unwrap()).await;
                let status = response.status();
                if status == StatusCode::UNAUTHORIZED {
                    assert!(response.headers().contains_key(http::header::WWW_AUTHENTICATE));
                }
                let detail = body_text(response).await;
                // Writes also need ownership: Payments' API is not the Identity developer's.
                let owns = !(method != "get" && caller == Caller::OtherTeamDeveloper);
                if allowed.admits(caller) && owns {
                    check(&route, caller, allowed, status, &detail);
                    assert!(status.is_success(), "{route} for {caller:?}: {status} {detail}");
                } else {
                    let expected = if caller == Caller::Anonymous { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
                    assert_eq!(status, expected, "{route} must refuse {caller:?}: {detail}");
                    let error: serde_json::Value = serde_json::from_str(&detail).unwrap();
                    assert!(error["code"].is_string() && error["message"].is_string(), "{detail}");
                }
            }
        }
    }
    // A session cookie is not an API credential.
    let with_cookie = world
        .app
        .send(get("/api/v1/me", world.sessions[&Caller::Admin].as_deref()))
        .await;
    assert_eq!(with_cookie.status(), StatusCode::UNAUTHORIZED);
});

/// The URI and JSON body with which `caller` exercises a documented route: every id
/// is one of the caller's own objects, so a write by one caller never spoils another's.
fn rest_call(world: &World, method: &str, path: &str, caller: Caller, revision: i64) -> (String, Option<Vec<u8>>) {
    let own = &world.objects[&caller];
    let route = format!("{} {path}", method.to_uppercase());
    let name = format!("{caller:?}").to_lowercase();
    let client_app = if method == "delete" && path == "/api/v1/client-apps/{id}" { own.doomed_app } else { own.client_app };
    let credential = if method == "delete" { own.revoke_key } else { own.rotate_key };
    let id = if path.starts_with("/api/v1/client-apps/") {
        client_app
    } else if path.starts_with("/api/v1/agents/enrollment-tokens/") {
        own.enrollment_token
    } else if path.starts_with("/api/v1/agents/") {
        own.agent
    } else {
        world.api_id
    };
    let mut uri = path
        .replace("{id}", &id.to_string())
        .replace("{operation_id}", &world.operation_id.to_string())
        .replace("{credential_id}", &credential.to_string())
        .replace("{name}", &own.class)
        .replace("{revision}", &revision.to_string())
        .replace("{pin_id}", &own.pin.to_string());
    if method == "delete" && path == "/api/v1/bundles/pins/{pin_id}" {
        uri.push_str("?reason=matrix");
    }
    if method == "post" && (path == "/api/v1/apis" || path == "/api/v1/client-apps") {
        uri.push_str(&format!("?team={}", world.team_id));
    }
    let json = |value: serde_json::Value| Some(serde_json::to_vec(&value).unwrap());
    let body = match (method, path) {
        ("get" | "delete", _) | ("post", "/api/v1/bundles") => None,
        ("post", "/api/v1/bundles/{revision}/publish" | "/api/v1/bundles/{revision}/rollback" | "/api/v1/bundles/{revision}/promote") => {
            json(serde_json::json!({"reason": "matrix"}))
        }
        ("post", "/api/v1/bundles/pins") => json(serde_json::json!({"labels": {"matrix": name}, "revision": own.canary, "reason": "matrix"})),
        ("post", "/api/v1/policy") => json(serde_json::json!({})),
        ("post", "/api/v1/agents/enrollment-tokens") => json(serde_json::json!({"labels": {"matrix": name}})),
        ("post", "/api/v1/agents/enrollment-tokens/{id}/revoke") => None,
        ("post", "/api/v1/agents/{id}/revoke") => json(serde_json::json!({"reason": "matrix"})),
        ("post", "/api/v1/bundles/keys/rotate") => json(serde_json::json!({"reason": "matrix", "overlap_hours": 1})),
        ("post", "/api/v1/apis") | ("put", "/api/v1/apis/{id}/spec") => Some(matrix_document(&format!("{route} by {caller:?}"))),
        ("patch", "/api/v1/apis/{id}") => json(serde_json::json!({"lifecycle": "active"})),
        ("put", "/api/v1/apis/{id}/protection" | "/api/v1/apis/{id}/operations/{operation_id}/protection") => json(serde_json::json!({})),
        ("put", "/api/v1/apis/{id}/operations/{operation_id}/data-classes") => json(serde_json::json!({"added": [], "removed": []})),
        ("post", "/api/v1/client-apps") => json(serde_json::json!({"name": format!("rest {name}"), "kind": "partner"})),
        ("post", "/api/v1/client-apps/{id}/credentials") => json(serde_json::json!({"kind": "api_key", "instance": format!("rest-{name}")})),
        ("post", "/api/v1/client-apps/{id}/credentials/{credential_id}/rotate") => json(serde_json::json!({"overlap_seconds": 60})),
        ("post", "/api/v1/data-classes") => json(serde_json::json!({"name": format!("rest_{name}"), "keywords": ["restkw"]})),
        _ => panic!("add a request for {route} to this test"),
    };
    (uri, body)
}

/// A small OpenAPI document whose title (and so API name) is `title`.
fn matrix_document(title: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1"},
        "paths": {"/things/{id}": {"get": {"responses": {"200": {"description": "a thing"}}}}},
    }))
    .unwrap()
}

app_test!(openapi_document_and_router_agree, |app: TestApp| async move {
    let admin = app.create_user("admin@example.com", Role::Admin, &[]).await;
    let token = app.token_for(&admin).await;
    let document = serde_json::to_value(server::api::openapi()).unwrap();
    let served = body_json(app.send(bearer_get("/api/v1/openapi.json", None)).await).await;
    assert_eq!(served, document, "the served document is the router's");
    for (path, operations) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for method in operations.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let request = http::Request::builder()
                .method(method.clone())
                .uri(path.as_str())
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.send(request).await;
            assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
            let body = body_text(response).await;
            assert!(!body.contains("route not found"), "{method} {path} is documented but not routed");
        }
    }
    let unknown = app.send(bearer_get("/api/v1/nothing-here", Some(&token))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(unknown).await["code"], "not_found");
    let me = body_json(app.send(bearer_get("/api/v1/me", Some(&token))).await).await;
    assert_eq!(me["email"], "admin@example.com");
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    let _ = Method::GET;
});
