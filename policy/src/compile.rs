//! The compiler: a snapshot of the inventory and its settings in, the compiled policy out.
//! Deterministic (inputs are ordered by id, output maps are sorted), and every problem is
//! collected with the path of the setting that causes it, sorted, never first-error-only.

use crate::model::{CompiledApi, CompiledPolicy, Diagnostic, Route, Segment, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use store::protection::{Enforcement, Protection, path_parameters};

const METHODS: [&str; 8] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"];

/// Splits a path template into segments; `Err` says why it cannot be matched.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let Some(rest) = template.strip_prefix('/') else { return Err("a path template starts with /".into()) };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|segment| {
            if segment.is_empty() {
                return Err("empty segment (// or a trailing /)".to_owned());
            }
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.is_empty() && !name.contains(['{', '}']) => Ok(Segment::Parameter(name.to_owned())),
                _ if segment.contains(['{', '}']) => {
                    Err(format!("segment {segment:?} mixes a parameter with text; only whole-segment parameters are matched"))
                }
                _ => Ok(Segment::Literal(segment.to_owned())),
            }
        })
        .collect()
}

/// The shape two templates conflict on: literals as they are, parameters as one mark.
fn shape(segments: &[Segment]) -> Vec<Option<&str>> {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => Some(text.as_str()),
            Segment::Parameter(_) => None,
        })
        .collect()
}

/// Compiles `snapshot`, or returns every problem found.
pub fn compile(snapshot: &Snapshot) -> Result<CompiledPolicy, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut add = |path: String, message: String| diagnostics.push(Diagnostic { path, message });
    let known: BTreeSet<&str> = snapshot.known_classes.iter().map(String::as_str).collect();
    let mut compiled: BTreeMap<i64, CompiledApi> = BTreeMap::new();
    let mut apis: Vec<_> = snapshot.apis.iter().collect();
    apis.sort_by_key(|api| api.id);
    for api in apis {
        let at = format!("apis[{}]", api.id);
        let mut routes: BTreeMap<String, Vec<Route>> = BTreeMap::new();
        for problem in api.protection.problems(None) {
            add(format!("{at}.{}", problem.path), problem.message);
        }
        let mut operations: Vec<_> = api.operations.iter().collect();
        operations.sort_by_key(|operation| operation.id);
        for operation in operations {
            let at = format!("{at}.operations[{}]", operation.id);
            for problem in operation.protection.problems(Some(&path_parameters(&operation.path))) {
                add(format!("{at}.{}", problem.path), problem.message);
            }
            if !METHODS.contains(&operation.method.as_str()) {
                add(format!("{at}.method"), format!("{:?} is not an HTTP method Palisade routes", operation.method));
                continue;
            }
            let segments = match parse_template(&operation.path) {
                Ok(segments) => segments,
                Err(message) => {
                    add(format!("{at}.path"), message);
                    continue;
                }
            };
            let rules = Protection::effective(&api.protection, &operation.protection);
            for app in rules.client_apps() {
                if !snapshot.client_apps.contains_key(&app.0) {
                    add(format!("{at}.client_app"), format!("no client application has id {app}"));
                }
            }
            for class in rules.data_classes() {
                if !known.contains(class.as_str()) {
                    add(format!("{at}.data.grants"), format!("{class:?} is not a data class"));
                }
            }
            let contract = match (&rules.contract, &operation.openapi) {
                (Some(rule), Some(schemas)) => {
                    match crate::contract::build(rule, &schemas.parameters, &schemas.request_body, &api.components, &api.openapi_version) {
                        Ok(contract) => {
                            #[cfg(feature = "schemas")]
                            if let Some(problem) = crate::contract::first_problem(&contract) {
                                add(format!("{at}.contract"), problem);
                            }
                            Some(contract)
                        }
                        Err(problems) => {
                            for (path, message) in problems {
                                add(format!("{at}.contract.{path}"), message);
                            }
                            None
                        }
                    }
                }
                _ => None,
            };
            routes.entry(operation.method.clone()).or_default().push(Route {
                api_id: api.id,
                api_name: api.name.clone(),
                operation_id: operation.id,
                template: operation.path.clone(),
                segments,
                rules,
                response_classes: operation.response_classes.clone(),
                response_fields: operation.response_fields.clone(),
                contract,
            });
        }
        check_conflicts(&mut routes, &mut add);
        let monitor = api.protection.enforcement == Some(Enforcement::Monitor);
        compiled.insert(api.id, CompiledApi { name: api.name.clone(), environment: api.environment.clone(), routes, monitor });
    }
    for (digest, key) in &snapshot.credentials.api_keys {
        let at = format!("credentials.api_keys[{}]", key.credential_id);
        if !crate::credentials::is_digest(digest) {
            add(at.clone(), "is not a SHA-256 digest in lower-case hex".into());
        }
        if !snapshot.client_apps.contains_key(&key.client_app) {
            add(at, format!("no client application has id {}", key.client_app));
        }
    }
    if diagnostics.is_empty() {
        Ok(CompiledPolicy { apis: compiled, client_apps: snapshot.client_apps.clone(), credentials: snapshot.credentials.clone() })
    } else {
        diagnostics.sort();
        diagnostics.dedup();
        Err(diagnostics)
    }
}

/// Orders one API's routes (most specific first) and reports two operations of the same
/// shape, which no request could tell apart.
fn check_conflicts(routes: &mut BTreeMap<String, Vec<Route>>, add: &mut impl FnMut(String, String)) {
    for (method, list) in routes {
        // Literal segments before parameters, position by position, so the most specific
        // route is listed (and so matched) first; ids break ties.
        // Routes of the same shape end up side by side, where the check below finds them.
        list.sort_by(|a, b| {
            let mask = |route: &Route| route.segments.iter().map(|s| matches!(s, Segment::Parameter(_))).collect::<Vec<_>>();
            (mask(a), shape(&a.segments), &a.template, a.operation_id).cmp(&(mask(b), shape(&b.segments), &b.template, b.operation_id))
        });
        for pair in list.windows(2) {
            if shape(&pair[0].segments) == shape(&pair[1].segments) {
                let (first, second) = (&pair[0], &pair[1]);
                for (route, other) in [(first, second), (second, first)] {
                    add(
                        format!("apis[{}].operations[{}].path", route.api_id, route.operation_id),
                        format!("{method} {} cannot be told apart from {method} {} of the same API", route.template, other.template),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiInput, OperationInput};
    use serde_json::json;

    fn operation(id: i64, method: &str, path: &str, protection: serde_json::Value) -> OperationInput {
        OperationInput {
            id,
            method: method.into(),
            path: path.into(),
            protection: serde_json::from_value(protection).unwrap(),
            response_classes: Vec::new(),
            response_fields: Vec::new(),
            ..Default::default()
        }
    }

    fn api(id: i64, protection: serde_json::Value, operations: Vec<OperationInput>) -> ApiInput {
        ApiInput {
            id,
            name: format!("api {id}"),
            environment: "production".into(),
            protection: serde_json::from_value(protection).unwrap(),
            operations,
            ..Default::default()
        }
    }

    #[test]
    fn templates_are_split_into_literals_and_parameters() {
        assert_eq!(parse_template("/").unwrap(), vec![]);
        assert_eq!(
            parse_template("/pets/{id}").unwrap(),
            vec![Segment::Literal("pets".into()), Segment::Parameter("id".into())]
        );
        assert!(parse_template("pets").is_err());
        assert!(parse_template("/pets//x").is_err());
        assert!(parse_template("/files/{name}.json").is_err());
    }

    #[test]
    fn every_problem_is_collected_sorted_with_its_path() {
        let snapshot = Snapshot {
            apis: vec![
                api(2, json!({"authentication": {"mode": "required"}}), vec![
                    operation(20, "GET", "/pets/{id}", json!({"requestor": {"object_owner": {"parameter": "petId", "claim": "sub"}}})),
                    operation(21, "FETCH", "/pets", json!({})),
                ]),
                api(1, json!({"data": {"grants": [{"client_app": 9, "classes": ["shoe_size"]}], "otherwise": "mask"}}), vec![
                    operation(10, "GET", "/pets/{petId}", json!({})),
                    operation(11, "GET", "/pets/{id}", json!({})),
                    operation(12, "GET", "/pets/mine", json!({})),
                ]),
            ],
            client_apps: BTreeMap::new(),
            known_classes: vec!["email".into()],
            ..Default::default()
        };
        let paths: Vec<String> = compile(&snapshot).unwrap_err().into_iter().map(|d| d.path).collect();
        assert_eq!(
            paths,
            [
                "apis[1].operations[10].client_app",
                "apis[1].operations[10].data.grants",
                "apis[1].operations[10].path",
                "apis[1].operations[11].client_app",
                "apis[1].operations[11].data.grants",
                "apis[1].operations[11].path",
                "apis[1].operations[12].client_app",
                "apis[1].operations[12].data.grants",
                "apis[2].authentication.methods",
                "apis[2].operations[20].requestor.object_owner.parameter",
                "apis[2].operations[21].method",
            ]
        );
    }

    #[test]
    fn the_same_snapshot_compiles_to_the_same_bytes() {
        let operations = |order: &[i64]| {
            order.iter().map(|id| operation(*id, "GET", &format!("/things/{id}/{{x}}"), json!({}))).collect::<Vec<_>>()
        };
        let one = Snapshot { apis: vec![api(1, json!({}), operations(&[1, 2, 3]))], ..Snapshot::default() };
        let other = Snapshot { apis: vec![api(1, json!({}), operations(&[3, 1, 2]))], ..Snapshot::default() };
        let bytes = |snapshot: &Snapshot| serde_jcs::to_vec(&compile(snapshot).unwrap()).unwrap();
        assert_eq!(bytes(&one), bytes(&other));
    }

    #[test]
    fn a_contract_is_made_where_the_rules_ask_for_one() {
        use crate::model::OperationSchemas;
        let described = |id: i64, schema: serde_json::Value| OperationInput {
            openapi: Some(OperationSchemas { parameters: json!([{"name": "q", "in": "query", "schema": schema}]), request_body: serde_json::Value::Null }),
            ..operation(id, "GET", &format!("/things{id}"), json!({}))
        };
        let snapshot = |protection: serde_json::Value, operations: Vec<OperationInput>| Snapshot {
            apis: vec![api(1, protection, operations)],
            ..Snapshot::default()
        };
        let public = json!({"authentication": {"mode": "public"}});
        let with_contract = json!({"authentication": {"mode": "public"}, "contract": {}});

        let compiled = compile(&snapshot(with_contract.clone(), vec![described(1, json!({"type": "string"})), operation(2, "GET", "/bare", json!({}))])).unwrap();
        let routes = &compiled.apis[&1].routes["GET"];
        let contract = routes.iter().find(|r| r.operation_id == 1).unwrap().contract.as_ref().expect("a contract");
        assert_eq!(contract.parameters[0].name, "q");
        assert!(routes.iter().find(|r| r.operation_id == 2).unwrap().contract.is_none(), "no description (policy files): none");
        let compiled = compile(&snapshot(public, vec![described(1, json!({"type": "string"}))])).unwrap();
        assert!(compiled.apis[&1].routes["GET"][0].contract.is_none(), "not asked for");

        let problems = compile(&snapshot(with_contract, vec![described(1, json!({"$ref": "#/components/schemas/Gone"}))])).unwrap_err();
        assert_eq!(problems[0].path, "apis[1].operations[1].contract.parameters[0].schema");
    }

    #[test]
    fn literal_routes_come_before_parameters() {
        let snapshot = Snapshot {
            apis: vec![api(1, json!({}), vec![
                operation(1, "GET", "/pets/{id}", json!({})),
                operation(2, "GET", "/pets/mine", json!({})),
                operation(3, "GET", "/{kind}/mine", json!({})),
            ])],
            ..Snapshot::default()
        };
        let compiled = compile(&snapshot).unwrap();
        let order: Vec<&str> = compiled.apis[&1].routes["GET"].iter().map(|r| r.template.as_str()).collect();
        assert_eq!(order, ["/pets/mine", "/pets/{id}", "/{kind}/mine"]);
    }
}
