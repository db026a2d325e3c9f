//! The REST API under `/api/v1`, authenticated by personal API tokens. Routes are declared
//! through utoipa so that the OpenAPI document and the router come from the same source;
//! each operation's security requirement lists the roles it admits, and the authorization
//! test reads them from the document.

mod agents;
mod apis;
mod audit;
mod bundles;
mod caller;
mod client_apps;
mod data_classes;
mod error;
mod me;
mod policy;
mod protection;
mod users;

pub use caller::Caller;
pub use error::{ApiError, ErrorBody};

use app::state::AppState;
use axum::Router;
use axum::routing::any;
use std::sync::OnceLock;
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade API",
        version = "1",
        description = "Palisade's REST API. Authenticate with `Authorization: Bearer <token>` \
                       using a personal API token. Each operation's security requirement lists \
                       the roles allowed to call it. Errors are JSON `{code, message}`."
    ),
    modifiers(&BearerScheme),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .routes(routes!(me::me))
        .routes(routes!(users::list_users))
        .routes(routes!(users::list_teams))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::list_audit_keys))
        .routes(routes!(apis::list_apis, apis::create_api))
        .routes(routes!(apis::get_api, apis::update_api))
        .routes(routes!(apis::reimport_spec))
        .routes(routes!(protection::get_protection, protection::put_protection))
        .routes(routes!(protection::put_operation_protection))
        .routes(routes!(protection::put_class_edits))
        .routes(routes!(client_apps::list_client_apps, client_apps::create_client_app))
        .routes(routes!(client_apps::get_client_app, client_apps::delete_client_app))
        .routes(routes!(client_apps::issue_credential))
        .routes(routes!(client_apps::rotate_credential))
        .routes(routes!(client_apps::revoke_credential))
        .routes(routes!(data_classes::list_data_classes, data_classes::create_data_class))
        .routes(routes!(data_classes::delete_data_class))
        .routes(routes!(bundles::list_bundles, bundles::create_bundle))
        .routes(routes!(bundles::get_bundle))
        .routes(routes!(bundles::publish_bundle))
        .routes(routes!(bundles::rollback_bundle))
        .routes(routes!(bundles::promote_bundle))
        .routes(routes!(bundles::list_pins, bundles::create_pin))
        .routes(routes!(bundles::release_pin))
        .routes(routes!(bundles::meant_for))
        .routes(routes!(bundles::bundle_keys))
        .routes(routes!(bundles::rotate_bundle_key))
        .routes(routes!(policy::export_policy, policy::import_policy))
        .routes(routes!(agents::list_enrollment_tokens, agents::create_enrollment_token))
        .routes(routes!(agents::revoke_enrollment_token))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::revoke_agent))
        .routes(routes!(agents::bundle_convergence))
        .routes(routes!(agents::list_decisions))
        .routes(routes!(agents::list_undeclared_routes))
}

/// The OpenAPI document of every `/api/v1` route.
pub fn openapi() -> &'static OpenApiDocument {
    static DOCUMENT: OnceLock<OpenApiDocument> = OnceLock::new();
    DOCUMENT.get_or_init(|| routes().split_for_parts().1)
}

pub fn router() -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    router.route("/api/v1/{*rest}", any(|| async { ApiError::NotFound("route".into()) }))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
async fn openapi_json() -> axum::Json<&'static OpenApiDocument> {
    axum::Json(openapi())
}

/// The team a new API or client application goes to: the one named (id or name), else
/// the caller's only team.
async fn owning_team(
    state: &AppState,
    principal: &store::Principal,
    named: Option<&str>,
) -> Result<store::TeamId, ApiError> {
    match named.map(str::trim).filter(|t| !t.is_empty()) {
        Some(team) => match team.parse::<i64>() {
            Ok(id) => Ok(store::TeamId(id)),
            Err(_) => Ok(store::teams::find_team_by_name(&state.db, team).await?.id),
        },
        None => match principal.teams.as_slice() {
            [only] => Ok(only.id),
            teams => Err(ApiError::Invalid(format!(
                "say which team owns it with ?team= (you belong to {} teams)",
                teams.len()
            ))),
        },
    }
}
