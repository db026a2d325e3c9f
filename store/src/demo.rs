//! The demo data set behind `palisade serve --demo`: a small, realistic organisation
//! (teams, one user of every role, two APIs with real posture gaps, client applications
//! with a key per instance, and one API protected) to explore the dashboard with.
//! Loading is idempotent.

use crate::accounts::{self, NewAccount};
use crate::passwords::Passwords;
use crate::audit::AuditContext;
use crate::{Db, Role, StoreError, teams};

/// What was loaded, so the caller can print how to log in.
#[derive(Clone, Debug)]
pub struct DemoData {
    /// `(email, role)` of each demo user.
    pub users: Vec<(String, Role)>,
    /// The one password all demo users share; `None` when the data was already there.
    pub password: Option<String>,
}

/// Demo APIs: (owning team, OpenAPI document). Written for the demo, with the gaps a real
/// estate has (a public lookup returning personal data, lists without paging).
const APIS: [(&str, &str); 2] = [
    ("Payments", include_str!("../demo/payments.yaml")),
    ("Identity", include_str!("../demo/customers.yaml")),
];

const TEAMS: [&str; 4] = ["Payments", "Identity", "Mobile Banking", "Data Platform"];

const USERS: [(&str, &str, Role, &[&str]); 6] = [
    ("ciso@demo.palisade.local", "Grace Okafor", Role::Security, &[]),
    ("analyst@demo.palisade.local", "Tomás Lindqvist", Role::Security, &[]),
    ("payments-dev@demo.palisade.local", "Priya Raman", Role::Developer, &["Payments"]),
    ("identity-dev@demo.palisade.local", "Jonas Weber", Role::Developer, &["Identity", "Mobile Banking"]),
    ("data-dev@demo.palisade.local", "Amara Nwosu", Role::Developer, &["Data Platform"]),
    ("auditor@demo.palisade.local", "Helen Brandt", Role::Auditor, &[]),
];

/// Loads the demo organisation unless it is already there.
pub async fn load(db: &Db, passwords: &Passwords, master: &crate::signing::MasterKey) -> Result<DemoData, StoreError> {
    let users = USERS.iter().map(|(email, _, role, _)| ((*email).to_owned(), *role)).collect();
    let context = AuditContext::system("demo loader");
    if accounts::find_account_by_email(db, USERS[0].0).await.is_ok() {
        return Ok(DemoData { users, password: None });
    }
    for name in TEAMS {
        match teams::create_team(db, name, &context).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let all_teams = teams::list_teams(db).await?;
    let password = crate::tokens::generate_secret("demo-")[..21].to_owned();
    let hash = passwords.hash(&password).await?;
    for (email, name, role, team_names) in USERS {
        let team_ids = all_teams
            .iter()
            .filter(|team| team_names.contains(&team.name.as_str()))
            .map(|team| team.id)
            .collect();
        let new = NewAccount {
            email: email.to_owned(),
            display_name: name.to_owned(),
            role,
            team_ids,
            password_hash: Some(hash.clone()),
        };
        match accounts::create_account(db, new, &context).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    for (team_name, document) in APIS {
        let Some(team) = all_teams.iter().find(|team| team.name == team_name) else { continue };
        let spec = crate::openapi::parse(document.as_bytes(), crate::openapi::Format::Yaml)
            .map_err(|problems| StoreError::invalid("demo API", format!("{problems:?}")))?;
        match crate::apis::create_api(db, team.id, "production", &spec, &context).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    protect_payments(db, master, &all_teams, &context).await?;
    Ok(DemoData { users, password: Some(password) })
}

/// The Payments API declares JWT or API-key authentication, grants its checkout web
/// application card data only, and limits every caller; the Identity API is left as
/// registered, so the two compare on the Overview.
async fn protect_payments(
    db: &Db,
    master: &crate::signing::MasterKey,
    all_teams: &[crate::Team],
    context: &AuditContext,
) -> Result<(), StoreError> {
    let Some(payments) = all_teams.iter().find(|team| team.name == "Payments") else { return Ok(()) };
    let Some(api) = crate::apis::list_apis(db).await?.into_iter().find(|api| api.team_id == payments.id) else { return Ok(()) };
    let checkout = crate::client_apps::create_client_app(
        db,
        payments.id,
        "Checkout Web",
        crate::ClientKind::Web,
        "The storefront's checkout pages",
        90,
        context,
    )
    .await?;
    for instance in ["checkout-eu-1", "checkout-us-1"] {
        crate::client_apps::issue_credential(db, master, checkout.id, crate::CredentialKind::ApiKey, instance, None, context).await?;
    }
    let protection: crate::Protection = serde_json::from_value(serde_json::json!({
        "authentication": {"mode": "required", "methods": [
            {"type": "jwt", "issuer": "https://login.demo.palisade.local", "audiences": ["payments"],
             "jwks_url": "https://login.demo.palisade.local/.well-known/jwks.json", "algorithms": ["RS256", "ES256"], "required_scopes": ["payments"]},
            {"type": "api_key", "header": "x-api-key"}]},
        "data": {"grants": [{"client_app": checkout.id, "classes": ["payment_card", "email"]}], "otherwise": "mask"},
        "rate_limits": [{"requests": 600, "window_seconds": 60}, {"client_app": checkout.id, "requests": 50, "window_seconds": 1}],
    }))
    .map_err(|error| StoreError::invalid("demo protection", error.to_string()))?;
    crate::settings::update_api_protection(db, api.id, &protection, context).await?;
    Ok(())
}
