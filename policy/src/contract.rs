//! The request contract: what an operation's OpenAPI description says a request must look
//! like (path, query and header parameters, the request body), compiled into JSON Schemas
//! that stand alone (every `#/components/schemas/…` they use is carried with them), so
//! agents check requests without the document. With the `schemas` feature, [`Checker`]
//! holds the compiled validators and checks one request.
//!
//! Values in paths, queries and headers arrive as text: a value passes when its text, or
//! the number, boolean or list it spells, satisfies the schema. Formats (`email`,
//! `date-time`, …) are not checked: OpenAPI documents use many that JSON Schema does not
//! know, and a contract must not refuse what the upstream accepts for a name it misreads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use store::protection::{ContractRule, DEFAULT_CONTRACT_BODY_BYTES};

/// `$ref` chains and nesting deeper than this are not followed (a document that deep is
/// a loop or an attack).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestContract {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterContract>,
    /// Query parameters the operation does not declare are refused.
    pub reject_unknown_query: bool,
    pub max_body_bytes: u32,
    /// `None`: the operation takes no body, and a request sending one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyContract>,
    pub dialect: Dialect,
}

/// The JSON Schema dialect the schemas are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAPI 3.0: a subset of draft 4 (`nullable` is rewritten into the type).
    Draft4,
    /// OpenAPI 3.1: JSON Schema 2020-12.
    Draft2020,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Path,
    Query,
    Header,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParameterContract {
    /// Lower case for headers.
    pub name: String,
    #[serde(rename = "in")]
    pub location: Location,
    pub required: bool,
    /// `None`: any value (the document gives none, or one this checker cannot read, such
    /// as an object serialised into a query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BodyContract {
    pub required: bool,
    /// The media types declared (`application/json`, `multipart/form-data`, `*/*`), lower case.
    pub media_types: Vec<String>,
    /// The schema of the JSON media type, when one is declared with a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
}

/// Headers OpenAPI says are not described as parameters; never required or checked.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// Builds the contract of one operation from its resolved `parameters` and
/// `request_body` (as the inventory stores them), the API's `components` and its OpenAPI
/// version. `Err` lists what cannot be made into a contract, by JSON pointer.
pub fn build(
    rule: &ContractRule,
    parameters: &Value,
    request_body: &Value,
    components: &Value,
    openapi_version: &str,
) -> Result<RequestContract, Vec<(String, String)>> {
    let dialect = if openapi_version.starts_with("3.1") { Dialect::Draft2020 } else { Dialect::Draft4 };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut contract_parameters = Vec::new();
    for (index, parameter) in parameters.as_array().into_iter().flatten().enumerate() {
        let at = format!("parameters[{index}]");
        let location = match parameter.get("in").and_then(Value::as_str) {
            Some("path") => Location::Path,
            Some("query") => Location::Query,
            Some("header") => Location::Header,
            // Cookies are the upstream's business; nothing else is a parameter location.
            Some("cookie") => continue,
            other => {
                problems.push((format!("{at}.in"), format!("{other:?} is not a parameter location")));
                continue;
            }
        };
        let Some(name) = parameter.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) else {
            problems.push((format!("{at}.name"), "a parameter needs a name".into()));
            continue;
        };
        let name = if location == Location::Header { name.to_ascii_lowercase() } else { name.to_owned() };
        if location == Location::Header && IGNORED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if !seen.insert((location, name.clone())) {
            continue;
        }
        let schema = match parameter.get("schema") {
            Some(schema) if !readable_as_text(schema, components) => None,
            Some(schema) => Some(standalone(schema, components, dialect).map_err(|message| (format!("{at}.schema"), message))),
            None => None,
        };
        let schema = match schema.transpose() {
            Ok(schema) => schema,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let required = location == Location::Path || parameter.get("required").and_then(Value::as_bool).unwrap_or(false);
        contract_parameters.push(ParameterContract { name, location, required, schema });
    }
    contract_parameters.sort_by(|a, b| (a.location, &a.name).cmp(&(b.location, &b.name)));
    let body = match request_body {
        Value::Null => None,
        body => match body_contract(body, components, dialect) {
            Ok(body) => Some(body),
            Err(message) => {
                problems.push(("request_body".into(), message));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RequestContract {
        parameters: contract_parameters,
        reject_unknown_query: rule.reject_unknown_query,
        max_body_bytes: rule.max_body_bytes.unwrap_or(DEFAULT_CONTRACT_BODY_BYTES),
        body,
        dialect,
    })
}

fn body_contract(body: &Value, components: &Value, dialect: Dialect) -> Result<BodyContract, String> {
    let required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
    let content = body.get("content").and_then(Value::as_object).ok_or("a request body declares its content by media type")?;
    let media_types: Vec<String> = content.keys().map(|media| media.trim().to_ascii_lowercase()).collect();
    // application/json first, then any other JSON type (`application/merge-patch+json`).
    let json = content
        .iter()
        .filter(|(media, _)| is_json(media))
        .min_by_key(|(media, _)| (!media.eq_ignore_ascii_case("application/json"), media.to_ascii_lowercase()));
    let json_schema = match json.and_then(|(_, media)| media.get("schema")) {
        Some(schema) => Some(standalone(schema, components, dialect)?),
        None => None,
    };
    Ok(BodyContract { required, media_types, json_schema })
}

/// `application/json`, `application/problem+json`, `text/json`.
pub fn is_json(media_type: &str) -> bool {
    let media = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// Whether a parameter's values, which arrive as text, can be checked against `schema`:
/// not when it describes an object (deepObject and form-exploded objects spread one value
/// over many names).
fn readable_as_text(schema: &Value, components: &Value) -> bool {
    let mut schema = schema;
    for _ in 0..MAX_DEPTH {
        match schema.get("$ref").and_then(Value::as_str).and_then(|target| target.strip_prefix("#/components")) {
            Some(pointer) => match components.pointer(pointer) {
                Some(target) => schema = target,
                None => return true,
            },
            None => break,
        }
    }
    let is_object = |kind: &Value| kind.as_str() == Some("object");
    match schema.get("type") {
        Some(Value::Array(kinds)) => !kinds.iter().any(is_object),
        Some(kind) => !is_object(kind),
        None => !schema.get("properties").is_some_and(Value::is_object),
    }
}

/// `schema` with every component it refers to carried along under `components`, so it
/// validates on its own; for OpenAPI 3.0, `nullable: true` rewritten into the type.
fn standalone(schema: &Value, components: &Value, dialect: Dialect) -> Result<Value, String> {
    let mut carried: Map<String, Value> = Map::new();
    let mut pending: Vec<String> = Vec::new();
    collect_refs(schema, &mut pending, 0)?;
    let mut seen = BTreeSet::new();
    while let Some(target) = pending.pop() {
        if !seen.insert(target.clone()) {
            continue;
        }
        let Some(pointer) = target.strip_prefix("#/components/") else {
            return Err(format!("the reference {target:?} points outside the document's components"));
        };
        let found = components.pointer(&format!("/{pointer}")).ok_or_else(|| format!("the reference {target:?} names nothing"))?;
        collect_refs(found, &mut pending, 0)?;
        insert_at(&mut carried, pointer, found.clone());
    }
    let mut root = if carried.is_empty() {
        schema.clone()
    } else {
        let mut root = Map::new();
        root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
        root.insert("components".into(), Value::Object(carried));
        Value::Object(root)
    };
    if dialect == Dialect::Draft4 {
        rewrite_nullable(&mut root, 0);
    }
    Ok(root)
}

fn collect_refs(value: &Value, found: &mut Vec<String>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("schemas nest deeper than {MAX_DEPTH} levels"));
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            for child in map.values() {
                collect_refs(child, found, depth + 1)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_refs(child, found, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Puts `value` at the JSON pointer `pointer` (without its leading `/`) inside `root`.
fn insert_at(root: &mut Map<String, Value>, pointer: &str, value: Value) {
    let unescape = |segment: &str| segment.replace("~1", "/").replace("~0", "~");
    let segments: Vec<String> = pointer.split('/').map(unescape).collect();
    let Some((last, parents)) = segments.split_last() else { return };
    let mut here = root;
    for segment in parents {
        let next = here.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(map) = next else { return };
        here = map;
    }
    here.insert(last.clone(), value);
}

/// OpenAPI 3.0's `nullable: true` beside `type: T` is JSON Schema's `type: [T, "null"]`.
fn rewrite_nullable(value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(kind)) => {
                        let kind = std::mem::take(kind);
                        map.insert("type".into(), Value::Array(vec![Value::String(kind), Value::String("null".into())]));
                    }
                    Some(Value::Array(kinds)) if !kinds.iter().any(|k| k == "null") => kinds.push(Value::String("null".into())),
                    _ => {}
                }
                if let Some(Value::Array(choices)) = map.get_mut("enum")
                    && !choices.contains(&Value::Null)
                {
                    choices.push(Value::Null);
                }
            }
            for child in map.values_mut() {
                rewrite_nullable(child, depth + 1);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|child| rewrite_nullable(child, depth + 1)),
        _ => {}
    }
}

/// Why a request does not meet its contract, as the caller is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub status: u16,
    /// `missing_parameter`, `invalid_parameter`, `unknown_parameter`, `unexpected_body`,
    /// `missing_body`, `unsupported_media_type`, `body_too_large`, `invalid_body`.
    pub code: &'static str,
    /// What is wrong, about the caller's own input only.
    pub detail: String,
}

#[cfg(feature = "schemas")]
pub use checker::Checker;

#[cfg(feature = "schemas")]
mod checker {
    use super::*;
    use jsonschema::{Draft, Validator};

    /// Errors named in one refusal, at most.
    const MAX_REPORTED: usize = 3;

    impl Violation {
        fn new(status: u16, code: &'static str, detail: impl Into<String>) -> Violation {
            Violation { status, code, detail: detail.into() }
        }
    }

    /// What a parameter's values may stand for besides their literal text, made one at a
    /// time as asked for: the number or boolean one value spells, then the list it spells
    /// (`ids=1,2,3`, form style without explode) or several values make, as strings,
    /// numbers or booleans.
    pub(super) fn readings<'v>(values: &'v [&'v str]) -> impl Iterator<Item = Value> + 'v {
        fn number(text: &str) -> Option<Value> {
            serde_json::from_str::<serde_json::Number>(text.trim()).ok().map(Value::Number)
        }
        fn boolean(text: &str) -> Option<Value> {
            match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            }
        }
        fn lists<'i>(items: impl Iterator<Item = &'i str> + Clone + 'i, strings: bool) -> impl Iterator<Item = Value> + 'i {
            let as_strings = {
                let items = items.clone();
                std::iter::once_with(move || Some(Value::Array(items.map(|item| Value::String(item.to_owned())).collect())))
            };
            let as_numbers = {
                let items = items.clone();
                std::iter::once_with(move || items.map(number).collect::<Option<Vec<_>>>().map(Value::Array))
            };
            let as_booleans = std::iter::once_with(move || items.map(boolean).collect::<Option<Vec<_>>>().map(Value::Array));
            as_strings.filter(move |_| strings).chain(as_numbers).chain(as_booleans).flatten()
        }
        let one = match values {
            [one] => Some(*one),
            _ => None,
        };
        let scalars = one.into_iter().flat_map(|one| std::iter::once_with(move || number(one)).chain(std::iter::once_with(move || boolean(one))).flatten());
        // One value: its list reading (strings too); several: the strings were the literal.
        let split = one.into_iter().flat_map(|one| lists(one.split(','), true));
        let several = (one.is_none()).then(|| lists(values.iter().copied(), false)).into_iter().flatten();
        scalars.chain(split).chain(several)
    }

    /// One operation's contract with its schemas compiled.
    pub struct Checker {
        contract: RequestContract,
        parameters: Vec<Option<Validator>>,
        body: Option<Validator>,
    }

    fn compile(schema: &Value, dialect: Dialect) -> Result<Validator, String> {
        let draft = match dialect {
            Dialect::Draft4 => Draft::Draft4,
            Dialect::Draft2020 => Draft::Draft202012,
        };
        jsonschema::options()
            .with_draft(draft)
            .should_validate_formats(false)
            .build(schema)
            .map_err(|error| format!("the schema does not compile: {error}"))
    }

    /// At most a few errors, each with where in the value it is.
    fn describe(validator: &Validator, value: &Value) -> String {
        let errors: Vec<String> = validator
            .iter_errors(value)
            .take(MAX_REPORTED)
            .map(|error| {
                let at = error.instance_path().to_string();
                let message = error.to_string();
                if at.is_empty() { message } else { format!("at {at}: {message}") }
            })
            .collect();
        errors.join("; ")
    }

    impl Checker {
        /// Compiles every schema; `Err` says which one does not compile.
        pub fn new(contract: &RequestContract) -> Result<Checker, String> {
            let parameters = contract
                .parameters
                .iter()
                .map(|parameter| {
                    parameter
                        .schema
                        .as_ref()
                        .map(|schema| compile(schema, contract.dialect))
                        .transpose()
                        .map_err(|message| format!("parameter {}: {message}", parameter.name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let body = match contract.body.as_ref().and_then(|body| body.json_schema.as_ref()) {
                Some(schema) => Some(compile(schema, contract.dialect).map_err(|message| format!("request body: {message}"))?),
                None => None,
            };
            Ok(Checker { contract: contract.clone(), parameters, body })
        }

        pub fn contract(&self) -> &RequestContract {
            &self.contract
        }

        /// Checks the path parameters (as matched), the raw query string and the headers
        /// (`header(name)` gives every value of a lower-case name).
        pub fn check_parameters<'a>(
            &self,
            path: &[(String, String)],
            query: Option<&str>,
            header: impl Fn(&str) -> Vec<&'a str>,
        ) -> Result<(), Violation> {
            // Decoded in place: most names and values need no copy.
            let query: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> =
                query.map(|query| url::form_urlencoded::parse(query.as_bytes()).collect()).unwrap_or_default();
            if self.contract.reject_unknown_query
                && let Some((unknown, _)) = query.iter().find(|(name, _)| {
                    !self.contract.parameters.iter().any(|p| p.location == Location::Query && p.name == *name)
                })
            {
                return Err(Violation::new(400, "unknown_parameter", format!("the query parameter {unknown:?} is not part of this operation")));
            }
            for (parameter, validator) in self.contract.parameters.iter().zip(&self.parameters) {
                let values: Vec<&str> = match parameter.location {
                    Location::Path => path.iter().filter(|(name, _)| *name == parameter.name).map(|(_, value)| value.as_str()).collect(),
                    Location::Query => query.iter().filter(|(name, _)| *name == parameter.name).map(|(_, value)| value.as_ref()).collect(),
                    Location::Header => header(&parameter.name),
                };
                let place = match parameter.location {
                    Location::Path => "path parameter",
                    Location::Query => "query parameter",
                    Location::Header => "header",
                };
                if values.is_empty() {
                    if parameter.required {
                        return Err(Violation::new(400, "missing_parameter", format!("the {place} {:?} is required", parameter.name)));
                    }
                    continue;
                }
                let Some(validator) = validator else { continue };
                // The text as it is first: most values are strings, and most pass; the
                // other readings are made only when it does not.
                let literal = match values.as_slice() {
                    [one] => Value::String((*one).to_owned()),
                    many => Value::Array(many.iter().map(|item| Value::String((*item).to_owned())).collect()),
                };
                if validator.is_valid(&literal) {
                    continue;
                }
                if !readings(&values).any(|reading| validator.is_valid(&reading)) {
                    let detail = describe(validator, &literal);
                    return Err(Violation::new(400, "invalid_parameter", format!("the {place} {:?}: {detail}", parameter.name)));
                }
            }
            Ok(())
        }

        /// Whether a request's body must be read to be checked.
        pub fn reads_body(&self) -> bool {
            self.contract.body.is_some()
        }

        /// Checks a request that announces a body (`Content-Length` above 0, or chunked)
        /// when the operation takes none; `None` when that is fine.
        pub fn refuse_unexpected_body(&self, announces_body: bool) -> Option<Violation> {
            (announces_body && self.contract.body.is_none())
                .then(|| Violation::new(400, "unexpected_body", "this operation takes no request body"))
        }

        /// Checks a body read whole (at most `max_body_bytes`) with its `Content-Type`.
        pub fn check_body(&self, content_type: Option<&str>, body: &[u8]) -> Result<(), Violation> {
            let Some(contract) = &self.contract.body else {
                return self.refuse_unexpected_body(!body.is_empty()).map_or(Ok(()), Err);
            };
            if body.is_empty() {
                return if contract.required { Err(Violation::new(400, "missing_body", "this operation requires a request body")) } else { Ok(()) };
            }
            let media = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            let declared = contract.media_types.iter().any(|declared| {
                declared == &media
                    || declared == "*/*"
                    || declared.strip_suffix("/*").is_some_and(|kind| media.split('/').next() == Some(kind))
            });
            if !declared {
                let accepted = contract.media_types.join(", ");
                return Err(Violation::new(415, "unsupported_media_type", format!("send the body as one of: {accepted}")));
            }
            let Some(validator) = (is_json(&media)).then_some(self.body.as_ref()).flatten() else { return Ok(()) };
            let value: Value = serde_json::from_slice(body).map_err(|error| Violation::new(400, "invalid_body", format!("the body is not JSON: {error}")))?;
            if validator.is_valid(&value) {
                Ok(())
            } else {
                Err(Violation::new(400, "invalid_body", describe(validator, &value)))
            }
        }
    }

    /// The first schema of `contract` that does not compile, for the compiler's diagnostics.
    pub fn first_problem(contract: &RequestContract) -> Option<String> {
        Checker::new(contract).err()
    }
}

#[cfg(feature = "schemas")]
pub use checker::first_problem;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule() -> ContractRule {
        ContractRule { reject_unknown_query: true, max_body_bytes: None }
    }

    fn components() -> Value {
        json!({"schemas": {
            "Pet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "maxLength": 20},
                "tag": {"type": "string", "nullable": true},
                "owner": {"$ref": "#/components/schemas/Owner"}}},
            "Owner": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "Unused": {"type": "string"},
            "Filter": {"type": "object", "properties": {"q": {"type": "string"}}}
        }})
    }

    fn contract() -> RequestContract {
        let parameters = json!([
            {"name": "id", "in": "path", "schema": {"type": "integer", "minimum": 1}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
            {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
            {"name": "filter", "in": "query", "schema": {"$ref": "#/components/schemas/Filter"}},
            {"name": "X-Request-Id", "in": "header", "required": true, "schema": {"type": "string", "format": "uuid"}},
            {"name": "Authorization", "in": "header", "required": true},
            {"name": "session", "in": "cookie", "required": true}
        ]);
        let body = json!({"required": true, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}},
            "application/x-www-form-urlencoded": {}}});
        build(&rule(), &parameters, &body, &components(), "3.0.3").unwrap()
    }

    #[test]
    fn a_contract_carries_only_the_components_it_uses() {
        let contract = contract();
        let names: Vec<(&str, Location)> = contract.parameters.iter().map(|p| (p.name.as_str(), p.location)).collect();
        assert_eq!(names, [("id", Location::Path), ("filter", Location::Query), ("limit", Location::Query), ("tags", Location::Query), ("x-request-id", Location::Header)]);
        assert_eq!(contract.parameters[1].schema, None, "an object in a query is not checked");
        let body = contract.body.as_ref().unwrap();
        let schema = body.json_schema.as_ref().unwrap();
        let carried: Vec<&String> = schema["components"]["schemas"].as_object().unwrap().keys().collect();
        assert_eq!(carried, ["Owner", "Pet"]);
        assert_eq!(schema["components"]["schemas"]["Pet"]["properties"]["tag"]["type"], json!(["string", "null"]));
        assert_eq!(body.media_types, ["application/json", "application/x-www-form-urlencoded"]);
        assert_eq!((contract.max_body_bytes, contract.dialect), (DEFAULT_CONTRACT_BODY_BYTES, Dialect::Draft4));
    }

    #[test]
    fn broken_references_are_reported_with_their_place() {
        let parameters = json!([{"name": "x", "in": "query", "schema": {"$ref": "#/components/schemas/Missing"}}, {"in": "query"}]);
        let body = json!({"content": {"application/json": {"schema": {"$ref": "https://example.com/pet.json"}}}});
        let problems = build(&rule(), &parameters, &body, &components(), "3.1.0").unwrap_err();
        let places: Vec<&str> = problems.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(places, ["parameters[0].schema", "parameters[1].name", "request_body"]);
    }

    #[cfg(feature = "schemas")]
    mod checking {
        use super::*;
        use crate::contract::checker::readings;

        #[test]
        fn text_values_stand_for_numbers_booleans_and_lists() {
            let all = |values: &[&str]| readings(values).collect::<Vec<_>>();
            assert_eq!(all(&["7"]), [json!(7), json!(["7"]), json!([7])]);
            assert_eq!(all(&["a", "b"]), Vec::<Value>::new(), "several strings are the literal reading");
            assert_eq!(all(&["1", "2"]), [json!([1, 2])]);
            assert!(all(&["true"]).contains(&json!(true)));
            assert_eq!(all(&["true", "false"]), [json!([true, false])]);
        }

        fn headers(values: &[&'static str]) -> impl Fn(&str) -> Vec<&'static str> {
            let values = values.to_vec();
            move |name| if name == "x-request-id" { values.clone() } else { Vec::new() }
        }

        fn path(id: &str) -> Vec<(String, String)> {
            vec![("id".into(), id.into())]
        }

        #[test]
        fn parameters_are_checked_by_place_and_unknown_ones_refused() {
            let checker = Checker::new(&contract()).unwrap();
            let check = |id: &str, query: Option<&str>, request_id: &[&'static str]| {
                checker.check_parameters(&path(id), query, headers(request_id)).map_err(|v| v.code)
            };
            assert_eq!(check("7", Some("limit=10&tags=a&tags=b&filter=x"), &["abc"]), Ok(()));
            assert_eq!(check("7", Some("tags=a,b"), &["abc"]), Ok(()), "a list in one value");
            assert_eq!(check("0", None, &["abc"]), Err("invalid_parameter"), "below the minimum");
            assert_eq!(check("seven", None, &["abc"]), Err("invalid_parameter"));
            assert_eq!(check("7", Some("limit=101"), &["abc"]), Err("invalid_parameter"));
            assert_eq!(check("7", Some("limit=ten"), &["abc"]), Err("invalid_parameter"));
            assert_eq!(check("7", Some("debug=1"), &["abc"]), Err("unknown_parameter"));
            assert_eq!(check("7", None, &[]), Err("missing_parameter"), "a required header");
            let detail = checker.check_parameters(&path("7"), Some("limit=ten"), headers(&["abc"])).unwrap_err().detail;
            assert!(detail.contains("limit") && detail.contains("integer"), "{detail}");

            let lenient = RequestContract { reject_unknown_query: false, ..contract() };
            let lenient = Checker::new(&lenient).unwrap();
            assert_eq!(lenient.check_parameters(&path("7"), Some("debug=1"), headers(&["abc"])), Ok(()));
        }

        #[test]
        fn bodies_are_checked_by_media_type_and_schema() {
            let checker = Checker::new(&contract()).unwrap();
            let json = Some("application/json; charset=utf-8");
            let code = |content_type: Option<&str>, body: &[u8]| checker.check_body(content_type, body).map_err(|v| v.code);
            assert_eq!(code(json, br#"{"name": "Rex", "tag": null, "owner": {"id": 3}}"#), Ok(()));
            assert_eq!(code(json, br#"{"tag": "x"}"#), Err("invalid_body"), "name is required");
            assert_eq!(code(json, br#"{"name": "Rex", "owner": {"id": "three"}}"#), Err("invalid_body"), "a carried component applies");
            assert_eq!(code(json, b"{not json"), Err("invalid_body"));
            assert_eq!(code(json, b""), Err("missing_body"));
            assert_eq!(code(Some("text/plain"), b"Rex"), Err("unsupported_media_type"));
            assert_eq!(code(None, b"Rex"), Err("unsupported_media_type"));
            assert_eq!(code(Some("application/x-www-form-urlencoded"), b"name=Rex"), Ok(()), "a declared type without a schema");
            let detail = checker.check_body(json, br#"{"name": "Rex", "owner": {"id": "three"}}"#).unwrap_err().detail;
            assert!(detail.contains("/owner/id"), "{detail}");

            let none = RequestContract { body: None, ..contract() };
            let none = Checker::new(&none).unwrap();
            assert_eq!(none.refuse_unexpected_body(true).map(|v| v.code), Some("unexpected_body"));
            assert_eq!(none.refuse_unexpected_body(false), None);
        }

        #[test]
        fn a_schema_that_does_not_compile_is_named() {
            let mut broken = contract();
            broken.parameters[0].schema = Some(json!({"type": 12}));
            assert!(first_problem(&broken).unwrap().contains("parameter id"));
            assert_eq!(first_problem(&contract()), None);
        }
    }
}
