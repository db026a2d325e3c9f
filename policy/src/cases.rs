//! Policy tests: files of cases, each a request and the decision expected of it, run
//! against a compiled policy — by `palisade policy test DIR` on the files alone, and on the
//! Policies page against the draft or any revision. APIs and client applications are
//! named, so the same cases run on the files and on the control plane.

use crate::evaluate::{VerifiedCredential, evaluate};
use crate::model::{CompiledPolicy, Diagnostic};
use crate::{Prepared, Request};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most cases one file may hold.
pub const MAX_CASES: usize = 10_000;

/// A file of cases (`tests/*.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The API's name, and its environment when the name alone is ambiguous.
    pub api: String,
    #[serde(default)]
    pub environment: Option<String>,
    pub request: CaseRequest,
    pub expect: Expectation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub method: String,
    pub path: String,
    /// Default `127.0.0.1`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub credential: Option<CaseCredential>,
    #[serde(default)]
    pub risk: Option<u8>,
    #[serde(default)]
    pub device: bool,
    #[serde(default)]
    pub consent: Option<bool>,
}

/// A verified credential, with the client application by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseCredential {
    /// `jwt`, `api_key`, `mtls` or `hmac`.
    pub method: String,
    #[serde(default)]
    pub client_app: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub identity: Option<String>,
}

/// What the decision must be; fields left out are not checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub allow: bool,
    #[serde(default)]
    pub status: Option<u16>,
    /// The deciding step's code, e.g. `missing_scope`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The matched route's template.
    #[serde(default)]
    pub route: Option<String>,
    /// Data classes the response must be masked for.
    #[serde(default)]
    pub mask: Option<Vec<String>>,
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// What was decided, and on failure what differs.
    pub detail: String,
}

/// Reads a case file; problems at their places.
pub fn parse(text: &str, file: &str) -> Result<CaseFile, Vec<Diagnostic>> {
    let cases: CaseFile = serde_json::from_str(text).map_err(|error| vec![Diagnostic { path: file.to_owned(), message: error.to_string() }])?;
    if cases.cases.len() > MAX_CASES {
        return Err(vec![Diagnostic { path: format!("{file}: cases"), message: format!("at most {MAX_CASES} cases in a file") }]);
    }
    Ok(cases)
}

/// Runs every case against `policy`. A case that names an unknown API or client
/// application fails with that reason rather than stopping the run.
pub fn run(policy: &CompiledPolicy, cases: &CaseFile) -> Vec<CaseResult> {
    let prepared = Prepared::new(policy.clone());
    cases.cases.iter().map(|case| run_case(&prepared, policy, case)).collect()
}

fn run_case(prepared: &Prepared, policy: &CompiledPolicy, case: &Case) -> CaseResult {
    let fail = |detail: String| CaseResult { name: case.name.clone(), passed: false, detail };
    let request = match request(policy, case) {
        Ok(request) => request,
        Err(detail) => return fail(detail),
    };
    let decision = evaluate(prepared, &request);
    let decided = match &decision.reason {
        None => format!("allowed via {}", decision.matched.as_ref().map_or("no route", |m| m.template.as_str())),
        Some(step) => format!("denied {} ({}: {})", decision.status, step.code, step.detail),
    };
    let expect = &case.expect;
    let mut differences = Vec::new();
    if decision.allow != expect.allow {
        differences.push(format!("expected {}", if expect.allow { "allow" } else { "deny" }));
    }
    if let Some(status) = expect.status.filter(|status| *status != decision.status) {
        differences.push(format!("expected status {status}"));
    }
    if let Some(reason) = &expect.reason {
        let code = decision.reason.as_ref().map(|step| step.code.as_str());
        if code != Some(reason.as_str()) {
            differences.push(format!("expected reason {reason}"));
        }
    }
    if let Some(route) = &expect.route
        && decision.matched.as_ref().map(|m| &m.template) != Some(route)
    {
        differences.push(format!("expected route {route}"));
    }
    if let Some(mask) = &expect.mask {
        let (mut expected, mut masked) = (mask.clone(), decision.obligations.mask.clone());
        expected.sort();
        masked.sort();
        if expected != masked {
            differences.push(format!("expected masking of [{}], got [{}]", expected.join(", "), masked.join(", ")));
        }
    }
    if differences.is_empty() {
        CaseResult { name: case.name.clone(), passed: true, detail: decided }
    } else {
        fail(format!("{decided}; {}", differences.join("; ")))
    }
}

fn request(policy: &CompiledPolicy, case: &Case) -> Result<Request, String> {
    let apis: Vec<i64> = policy
        .apis
        .iter()
        .filter(|(_, api)| api.name == case.api && case.environment.as_ref().is_none_or(|env| *env == api.environment))
        .map(|(id, _)| *id)
        .collect();
    let api = match apis.as_slice() {
        [id] => *id,
        [] => return Err(format!("no API named {:?}{}", case.api, case.environment.as_ref().map(|e| format!(" in {e}")).unwrap_or_default())),
        _ => return Err(format!("{:?} is in several environments: give \"environment\"", case.api)),
    };
    let source = case.request.source.as_deref().unwrap_or("127.0.0.1");
    let source = source.parse().map_err(|_| format!("source {source:?} is not an IP address"))?;
    let credential = match &case.request.credential {
        None => None,
        Some(given) => {
            let client_app = match &given.client_app {
                None => None,
                Some(name) => Some(
                    policy
                        .client_apps
                        .iter()
                        .find(|(_, known)| *known == name)
                        .map(|(id, _)| *id)
                        .ok_or_else(|| format!("no client application named {name:?}"))?,
                ),
            };
            Some(VerifiedCredential {
                method: given.method.clone(),
                client_app,
                subject: given.subject.clone(),
                issuer: given.issuer.clone(),
                audiences: given.audiences.clone(),
                scopes: given.scopes.clone(),
                roles: given.roles.clone(),
                claims: given.claims.clone(),
                identity: given.identity.clone(),
            })
        }
    };
    Ok(Request {
        api,
        method: case.request.method.to_ascii_uppercase(),
        path: case.request.path.clone(),
        source,
        credential: credential.map(std::sync::Arc::new),
        risk: case.request.risk,
        device: case.request.device,
        consent: case.request.consent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{self, ApiFile, OperationFile, PolicyDocument};
    use serde_json::json;

    fn policy() -> CompiledPolicy {
        let document = PolicyDocument {
            client_apps: vec!["Portal".into()],
            apis: vec![ApiFile {
                name: "Pets".into(),
                environment: "production".into(),
                protection: json!({
                    "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
                    "data": {"grants": [{"client_app": "Portal", "classes": ["email"]}], "otherwise": "mask"},
                }),
                operations: [("GET /pets/{id}".to_owned(), OperationFile { response_classes: vec!["email".into(), "phone".into()], ..Default::default() })]
                    .into_iter()
                    .collect(),
            }],
            ..Default::default()
        };
        crate::compile(&files::snapshot(&document).unwrap()).unwrap()
    }

    #[test]
    fn cases_pass_fail_and_say_why() {
        let cases = parse(
            &json!({"cases": [
                {"name": "portal reads a pet, phone masked", "api": "Pets",
                 "request": {"method": "get", "path": "/pets/1", "credential": {"method": "api_key", "client_app": "Portal"}},
                 "expect": {"allow": true, "route": "/pets/{id}", "mask": ["phone"]}},
                {"name": "anonymous is refused", "api": "Pets", "environment": "production",
                 "request": {"method": "GET", "path": "/pets/1"},
                 "expect": {"allow": false, "status": 401, "reason": "unauthenticated"}},
                {"name": "wrong expectation", "api": "Pets",
                 "request": {"method": "GET", "path": "/pets/1"}, "expect": {"allow": true}},
                {"name": "unknown app", "api": "Pets",
                 "request": {"method": "GET", "path": "/pets/1", "credential": {"method": "api_key", "client_app": "Nobody"}}, "expect": {"allow": true}},
                {"name": "unknown api", "api": "Cats", "request": {"method": "GET", "path": "/"}, "expect": {"allow": false}},
            ]})
            .to_string(),
            "tests/pets.json",
        )
        .unwrap();
        let results = run(&policy(), &cases);
        let passed: Vec<bool> = results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, [true, true, false, false, false], "{results:#?}");
        assert!(results[2].detail.contains("expected allow"), "{}", results[2].detail);
        assert!(results[3].detail.contains("no client application named \"Nobody\""));
        assert!(results[4].detail.contains("no API named \"Cats\""));
        assert!(parse("{\"cases\": [{\"name\": 1}]}", "tests/bad.json").unwrap_err()[0].path == "tests/bad.json");
    }
}
