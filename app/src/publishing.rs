//! The publish workflow shared by the Policies page and `/api/v1/bundles`: take a snapshot
//! of the inventory, compile it, compare it with the active revision, sign drafts with the
//! bundle key, publish, roll back. The types are shared with the browser; the work runs on
//! the server only.

use policy::diff::PolicyDiff;
use policy::model::Diagnostic;
use serde::{Deserialize, Serialize};

/// What publishing now would do: the problems that block it, or the change it makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Every problem, sorted by path; a bundle with any cannot be made.
    pub diagnostics: Vec<Diagnostic>,
    /// Against the active revision (everything is added when none is active).
    pub diff: PolicyDiff,
    pub apis: usize,
    pub routes: usize,
    pub active_revision: Option<i64>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::Preview;
    use policy::diff::PolicyDiff;
    use policy::bundle::{self, Bundle};
    use policy::model::{ApiInput, CompiledPolicy, Diagnostic, OperationInput, Snapshot};
    use std::collections::BTreeMap;
    use store::audit::AuditContext;
    use store::bundles::{self, BundleRecord, NewBundle};
    use store::signing::{KeyPurpose, MasterKey};
    use store::{Db, StoreError, apis, client_apps, custom_classes, signing};

    /// The inventory and its settings as the compiler reads them.
    pub async fn snapshot(db: &Db) -> Result<Snapshot, StoreError> {
        let mut inputs = Vec::new();
        for summary in apis::list_apis(db).await? {
            let api = apis::find_api(db, summary.id).await?;
            let operations = api
                .operations
                .into_iter()
                .map(|operation| {
                    let mut classes: Vec<String> = operation
                        .data_classes
                        .iter()
                        .filter(|hit| hit.direction == "response")
                        .map(|hit| hit.class.clone())
                        .collect();
                    classes.sort();
                    classes.dedup();
                    OperationInput {
                        id: operation.id,
                        method: operation.method,
                        path: operation.path,
                        protection: operation.protection,
                        response_classes: classes,
                    }
                })
                .collect();
            inputs.push(ApiInput {
                id: api.summary.id.0,
                name: api.summary.name,
                environment: api.summary.environment,
                protection: api.protection,
                operations,
            });
        }
        let client_apps = client_apps::list_client_apps(db).await?.into_iter().map(|app| (app.id.0, app.name)).collect();
        let known_classes = custom_classes::known_classes(db).await?.into_iter().collect();
        Ok(Snapshot { apis: inputs, client_apps, known_classes })
    }

    /// The policy of the active revision, read back from its signed bytes.
    async fn active_policy(db: &Db) -> Result<Option<(i64, CompiledPolicy)>, StoreError> {
        let Some(active) = bundles::active_bundle(db).await? else { return Ok(None) };
        let signed = bundles::find_signed(db, active.revision).await?;
        let bundle = bundle::decode_unverified(signed.as_bytes())
            .map_err(|error| StoreError::Invalid { field: "bundle", message: format!("revision {} cannot be read: {error}", active.revision) })?;
        Ok(Some((active.revision, bundle.policy)))
    }

    fn summary(policy: &CompiledPolicy) -> (usize, usize) {
        (policy.apis.len(), policy.routes().count())
    }

    /// Compiles the inventory as it is and compares it with the active revision.
    pub async fn preview(db: &Db) -> Result<(Preview, Option<CompiledPolicy>), StoreError> {
        let snapshot = snapshot(db).await?;
        let active = active_policy(db).await?;
        let (compiled, diagnostics) = match policy::compile(&snapshot) {
            Ok(compiled) => (Some(compiled), Vec::new()),
            Err(diagnostics) => (None, diagnostics),
        };
        let empty = CompiledPolicy::default();
        let before = active.as_ref().map_or(&empty, |(_, policy)| policy);
        let diff = compiled.as_ref().map(|after| policy::diff::diff(before, after)).unwrap_or_default();
        let (apis, routes) = compiled.as_ref().map(summary).unwrap_or_default();
        let preview = Preview { diagnostics, diff, apis, routes, active_revision: active.map(|(revision, _)| revision) };
        Ok((preview, compiled))
    }

    async fn store_signed(
        db: &Db,
        master: &MasterKey,
        policy: &CompiledPolicy,
        rollback_of: Option<i64>,
        publish_reason: Option<&str>,
        context: &AuditContext,
    ) -> Result<BundleRecord, StoreError> {
        let signer = signing::ensure_signer(db, master, KeyPurpose::Bundle, context).await?;
        let content_hash = bundle::content_hash(policy);
        let (apis, routes) = summary(policy);
        let target = serde_json::json!({});
        let new = NewBundle {
            content_hash: &content_hash,
            signing_key_id: &signer.key_id,
            target: &target,
            rollback_of,
            summary: &serde_json::json!({"apis": apis, "routes": routes}),
        };
        let sign = |revision: i64| {
            let mut header = bundle::header(policy, revision as u64, store::now_millis(), &signer.key_id, BTreeMap::new());
            header.rollback_of = rollback_of.map(|r| r as u64);
            bundle::encode_signed(&Bundle { header, policy: policy.clone() }, |message| signer.sign(message))
        };
        bundles::insert_bundle(db, new, sign, publish_reason, context).await
    }

    /// Compiles and stores a signed draft with what it changes against the active
    /// revision, or returns the problems that prevent it.
    pub async fn create_draft(
        db: &Db,
        master: &MasterKey,
        context: &AuditContext,
    ) -> Result<Result<(BundleRecord, PolicyDiff), Vec<Diagnostic>>, StoreError> {
        let (preview, compiled) = preview(db).await?;
        match compiled {
            Some(policy) => Ok(Ok((store_signed(db, master, &policy, None, None, context).await?, preview.diff))),
            None => Ok(Err(preview.diagnostics)),
        }
    }

    /// Re-issues an earlier revision's policy as a new, published revision.
    pub async fn rollback(db: &Db, master: &MasterKey, revision: i64, reason: &str, context: &AuditContext) -> Result<BundleRecord, StoreError> {
        let signed = bundles::find_signed(db, revision).await?;
        let old = bundle::decode_unverified(signed.as_bytes())
            .map_err(|error| StoreError::Invalid { field: "revision", message: format!("cannot be read: {error}") })?;
        store_signed(db, master, &old.policy, Some(revision), Some(reason), context).await
    }
}
