//! palisade-agent as a library: everything but the command-line entry, so integration
//! tests run the real proxy, decision endpoint, spool and control-plane client.
//!
//! The path of a request: `proxy` (or the decision endpoint) → `decide` (`api_keys`,
//! `signatures` or `authn` for the credential, the evaluator over `active`, `limits`) → `spool`; `inspect`
//! carries out L3 on the proxied response. Around it: `identity`
//! and `control` talk to the control plane, `sync` keeps the bundle current through
//! `bundle_store`, `app` starts and stops it all.

pub mod active;
pub mod api_keys;
pub mod app;
pub mod authn;
pub mod bundle_store;
pub mod config;
pub mod control;
pub mod decide;
pub mod fsutil;
pub mod identity;
pub mod inspect;
pub mod limits;
pub mod problem;
pub mod proxy;
pub mod signatures;
pub mod spool;
pub mod sse;
pub mod status;
pub mod sync;
pub mod tls;

/// Unix milliseconds now (0 before 1970, which no clock here reports).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sleeps `duration` unless shutdown comes first; `true` on shutdown.
pub(crate) async fn pause(
    duration: std::time::Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.changed() => true,
    }
}
