//! Policy as code: the whole policy (every API's protection, each operation's override and
//! data-class corrections, the custom data classes) as readable files that live in a
//! repository, and back. Client applications are named, not numbered, so the files read
//! the same on every installation. The files compile offline, with the same compiler and
//! problems the control plane uses.
//!
//! Layout: `palisade.json` (format, client application names, custom data classes) and
//! `apis/<environment>/<name>.json`, one per API. Other files (`tests/`, a README) are
//! not part of the policy.

use crate::model::{ApiInput, Diagnostic, OperationInput, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use store::protection::{ClassEdits, path_parameters};
use store::{BUILT_IN_CLASSES, Protection};

/// The format these files are written in.
pub const FORMAT: &str = "palisade.policy.v1";
/// The file that holds everything but the APIs.
pub const ROOT_FILE: &str = "palisade.json";
/// Most files a policy may have, and the largest file read.
pub const MAX_FILES: usize = 10_000;
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The whole policy, as exchanged with `/api/v1/policy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Client applications the rules may name.
    #[serde(default)]
    pub client_apps: Vec<String>,
    /// Custom data classes (the built-in ones are always known).
    #[serde(default)]
    pub data_classes: Vec<DataClassFile>,
    #[serde(default)]
    pub apis: Vec<ApiFile>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataClassFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub name: String,
    pub environment: String,
    /// The API's protection; client applications by name.
    #[serde(default = "empty_object")]
    pub protection: serde_json::Value,
    /// `"GET /pets/{id}"` → its settings. Every operation is listed, so the files compile
    /// on their own; an operation must exist in the registered document to be imported.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationFile>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationFile {
    /// The operation's override (empty: everything inherited).
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub protection: serde_json::Value,
    /// Corrections to the detected data classes.
    #[serde(default, skip_serializing_if = "no_edits")]
    pub class_edits: ClassEdits,
    /// The classes the operation returns, as the control plane derived them from the
    /// document and the corrections. Read by offline compiles; ignored on import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn is_empty_object(value: &serde_json::Value) -> bool {
    value.is_null() || value.as_object().is_some_and(serde_json::Map::is_empty)
}

fn no_edits(edits: &ClassEdits) -> bool {
    edits.added.is_empty() && edits.removed.is_empty()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootFile {
    format: String,
    #[serde(default)]
    client_apps: Vec<String>,
    #[serde(default)]
    data_classes: Vec<DataClassFile>,
}

fn diagnostic(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic { path: path.into(), message: message.into() }
}

/// A file name for an API: lower case letters, digits and `-`.
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { "api".to_owned() } else { slug.to_owned() }
}

fn pretty(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The policy as files: relative path → contents. Sorted and pretty-printed, so the same
/// policy always gives the same files and a change shows as a small diff.
pub fn to_files(document: &PolicyDocument) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut client_apps = document.client_apps.clone();
    client_apps.sort();
    let mut data_classes = document.data_classes.clone();
    data_classes.sort_by(|a, b| a.name.cmp(&b.name));
    files.insert(ROOT_FILE.to_owned(), pretty(&RootFile { format: FORMAT.to_owned(), client_apps, data_classes }));
    let mut apis: Vec<&ApiFile> = document.apis.iter().collect();
    apis.sort_by(|a, b| (&a.environment, &a.name).cmp(&(&b.environment, &b.name)));
    for api in apis {
        let base = format!("apis/{}/{}", slug(&api.environment), slug(&api.name));
        let mut path = format!("{base}.json");
        let mut n = 2;
        while files.contains_key(&path) {
            path = format!("{base}-{n}.json");
            n += 1;
        }
        files.insert(path, pretty(api));
    }
    files
}

/// Reads files back (as [`to_files`] writes them, or edited by hand). Every problem is
/// reported, each at its file and place.
pub fn from_files(files: &BTreeMap<String, String>) -> Result<PolicyDocument, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if files.len() > MAX_FILES {
        return Err(vec![diagnostic("", format!("more than {MAX_FILES} files"))]);
    }
    let mut document = PolicyDocument::default();
    match files.get(ROOT_FILE) {
        None => problems.push(diagnostic(ROOT_FILE, format!("missing: it names the format ({FORMAT}), client applications and data classes"))),
        Some(text) => match serde_json::from_str::<RootFile>(text) {
            Ok(root) if root.format == FORMAT => {
                document.client_apps = root.client_apps;
                document.data_classes = root.data_classes;
            }
            Ok(root) => problems.push(diagnostic(format!("{ROOT_FILE}: format"), format!("{:?} is not {FORMAT}", root.format))),
            Err(error) => problems.push(diagnostic(ROOT_FILE, error.to_string())),
        },
    }
    let mut seen = BTreeMap::new();
    for (path, text) in files.iter().filter(|(path, _)| path.starts_with("apis/") && path.ends_with(".json")) {
        if text.len() > MAX_FILE_BYTES {
            problems.push(diagnostic(path.clone(), format!("larger than {MAX_FILE_BYTES} bytes")));
            continue;
        }
        match serde_json::from_str::<ApiFile>(text) {
            Ok(api) => {
                if let Some(first) = seen.insert((api.name.clone(), api.environment.clone()), path.clone()) {
                    problems.push(diagnostic(path.clone(), format!("{} ({}) is also described in {first}", api.name, api.environment)));
                }
                document.apis.push(api);
            }
            Err(error) => problems.push(diagnostic(path.clone(), error.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(document)
    } else {
        problems.sort();
        Err(problems)
    }
}

/// The places in a protection document that name a client application.
fn client_app_slots(value: &mut serde_json::Value) -> Vec<(String, &mut serde_json::Value)> {
    let mut slots = Vec::new();
    let Some(object) = value.as_object_mut() else { return slots };
    for (key, entry) in object.iter_mut() {
        match key.as_str() {
            "requestor" => {
                if let Some(apps) = entry.get_mut("client_apps").and_then(|apps| apps.as_array_mut()) {
                    slots.extend(apps.iter_mut().enumerate().map(|(i, app)| (format!("requestor.client_apps[{i}]"), app)));
                }
            }
            "data" => {
                if let Some(grants) = entry.get_mut("grants").and_then(|grants| grants.as_array_mut()) {
                    for (i, grant) in grants.iter_mut().enumerate() {
                        if let Some(app) = grant.get_mut("client_app") {
                            slots.push((format!("data.grants[{i}].client_app"), app));
                        }
                    }
                }
            }
            "rate_limits" => {
                if let Some(limits) = entry.as_array_mut() {
                    for (i, limit) in limits.iter_mut().enumerate() {
                        if let Some(app) = limit.get_mut("client_app").filter(|app| !app.is_null()) {
                            slots.push((format!("rate_limits[{i}].client_app"), app));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    slots
}

/// A protection document as written in files: client applications by name.
pub fn protection_to_file(protection: &Protection, names: &BTreeMap<i64, String>) -> serde_json::Value {
    let mut value = serde_json::to_value(protection).unwrap_or_else(|_| empty_object());
    for (_, slot) in client_app_slots(&mut value) {
        if let Some(name) = slot.as_i64().and_then(|id| names.get(&id)) {
            *slot = serde_json::Value::String(name.clone());
        }
    }
    value
}

/// A protection document from files: names resolved to ids, then read and checked
/// (`parameters`: the operation's path parameters, for an override). Problems are placed
/// under `at`.
pub fn protection_from_file(
    value: &serde_json::Value,
    ids: &BTreeMap<String, i64>,
    parameters: Option<&[String]>,
    at: &str,
) -> Result<Protection, Vec<Diagnostic>> {
    // Left out (`null`): nothing declared, everything inherited.
    let mut value = if value.is_null() { empty_object() } else { value.clone() };
    let mut problems = Vec::new();
    for (place, slot) in client_app_slots(&mut value) {
        match slot.as_str() {
            Some(name) => match ids.get(name) {
                Some(id) => *slot = serde_json::Value::from(*id),
                None => problems.push(diagnostic(format!("{at}.{place}"), format!("no client application is named {name:?}"))),
            },
            None => problems.push(diagnostic(format!("{at}.{place}"), "name a client application")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let protection: Protection = serde_json::from_value(value).map_err(|error| vec![diagnostic(at, error.to_string())])?;
    let found: Vec<Diagnostic> =
        protection.problems(parameters).into_iter().map(|problem| diagnostic(format!("{at}.{}", problem.path), problem.message)).collect();
    if found.is_empty() { Ok(protection) } else { Err(found) }
}

/// `"GET /pets/{id}"` → (`GET`, `/pets/{id}`).
pub fn split_operation(key: &str) -> Option<(&str, &str)> {
    let (method, path) = key.split_once(' ')?;
    (!method.is_empty() && method.chars().all(|c| c.is_ascii_uppercase()) && path.starts_with('/')).then_some((method, path))
}

/// Where an API's file puts it, for problems: `apis[Pets (production)]`.
pub fn api_place(api: &ApiFile) -> String {
    format!("apis[{} ({})]", api.name, api.environment)
}

/// The compiler's input from files alone, for `palisade policy validate` and `test`:
/// APIs, operations and client applications numbered in file order. Problems in the
/// settings are reported at their places, all at once.
pub fn snapshot(document: &PolicyDocument) -> Result<Snapshot, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut ids = BTreeMap::new();
    for (index, name) in document.client_apps.iter().enumerate() {
        if ids.insert(name.clone(), index as i64 + 1).is_some() {
            problems.push(diagnostic(format!("client_apps[{index}]"), format!("{name:?} is listed twice")));
        }
    }
    let mut known: BTreeSet<String> = BUILT_IN_CLASSES.iter().map(|c| (*c).to_owned()).collect();
    known.extend(document.data_classes.iter().map(|class| class.name.clone()));
    let mut apis = Vec::new();
    let mut operation_id = 0;
    for (index, api) in document.apis.iter().enumerate() {
        let place = api_place(api);
        let protection = protection_from_file(&api.protection, &ids, None, &format!("{place}.protection")).unwrap_or_else(|found| {
            problems.extend(found);
            Protection::default()
        });
        check_classes(&protection, &known, &format!("{place}.protection"), &mut problems);
        let mut operations = Vec::new();
        for (key, operation) in &api.operations {
            let at = format!("{place}.operations[{key}]");
            let Some((method, path)) = split_operation(key) else {
                problems.push(diagnostic(at, "an operation is \"METHOD /path\", like \"GET /pets/{id}\""));
                continue;
            };
            let parameters = path_parameters(path);
            let rules = protection_from_file(&operation.protection, &ids, Some(&parameters), &format!("{at}.protection"))
                .unwrap_or_else(|found| {
                    problems.extend(found);
                    Protection::default()
                });
            check_classes(&rules, &known, &format!("{at}.protection"), &mut problems);
            operation_id += 1;
            operations.push(OperationInput {
                id: operation_id,
                method: method.to_owned(),
                path: path.to_owned(),
                protection: rules,
                response_classes: operation.response_classes.clone(),
                response_fields: Vec::new(),
                ..Default::default()
            });
        }
        apis.push(ApiInput {
            id: index as i64 + 1,
            name: api.name.clone(),
            environment: api.environment.clone(),
            protection,
            operations,
            ..Default::default()
        });
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(problems);
    }
    let client_apps = ids.into_iter().map(|(name, id)| (id, name)).collect();
    Ok(Snapshot { apis, client_apps, known_classes: known.into_iter().collect(), ..Snapshot::default() })
}

fn check_classes(protection: &Protection, known: &BTreeSet<String>, at: &str, problems: &mut Vec<Diagnostic>) {
    for class in protection.data_classes().difference(known) {
        problems.push(diagnostic(format!("{at}.data.grants"), format!("{class:?} is not a data class (built-in or in {ROOT_FILE})")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> PolicyDocument {
        PolicyDocument {
            client_apps: vec!["Portal".into(), "Billing".into()],
            data_classes: vec![DataClassFile { name: "loyalty_number".into(), keywords: vec!["loyalty".into()], ..Default::default() }],
            apis: vec![ApiFile {
                name: "Pets Store".into(),
                environment: "production".into(),
                protection: json!({
                    "authentication": {"mode": "required", "methods": [{"type": "api_key"}]},
                    "data": {"grants": [{"client_app": "Portal", "classes": ["email", "loyalty_number"]}], "otherwise": "mask"},
                    "rate_limits": [{"requests": 100, "window_seconds": 60}, {"client_app": "Billing", "requests": 5, "window_seconds": 1}],
                }),
                operations: BTreeMap::from([
                    ("GET /pets/{id}".to_owned(), OperationFile {
                        protection: json!({"requestor": {"client_apps": ["Billing"]}}),
                        response_classes: vec!["email".into()],
                        ..Default::default()
                    }),
                    ("GET /healthz".to_owned(), OperationFile::default()),
                ]),
            }],
        }
    }

    #[test]
    fn files_round_trip_and_compile_offline() {
        let files = to_files(&document());
        assert_eq!(files.keys().collect::<Vec<_>>(), ["apis/production/pets-store.json", "palisade.json"]);
        let back = from_files(&files).unwrap();
        assert_eq!(to_files(&back), files, "files → document → files is the identity");
        let snapshot = snapshot(&back).unwrap();
        let compiled = crate::compile(&snapshot).unwrap();
        assert_eq!(compiled.routes().count(), 2);
        assert_eq!(compiled.client_apps.values().collect::<BTreeSet<_>>(), BTreeSet::from([&"Billing".to_owned(), &"Portal".to_owned()]));
    }

    #[test]
    fn names_map_to_ids_and_back() {
        let ids = BTreeMap::from([("Portal".to_owned(), 3), ("Billing".to_owned(), 4)]);
        let names: BTreeMap<i64, String> = ids.iter().map(|(name, id)| (*id, name.clone())).collect();
        let file = document().apis[0].protection.clone();
        let protection = protection_from_file(&file, &ids, None, "p").unwrap();
        assert_eq!(protection.client_apps().into_iter().map(|id| id.0).collect::<Vec<_>>(), [3, 4]);
        let written = protection_to_file(&protection, &names);
        assert_eq!(written["rate_limits"][1]["client_app"], "Billing");
        assert_eq!(protection_from_file(&written, &ids, None, "p").unwrap(), protection, "lossless");
    }

    #[test]
    fn every_problem_in_the_files_is_reported_at_its_place() {
        let mut broken = document();
        broken.apis[0].protection["data"]["grants"][0]["client_app"] = json!("Nobody");
        broken.apis[0].operations.insert("fetch /x".into(), OperationFile::default());
        broken.apis[0].operations.insert("GET /pets/{petId}/toys".into(), OperationFile {
            protection: json!({"requestor": {"object_owner": {"parameter": "id", "claim": "sub"}}}),
            ..Default::default()
        });
        broken.apis[0].operations.insert("GET /toys".into(), OperationFile {
            protection: json!({"data": {"grants": [{"client_app": "Portal", "classes": ["nope"]}], "otherwise": "mask"}}),
            ..Default::default()
        });
        let problems = snapshot(&broken).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"apis[Pets Store (production)].protection.data.grants[0].client_app"), "{paths:?}");
        assert!(paths.contains(&"apis[Pets Store (production)].operations[fetch /x]"), "{paths:?}");
        assert!(paths.iter().any(|p| p.starts_with("apis[Pets Store (production)].operations[GET /pets/{petId}/toys].protection.requestor")), "{paths:?}");
        assert!(paths.contains(&"apis[Pets Store (production)].operations[GET /toys].protection.data.grants"), "{paths:?}");
        assert_eq!(paths.len(), 4, "{paths:?}");

        let mut files = to_files(&document());
        files.insert("apis/production/copy.json".into(), files["apis/production/pets-store.json"].clone());
        files.insert("apis/production/bad.json".into(), "{\"name\": 1}".into());
        files.insert(ROOT_FILE.into(), "{\"format\": \"palisade.policy.v0\"}".into());
        files.insert("README.md".into(), "not policy".into());
        let problems = from_files(&files).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{problems:?}");
        assert!(paths.contains(&"apis/production/bad.json") && paths.contains(&"palisade.json: format"), "{paths:?}");
    }
}
