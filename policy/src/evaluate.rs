//! The evaluator: one request against a prepared policy, level by level — route, L1
//! network, authentication, L2 requestor, L4 consent — then the obligations the agent
//! carries out (rate-limit keys, L3 data classes to mask, block or log). Pure: the agent
//! verifies credentials and gathers facts first, and hands them in.
//!
//! Fail closed: a path that is not canonical, a route no API declares, an operation with
//! no authentication declared, and a consent rule without a consent fact all deny.

use crate::routes::{Prepared, canonical_segments};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use store::protection::{AuthMethod, AuthMode, DataAction, Enforcement, Protection};

/// `Option<Arc<T>>` as `Option<T>` on the wire (serde's `rc` feature would do it for every
/// crate in the build).
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(value: &Option<Arc<T>>, serializer: S) -> Result<S::Ok, S::Error> {
        value.as_deref().serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<T>>, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map(Arc::new))
    }
}

/// A credential the agent has already verified (signature, expiry, key digest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifiedCredential {
    /// `jwt`, `api_key`, `mtls` or `hmac`.
    pub method: String,
    pub client_app: Option<i64>,
    /// The JWT `sub`, or the certificate's identity.
    pub subject: Option<String>,
    /// For JWTs: who issued it and for whom.
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Every other claim, for claim rules and object-owner checks.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// For mTLS: the service identity (SPIFFE id or subject).
    pub identity: Option<String>,
}

/// What the evaluator is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The API the agent fronts.
    pub api: i64,
    pub method: String,
    /// The request target's path (a query string is ignored).
    pub path: String,
    pub source: IpAddr,
    /// Shared with the agent's cache of verified tokens, not copied per request.
    #[serde(default, with = "shared")]
    pub credential: Option<Arc<VerifiedCredential>>,
    /// The caller's risk score (0–100) from analytics, when known.
    pub risk: Option<u8>,
    /// Whether the caller presented a registered device.
    #[serde(default)]
    pub device: bool,
    /// Whether the data subject's consent covers this call, when a consent record was found.
    pub consent: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Route,
    Network,
    Authentication,
    Requestor,
    Consent,
    RateLimit,
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Deny,
    /// No rule at this level.
    Skip,
}

/// One level's verdict, for the decision explorer and decision logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub level: Level,
    pub outcome: Outcome,
    /// A stable code: `undeclared_route`, `source_not_allowed`, `missing_scope`, …
    pub code: String,
    pub detail: String,
}

/// A rate-limit counter the agent must take one from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitKey {
    pub key: String,
    pub requests: u32,
    pub window_seconds: u32,
}

/// What the agent must do besides allowing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    pub rate_limits: Vec<RateLimitKey>,
    /// Data classes to mask in the response.
    pub mask: Vec<String>,
    /// Data classes whose presence blocks the response.
    pub block: Vec<String>,
    /// Data classes let through but recorded.
    pub log: Vec<String>,
    /// Where the classes to mask or block sit in the responses (empty when neither).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_fields: Vec<crate::inspect::ResponseField>,
}

/// The operation a request matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedOperation {
    pub api_id: i64,
    pub api_name: String,
    pub operation_id: i64,
    pub template: String,
    /// The path parameters' values (decoded), for the request contract: given only where
    /// the route has one, so other requests copy nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    /// The HTTP status a denial is answered with (200 when allowed).
    pub status: u16,
    /// The step that decided a denial; `None` when allowed.
    pub reason: Option<Step>,
    /// Every level in order, up to the deciding one.
    pub trace: Vec<Step>,
    pub obligations: Obligations,
    pub matched: Option<MatchedOperation>,
    /// The rules are in monitor mode: a denial is to be recorded and let through, and
    /// obligations on the response recorded but not carried out.
    #[serde(default, skip_serializing_if = "is_false")]
    pub monitor: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn step(level: Level, outcome: Outcome, code: &str, detail: impl Into<String>) -> Step {
    Step { level, outcome, code: code.to_owned(), detail: detail.into() }
}

struct Trace {
    /// Whether passed and skipped levels are written down ([`evaluate`]) or only the
    /// deciding denial ([`decide`], the agent's hot path: no text is made for a request
    /// that is let through).
    explain: bool,
    steps: Vec<Step>,
    matched: Option<MatchedOperation>,
    monitor: bool,
}

impl Trace {
    /// `detail` is made only when the trace is kept.
    fn pass<D: Into<String>>(&mut self, level: Level, code: &str, detail: impl FnOnce() -> D) {
        if self.explain {
            self.steps.push(step(level, Outcome::Pass, code, detail()));
        }
    }

    fn skip(&mut self, level: Level) {
        if self.explain {
            self.steps.push(step(level, Outcome::Skip, "no_rule", "no rule at this level"));
        }
    }

    fn deny(mut self, status: u16, level: Level, code: &str, detail: impl Into<String>) -> Decision {
        let reason = step(level, Outcome::Deny, code, detail);
        self.steps.push(reason.clone());
        Decision { allow: false, status, reason: Some(reason), trace: self.steps, obligations: Obligations::default(), matched: self.matched, monitor: self.monitor }
    }
}

/// A claim as the strings it holds (a string, or an array of strings).
fn claim_values(value: Option<&serde_json::Value>) -> Vec<&str> {
    match value {
        Some(serde_json::Value::String(text)) => vec![text.as_str()],
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(serde_json::Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn method_accepts(method: &AuthMethod, credential: &VerifiedCredential) -> bool {
    if method.kind() != credential.method {
        return false;
    }
    match method {
        AuthMethod::Jwt { issuer, audiences, required_scopes, .. } => {
            credential.issuer.as_deref() == Some(issuer.as_str())
                && credential.audiences.iter().any(|a| audiences.contains(a))
                && required_scopes.iter().all(|scope| credential.scopes.contains(scope))
        }
        AuthMethod::Mtls { allowed_identities } => {
            allowed_identities.is_empty()
                || credential.identity.as_ref().is_some_and(|identity| allowed_identities.contains(identity))
        }
        AuthMethod::ApiKey { .. } | AuthMethod::Hmac { .. } => true,
    }
}

/// Decides one request and explains it: every level up to the deciding one is in `trace`.
pub fn evaluate(prepared: &Prepared, request: &Request) -> Decision {
    evaluate_with(prepared, request, true)
}

/// Decides one request as [`evaluate`] does, keeping only the deciding denial in `trace`:
/// what an agent needs for each request, without the text of the levels that passed.
pub fn decide(prepared: &Prepared, request: &Request) -> Decision {
    evaluate_with(prepared, request, false)
}

fn evaluate_with(prepared: &Prepared, request: &Request, explain: bool) -> Decision {
    // Until a route matches, the API's mode applies; then the route's (its override or the API's).
    let api_monitor = prepared.policy.apis.get(&request.api).is_some_and(|api| api.monitor);
    let mut trace = Trace { explain, steps: Vec::new(), matched: None, monitor: api_monitor };
    let segments = match canonical_segments(&request.path) {
        Ok(segments) => segments,
        Err(error) => return trace.deny(400, Level::Route, "non_canonical_path", error.to_string()),
    };
    let Some(found) = prepared.find(request.api, &request.method, &segments) else {
        return trace.deny(404, Level::Route, "undeclared_route", format!("the API does not declare {} {}", request.method, request.path));
    };
    let route = found.route;
    trace.matched = Some(MatchedOperation {
        api_id: route.api_id,
        api_name: route.api_name.clone(),
        operation_id: route.operation_id,
        template: route.template.clone(),
        parameters: match route.contract {
            Some(_) => found.parameters.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect(),
            None => Vec::new(),
        },
    });
    trace.pass(Level::Route, "matched", || format!("{} {} in {}", request.method, route.template, route.api_name));
    let rules: &Protection = &route.rules;
    trace.monitor = rules.enforcement == Some(Enforcement::Monitor);
    let credential = request.credential.as_deref();

    // L1: where the call comes from.
    match &rules.network {
        None => trace.skip(Level::Network),
        Some(network) => {
            let from_allowed = network.source_networks.is_empty()
                || prepared.source_networks(route.operation_id).iter().any(|net| net.contains(&request.source));
            if !from_allowed {
                return trace.deny(403, Level::Network, "source_not_allowed", format!("{} is not in an allowed network", request.source));
            }
            let identity = credential.and_then(|c| c.identity.as_ref());
            if !network.service_identities.is_empty() && !identity.is_some_and(|id| network.service_identities.contains(id)) {
                return trace.deny(403, Level::Network, "identity_not_allowed", "the caller's service identity may not reach this API");
            }
            trace.pass(Level::Network, "allowed", || "source and identity allowed");
        }
    }

    // Authentication.
    match &rules.authentication {
        None => return trace.deny(401, Level::Authentication, "authentication_undeclared", "no authentication is declared for this operation"),
        Some(authentication) if authentication.mode == AuthMode::Public => trace.pass(Level::Authentication, "public", || "open to anyone"),
        Some(authentication) => {
            let Some(presented) = credential else {
                return trace.deny(401, Level::Authentication, "unauthenticated", "credentials are required");
            };
            if !authentication.methods.iter().any(|method| method_accepts(method, presented)) {
                return trace.deny(401, Level::Authentication, "credential_not_accepted", format!("a {} credential does not satisfy this operation", presented.method));
            }
            trace.pass(Level::Authentication, "authenticated", || format!("by {}", presented.method));
        }
    }

    // L2: who is calling.
    match &rules.requestor {
        None => trace.skip(Level::Requestor),
        Some(rule) => {
            let roles = credential.map(|c| c.roles.as_slice()).unwrap_or_default();
            if !rule.roles.is_empty() && !rule.roles.iter().any(|role| roles.contains(role)) {
                return trace.deny(403, Level::Requestor, "missing_role", format!("one of the roles {} is required", rule.roles.join(", ")));
            }
            let scopes = credential.map(|c| c.scopes.as_slice()).unwrap_or_default();
            if let Some(missing) = rule.scopes.iter().find(|scope| !scopes.contains(scope)) {
                return trace.deny(403, Level::Requestor, "missing_scope", format!("the scope {missing} is required"));
            }
            for claim in &rule.claims {
                let values = claim_values(credential.and_then(|c| c.claims.get(&claim.claim)));
                if !values.iter().any(|value| claim.values.iter().any(|allowed| allowed == value)) {
                    return trace.deny(403, Level::Requestor, "claim_mismatch", format!("the claim {} does not have an accepted value", claim.claim));
                }
            }
            let app = credential.and_then(|c| c.client_app);
            if !rule.client_apps.is_empty() && !app.is_some_and(|app| rule.client_apps.iter().any(|allowed| allowed.0 == app)) {
                return trace.deny(403, Level::Requestor, "client_app_not_allowed", "this client application may not call this operation");
            }
            if let Some(owner) = &rule.object_owner {
                let object = found.parameters.iter().find(|(name, _)| *name == owner.parameter).map(|(_, value)| value.as_str());
                let owned = claim_values(credential.and_then(|c| c.claims.get(&owner.claim)));
                let subject = (owner.claim == "sub").then(|| credential.and_then(|c| c.subject.as_deref())).flatten();
                if !object.is_some_and(|object| owned.contains(&object) || subject == Some(object)) {
                    return trace.deny(403, Level::Requestor, "not_object_owner", format!("{{{}}} is not the caller's", owner.parameter));
                }
            }
            // An unknown risk passes: scores arrive with risk analytics.
            if let (Some(limit), Some(risk)) = (rule.max_risk, request.risk)
                && risk > limit
            {
                return trace.deny(403, Level::Requestor, "risk_too_high", format!("risk {risk} is above {limit}"));
            }
            if rule.require_device && !request.device {
                return trace.deny(403, Level::Requestor, "device_required", "a registered device is required");
            }
            trace.pass(Level::Requestor, "allowed", || "every requestor rule holds");
        }
    }

    // L4: the data subject's consent.
    match &rules.consent {
        None => trace.skip(Level::Consent),
        Some(consent) if request.consent == Some(true) => trace.pass(Level::Consent, "consented", || format!("consent for {}", consent.purpose)),
        Some(consent) => {
            return trace.deny(403, Level::Consent, "consent_required", format!("no consent record covers the purpose {}", consent.purpose));
        }
    }

    let mut obligations = Obligations::default();
    // Rate limits: one counter per limit that applies, keyed by who calls.
    // Made only when a limit applies.
    let caller = || {
        credential
            .and_then(|c| c.client_app.map(|app| format!("app:{app}")).or_else(|| c.subject.as_ref().map(|s| format!("sub:{s}"))))
            .unwrap_or_else(|| format!("ip:{}", request.source))
    };
    for limit in rules.rate_limits.iter().flatten() {
        let applies = match limit.client_app {
            None => true,
            Some(app) => credential.and_then(|c| c.client_app) == Some(app.0),
        };
        if applies {
            let scope = limit.client_app.map_or_else(|| "each".to_owned(), |app| format!("app{app}"));
            obligations.rate_limits.push(RateLimitKey {
                key: format!("{}:{}:{scope}:{}", route.api_id, route.operation_id, caller()),
                requests: limit.requests,
                window_seconds: limit.window_seconds,
            });
        }
    }
    if obligations.rate_limits.is_empty() {
        trace.skip(Level::RateLimit);
    } else {
        trace.pass(Level::RateLimit, "counted", || format!("{} counter(s)", obligations.rate_limits.len()));
    }

    // L3: classes the caller may not receive.
    match &rules.data {
        None => trace.skip(Level::Data),
        Some(rule) => {
            let app = credential.and_then(|c| c.client_app);
            let granted: Vec<&String> =
                rule.grants.iter().filter(|grant| Some(grant.client_app.0) == app).flat_map(|grant| grant.classes.iter()).collect();
            let withheld: Vec<String> = route.response_classes.iter().filter(|class| !granted.contains(class)).cloned().collect();
            trace.pass(Level::Data, "inspect", || {
                if withheld.is_empty() { "every returned class is granted".to_owned() } else { format!("{}: {}", rule.otherwise.as_str(), withheld.join(", ")) }
            });
            if rule.otherwise != DataAction::LogOnly {
                obligations.response_fields =
                    route.response_fields.iter().filter(|field| withheld.contains(&field.class)).cloned().collect();
            }
            match rule.otherwise {
                DataAction::Mask => obligations.mask = withheld,
                DataAction::Block => obligations.block = withheld,
                DataAction::LogOnly => obligations.log = withheld,
            }
        }
    }
    Decision { allow: true, status: 200, reason: None, trace: trace.steps, obligations, matched: trace.matched, monitor: trace.monitor }
}
