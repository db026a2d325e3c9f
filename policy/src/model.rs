//! The compiler's input (a snapshot of the inventory and its settings) and its output
//! (the compiled policy an agent evaluates). Both serialize canonically, so the same
//! snapshot always compiles to the same bytes.

use crate::contract::RequestContract;
use crate::credentials::Credentials;
use crate::inspect::ResponseField;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use store::protection::Protection;

/// Everything the compiler reads, as the control plane holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub apis: Vec<ApiInput>,
    /// Client applications that exist, by id, with their name (for reasons and logs).
    pub client_apps: BTreeMap<i64, String>,
    /// Every data class a rule may name (built-in and custom).
    pub known_classes: Vec<String>,
    /// The client credentials agents accept (active ones only).
    #[serde(default, skip_serializing_if = "Credentials::is_empty")]
    pub credentials: Credentials,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiInput {
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub protection: Protection,
    pub operations: Vec<OperationInput>,
    /// The OpenAPI `components` request contracts refer to (`null` when no operation has
    /// a contract) and the document's OpenAPI version.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub components: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub openapi_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationInput {
    pub id: i64,
    /// Upper case.
    pub method: String,
    /// The path template: `/pets/{id}`.
    pub path: String,
    /// The operation's override of the API's protection.
    pub protection: Protection,
    /// Data classes the operation returns (after the owner's corrections), sorted.
    pub response_classes: Vec<String>,
    /// Where in its responses each of those classes sits, for L3 inspection. Left out of
    /// the serialised form when empty, so policies without it keep their bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_fields: Vec<ResponseField>,
    /// What the OpenAPI description says requests carry, for a request contract; given
    /// where the operation's rules set one (policy files offline have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OperationSchemas>,
}

/// An operation's `parameters` and `requestBody`, with their `$ref`s resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationSchemas {
    pub parameters: Value,
    pub request_body: Value,
}

/// What agents enforce: per API, per method, a route table, and each route's effective
/// rules. An agent fronts one API (chosen by its configuration), so routes are matched
/// within that API: two APIs may declare the same path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompiledPolicy {
    pub apis: BTreeMap<i64, CompiledApi>,
    pub client_apps: BTreeMap<i64, String>,
    /// Left out when there are none, so policies without credentials keep their bytes.
    #[serde(default, skip_serializing_if = "Credentials::is_empty")]
    pub credentials: Credentials,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompiledApi {
    pub name: String,
    pub environment: String,
    /// Method (upper case) → its routes, most specific first.
    pub routes: BTreeMap<String, Vec<Route>>,
    /// The API is in monitor mode: what no route matches is recorded, not refused (each
    /// route carries its own mode in its rules).
    #[serde(default, skip_serializing_if = "is_false")]
    pub monitor: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl CompiledPolicy {
    /// Every route of every API.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.apis.values().flat_map(|api| api.routes.iter().flat_map(|(method, routes)| routes.iter().map(move |r| (method.as_str(), r))))
    }

    /// Every authentication method any route of `api` accepts (repeats included), for
    /// agents to prepare what verifying them needs.
    pub fn auth_methods(&self, api: i64) -> impl Iterator<Item = &store::protection::AuthMethod> {
        let routes = self.apis.get(&api).into_iter().flat_map(|api| api.routes.values().flatten());
        routes.flat_map(|route| route.rules.authentication.iter().flat_map(|a| a.methods.iter()))
    }
}

/// One operation as an agent matches and enforces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub api_id: i64,
    pub api_name: String,
    pub operation_id: i64,
    pub template: String,
    /// The template split at `/`: a literal, or `None` for a parameter.
    pub segments: Vec<Segment>,
    /// What applies: the operation's override, else the API's.
    pub rules: Protection,
    pub response_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_fields: Vec<ResponseField>,
    /// The request contract, when the rules set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<RequestContract>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Literal(String),
    Parameter(String),
}

/// A problem found while compiling, at the path of the offending setting.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Diagnostic {
    /// `apis[3].operations[17].requestor.object_owner.parameter`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
