//! The bundle in force, as request handling reads it: the prepared route tables, and the
//! JWT issuers, API-key headers and compiled request contracts of the fronted API,
//! swapped whole with one atomic pointer store when a bundle is accepted. Readers never
//! lock; a request keeps the snapshot it started with.

use crate::authn::{self, JwtIssuer};
use arc_swap::ArcSwapOption;
use policy::Prepared;
use policy::bundle::Bundle;
use policy::contract::Checker;
use std::collections::HashMap;
use std::sync::Arc;

/// One accepted bundle, ready to decide with.
pub struct Enforced {
    pub revision: u64,
    pub content_hash: String,
    pub prepared: Prepared,
    pub issuers: Vec<Arc<JwtIssuer>>,
    /// The headers the fronted API's API-key methods read.
    pub api_key_headers: Vec<http::HeaderName>,
    /// Whether the fronted API takes HMAC signatures anywhere (each request is held to
    /// its own route's rules).
    pub takes_signatures: bool,
    /// Request contracts of the fronted API's operations, by operation id, compiled once.
    /// A contract whose schemas do not compile (the control plane checks that they do)
    /// refuses its operation's requests rather than let them through unchecked.
    pub contracts: HashMap<i64, Result<Arc<Checker>, String>>,
}

/// Every request contract of `api`'s routes, compiled.
fn contracts_of(policy: &policy::CompiledPolicy, api: i64) -> HashMap<i64, Result<Arc<Checker>, String>> {
    let routes = policy.apis.get(&api).into_iter().flat_map(|api| api.routes.values().flatten());
    routes
        .filter_map(|route| {
            let contract = route.contract.as_ref()?;
            let checker = Checker::new(contract).map(Arc::new);
            if let Err(error) = &checker {
                tracing::error!(operation = route.operation_id, %error, "a request contract does not compile: its requests are refused");
            }
            Some((route.operation_id, checker))
        })
        .collect()
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
            api_key_headers: crate::api_keys::headers_of(&bundle.policy, self.api),
            takes_signatures: crate::signatures::takes_signatures(&bundle.policy, self.api),
            contracts: contracts_of(&bundle.policy, self.api),
            prepared: Prepared::new(bundle.policy.clone()),
        });
        self.current.store(Some(enforced.clone()));
        enforced
    }

    pub fn current(&self) -> Option<Arc<Enforced>> {
        self.current.load_full()
    }

    /// Reads the bundle in force without holding a reference to it beyond `read`: cheaper
    /// than [`Enforcer::current`] for a quick second look on the request path.
    pub fn with_current<R>(&self, read: impl FnOnce(&Enforced) -> R) -> Option<R> {
        self.current.load().as_deref().map(read)
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
