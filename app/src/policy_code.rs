//! Policy as code on the control plane: the whole policy exported as the document the
//! files are written from, imported back in one transaction (names resolved to this
//! installation's ids), and policy test cases run against the draft or a revision. The
//! files themselves are the `policy` crate's (`policy::files`, `policy::cases`).

use policy::cases::CaseResult;
use serde::{Deserialize, Serialize};

/// What running a case file gave, for the Policies page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRun {
    /// `draft` or `revision N`.
    pub against: String,
    pub results: Vec<CaseResult>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::CaseRun;
    use crate::publishing::ssr::snapshot;
    use policy::cases;
    use policy::files::{self, ApiFile, DataClassFile, OperationFile, PolicyDocument};
    use policy::model::{CompiledPolicy, Diagnostic};
    use std::collections::{BTreeMap, BTreeSet};
    use store::audit::AuditContext;
    use store::settings::{self, ApiSettings, ImportSummary};
    use store::{CustomClass, Db, StoreError, apis, bundles, client_apps, custom_classes};

    /// The whole policy as it stands, ready to be written as files.
    pub async fn export(db: &Db) -> Result<PolicyDocument, StoreError> {
        let names: BTreeMap<i64, String> = client_apps::list_client_apps(db).await?.into_iter().map(|app| (app.id.0, app.name)).collect();
        let data_classes = custom_classes::list_custom_classes(db)
            .await?
            .into_iter()
            .map(|class| DataClassFile { name: class.name, description: class.description, keywords: class.keywords, patterns: class.patterns })
            .collect();
        let compiler_input = snapshot(db).await?;
        let mut apis = Vec::new();
        for summary in apis::list_apis(db).await? {
            let api = apis::find_api(db, summary.id).await?;
            let derived = compiler_input.apis.iter().find(|input| input.id == summary.id.0);
            let operations = api
                .operations
                .iter()
                .map(|operation| {
                    let response_classes = derived
                        .and_then(|input| input.operations.iter().find(|o| o.id == operation.id))
                        .map(|o| o.response_classes.clone())
                        .unwrap_or_default();
                    let file = OperationFile {
                        protection: files::protection_to_file(&operation.protection, &names),
                        class_edits: operation.class_edits.clone(),
                        response_classes,
                    };
                    (format!("{} {}", operation.method, operation.path), file)
                })
                .collect();
            apis.push(ApiFile {
                name: api.summary.name.clone(),
                environment: api.summary.environment.clone(),
                protection: files::protection_to_file(&api.protection, &names),
                operations,
            });
        }
        Ok(PolicyDocument { client_apps: names.into_values().collect(), data_classes, apis })
    }

    fn diagnostic(path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { path: path.into(), message: message.into() }
    }

    /// Applies a whole policy: every API it describes must be registered here (with the
    /// operations it names), and every client application it names must exist. Problems
    /// come back all at once, at their places; otherwise everything is written in one
    /// transaction.
    pub async fn import(db: &Db, document: &PolicyDocument, context: &AuditContext) -> Result<Result<ImportSummary, Vec<Diagnostic>>, StoreError> {
        let mut problems = Vec::new();
        let ids: BTreeMap<String, i64> = client_apps::list_client_apps(db).await?.into_iter().map(|app| (app.name, app.id.0)).collect();
        for (index, name) in document.client_apps.iter().enumerate() {
            if !ids.contains_key(name) {
                problems.push(diagnostic(
                    format!("client_apps[{index}]"),
                    format!("no client application is named {name:?} here; register it first (its credentials are not part of the policy)"),
                ));
            }
        }
        let registered: BTreeMap<(String, String), store::ApiId> =
            apis::list_apis(db).await?.into_iter().map(|api| ((api.name, api.environment), api.id)).collect();
        let mut seen = BTreeSet::new();
        let mut settings = Vec::new();
        for api in &document.apis {
            let place = files::api_place(api);
            if !seen.insert((api.name.clone(), api.environment.clone())) {
                problems.push(diagnostic(place.clone(), "is described twice"));
                continue;
            }
            let Some(id) = registered.get(&(api.name.clone(), api.environment.clone())) else {
                problems.push(diagnostic(place, "is not registered here; import its OpenAPI document first"));
                continue;
            };
            let detail = apis::find_api(db, *id).await?;
            // Its operations are checked even when the API's own settings have problems, so
            // every problem is reported in one go.
            let protection = files::protection_from_file(&api.protection, &ids, None, &format!("{place}.protection")).unwrap_or_else(|found| {
                problems.extend(found);
                store::Protection::default()
            });
            let mut operations = Vec::new();
            for (key, operation) in &api.operations {
                let at = format!("{place}.operations[{key}]");
                let declared = files::split_operation(key)
                    .and_then(|(method, path)| detail.operations.iter().find(|o| o.method == method && o.path == path));
                let Some(declared) = declared else {
                    problems.push(diagnostic(at, "is not an operation of the registered document (\"METHOD /path\" as the document declares it)"));
                    continue;
                };
                let parameters = store::protection::path_parameters(&declared.path);
                match files::protection_from_file(&operation.protection, &ids, Some(&parameters), &format!("{at}.protection")) {
                    Ok(rules) => operations.push((declared.id, at, rules, operation.class_edits.clone())),
                    Err(found) => problems.extend(found),
                }
            }
            settings.push(ApiSettings { api: *id, place, protection, operations });
        }
        if !problems.is_empty() {
            problems.sort();
            return Ok(Err(problems));
        }
        let classes: Vec<CustomClass> = document
            .data_classes
            .iter()
            .map(|class| CustomClass {
                name: class.name.clone(),
                description: class.description.clone(),
                keywords: class.keywords.clone(),
                patterns: class.patterns.clone(),
                created_at: 0,
            })
            .collect();
        match settings::import_policy(db, &classes, &settings, context).await {
            Ok(summary) => Ok(Ok(summary)),
            Err(StoreError::Settings(found)) => Ok(Err(found.into_iter().map(|p| diagnostic(p.path, p.message)).collect())),
            Err(error) => Err(error),
        }
    }

    /// The policy cases are run against: the draft (the inventory compiled as it is now) or
    /// a stored revision.
    pub async fn policy_for(db: &Db, against: &str) -> Result<(String, Result<CompiledPolicy, Vec<Diagnostic>>), StoreError> {
        match against.trim() {
            "" | "draft" => Ok(("draft".to_owned(), policy::compile(&snapshot(db).await?))),
            revision => {
                let revision: i64 = revision.parse().map_err(|_| StoreError::invalid("against", "draft or a revision number"))?;
                let signed = bundles::find_signed(db, revision).await?;
                let bundle = policy::bundle::decode_unverified(signed.as_bytes())
                    .map_err(|error| StoreError::Invalid { field: "against", message: format!("revision {revision} cannot be read: {error}") })?;
                Ok((format!("revision {revision}"), Ok(bundle.policy)))
            }
        }
    }

    /// Runs a case file against the draft or a revision.
    pub async fn run_cases(db: &Db, text: &str, against: &str) -> Result<Result<CaseRun, Vec<Diagnostic>>, StoreError> {
        let cases = match cases::parse(text, "cases") {
            Ok(cases) => cases,
            Err(problems) => return Ok(Err(problems)),
        };
        let (against, compiled) = policy_for(db, against).await?;
        match compiled {
            Ok(policy) => Ok(Ok(CaseRun { against, results: cases::run(&policy, &cases) })),
            Err(problems) => Ok(Err(problems)),
        }
    }
}
