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
    use policy::inspect::ResponseField;
    use policy::bundle::{self, AnnouncedKey, Bundle, Origin};
    use policy::credentials::{Credentials, IssuedKey};
    use policy::model::{ApiInput, CompiledPolicy, Diagnostic, OperationInput, OperationSchemas, Snapshot};
    use store::protection::Protection;
    use store::audit::AuditContext;
    use store::bundles::{self, BundleRecord, NewBundle};
    use store::signing::{KeyPurpose, MasterKey, Signer};
    use store::{CredentialKind, Db, Labels, StoreError, apis, client_apps, custom_classes, signing};

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
                    // Sorted, so the same inventory always compiles to the same bytes.
                    let mut response_fields: Vec<ResponseField> = operation
                        .data_classes
                        .iter()
                        .filter(|hit| hit.direction == "response")
                        .filter_map(|hit| ResponseField::parse(&hit.class, &hit.field))
                        .collect();
                    response_fields.sort();
                    response_fields.dedup();
                    // The OpenAPI description goes along only where a request contract
                    // will be made from it.
                    let openapi = Protection::effective(&api.protection, &operation.protection)
                        .contract
                        .is_some()
                        .then_some(OperationSchemas { parameters: operation.parameters, request_body: operation.request_body });
                    OperationInput {
                        id: operation.id,
                        method: operation.method,
                        path: operation.path,
                        protection: operation.protection,
                        response_classes: classes,
                        response_fields,
                        openapi,
                    }
                })
                .collect::<Vec<_>>();
            let components = match operations.iter().any(|operation| operation.openapi.is_some()) {
                true => apis::find_components(db, api.summary.id).await?,
                false => serde_json::Value::Null,
            };
            inputs.push(ApiInput {
                id: api.summary.id.0,
                name: api.summary.name,
                environment: api.summary.environment,
                protection: api.protection,
                operations,
                components,
                openapi_version: api.openapi_version,
            });
        }
        let client_apps = client_apps::list_client_apps(db).await?.into_iter().map(|app| (app.id.0, app.name)).collect();
        let known_classes = custom_classes::known_classes(db).await?.into_iter().collect();
        let credentials = current_credentials(db).await?;
        Ok(Snapshot { apis: inputs, client_apps, known_classes, credentials })
    }

    /// The client credentials that work now, as bundles carry them.
    pub async fn current_credentials(db: &Db) -> Result<Credentials, StoreError> {
        let issued = |key: &client_apps::ActiveKey, secret_sha256: Option<String>| IssuedKey {
            client_app: key.client_app.0,
            credential_id: key.credential_id.0,
            instance: key.instance.clone(),
            prefix: key.prefix.clone(),
            expires_at: key.expires_at,
            secret_sha256,
        };
        let mut credentials = Credentials::default();
        for key in client_apps::list_active_keys(db, CredentialKind::ApiKey).await? {
            credentials.api_keys.insert(key.digest.clone(), issued(&key, None));
        }
        for key in client_apps::list_active_keys(db, CredentialKind::Hmac).await? {
            credentials.hmac_keys.insert(key.prefix.clone(), issued(&key, Some(key.digest.clone())));
        }
        for identity in client_apps::list_active_keys(db, CredentialKind::Mtls).await? {
            credentials.mtls_identities.insert(identity.prefix.clone(), issued(&identity, None));
        }
        Ok(credentials)
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

    /// The bundle keys agents should trust now: the active key, and retired keys until
    /// their overlap ends.
    pub async fn announced_keys(db: &Db) -> Result<Vec<AnnouncedKey>, StoreError> {
        let now = store::now_millis();
        Ok(signing::list_public_keys(db, KeyPurpose::Bundle)
            .await?
            .into_iter()
            .filter(|key| key.retired_at.is_none_or(|until| until > now))
            .map(|key| AnnouncedKey { key_id: key.key_id, public_key: key.public_key, trusted_until: key.retired_at })
            .collect())
    }

    /// Signs `policy` as the next revision and stores it (published at once when a reason
    /// is given). `signer` is the active bundle key unless a retiring one is named.
    #[allow(clippy::too_many_arguments)]
    async fn store_signed(
        db: &Db,
        master: &MasterKey,
        signer: Option<&Signer>,
        policy: &CompiledPolicy,
        target: &Labels,
        origin: Origin,
        publish_reason: Option<&str>,
        context: &AuditContext,
    ) -> Result<BundleRecord, StoreError> {
        let active;
        let signer = match signer {
            Some(signer) => signer,
            None => {
                active = signing::ensure_signer(db, master, KeyPurpose::Bundle, context).await?;
                &active
            }
        };
        let keys = announced_keys(db).await?;
        let content_hash = bundle::content_hash(policy);
        let (apis, routes) = summary(policy);
        let new = NewBundle {
            content_hash: &content_hash,
            signing_key_id: &signer.key_id,
            target,
            origin: origin.kind(),
            reissue_of: origin.reissue_of().map(|r| r as i64),
            summary: &serde_json::json!({"apis": apis, "routes": routes}),
        };
        let sign = |revision: i64| {
            let mut header = bundle::header(policy, revision as u64, store::now_millis(), &signer.key_id, target.clone());
            header.origin = origin;
            header.keys = keys;
            bundle::encode_signed(&Bundle { header, policy: policy.clone() }, |message| signer.sign(message))
        };
        bundles::insert_bundle(db, new, sign, publish_reason, context).await
    }

    /// Compiles and stores a signed draft for the agents matching `target` (every agent when
    /// empty: a canary otherwise), with what it changes against the fleet's active
    /// revision, or returns the problems that prevent it.
    pub async fn create_draft(
        db: &Db,
        master: &MasterKey,
        target: &Labels,
        context: &AuditContext,
    ) -> Result<Result<(BundleRecord, PolicyDiff), Vec<Diagnostic>>, StoreError> {
        let (preview, compiled) = preview(db).await?;
        match compiled {
            Some(policy) => {
                let record = store_signed(db, master, None, &policy, target, Origin::Compiled, None, context).await?;
                Ok(Ok((record, preview.diff)))
            }
            None => Ok(Err(preview.diagnostics)),
        }
    }

    async fn stored_policy(db: &Db, revision: i64) -> Result<CompiledPolicy, StoreError> {
        let signed = bundles::find_signed(db, revision).await?;
        let old = bundle::decode_unverified(signed.as_bytes())
            .map_err(|error| StoreError::Invalid { field: "revision", message: format!("cannot be read: {error}") })?;
        Ok(old.policy)
    }

    /// An earlier revision's rules with today's client credentials: re-issuing an old
    /// policy (rollback, promotion, pin, key announcement) must never bring back a key
    /// revoked since, nor cut off one issued since.
    async fn reissued_policy(db: &Db, revision: i64) -> Result<CompiledPolicy, StoreError> {
        let stored = stored_policy(db, revision).await?;
        with_credentials(db, stored, current_credentials(db).await?).await
    }

    /// `policy` carrying `credentials`, with the names of the applications they belong to.
    async fn with_credentials(db: &Db, mut policy: CompiledPolicy, credentials: Credentials) -> Result<CompiledPolicy, StoreError> {
        policy.credentials = credentials;
        for app in client_apps::list_client_apps(db).await? {
            policy.client_apps.entry(app.id.0).or_insert(app.name);
        }
        Ok(policy)
    }

    async fn published(db: &Db, revision: i64) -> Result<BundleRecord, StoreError> {
        let record = bundles::find_bundle(db, revision).await?;
        if record.published_at.is_none() {
            return Err(StoreError::invalid("revision", "is a draft; publish it first"));
        }
        Ok(record)
    }

    /// Re-issues an earlier revision's policy to every agent as a new, published revision.
    pub async fn rollback(db: &Db, master: &MasterKey, revision: i64, reason: &str, context: &AuditContext) -> Result<BundleRecord, StoreError> {
        let policy = reissued_policy(db, revision).await?;
        let origin = Origin::Rollback { of: revision as u64 };
        store_signed(db, master, None, &policy, &Labels::new(), origin, Some(reason), context).await
    }

    /// Promotes a published canary to every agent (a new revision with its policy).
    pub async fn promote(db: &Db, master: &MasterKey, revision: i64, reason: &str, context: &AuditContext) -> Result<BundleRecord, StoreError> {
        let canary = published(db, revision).await?;
        if canary.target.is_empty() {
            return Err(StoreError::invalid("revision", "already went to every agent; only a canary is promoted"));
        }
        let policy = reissued_policy(db, revision).await?;
        let origin = Origin::Promotion { of: revision as u64 };
        store_signed(db, master, None, &policy, &Labels::new(), origin, Some(reason), context).await
    }

    /// Holds the agents matching `labels` on a published revision's policy, whatever is
    /// published later, until unpinned: re-issued for the group as a new revision, which
    /// agents take although the policy is older.
    pub async fn pin(db: &Db, master: &MasterKey, labels: &Labels, revision: i64, reason: &str, context: &AuditContext) -> Result<BundleRecord, StoreError> {
        if labels.is_empty() {
            return Err(StoreError::invalid("labels", "name the label group to pin; to hold every agent, roll back instead"));
        }
        published(db, revision).await?;
        let policy = reissued_policy(db, revision).await?;
        store_signed(db, master, None, &policy, labels, Origin::Pin { of: revision as u64 }, Some(reason), context).await
    }

    /// The longest overlap a rotation may give the retiring key (30 days).
    pub const MAX_OVERLAP_HOURS: i64 = 720;
    /// The overlap when none is asked for (a week).
    pub const DEFAULT_OVERLAP_HOURS: i64 = 168;

    /// Rotates the bundle key without restarting agents: retires the active key with an
    /// overlap window, makes a new one, and re-issues what each group of agents runs now
    /// (the fleet, newer canaries, pins) signed by the retiring key and announcing the new
    /// one. Later bundles are signed by the new key. Returns the new key id and the
    /// announcements.
    pub async fn rotate_key(
        db: &Db,
        master: &MasterKey,
        overlap_ms: i64,
        reason: &str,
        context: &AuditContext,
    ) -> Result<(String, Vec<BundleRecord>), StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::invalid("reason", "say why: it is kept in the revision history and the audit trail"));
        }
        let running = running_now(db, |of| Origin::KeyAnnouncement { of }).await?;
        let (new, retired) = signing::rotate(db, master, KeyPurpose::Bundle, overlap_ms, context).await?;
        let Some(retired) = retired else { return Ok((new.key_id, Vec::new())) };
        let old = signing::signer_by_id(db, master, KeyPurpose::Bundle, &retired).await?;
        let mut announced = Vec::new();
        for (target, revision, origin) in running {
            let policy = reissued_policy(db, revision).await?;
            let why = format!("bundle key rotated to {}: {}", new.key_id, reason.trim());
            announced.push(store_signed(db, master, Some(&old), &policy, &target, origin, Some(&why), context).await?);
        }
        Ok((new.key_id, announced))
    }

    /// What each group of agents runs now, oldest first, with the origin its re-issue
    /// takes: pinned groups their pin's revision (re-issued as a pin again, so the group
    /// stays pinned); every other target its newest revision when that is newer than the
    /// fleet's (the fleet's included), re-issued as `reissue(of)`.
    async fn running_now(db: &Db, reissue: impl Fn(u64) -> Origin) -> Result<Vec<(Labels, i64, Origin)>, StoreError> {
        let pins = bundles::list_pins(db).await?;
        let groups = bundles::newest_by_target(db).await?;
        let fleet = groups.iter().find(|(target, _)| target.is_empty()).map_or(0, |(_, revision)| *revision);
        let mut running: Vec<(Labels, i64, Origin)> = pins
            .iter()
            .map(|pin| (pin.labels.clone(), pin.revision, Origin::Pin { of: pin.pinned_to as u64 }))
            .collect();
        for (target, revision) in groups {
            let pinned = pins.iter().any(|pin| pin.labels == target);
            if !pinned && (target.is_empty() || revision > fleet) {
                running.push((target, revision, reissue(revision as u64)));
            }
        }
        running.sort_by_key(|(_, revision, _)| *revision);
        Ok(running)
    }

    /// [`reissue_for_credentials`] after a credential change that has already been
    /// committed: a failure is logged, not returned (the change stands, and the next
    /// publish carries it).
    pub async fn credentials_changed(db: &Db, master: &MasterKey, why: &str, context: &AuditContext) {
        match reissue_for_credentials(db, master, why, context).await {
            Ok(reissued) if !reissued.is_empty() => {
                let revisions: Vec<i64> = reissued.iter().map(|record| record.revision).collect();
                tracing::info!(?revisions, why, "re-issued bundles with the current client credentials");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, why, "could not re-issue bundles after a credential change; the next publish carries it"),
        }
    }

    /// After a client credential was issued, rotated or revoked: re-issues what each group
    /// of agents runs now with today's credentials, so a revoked key is refused and a new
    /// one accepted within a second, not at the next publish. The rules are not touched;
    /// groups whose credentials are already current are left alone.
    pub async fn reissue_for_credentials(db: &Db, master: &MasterKey, why: &str, context: &AuditContext) -> Result<Vec<BundleRecord>, StoreError> {
        let current = current_credentials(db).await?;
        let mut reissued = Vec::new();
        for (target, revision, origin) in running_now(db, |of| Origin::Credentials { of }).await? {
            let stored = stored_policy(db, revision).await?;
            if stored.credentials == current {
                continue;
            }
            let policy = with_credentials(db, stored, current.clone()).await?;
            reissued.push(store_signed(db, master, None, &policy, &target, origin, Some(why), context).await?);
        }
        Ok(reissued)
    }
}
