//! Posture findings: checks of an API's registered configuration against the OWASP API
//! Security Top 10 (2023), each with a severity, why it matters, and where to fix it, and
//! a score per API and for the estate. Pure functions over what the inventory holds.
//!
//! Checks read what applies to each operation: its override of the API's protection,
//! else the API's; where Palisade holds no authentication setting, the document's own
//! security requirement says whether an operation is public.

use crate::protection::{AuthMethod, AuthMode, Protection};
use crate::{ApiDetail, Finding, Lifecycle, Operation, Severity};
use serde_json::Value;

/// Query parameters that bound how many items a list returns.
const PAGING_PARAMETERS: [&str; 9] = ["limit", "per_page", "perpage", "page_size", "pagesize", "size", "top", "max", "count"];
/// Words that mark an administrative operation.
const ADMIN_WORDS: [&str; 5] = ["admin", "internal", "manage", "superuser", "root"];

fn name(operation: &Operation) -> String {
    format!("{} {}", operation.method, operation.path)
}

/// Public when the requirement is an empty list or has an empty alternative; `null`
/// (nothing declared) counts as public too, since nothing asks for credentials.
fn is_public(security: &Value) -> bool {
    match security.as_array() {
        None => true,
        Some(alternatives) => {
            alternatives.is_empty() || alternatives.iter().any(|a| a.as_object().is_some_and(|o| o.is_empty()))
        }
    }
}

fn returns_list(operation: &Operation) -> bool {
    let Some(responses) = operation.responses.as_object() else { return false };
    responses.iter().filter(|(status, _)| status.starts_with('2')).any(|(_, response)| {
        response
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|content| content.values())
            .filter_map(|media| media.get("schema"))
            .any(|schema| schema.get("type").and_then(Value::as_str) == Some("array") && schema.get("maxItems").is_none())
    })
}

fn has_paging(operation: &Operation) -> bool {
    operation.parameters.as_array().into_iter().flatten().any(|parameter| {
        parameter.get("in").and_then(Value::as_str) == Some("query")
            && parameter
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| PAGING_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
    })
}

fn looks_administrative(operation: &Operation) -> bool {
    let text = format!(
        "{} {} {}",
        operation.path,
        operation.operation_id.as_deref().unwrap_or_default(),
        operation.summary
    )
    .to_ascii_lowercase();
    ADMIN_WORDS.iter().any(|word| text.contains(word))
}

/// Whether anyone may call without credentials: Palisade's setting when there is one,
/// else the document's requirement.
fn open_to_anyone(protection: &Protection, operation: &Operation) -> bool {
    match &protection.authentication {
        Some(authentication) => authentication.mode == AuthMode::Public,
        None => is_public(&operation.security),
    }
}

fn accepts_api_keys(protection: &Protection) -> bool {
    protection
        .authentication
        .as_ref()
        .is_some_and(|a| a.mode == AuthMode::Required && a.methods.iter().any(|m| matches!(m, AuthMethod::ApiKey { .. })))
}

/// Every finding for one API. `team_members` is how many people the owning team has;
/// `keys_due` the client applications that may call it with API keys past their
/// rotation period, and how many such keys each holds.
pub fn check_api(api: &ApiDetail, team_members: i64, keys_due: &[(String, usize)], now: i64) -> Vec<Finding> {
    let id = api.summary.id;
    let mut findings = Vec::new();
    let mut add = |rule: &'static str, owasp: &'static str, severity: Severity, operation: Option<String>, title: String, fix: &str| {
        findings.push(Finding { rule: rule.to_owned(), owasp: owasp.to_owned(), severity, operation, title, fix: format!("/apis/{id}#{fix}") });
    };
    let effective: Vec<Protection> =
        api.operations.iter().map(|operation| Protection::effective(&api.protection, &operation.protection)).collect();
    let limited = effective.iter().filter(|p| p.rate_limits.as_ref().is_some_and(|l| !l.is_empty())).count();
    let undeclared = effective.iter().filter(|p| p.authentication.is_none()).count();
    for (operation, protection) in api.operations.iter().zip(&effective) {
        let returned: Vec<&str> = operation
            .data_classes
            .iter()
            .filter(|hit| hit.direction == "response")
            .map(|hit| hit.class.as_str())
            .collect();
        let mut classes = returned.clone();
        classes.sort();
        classes.dedup();
        if open_to_anyone(protection, operation) && !classes.is_empty() {
            add(
                "sensitive-data-without-authentication",
                "API2:2023",
                Severity::High,
                Some(name(operation)),
                format!("returns {} to callers that need no credentials", classes.join(", ")),
                "authentication",
            );
        }
        if !classes.is_empty() && protection.data.is_none() {
            add(
                "data-without-data-rule",
                "API3:2023",
                Severity::Medium,
                Some(name(operation)),
                format!("returns {} but no data (L3) rule says which client applications may receive it", classes.join(", ")),
                "authorization",
            );
        }
        let requestor = protection.requestor.as_ref();
        if operation.path.contains('{') && requestor.is_none_or(|rule| rule.object_owner.is_none()) {
            add(
                "object-id-without-object-rule",
                "API1:2023",
                Severity::High,
                Some(name(operation)),
                "takes an object id in its path but no object-level (L2) rule checks the caller may use that object".into(),
                "authorization",
            );
        }
        if looks_administrative(operation) && requestor.is_none_or(|rule| rule.roles.is_empty()) {
            add(
                "admin-operation-without-role-rule",
                "API5:2023",
                Severity::High,
                Some(name(operation)),
                "looks administrative but no role rule restricts who may call it".into(),
                "authorization",
            );
        }
        if operation.method == "GET" && returns_list(operation) && !has_paging(operation) {
            add(
                "unbounded-list",
                "API4:2023",
                Severity::Medium,
                Some(name(operation)),
                "returns a list with no paging parameter and no maxItems, so one call can return everything".into(),
                "operations",
            );
        }
        if limited > 0 && protection.rate_limits.as_ref().is_none_or(Vec::is_empty) {
            add(
                "no-rate-limit",
                "API4:2023",
                Severity::Medium,
                Some(name(operation)),
                "has no rate limit while other operations of the API do".into(),
                "rate-limits",
            );
        }
        if operation.deprecated && api.summary.lifecycle == Lifecycle::Active {
            add(
                "deprecated-operation-in-active-api",
                "API9:2023",
                Severity::Low,
                Some(name(operation)),
                "is marked deprecated in the document but the API has no sunset date".into(),
                "lifecycle",
            );
        }
    }
    if undeclared > 0 {
        add(
            "authentication-undeclared",
            "API2:2023",
            Severity::Medium,
            None,
            format!(
                "declares no authentication in Palisade for {undeclared} of {} operations, so agents cannot enforce one",
                api.operations.len()
            ),
            "authentication",
        );
    }
    if effective.iter().any(accepts_api_keys) {
        for (app, count) in keys_due {
            add(
                "api-key-past-rotation",
                "API2:2023",
                Severity::Medium,
                None,
                format!("accepts API keys, and client application {app} holds {count} past its rotation period"),
                "authentication",
            );
        }
    }
    if !api.operations.is_empty() && limited == 0 {
        add(
            "no-rate-limit",
            "API4:2023",
            Severity::Medium,
            None,
            "no rate limit is set for any caller or operation".into(),
            "rate-limits",
        );
    }
    match (api.summary.lifecycle, api.summary.sunset_at) {
        (Lifecycle::Deprecated, Some(sunset)) if sunset < now => add(
            "sunset-api-still-served",
            "API9:2023",
            Severity::High,
            None,
            "its sunset date has passed but it is not retired".into(),
            "lifecycle",
        ),
        (Lifecycle::Deprecated, None) => add(
            "deprecated-without-sunset",
            "API9:2023",
            Severity::Medium,
            None,
            "is deprecated with no sunset date".into(),
            "lifecycle",
        ),
        _ => {}
    }
    if team_members == 0 {
        add(
            "no-owner",
            "API9:2023",
            Severity::Medium,
            None,
            format!("its team {} has no members: nobody answers for it", api.summary.team_name),
            "owner",
        );
    }
    findings
}

fn weight(severity: Severity) -> f64 {
    match severity {
        Severity::High => 25.0,
        Severity::Medium => 10.0,
        Severity::Low => 3.0,
    }
}

/// 0 to 100. Each rule that fires costs its severity's weight (high 25, medium 10, low 3);
/// a rule about operations costs half that plus half in proportion to the share of
/// operations it hits, so one slip in a large API does not weigh like a systematic gap.
pub fn score(findings: &[Finding], operation_count: usize) -> u8 {
    let mut rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
    rules.sort();
    rules.dedup();
    let penalty: f64 = rules
        .into_iter()
        .map(|rule| {
            let hits: Vec<&Finding> = findings.iter().filter(|f| f.rule == rule).collect();
            let full = weight(hits[0].severity);
            if hits[0].operation.is_some() && operation_count > 0 {
                full * (0.5 + 0.5 * (hits.len() as f64 / operation_count as f64).min(1.0))
            } else {
                full
            }
        })
        .sum();
    (100.0 - penalty).clamp(0.0, 100.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiId, ApiSummary, DataClassHit, TeamId};
    use serde_json::json;

    fn operation(method: &str, path: &str, security: Value, responses: Value) -> Operation {
        Operation {
            id: 1,
            method: method.into(),
            path: path.into(),
            operation_id: None,
            summary: String::new(),
            parameters: json!([]),
            request_body: Value::Null,
            responses,
            security,
            deprecated: false,
            data_classes: Vec::new(),
            class_edits: Default::default(),
            protection: Protection::default(),
        }
    }

    fn api(operations: Vec<Operation>, lifecycle: Lifecycle, sunset_at: Option<i64>) -> ApiDetail {
        ApiDetail {
            summary: ApiSummary {
                id: ApiId(7),
                name: "Pets".into(),
                team_id: TeamId(1),
                team_name: "Payments".into(),
                environment: "production".into(),
                version: "1".into(),
                lifecycle,
                sunset_at,
                operation_count: operations.len() as i64,
                updated_at: 0,
                data_classes: Vec::new(),
            },
            description: String::new(),
            base_urls: Vec::new(),
            tags: Vec::new(),
            contacts: Vec::new(),
            openapi_version: "3.0.3".into(),
            spec_digest: String::new(),
            created_at: 0,
            protection: Protection::default(),
            operations,
        }
    }

    fn rules(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(|f| format!("{} {}", f.rule, f.operation.clone().unwrap_or_default())).collect()
    }

    #[test]
    fn each_rule_fires_on_its_case_and_not_otherwise() {
        let list = json!({"200": {"content": {"application/json": {"schema": {"type": "array", "items": {}}}}}});
        let mut public_email = operation("GET", "/users", Value::Null, list.clone());
        public_email.data_classes = vec![DataClassHit { class: "email".into(), direction: "response".into(), field: "200.body[].email".into() }];
        let mut paged = operation("GET", "/pets", json!([{"bearer": []}]), list.clone());
        paged.parameters = json!([{"name": "limit", "in": "query"}]);
        let mut admin = operation("POST", "/admin/reset", json!([{"bearer": []}]), json!({}));
        admin.deprecated = true;
        let by_id = operation("GET", "/pets/{id}", json!([{"bearer": []}]), json!({}));
        let findings = check_api(&api(vec![public_email, paged, admin, by_id], Lifecycle::Active, None), 2, &[], 1_000);
        assert_eq!(
            rules(&findings),
            [
                "sensitive-data-without-authentication GET /users",
                "data-without-data-rule GET /users",
                "unbounded-list GET /users",
                "admin-operation-without-role-rule POST /admin/reset",
                "deprecated-operation-in-active-api POST /admin/reset",
                "object-id-without-object-rule GET /pets/{id}",
                "authentication-undeclared ",
                "no-rate-limit ",
            ]
        );
        assert!(findings.iter().all(|f| f.fix.starts_with("/apis/7#")));
        assert_eq!(findings[0].owasp, "API2:2023");
    }

    #[test]
    fn lifecycle_and_ownership_are_checked() {
        let ops = vec![operation("GET", "/a", json!([{"k": []}]), json!({}))];
        let sunset = check_api(&api(ops.clone(), Lifecycle::Deprecated, Some(500)), 1, &[], 1_000);
        assert!(rules(&sunset).contains(&"sunset-api-still-served ".to_owned()));
        let pending = check_api(&api(ops.clone(), Lifecycle::Deprecated, Some(5_000)), 1, &[], 1_000);
        assert!(!rules(&pending).iter().any(|r| r.starts_with("sunset")));
        let nobody = check_api(&api(ops, Lifecycle::Active, None), 0, &[], 1_000);
        assert!(rules(&nobody).contains(&"no-owner ".to_owned()));
    }

    #[test]
    fn declared_protection_clears_the_findings_it_answers() {
        let mut users = operation("GET", "/users/{id}", Value::Null, json!({}));
        users.data_classes = vec![DataClassHit { class: "email".into(), direction: "response".into(), field: "200.body.email".into() }];
        let admin = operation("POST", "/admin/reset", Value::Null, json!({}));
        let mut api = api(vec![users, admin], Lifecycle::Active, None);
        let before = rules(&check_api(&api, 1, &[], 0));
        assert!(before.contains(&"sensitive-data-without-authentication GET /users/{id}".to_owned()), "{before:?}");
        api.protection = serde_json::from_value(json!({
            "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
            "requestor": {"object_owner": {"parameter": "id", "claim": "sub"}},
            "data": {"grants": [{"client_app": 1, "classes": ["email"]}], "otherwise": "mask"},
        }))
        .unwrap();
        // The admin operation overrides L2 with a role rule and sets a rate limit of its own.
        api.operations[1].protection =
            serde_json::from_value(json!({"requestor": {"roles": ["admin"]}, "rate_limits": [{"requests": 5, "window_seconds": 60}]})).unwrap();
        let due = [("Billing".to_owned(), 2)];
        assert_eq!(
            rules(&check_api(&api, 1, &due, 0)),
            ["no-rate-limit GET /users/{id}", "api-key-past-rotation "],
            "only the operation without a limit and the stale keys are left"
        );
        assert!(check_api(&api, 1, &due, 0)[1].title.contains("Billing holds 2"));
    }

    #[test]
    fn scores_weigh_severity_and_spread() {
        assert_eq!(score(&[], 10), 100);
        let finding = |rule: &str, severity, operation: Option<&str>| Finding {
            rule: rule.into(),
            owasp: String::new(),
            severity,
            operation: operation.map(Into::into),
            title: String::new(),
            fix: String::new(),
        };
        let one_of_ten = [finding("object-id-without-object-rule", Severity::High, Some("GET /a/{id}"))];
        assert_eq!(score(&one_of_ten, 10), 86, "25 × (0.5 + 0.5 × 1/10)");
        let everywhere: Vec<Finding> = (0..10).map(|i| finding("object-id-without-object-rule", Severity::High, Some(&format!("GET /{i}/{{id}}")))).collect();
        assert_eq!(score(&everywhere, 10), 75);
        let api_level = [finding("no-rate-limit", Severity::Medium, None), finding("no-owner", Severity::Medium, None)];
        assert_eq!(score(&api_level, 10), 80);
        let terrible: Vec<Finding> = (0..8).map(|i| finding(&format!("rule-{i}"), Severity::High, None)).collect();
        assert_eq!(score(&terrible, 10), 0, "never below zero");
    }
}
