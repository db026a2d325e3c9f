//! Starting and stopping the agent: identity, the last good bundle from disk (before any
//! call to the control plane, so an outage does not keep it from serving), the spool, the
//! listeners, the control-plane loops; then a graceful stop on SIGTERM or SIGINT that seals
//! the spool.

use crate::active::Enforcer;
use crate::authn::Authenticator;
use crate::config::Config;
use crate::control::ControlClient;
use crate::decide::Decider;
use crate::gateway_certs::GatewayCertificates;
use crate::identity::{self, IdentityError};
use crate::limits::RateLimits;
use crate::proxy::{self, Proxy};
use crate::signatures::Keyring;
use crate::status::Stats;
use crate::sync::Sync;
use crate::{bundle_store, connections, fsutil, spool, tls};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long open connections get to finish after a stop is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Why the agent stopped before it could run.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Enrollment refused or impossible: exit code 2.
    #[error("{0}")]
    Enrollment(String),
    #[error("{0}")]
    Other(String),
}

/// A client for JWKS fetches: no redirects to other hosts' keys, bounded time.
fn jwks_client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("palisade-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::Other(format!("cannot build the HTTP client: {e}")))
}

/// Waits for SIGTERM or SIGINT.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), Failure> {
    run_until(config, stop_signal()).await
}

/// Runs the agent until `stop` completes (tests pass their own).
pub async fn run_until(config: Config, stop: impl Future<Output = ()>) -> Result<(), Failure> {
    let dir = config.data_dir.clone();
    fsutil::create_private_dir(&dir)
        .map_err(|e| Failure::Other(format!("cannot create {}: {e}", dir.display())))?;
    let client = ControlClient::new(config.control_plane.clone()).map_err(Failure::Other)?;
    let (key, identity) = identity::ensure(
        &dir,
        config.enroll_token.as_deref(),
        config.name.as_deref(),
        &client,
    )
    .await
    .map_err(|e| match e {
        IdentityError::Refused(message) => Failure::Enrollment(message),
        IdentityError::Failed(message) => Failure::Other(message),
    })?;
    let client = Arc::new(client.signed_as(key, identity.agent_id));

    let stats = Arc::new(Stats::default());
    let enforcer = Arc::new(Enforcer::new(config.api));
    let loaded = bundle_store::load(&dir, crate::now_millis()).map_err(Failure::Other)?;
    if let Some(refused) = &loaded.refused {
        tracing::error!("{refused}; refusing requests until a verified bundle arrives");
        stats.set_last_error(refused.clone());
    }
    let authn = Arc::new(Authenticator::new(jwks_client()?));
    if let Some(bundle) = &loaded.active.bundle {
        let enforced = enforcer.install(bundle);
        tracing::info!(
            revision = enforced.revision,
            "enforcing the last verified bundle from disk"
        );
    }

    let keyring = Arc::new(Keyring::open(&dir));
    let limits = spool::Limits { max_bytes: config.spool_max_bytes, ..spool::Limits::default() };
    let spool = spool::open_with(&dir, stats.clone(), limits)
        .map_err(|e| Failure::Other(format!("cannot open the decision spool: {e}")))?;
    let decider = Arc::new(Decider {
        enforcer: enforcer.clone(),
        authn: authn.clone(),
        limits: RateLimits::default(),
        mode: config.mode,
        fail_open: config.fail_open,
        stats: stats.clone(),
        log: spool.log.clone(),
        record_ids: Default::default(),
        keyring: keyring.clone(),
        replay: Default::default(),
    });

    let (stop_tx, shutdown) = watch::channel(false);
    let mut servers = Vec::new();
    if let Some(proxy_config) = &config.proxy {
        let listener = tokio::net::TcpListener::bind(proxy_config.listen)
            .await
            .map_err(|e| {
                Failure::Other(format!("cannot listen on {}: {e}", proxy_config.listen))
            })?;
        let proxy = Arc::new(Proxy::new(decider.clone(), &proxy_config.upstream, proxy_config.upstream_protocol, config.timeouts).map_err(Failure::Other)?);
        match &proxy_config.tls {
            None => {
                tracing::info!(listen = %proxy_config.listen, upstream = %proxy_config.upstream, "reverse proxy listening");
                let listener = connections::no_delay(listener);
                servers.push(tokio::spawn(connections::serve(listener, proxy, shutdown.clone())));
            }
            Some(files) => {
                let config = tls::server_config(&files.cert, &files.key, files.client_ca.as_deref()).map_err(Failure::Other)?;
                let listener = tls::TlsListener::new(listener, config).map_err(|e| Failure::Other(e.to_string()))?;
                let mtls = files.client_ca.is_some();
                tracing::info!(listen = %proxy_config.listen, upstream = %proxy_config.upstream, mtls, "reverse proxy listening over TLS");
                servers.push(tokio::spawn(connections::serve(listener, proxy, shutdown.clone())));
            }
        }
    }
    if let Some(address) = config.decision_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Failure::Other(format!("cannot listen on {address}: {e}")))?;
        let certificates = match &config.decision_client_certs {
            None => None,
            Some((ca, header)) => Some(GatewayCertificates::new(ca, header.clone()).map_err(Failure::Other)?),
        };
        let certificate_header = certificates.as_ref().map(|c| c.header().to_string());
        tracing::info!(listen = %address, client_certificates_from = ?certificate_header, "decision endpoint listening");
        servers.push(tokio::spawn(connections::serve_router(
            connections::no_delay(listener),
            proxy::decision_router(decider.clone(), certificates),
            shutdown.clone(),
            config.timeouts.caller_head,
        )));
    }
    if let Some(enforced) = enforcer.current() {
        authn.prefetch(&enforced.issuers);
    }

    let sync = Arc::new(Sync::new(
        client.clone(),
        enforcer.clone(),
        authn.clone(),
        stats.clone(),
        dir.clone(),
        keyring,
        loaded.active,
    ));
    let mut tasks = vec![
        tokio::spawn(sync.clone().bundle_loop(shutdown.clone())),
        tokio::spawn(sync.clone().heartbeat_loop(shutdown.clone())),
        tokio::spawn(sync.clone().events_loop(shutdown.clone())),
        tokio::spawn(spool::upload_loop(
            spool.dir.clone(),
            client.clone(),
            stats.clone(),
            spool.sealed.clone(),
            shutdown.clone(),
        )),
    ];
    let pruned = decider.clone();
    let mut prune_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => pruned.limits.prune(),
                _ = prune_shutdown.changed() => return,
            }
        }
    }));
    tracing::info!(agent_id = identity.agent_id, name = %identity.name, api = config.api, mode = ?config.mode, "palisade-agent running");

    stop.await;
    tracing::info!("stopping: draining connections and sealing the decision spool");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, futures::future::join_all(servers)).await;
    if drained.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(tasks)).await;
    let log = spool.log.clone();
    let _ = tokio::task::spawn_blocking(move || log.stop()).await;
    tracing::info!("stopped");
    Ok(())
}
