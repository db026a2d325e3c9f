//! How an API (and, by override, one operation) is protected: authentication, the four
//! authorization levels and rate limits, as developers declare them. Pure types and
//! checks, shared with the dashboard; the data layer adds what needs the database
//! (client applications and data classes that must exist).
//!
//! An operation's override has the same shape as the API's: each part it sets replaces
//! the API's part whole, each part it leaves out is inherited.

use crate::ClientAppId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Rules in one list at most; real APIs need a handful.
const MAX_ITEMS: usize = 100;
const MAX_TEXT_CHARS: usize = 2_048;
/// The longest window a rate limit counts over: one day.
const MAX_WINDOW_SECONDS: u32 = 86_400;
/// HMAC signatures older or newer than this are replays or clock faults, not skew.
const MAX_CLOCK_SKEW_SECONDS: u32 = 900;

/// JWT algorithms an agent verifies. Symmetric `HS*` would put a shared secret in every
/// bundle and `none` is no signature at all: both are refused.
pub const JWT_ALGORITHMS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
pub const HMAC_ALGORITHMS: [&str; 2] = ["hmac-sha256", "hmac-sha512"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// L1: where calls may come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRule>,
    /// L2: who may call, by identity, roles, scopes, claims, risk and device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor: Option<RequestorRule>,
    /// L3: which data classes each client application may receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataRule>,
    /// L4: the end user's consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Vec<RateLimit>>,
    /// Enforce (when left out) or monitor: agents record what they would refuse and let it
    /// through, to try a new rule on live traffic before it bites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// The request contract: when set, agents check each request against the operation's
    /// OpenAPI description (parameters and JSON body) before forwarding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractRule>,
}

/// How strictly requests are held to the operation's OpenAPI description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractRule {
    /// Query parameters the operation does not declare are refused (the default), or
    /// let through when false.
    #[serde(default = "yes")]
    pub reject_unknown_query: bool,
    /// The largest request body accepted, in bytes (default 1 MiB, at most 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
}

/// The largest body a contract may accept: agents hold a checked body in memory.
pub const MAX_CONTRACT_BODY_BYTES: u32 = 16 * 1024 * 1024;
pub const DEFAULT_CONTRACT_BODY_BYTES: u32 = 1024 * 1024;

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    Enforce,
    Monitor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Explicitly open to anyone: a decision, not an omission.
    Public,
    /// Callers must present one of the methods.
    Required,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    pub mode: AuthMode,
    /// Any one of these authenticates a caller.
    #[serde(default)]
    pub methods: Vec<AuthMethod>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthMethod {
    /// Client certificates; `allowed_identities` are subjects (`CN=orders,O=Acme`) or
    /// SANs (`spiffe://acme/orders`, `orders.internal`). Empty: any certificate that
    /// belongs to a registered client credential.
    Mtls {
        #[serde(default)]
        allowed_identities: Vec<String>,
    },
    /// OAuth2/OIDC bearer JWTs.
    Jwt {
        issuer: String,
        audiences: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jwks_url: Option<String>,
        /// Public keys as PEM or JWK JSON, when the issuer publishes no JWKS.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        static_keys: Vec<String>,
        algorithms: Vec<String>,
        #[serde(default)]
        required_scopes: Vec<String>,
    },
    /// API keys that Palisade issued to client applications, sent in `header`.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
    },
    /// HMAC request signatures.
    Hmac {
        algorithm: String,
        /// Where the caller names its key (`keyId` in the `Signature-Input` header).
        #[serde(default = "default_key_id_parameter")]
        key_id: String,
        /// What the signature covers: `@method`, `@path`, `@query`, `content-digest`, …
        signed_components: Vec<String>,
        clock_skew_seconds: u32,
    },
}

fn is_false(value: &bool) -> bool {
    !value
}

fn default_api_key_header() -> String {
    "x-api-key".to_owned()
}

fn default_key_id_parameter() -> String {
    "keyid".to_owned()
}

impl AuthMethod {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthMethod::Mtls { .. } => "mtls",
            AuthMethod::Jwt { .. } => "jwt",
            AuthMethod::ApiKey { .. } => "api_key",
            AuthMethod::Hmac { .. } => "hmac",
        }
    }
}

/// L1: allowed source networks (CIDR) and service identities (mTLS or SPIFFE ids).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    #[serde(default)]
    pub source_networks: Vec<String>,
    #[serde(default)]
    pub service_identities: Vec<String>,
}

/// L2: every part that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestorRule {
    /// The caller has at least one of these roles (the `roles` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The caller's token carries all of these scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRule>,
    /// Only these client applications may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_apps: Vec<ClientAppId>,
    /// Object-level check: the object id in the path must equal a claim of the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_owner: Option<ObjectOwner>,
    /// Callers whose risk score (0–100) is above this are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk: Option<u8>,
    /// The caller must present a registered device (a device claim).
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_device: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    pub claim: String,
    /// The claim must have one of these values.
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectOwner {
    /// The path parameter holding the object id (`id` in `/pets/{id}`).
    pub parameter: String,
    pub claim: String,
}

/// L3: what each client application may receive; responses carrying any other declared
/// class get `otherwise`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRule {
    #[serde(default)]
    pub grants: Vec<DataGrant>,
    pub otherwise: DataAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataGrant {
    pub client_app: ClientAppId,
    pub classes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataAction {
    /// Replace the values with a mask and let the response through.
    Mask,
    /// Refuse the whole response.
    Block,
    /// Let it through and record it.
    LogOnly,
}

impl DataAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DataAction::Mask => "mask",
            DataAction::Block => "block",
            DataAction::LogOnly => "log_only",
        }
    }
}

/// L4: the subject must have granted this purpose (and scopes) to the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRule {
    pub purpose: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub subject: SubjectSource,
}

/// Where the data subject's id is found in a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSource {
    #[serde(rename = "in")]
    pub location: SubjectLocation,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectLocation {
    Claim,
    Path,
    Header,
}

/// At most `requests` per `window_seconds`, per client application (or per caller
/// for everyone when `client_app` is absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_app: Option<ClientAppId>,
    pub requests: u32,
    pub window_seconds: u32,
}

/// One thing wrong in a protection document, at a path like
/// `authentication.methods[0].issuer`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SettingProblem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Protection {
    /// Nothing declared at all.
    pub fn is_empty(&self) -> bool {
        *self == Protection::default()
    }

    /// What applies to an operation: each part of its override, else the API's.
    pub fn effective(api: &Protection, operation: &Protection) -> Protection {
        Protection {
            authentication: operation.authentication.clone().or_else(|| api.authentication.clone()),
            network: operation.network.clone().or_else(|| api.network.clone()),
            requestor: operation.requestor.clone().or_else(|| api.requestor.clone()),
            data: operation.data.clone().or_else(|| api.data.clone()),
            consent: operation.consent.clone().or_else(|| api.consent.clone()),
            rate_limits: operation.rate_limits.clone().or_else(|| api.rate_limits.clone()),
            enforcement: operation.enforcement.or(api.enforcement),
            contract: operation.contract.clone().or_else(|| api.contract.clone()),
        }
    }

    /// Every client application the document names, for the data layer to check.
    pub fn client_apps(&self) -> BTreeSet<ClientAppId> {
        let mut apps = BTreeSet::new();
        if let Some(requestor) = &self.requestor {
            apps.extend(requestor.client_apps.iter().copied());
        }
        if let Some(data) = &self.data {
            apps.extend(data.grants.iter().map(|grant| grant.client_app));
        }
        apps.extend(self.rate_limits.iter().flatten().filter_map(|limit| limit.client_app));
        apps
    }

    /// Every data class the document names.
    pub fn data_classes(&self) -> BTreeSet<String> {
        self.data.iter().flat_map(|data| data.grants.iter()).flat_map(|grant| grant.classes.iter().cloned()).collect()
    }

    /// Every problem, sorted by path. `path_parameters` are the operation's (`None` for an
    /// API-wide document, whose operations differ).
    pub fn problems(&self, path_parameters: Option<&[String]>) -> Vec<SettingProblem> {
        let mut found = Problems::default();
        if let Some(authentication) = &self.authentication {
            check_authentication(authentication, &mut found);
        }
        if let Some(network) = &self.network {
            check_network(network, &mut found);
        }
        if let Some(requestor) = &self.requestor {
            check_requestor(requestor, path_parameters, &mut found);
        }
        if let Some(data) = &self.data {
            check_data(data, &mut found);
        }
        if let Some(consent) = &self.consent {
            check_consent(consent, path_parameters, &mut found);
        }
        if let Some(limits) = &self.rate_limits {
            check_rate_limits(limits, &mut found);
        }
        if let Some(limit) = self.contract.as_ref().and_then(|contract| contract.max_body_bytes)
            && !(1..=MAX_CONTRACT_BODY_BYTES).contains(&limit)
        {
            found.add("contract.max_body_bytes", format!("between 1 and {MAX_CONTRACT_BODY_BYTES} bytes"));
        }
        let mut problems = found.0;
        problems.sort();
        problems
    }
}

#[derive(Default)]
struct Problems(Vec<SettingProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(SettingProblem { path: path.into(), message: message.into() });
    }

    /// Each entry non-empty, free of control characters, not too long; the list bounded.
    fn texts(&mut self, path: &str, texts: &[String]) {
        if texts.len() > MAX_ITEMS {
            self.add(path, format!("at most {MAX_ITEMS} entries"));
        }
        for (index, text) in texts.iter().enumerate() {
            self.text(&format!("{path}[{index}]"), text);
        }
    }

    fn text(&mut self, path: &str, text: &str) {
        if text.trim().is_empty() {
            self.add(path, "must not be empty");
        } else if text.chars().count() > MAX_TEXT_CHARS {
            self.add(path, format!("longer than {MAX_TEXT_CHARS} characters"));
        } else if text.chars().any(char::is_control) && !text.contains("-----BEGIN") {
            self.add(path, "must not contain control characters");
        }
    }

    fn https_url(&mut self, path: &str, text: &str) {
        match url::Url::parse(text) {
            Err(_) => self.add(path, "is not a URL"),
            Ok(url) if url.scheme() == "https" => {}
            // Plain HTTP only for a provider on this machine (development, tests).
            Ok(url) if url.scheme() == "http" && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => {}
            Ok(_) => self.add(path, "must be an https:// URL (http:// only for localhost)"),
        }
    }
}

fn check_authentication(authentication: &Authentication, found: &mut Problems) {
    match authentication.mode {
        AuthMode::Public if !authentication.methods.is_empty() => {
            found.add("authentication.methods", "a public API takes no credentials: remove the methods or require authentication")
        }
        AuthMode::Required if authentication.methods.is_empty() => {
            found.add("authentication.methods", "say how callers authenticate: at least one method")
        }
        _ => {}
    }
    if authentication.methods.len() > MAX_ITEMS {
        found.add("authentication.methods", format!("at most {MAX_ITEMS} methods"));
    }
    for (index, method) in authentication.methods.iter().enumerate() {
        let at = |field: &str| format!("authentication.methods[{index}].{field}");
        match method {
            AuthMethod::Mtls { allowed_identities } => found.texts(&at("allowed_identities"), allowed_identities),
            AuthMethod::Jwt { issuer, audiences, jwks_url, static_keys, algorithms, required_scopes } => {
                found.https_url(&at("issuer"), issuer);
                if audiences.is_empty() {
                    found.add(at("audiences"), "at least one audience: a token minted for another API must not open this one");
                }
                found.texts(&at("audiences"), audiences);
                match (jwks_url, static_keys.is_empty()) {
                    (None, true) => found.add(at("jwks_url"), "give a JWKS URL or static keys to verify signatures with"),
                    (Some(url), _) => found.https_url(&at("jwks_url"), url),
                    (None, false) => found.texts(&at("static_keys"), static_keys),
                }
                if algorithms.is_empty() {
                    found.add(at("algorithms"), format!("list the allowed algorithms: {}", JWT_ALGORITHMS.join(", ")));
                }
                for (position, algorithm) in algorithms.iter().enumerate() {
                    if !JWT_ALGORITHMS.contains(&algorithm.as_str()) {
                        found.add(
                            format!("{}[{position}]", at("algorithms")),
                            format!("{algorithm:?} is not allowed; use one of {}", JWT_ALGORITHMS.join(", ")),
                        );
                    }
                }
                found.texts(&at("required_scopes"), required_scopes);
            }
            AuthMethod::ApiKey { header } => {
                if http_header_name(header).is_none() {
                    found.add(at("header"), "is not a valid HTTP header name");
                }
            }
            AuthMethod::Hmac { algorithm, key_id, signed_components, clock_skew_seconds } => {
                if !HMAC_ALGORITHMS.contains(&algorithm.as_str()) {
                    found.add(at("algorithm"), format!("use one of {}", HMAC_ALGORITHMS.join(", ")));
                }
                found.text(&at("key_id"), key_id);
                if signed_components.is_empty() {
                    found.add(at("signed_components"), "a signature must cover at least @method and @path");
                }
                found.texts(&at("signed_components"), signed_components);
                if *clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
                    found.add(at("clock_skew_seconds"), format!("at most {MAX_CLOCK_SKEW_SECONDS} seconds"));
                }
            }
        }
    }
}

/// Lower-case `name` when it is a valid header name (RFC 9110 token).
fn http_header_name(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    valid.then(|| name.to_ascii_lowercase())
}

fn check_network(network: &NetworkRule, found: &mut Problems) {
    if network.source_networks.is_empty() && network.service_identities.is_empty() {
        found.add("network", "give source networks, service identities, or both (or remove the rule)");
    }
    if network.source_networks.len() > MAX_ITEMS {
        found.add("network.source_networks", format!("at most {MAX_ITEMS} entries"));
    }
    for (index, cidr) in network.source_networks.iter().enumerate() {
        if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
            found.add(format!("network.source_networks[{index}]"), format!("{cidr:?} is not an address or CIDR network like 10.0.0.0/8"));
        }
    }
    found.texts("network.service_identities", &network.service_identities);
}

fn check_requestor(requestor: &RequestorRule, path_parameters: Option<&[String]>, found: &mut Problems) {
    found.texts("requestor.roles", &requestor.roles);
    found.texts("requestor.scopes", &requestor.scopes);
    for (index, rule) in requestor.claims.iter().enumerate() {
        found.text(&format!("requestor.claims[{index}].claim"), &rule.claim);
        if rule.values.is_empty() {
            found.add(format!("requestor.claims[{index}].values"), "at least one accepted value");
        }
        found.texts(&format!("requestor.claims[{index}].values"), &rule.values);
    }
    if let Some(owner) = &requestor.object_owner {
        found.text("requestor.object_owner.claim", &owner.claim);
        found.text("requestor.object_owner.parameter", &owner.parameter);
        if let Some(parameters) = path_parameters
            && !parameters.contains(&owner.parameter)
        {
            found.add("requestor.object_owner.parameter", format!("the path has no parameter {:?}", owner.parameter));
        }
    }
    if requestor.max_risk.is_some_and(|risk| risk > 100) {
        found.add("requestor.max_risk", "a risk score is 0 to 100");
    }
}

fn check_data(data: &DataRule, found: &mut Problems) {
    let mut seen = BTreeSet::new();
    for (index, grant) in data.grants.iter().enumerate() {
        if !seen.insert(grant.client_app) {
            found.add(format!("data.grants[{index}].client_app"), "has another grant already: one grant per client application");
        }
        found.texts(&format!("data.grants[{index}].classes"), &grant.classes);
    }
}

fn check_consent(consent: &ConsentRule, path_parameters: Option<&[String]>, found: &mut Problems) {
    found.text("consent.purpose", &consent.purpose);
    found.texts("consent.scopes", &consent.scopes);
    found.text("consent.subject.name", &consent.subject.name);
    if consent.subject.location == SubjectLocation::Header && http_header_name(&consent.subject.name).is_none() {
        found.add("consent.subject.name", "is not a valid HTTP header name");
    }
    if consent.subject.location == SubjectLocation::Path
        && let Some(parameters) = path_parameters
        && !parameters.contains(&consent.subject.name)
    {
        found.add("consent.subject.name", format!("the path has no parameter {:?}", consent.subject.name));
    }
}

fn check_rate_limits(limits: &[RateLimit], found: &mut Problems) {
    if limits.len() > MAX_ITEMS {
        found.add("rate_limits", format!("at most {MAX_ITEMS} limits"));
    }
    let mut seen = BTreeSet::new();
    for (index, limit) in limits.iter().enumerate() {
        if limit.requests == 0 {
            found.add(format!("rate_limits[{index}].requests"), "at least 1 (to refuse every call, use an L2 rule)");
        }
        if limit.window_seconds == 0 || limit.window_seconds > MAX_WINDOW_SECONDS {
            found.add(format!("rate_limits[{index}].window_seconds"), format!("between 1 and {MAX_WINDOW_SECONDS}"));
        }
        if !seen.insert(limit.client_app) {
            found.add(format!("rate_limits[{index}].client_app"), "has another limit already: one per client application");
        }
    }
}

/// The parameter names in a path template: `["owner", "id"]` for `/o/{owner}/p/{id}`.
pub fn path_parameters(path: &str) -> Vec<String> {
    path.split('{').skip(1).filter_map(|rest| rest.split_once('}')).map(|(name, _)| name.to_owned()).collect()
}

/// A field's data-class corrections made by the API's owner, applied over what was
/// found in the schemas; they survive re-imports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassEdits {
    /// Classes the schemas do not show (a free-text `note` that holds health data).
    #[serde(default)]
    pub added: Vec<crate::DataClassHit>,
    /// Detected classes that are wrong (a `name` that is a product's, not a person's).
    #[serde(default)]
    pub removed: Vec<crate::DataClassHit>,
}

impl ClassEdits {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// `detected` with the removals taken out and the additions put in, without twins.
    pub fn apply(&self, detected: &[crate::DataClassHit]) -> Vec<crate::DataClassHit> {
        let mut hits: Vec<crate::DataClassHit> = detected.iter().filter(|hit| !self.removed.contains(hit)).cloned().collect();
        for hit in &self.added {
            if !hits.contains(hit) {
                hits.push(hit.clone());
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(value: serde_json::Value) -> Protection {
        serde_json::from_value(value).expect("a valid document")
    }

    fn paths(problems: Vec<SettingProblem>) -> Vec<String> {
        problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn a_complete_document_is_accepted_and_round_trips() {
        let document = json!({
            "authentication": {"mode": "required", "methods": [
                {"type": "jwt", "issuer": "https://login.example.com", "audiences": ["orders"],
                 "jwks_url": "https://login.example.com/jwks", "algorithms": ["RS256"], "required_scopes": ["orders:read"]},
                {"type": "api_key", "header": "X-Api-Key"},
                {"type": "mtls", "allowed_identities": ["spiffe://acme/billing"]},
                {"type": "hmac", "algorithm": "hmac-sha256", "key_id": "keyid", "signed_components": ["@method", "@path"], "clock_skew_seconds": 30},
            ]},
            "network": {"source_networks": ["10.0.0.0/8", "192.168.1.7"], "service_identities": []},
            "requestor": {"roles": ["support"], "object_owner": {"parameter": "id", "claim": "sub"}, "max_risk": 70},
            "data": {"grants": [{"client_app": 3, "classes": ["email"]}], "otherwise": "mask"},
            "consent": {"purpose": "marketing", "subject": {"in": "claim", "name": "sub"}},
            "rate_limits": [{"requests": 100, "window_seconds": 60}, {"client_app": 3, "requests": 10, "window_seconds": 1}],
        });
        let protection = parsed(document.clone());
        assert_eq!(protection.problems(Some(&["id".to_owned()])), vec![]);
        let again: Protection = serde_json::from_str(&serde_json::to_string(&protection).unwrap()).unwrap();
        assert_eq!(again, protection);
        assert_eq!(protection.client_apps().into_iter().collect::<Vec<_>>(), vec![ClientAppId(3)]);
        assert_eq!(protection.data_classes().into_iter().collect::<Vec<_>>(), vec!["email".to_owned()]);
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let protection = parsed(json!({
            "authentication": {"mode": "required", "methods": [
                {"type": "jwt", "issuer": "http://login.example.com", "audiences": [], "algorithms": ["none", "HS256"]},
            ]},
            "network": {"source_networks": ["10.0.0.0/33"]},
            "requestor": {"object_owner": {"parameter": "petId", "claim": "sub"}, "max_risk": 101},
            "data": {"grants": [{"client_app": 1, "classes": []}, {"client_app": 1, "classes": [""]}], "otherwise": "block"},
            "consent": {"purpose": " ", "subject": {"in": "header", "name": "bad header"}},
            "rate_limits": [{"requests": 0, "window_seconds": 0}],
        }));
        assert_eq!(
            paths(protection.problems(Some(&["id".to_owned()]))),
            [
                "authentication.methods[0].algorithms[0]",
                "authentication.methods[0].algorithms[1]",
                "authentication.methods[0].audiences",
                "authentication.methods[0].issuer",
                "authentication.methods[0].jwks_url",
                "consent.purpose",
                "consent.subject.name",
                "data.grants[1].classes[0]",
                "data.grants[1].client_app",
                "network.source_networks[0]",
                "rate_limits[0].requests",
                "rate_limits[0].window_seconds",
                "requestor.max_risk",
                "requestor.object_owner.parameter",
            ]
        );
    }

    #[test]
    fn public_means_no_methods_and_required_means_some() {
        let public = parsed(json!({"authentication": {"mode": "public", "methods": [{"type": "api_key"}]}}));
        assert_eq!(paths(public.problems(None)), ["authentication.methods"]);
        let required = parsed(json!({"authentication": {"mode": "required"}}));
        assert_eq!(paths(required.problems(None)), ["authentication.methods"]);
        let localhost = parsed(json!({"authentication": {"mode": "required", "methods": [
            {"type": "jwt", "issuer": "http://localhost:9000", "audiences": ["a"], "static_keys": ["-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"], "algorithms": ["ES256"]}]}}));
        assert_eq!(localhost.problems(None), vec![], "a provider on this machine may speak plain HTTP");
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(serde_json::from_value::<Protection>(json!({"authentcation": {}})).is_err());
        assert!(serde_json::from_value::<Protection>(json!({"authentication": {"mode": "required", "methods": [{"type": "kerberos"}]}})).is_err());
        assert!(serde_json::from_value::<Protection>(json!({"data": {"grants": [], "otherwise": "shred"}})).is_err());
    }

    #[test]
    fn an_override_replaces_whole_parts_and_inherits_the_rest() {
        let api = parsed(json!({"authentication": {"mode": "public"}, "rate_limits": [{"requests": 5, "window_seconds": 1}]}));
        let operation = parsed(json!({"authentication": {"mode": "required", "methods": [{"type": "api_key"}]}}));
        let effective = Protection::effective(&api, &operation);
        assert_eq!(effective.authentication, operation.authentication);
        assert_eq!(effective.rate_limits, api.rate_limits);
        let monitored = parsed(json!({"enforcement": "monitor"}));
        assert_eq!(Protection::effective(&monitored, &operation).enforcement, Some(Enforcement::Monitor));
        let enforced = parsed(json!({"enforcement": "enforce"}));
        assert_eq!(Protection::effective(&monitored, &enforced).enforcement, Some(Enforcement::Enforce), "an operation may opt out");
    }

    #[test]
    fn path_parameters_are_read_from_templates() {
        assert_eq!(path_parameters("/owners/{owner}/pets/{id}"), ["owner", "id"]);
        assert!(path_parameters("/pets").is_empty());
    }

    #[test]
    fn class_edits_apply_over_detection() {
        let hit = |class: &str, field: &str| crate::DataClassHit { class: class.into(), direction: "response".into(), field: field.into() };
        let edits = ClassEdits { added: vec![hit("health", "200.body.note")], removed: vec![hit("person_name", "200.body.name")] };
        let applied = edits.apply(&[hit("person_name", "200.body.name"), hit("email", "200.body.email")]);
        assert_eq!(applied, vec![hit("email", "200.body.email"), hit("health", "200.body.note")]);
    }
}
