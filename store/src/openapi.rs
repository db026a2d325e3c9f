//! Reading an OpenAPI 3.0 or 3.1 document (JSON or YAML) into what the inventory keeps:
//! the API's description and its operations. Internal `$ref`s are checked and resolved;
//! every problem is reported with where it is (a JSON pointer, and a line for syntax
//! errors), all of them at once, sorted, so a document is fixed in one round.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Largest document accepted (GitHub's full REST description is about 13 MB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;
/// Problems reported at most; a document with more is broken in one systematic way.
const MAX_PROBLEMS: usize = 100;
/// `$ref` chains longer than this are treated as a cycle.
const MAX_REF_HOPS: usize = 32;
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// How the document is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// JSON if it starts with `{`, else YAML.
    Detect,
}

impl Format {
    /// From a `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "application/vnd.oai.openapi+json" => Some(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "application/vnd.oai.openapi" => {
                Some(Format::Yaml)
            }
            _ => None,
        }
    }
}

/// One thing wrong with a document, and where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ImportProblem {
    /// JSON pointer into the document (`/paths/~1pets/get`), empty for the whole document.
    pub pointer: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.message),
            _ if self.pointer.is_empty() => write!(f, "{}", self.message),
            _ => write!(f, "at {}: {}", self.pointer, self.message),
        }
    }
}

fn problem(pointer: impl Into<String>, message: impl Into<String>) -> ImportProblem {
    ImportProblem { pointer: pointer.into(), line: None, column: None, message: message.into() }
}

/// One operation as the document declares it, with `$ref`s of its parameters, request
/// body and responses resolved (schemas keep theirs; they are resolved on use).
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedOperation {
    /// Upper case: `GET`.
    pub method: String,
    pub path: String,
    pub operation_id: Option<String>,
    pub summary: String,
    pub parameters: Value,
    pub request_body: Value,
    pub responses: Value,
    /// The operation's own requirement, else the document's; `null` when neither says.
    pub security: Value,
    pub deprecated: bool,
}

/// What an import reads from a document.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedSpec {
    pub openapi_version: String,
    pub title: String,
    pub description: String,
    pub version: String,
    pub servers: Vec<String>,
    pub tags: Vec<String>,
    pub contacts: Vec<String>,
    pub operations: Vec<ImportedOperation>,
    /// `components` as written, for resolving schema `$ref`s later.
    pub components: Value,
    /// SHA-256 of the document's bytes, hex.
    pub digest: String,
}

/// Reads and checks a document. On any problem, all of them (up to a hundred), sorted.
pub fn parse(bytes: &[u8], format: Format) -> Result<ImportedSpec, Vec<ImportProblem>> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![problem(
            "",
            format!("the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted", bytes.len()),
        )]);
    }
    let document = read_document(bytes, format)?;
    let mut problems = Vec::new();
    let version = check_version(&document, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    check_refs(&document, &document, &mut String::new(), &mut problems);
    let info = document.get("info");
    let title = info.and_then(|i| i.get("title")).and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if title.is_empty() {
        problems.push(problem("/info/title", "the API needs a title"));
    }
    let operations = read_operations(&document, &mut problems);
    if !problems.is_empty() {
        problems.sort();
        problems.truncate(MAX_PROBLEMS);
        return Err(problems);
    }
    let text_of = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(ImportedSpec {
        openapi_version: version,
        title: title.to_owned(),
        description: text_of(info.and_then(|i| i.get("description"))),
        version: text_of(info.and_then(|i| i.get("version"))),
        servers: list_of(document.get("servers"), "url"),
        tags: list_of(document.get("tags"), "name"),
        contacts: contact(info.and_then(|i| i.get("contact"))),
        operations,
        components: document.get("components").cloned().unwrap_or(Value::Null),
        digest: hex::encode(Sha256::digest(bytes)),
    })
}

fn read_document(bytes: &[u8], format: Format) -> Result<Value, Vec<ImportProblem>> {
    let format = match format {
        Format::Detect if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Format::Json,
        Format::Detect => Format::Yaml,
        known => known,
    };
    let document = match format {
        Format::Json => serde_json::from_slice::<Value>(bytes).map_err(|error| ImportProblem {
            pointer: String::new(),
            line: Some(error.line()),
            column: Some(error.column()),
            message: format!("not valid JSON: {}", strip_position(&error.to_string())),
        }),
        _ => serde_yaml_ng::from_slice::<Value>(bytes).map_err(|error| {
            let location = error.location();
            ImportProblem {
                pointer: String::new(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message: format!("not valid YAML: {}", strip_position(&error.to_string())),
            }
        }),
    }
    .map_err(|problem| vec![problem])?;
    if !document.is_object() {
        return Err(vec![problem("", "the document must be an object with `openapi`, `info` and `paths`")]);
    }
    Ok(document)
}

/// Parser messages end in " at line L column C", which the problem carries already.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn check_version(document: &Value, problems: &mut Vec<ImportProblem>) -> String {
    if let Some(swagger) = document.get("swagger") {
        problems.push(problem(
            "/swagger",
            format!(
                "Swagger {} is not supported: convert it to OpenAPI 3 (for example with `npx swagger2openapi`) and import that",
                swagger.as_str().unwrap_or("2.0")
            ),
        ));
        return String::new();
    }
    match document.get("openapi").and_then(Value::as_str) {
        Some(version) if version.starts_with("3.0.") || version.starts_with("3.1.") => version.to_owned(),
        Some(version) => {
            problems.push(problem("/openapi", format!("OpenAPI {version} is not supported; 3.0.x and 3.1.x are")));
            String::new()
        }
        None => {
            problems.push(problem("/openapi", "missing `openapi` version (3.0.x or 3.1.x)"));
            String::new()
        }
    }
}

/// RFC 6901 escaping of one pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Every `$ref` must be internal and point at something that exists.
fn check_refs(root: &Value, value: &Value, at: &mut String, problems: &mut Vec<ImportProblem>) {
    if problems.len() >= MAX_PROBLEMS {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let here = format!("{at}/$ref");
                match target.strip_prefix('#') {
                    Some(pointer) if lookup(root, pointer).is_some() => {}
                    Some(_) => problems.push(problem(here, format!("`{target}` points at nothing in this document"))),
                    None => problems.push(problem(
                        here,
                        format!("`{target}` is an external reference; bundle the document into one file first"),
                    )),
                }
            }
            for (key, child) in map {
                let length = at.len();
                at.push('/');
                at.push_str(&escape(key));
                check_refs(root, child, at, problems);
                at.truncate(length);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let length = at.len();
                at.push_str(&format!("/{index}"));
                check_refs(root, child, at, problems);
                at.truncate(length);
            }
        }
        _ => {}
    }
}

/// A URI-fragment JSON pointer (`/components/schemas/Pet`, percent-encoded or not).
fn lookup<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(root);
    }
    let decoded = percent_decode(pointer);
    root.pointer(&decoded)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Follows `$ref`s to the value they name. A dangling one gives `null`: `check_refs` has
/// reported it already, at its own location.
fn resolve<'a>(root: &'a Value, mut value: &'a Value, at: &str) -> Result<&'a Value, ImportProblem> {
    static NOTHING: Value = Value::Null;
    for _ in 0..MAX_REF_HOPS {
        match value.get("$ref").and_then(Value::as_str).and_then(|target| target.strip_prefix('#')) {
            Some(pointer) => match lookup(root, pointer) {
                Some(target) => value = target,
                None => return Ok(&NOTHING),
            },
            None => return Ok(value),
        }
    }
    Err(problem(at, "`$ref`s refer to each other in a loop"))
}

fn read_operations(document: &Value, problems: &mut Vec<ImportProblem>) -> Vec<ImportedOperation> {
    let Some(paths) = document.get("paths") else {
        // 3.1 allows a document of webhooks or components only: no operations to inventory.
        if document.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with("3.0.")) {
            problems.push(problem("/paths", "OpenAPI 3.0 requires `paths`"));
        }
        return Vec::new();
    };
    let Some(paths) = paths.as_object() else {
        problems.push(problem("/paths", "`paths` must be an object"));
        return Vec::new();
    };
    let global_security = document.get("security").cloned().unwrap_or(Value::Null);
    let mut operations = Vec::new();
    let mut operation_ids: HashMap<String, String> = HashMap::new();
    for (path, item) in paths {
        let item_at = format!("/paths/{}", escape(path));
        if !path.starts_with('/') {
            problems.push(problem(&item_at, format!("path `{path}` must start with `/`")));
            continue;
        }
        let item = match resolve(document, item, &item_at) {
            Ok(Value::Object(item)) => item,
            Ok(Value::Null) if item.get("$ref").is_some() => continue,
            Ok(_) => {
                problems.push(problem(&item_at, "a path item must be an object"));
                continue;
            }
            Err(error) => {
                problems.push(error);
                continue;
            }
        };
        let shared_parameters = item.get("parameters").cloned().unwrap_or(Value::Array(Vec::new()));
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            let at = format!("{item_at}/{method}");
            let Some(operation) = operation.as_object() else {
                problems.push(problem(&at, "an operation must be an object"));
                continue;
            };
            let operation_id = operation.get("operationId").and_then(Value::as_str).map(str::to_owned);
            if let Some(id) = &operation_id
                && let Some(first) = operation_ids.insert(id.clone(), at.clone())
            {
                problems.push(problem(format!("{at}/operationId"), format!("operationId `{id}` is also used at {first}")));
            }
            let parameters = merge_parameters(document, &shared_parameters, operation.get("parameters"), &at, problems);
            let request_body = match operation.get("requestBody") {
                None => Value::Null,
                Some(body) => resolve(document, body, &format!("{at}/requestBody")).cloned().unwrap_or_else(|e| {
                    problems.push(e);
                    Value::Null
                }),
            };
            let responses = match operation.get("responses").and_then(Value::as_object) {
                None => Value::Object(Default::default()),
                Some(responses) => Value::Object(
                    responses
                        .iter()
                        .map(|(status, response)| {
                            let resolved = resolve(document, response, &format!("{at}/responses/{}", escape(status)))
                                .cloned()
                                .unwrap_or_else(|e| {
                                    problems.push(e);
                                    Value::Null
                                });
                            (status.clone(), resolved)
                        })
                        .collect(),
                ),
            };
            operations.push(ImportedOperation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                operation_id,
                summary: operation.get("summary").and_then(Value::as_str).unwrap_or_default().to_owned(),
                parameters,
                request_body,
                responses,
                security: operation.get("security").cloned().unwrap_or_else(|| global_security.clone()),
                deprecated: operation.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
            });
        }
    }
    operations
}

/// Path-level parameters, overridden by the operation's own with the same name and place.
fn merge_parameters(
    document: &Value,
    shared: &Value,
    own: Option<&Value>,
    at: &str,
    problems: &mut Vec<ImportProblem>,
) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    let sources = [(shared, format!("{}/parameters", at.rsplit_once('/').map_or(at, |(item, _)| item))), (own.unwrap_or(&Value::Null), format!("{at}/parameters"))];
    for (list, list_at) in sources {
        let Some(list) = list.as_array() else { continue };
        for (index, parameter) in list.iter().enumerate() {
            let parameter_at = format!("{list_at}/{index}");
            let parameter = match resolve(document, parameter, &parameter_at) {
                // Dangling: reported where the `$ref` is.
                Ok(Value::Null) if parameter.get("$ref").is_some() => continue,
                Ok(parameter) => parameter.clone(),
                Err(error) => {
                    problems.push(error);
                    continue;
                }
            };
            let key = |p: &Value| (p.get("name").cloned(), p.get("in").cloned());
            if parameter.get("name").and_then(Value::as_str).is_none() || parameter.get("in").and_then(Value::as_str).is_none() {
                problems.push(problem(parameter_at, "a parameter needs `name` and `in`"));
                continue;
            }
            merged.retain(|existing| key(existing) != key(&parameter));
            merged.push(parameter);
        }
    }
    Value::Array(merged)
}

fn list_of(value: Option<&Value>, field: &str) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|item| item.get(field).and_then(Value::as_str)).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn contact(value: Option<&Value>) -> Vec<String> {
    let Some(contact) = value else { return Vec::new() };
    ["name", "email", "url"]
        .iter()
        .filter_map(|field| contact.get(*field).and_then(Value::as_str))
        .filter(|text| !text.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r##"{"openapi":"3.0.3","info":{"title":"Pets","version":"1"},"paths":{
        "/pets/{id}":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],
          "get":{"operationId":"getPet","responses":{"200":{"$ref":"#/components/responses/Pet"}}},
          "delete":{"operationId":"deletePet","security":[],"responses":{"204":{"description":"gone"}}}}},
        "security":[{"bearer":[]}],
        "components":{"responses":{"Pet":{"description":"a pet","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Pet"}}}}},
          "schemas":{"Pet":{"type":"object","properties":{"email":{"type":"string","format":"email"}}}}}}"##;

    #[test]
    fn operations_are_read_with_refs_resolved_and_security_inherited() {
        let spec = parse(MINIMAL.as_bytes(), Format::Detect).unwrap();
        assert_eq!(spec.title, "Pets");
        assert_eq!(spec.operations.len(), 2);
        let get = spec.operations.iter().find(|o| o.method == "GET").unwrap();
        assert_eq!(get.path, "/pets/{id}");
        assert_eq!(get.parameters[0]["name"], "id", "path-level parameters apply");
        assert_eq!(get.responses["200"]["description"], "a pet", "response $ref resolved");
        assert_eq!(get.security, serde_json::json!([{"bearer": []}]), "inherits the document's");
        let delete = spec.operations.iter().find(|o| o.method == "DELETE").unwrap();
        assert_eq!(delete.security, serde_json::json!([]), "explicitly public");
    }

    #[test]
    fn problems_are_located_and_all_reported() {
        let bad = MINIMAL
            .replace("\"deletePet\"", "\"getPet\"")
            .replace("#/components/responses/Pet", "#/components/responses/Cat");
        let problems = parse(bad.as_bytes(), Format::Json).unwrap_err();
        let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert!(pointers.contains(&"/paths/~1pets~1{id}/get/responses/200/$ref"), "{problems:?}");
        assert!(pointers.contains(&"/paths/~1pets~1{id}/delete/operationId"), "{problems:?}");

        let syntax = parse(b"{\"openapi\": \"3.0.0\",\n  \"info\": }", Format::Json).unwrap_err();
        assert_eq!((syntax[0].line, syntax[0].column), (Some(2), Some(11)), "{syntax:?}");
        let yaml = parse(b"openapi: 3.0.0\ninfo:\n  title: [unclosed\n", Format::Yaml).unwrap_err();
        assert!(yaml[0].line.is_some() && yaml[0].message.starts_with("not valid YAML"), "{yaml:?}");
        let swagger = parse(br#"{"swagger":"2.0","info":{"title":"x"}}"#, Format::Json).unwrap_err();
        assert!(swagger[0].message.contains("convert it to OpenAPI 3"), "{swagger:?}");
        let version = parse(br#"{"openapi":"4.0.0"}"#, Format::Json).unwrap_err();
        assert_eq!(version[0].pointer, "/openapi");
        let external = MINIMAL.replace("#/components/schemas/Pet", "other.yaml#/Pet");
        assert!(parse(external.as_bytes(), Format::Json).unwrap_err()[0].message.contains("external"));
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(parse(&huge, Format::Json).unwrap_err()[0].message.contains("at most"));
        assert!(parse(b"[1, 2]", Format::Json).unwrap_err()[0].message.contains("must be an object"));
    }

    #[test]
    fn ref_loops_are_refused_not_followed_forever() {
        let looped = r##"{"openapi":"3.1.0","info":{"title":"L","version":"1"},"paths":{"/a":{"$ref":"#/paths/~1b"},"/b":{"$ref":"#/paths/~1a"}}}"##;
        let problems = parse(looped.as_bytes(), Format::Json).unwrap_err();
        assert!(problems.iter().any(|p| p.message.contains("loop")), "{problems:?}");
    }

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(Format::from_content_type("application/json; charset=utf-8"), Some(Format::Json));
        assert_eq!(Format::from_content_type("application/yaml"), Some(Format::Yaml));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
