//! What changes between two compiled policies, by operation (`GET /pets/{id} in Pets`):
//! the publish screen's human-readable diff against the active revision.

use crate::model::{CompiledPolicy, Route};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Operations whose rules changed, with the parts that did.
    pub changed: Vec<String>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn routes(policy: &CompiledPolicy) -> BTreeMap<String, &Route> {
    policy.routes().map(|(method, route)| (format!("{method} {} in {}", route.template, route.api_name), route)).collect()
}

/// The parts of two routes' rules that differ, by name.
fn changed_parts(old: &Route, new: &Route) -> Vec<&'static str> {
    let (a, b) = (&old.rules, &new.rules);
    let mut parts = Vec::new();
    if a.authentication != b.authentication {
        parts.push("authentication");
    }
    if a.network != b.network {
        parts.push("L1 network");
    }
    if a.requestor != b.requestor {
        parts.push("L2 requestor");
    }
    if a.data != b.data || old.response_classes != new.response_classes || old.response_fields != new.response_fields {
        parts.push("L3 data");
    }
    if a.consent != b.consent {
        parts.push("L4 consent");
    }
    if a.enforcement != b.enforcement {
        parts.push("enforcement");
    }
    if a.rate_limits != b.rate_limits {
        parts.push("rate limits");
    }
    if a.contract != b.contract || old.contract != new.contract {
        parts.push("request contract");
    }
    parts
}

pub fn diff(old: &CompiledPolicy, new: &CompiledPolicy) -> PolicyDiff {
    let (before, after) = (routes(old), routes(new));
    let mut diff = PolicyDiff::default();
    for (name, route) in &after {
        match before.get(name) {
            None => diff.added.push(name.clone()),
            Some(old) => {
                let parts = changed_parts(old, route);
                if !parts.is_empty() {
                    diff.changed.push(format!("{name}: {}", parts.join(", ")));
                }
            }
        }
    }
    diff.removed = before.keys().filter(|name| !after.contains_key(*name)).cloned().collect();
    // Credentials read like operations: added, removed, or changed (a rotation's expiry).
    let (before, after) = (old.credentials.describe(&old.client_apps), new.credentials.describe(&new.client_apps));
    for (name, state) in &after {
        match before.get(name) {
            None => diff.added.push(name.clone()),
            Some(old) if old != state => diff.changed.push(format!("{name}: {state}")),
            Some(_) => {}
        }
    }
    diff.removed.extend(before.keys().filter(|name| !after.contains_key(*name)).cloned());
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiInput, OperationInput, Snapshot};
    use serde_json::json;

    fn policy(operations: &[(&str, serde_json::Value)]) -> CompiledPolicy {
        let snapshot = Snapshot {
            apis: vec![ApiInput {
                id: 1,
                name: "Pets".into(),
                environment: "production".into(),
                protection: Default::default(),
                operations: operations
                    .iter()
                    .enumerate()
                    .map(|(index, (path, protection))| OperationInput {
                        id: index as i64,
                        method: "GET".into(),
                        path: (*path).into(),
                        protection: serde_json::from_value(protection.clone()).unwrap(),
                        response_classes: vec![],
                        response_fields: Vec::new(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Snapshot::default()
        };
        crate::compile(&snapshot).unwrap()
    }

    #[test]
    fn added_removed_and_changed_operations_are_named() {
        let old = policy(&[("/a", json!({})), ("/b", json!({}))]);
        let new = policy(&[("/b", json!({"authentication": {"mode": "public"}})), ("/c", json!({}))]);
        let diff = diff(&old, &new);
        assert_eq!(diff.added, ["GET /c in Pets"]);
        assert_eq!(diff.removed, ["GET /a in Pets"]);
        assert_eq!(diff.changed, ["GET /b in Pets: authentication"]);
        assert!(super::diff(&new, &new).is_empty());
    }

    #[test]
    fn issued_revoked_and_rotated_keys_are_named() {
        use crate::credentials::{IssuedKey, digest};
        let key = |id: i64, expires_at| IssuedKey { client_app: 7, credential_id: id, instance: format!("i-{id}"), prefix: format!("pak_{id}"), expires_at, secret_sha256: None };
        let mut old = policy(&[("/a", json!({}))]);
        old.client_apps.insert(7, "Orders".into());
        let mut new = old.clone();
        old.credentials.api_keys.insert(digest("one"), key(1, None));
        old.credentials.api_keys.insert(digest("two"), key(2, None));
        new.credentials.api_keys.insert(digest("two"), key(2, Some(5)));
        new.credentials.api_keys.insert(digest("three"), key(3, None));
        let diff = diff(&old, &new);
        assert_eq!(diff.added, ["API key pak_3… of Orders (i-3)"]);
        assert_eq!(diff.removed, ["API key pak_1… of Orders (i-1)"]);
        assert_eq!(diff.changed, ["API key pak_2… of Orders (i-2): expires 1970-01-01T00:00:00.005Z"]);
    }
}
