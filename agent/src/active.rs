//! The bundle in force, as request handling reads it: the prepared route tables and the
//! JWT issuers of the fronted API, swapped whole with one atomic pointer store when a
//! bundle is accepted. Readers never lock; a request keeps the snapshot it started with.

use crate::authn::{self, JwtIssuer};
use arc_swap::ArcSwapOption;
use policy::Prepared;
use policy::bundle::Bundle;
use std::sync::Arc;

/// One accepted bundle, ready to decide with.
pub struct Enforced {
    pub revision: u64,
    pub content_hash: String,
    pub prepared: Prepared,
    pub issuers: Vec<Arc<JwtIssuer>>,
}

pub struct Enforcer {
    api: i64,
    current: ArcSwapOption<Enforced>,
}

impl Enforcer {
    /// Nothing in force yet: every request is refused (or let through with `--fail-open`).
    pub fn new(api: i64) -> Enforcer {
        Enforcer {
            api,
            current: ArcSwapOption::empty(),
        }
    }

    pub fn api(&self) -> i64 {
        self.api
    }

    /// Puts a verified bundle in force.
    pub fn install(&self, bundle: &Bundle) -> Arc<Enforced> {
        if !bundle.policy.apis.contains_key(&self.api) {
            tracing::warn!(
                revision = bundle.header.revision,
                api = self.api,
                "the bundle declares no API with this id: every request is refused as an undeclared route"
            );
        }
        let enforced = Arc::new(Enforced {
            revision: bundle.header.revision,
            content_hash: bundle.header.content_hash.clone(),
            issuers: authn::issuers_of(&bundle.policy, self.api),
            prepared: Prepared::new(bundle.policy.clone()),
        });
        self.current.store(Some(enforced.clone()));
        enforced
    }

    pub fn current(&self) -> Option<Arc<Enforced>> {
        self.current.load_full()
    }

    /// The revision in force, `0` when none is.
    pub fn revision(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |e| e.revision)
    }

    /// The revision in force and its content hash, for the heartbeat.
    pub fn active(&self) -> Option<(u64, String)> {
        self.current
            .load()
            .as_ref()
            .map(|e| (e.revision, e.content_hash.clone()))
    }
}
