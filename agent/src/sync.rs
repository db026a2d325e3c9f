//! Keeping the bundle in force current: the bundle loop (fetch with ETag, verify, persist,
//! swap), the event stream (a revision notice triggers a fetch at once; reconnects with
//! jittered backoff), the heartbeat (every 10 s; its answer can trigger a fetch too) and a
//! 30-second poll as a safety net. A revoked agent keeps enforcing its last good bundle
//! and calls at most once a minute per loop.

use crate::active::Enforcer;
use crate::authn::Authenticator;
use crate::bundle_store;
use crate::control::{BundleFetch, ControlClient, ControlError};
use crate::pause;
use crate::signatures::Keyring;
use crate::sse;
use crate::status::Stats;
use policy::agent_api::RevisionNotice;
use policy::bundle::{Active, VerifyError};
use rand::Rng;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

pub const POLL_EVERY: Duration = Duration::from_secs(30);
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
pub const REVOKED_RETRY: Duration = Duration::from_secs(60);
/// Keep-alives come every 15 s; three missed ones mean the stream is dead.
const EVENTS_IDLE: Duration = Duration::from_secs(45);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub struct Sync {
    pub client: Arc<ControlClient>,
    pub enforcer: Arc<Enforcer>,
    pub authn: Arc<Authenticator>,
    pub stats: Arc<Stats>,
    pub data_dir: PathBuf,
    /// HMAC secrets, fetched when the bundle in force names some not held.
    pub keyring: Arc<Keyring>,
    /// The accepted bundle and the trust; only the bundle loop changes it.
    active: Arc<Mutex<Active>>,
    fetch_now: Notify,
    heartbeat_now: Notify,
    /// The last revision refused, so notices naming it do not fetch it again and again.
    refused_revision: AtomicU64,
}

/// The delay before reconnect attempt `attempt` (1, 2, …): doubling from 0.2 s to 10 s,
/// with jitter so agents cut off together do not come back together.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(BACKOFF_MAX);
    ceiling
        .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
        .max(BACKOFF_MIN)
}

impl Sync {
    pub fn new(
        client: Arc<ControlClient>,
        enforcer: Arc<Enforcer>,
        authn: Arc<Authenticator>,
        stats: Arc<Stats>,
        data_dir: PathBuf,
        keyring: Arc<Keyring>,
        active: Active,
    ) -> Sync {
        Sync {
            client,
            enforcer,
            authn,
            stats,
            data_dir,
            keyring,
            active: Arc::new(Mutex::new(active)),
            fetch_now: Notify::new(),
            heartbeat_now: Notify::new(),
            refused_revision: AtomicU64::new(0),
        }
    }

    fn mark_revoked(&self) {
        if !self.stats.revoked.swap(true, Ordering::Relaxed) {
            let revision = self.enforcer.revision();
            tracing::error!(
                revision,
                "THE CONTROL PLANE HAS REVOKED THIS AGENT: it keeps enforcing its last verified bundle and retries once a minute"
            );
            self.stats.set_last_error("revoked by the control plane");
        }
    }

    fn mark_accepted(&self) {
        if self.stats.revoked.swap(false, Ordering::Relaxed) {
            tracing::warn!("the control plane accepts this agent again");
        }
    }

    /// Acts on the revision the control plane says this agent should run.
    pub fn on_notice(&self, notice: RevisionNotice) {
        let Some(wanted) = notice.revision.and_then(|r| u64::try_from(r).ok()) else {
            return;
        };
        if wanted != self.enforcer.revision()
            && wanted != self.refused_revision.load(Ordering::Relaxed)
        {
            self.fetch_now.notify_one();
        }
    }

    /// Fetches once; returns after acting on the answer.
    pub async fn fetch_once(&self, etag: &mut Option<String>) {
        match self.client.fetch_bundle(etag.as_deref()).await {
            Ok(BundleFetch::NotModified) => self.mark_accepted(),
            Ok(BundleFetch::NoBundle) => {
                self.mark_accepted();
                tracing::debug!("nothing is published for this agent yet");
            }
            Ok(BundleFetch::Bundle {
                bytes,
                etag: new_etag,
            }) => {
                self.mark_accepted();
                *etag = new_etag;
                self.activate(bytes).await;
            }
            Err(ControlError::Revoked) => return self.mark_revoked(),
            Err(error) => {
                tracing::warn!(%error, "bundle fetch failed; enforcing the bundle in force");
                return;
            }
        }
        self.refresh_hmac_keys().await;
    }

    /// Fetches the HMAC secrets when the bundle in force names one not held (a new key, a
    /// rotation, a first start); the keyring keeps only those the bundle pins.
    async fn refresh_hmac_keys(&self) {
        let Some(enforced) = self.enforcer.current() else { return };
        let credentials = &enforced.prepared.policy.credentials;
        if !self.keyring.lacks_any(credentials) {
            return;
        }
        match self.client.fetch_hmac_keys().await {
            Ok(secrets) => {
                let offered = secrets.keys.len();
                let kept = self.keyring.accept(credentials, secrets);
                tracing::info!(kept, offered, named = credentials.hmac_keys.len(), "HMAC keys held");
                if kept < credentials.hmac_keys.len() {
                    self.stats.set_last_error(format!(
                        "{} HMAC key(s) of the bundle could not be obtained",
                        credentials.hmac_keys.len() - kept
                    ));
                }
            }
            Err(ControlError::Revoked) => self.mark_revoked(),
            Err(error) => tracing::warn!(%error, "could not fetch the HMAC keys; signatures by keys not held are refused"),
        }
    }

    /// Verifies, persists and swaps in `bytes`; a refusal leaves everything as it was.
    async fn activate(&self, bytes: Vec<u8>) {
        let (active, enforcer, dir) = (
            self.active.clone(),
            self.enforcer.clone(),
            self.data_dir.clone(),
        );
        // Verifying and preparing a large bundle is CPU work: off the async workers.
        let outcome = tokio::task::spawn_blocking(move || {
            let mut active = active
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let bundle = match active.accept(&bytes, crate::now_millis()) {
                Ok(bundle) => bundle.clone(),
                Err(error) => {
                    let revision = policy::bundle::decode_unverified(&bytes)
                        .map(|b| b.header.revision)
                        .ok();
                    return Err((error, revision));
                }
            };
            let saved = bundle_store::save(&dir, &bytes, &active.trust.announced());
            let enforced = enforcer.install(&bundle);
            Ok((enforced, saved))
        })
        .await;
        match outcome {
            Ok(Ok((enforced, saved))) => {
                if let Err(error) = saved {
                    tracing::error!(%error, "cannot keep the bundle on disk; enforcing it from memory");
                    self.stats
                        .set_last_error(format!("cannot keep the bundle on disk: {error}"));
                }
                tracing::info!(revision = enforced.revision, hash = %enforced.content_hash, "bundle in force");
                self.authn.prefetch(&enforced.issuers);
                self.refused_revision.store(0, Ordering::Relaxed);
                self.heartbeat_now.notify_one();
            }
            Ok(Err((VerifyError::StaleRevision { revision, active }, _))) if revision == active => {
                tracing::debug!(revision, "the bundle offered is the one in force");
            }
            Ok(Err((error, revision))) => {
                let text = match revision {
                    Some(revision) => format!("bundle revision {revision} refused: {error}"),
                    None => format!("bundle refused: {error}"),
                };
                tracing::error!("{text}; enforcing the bundle in force");
                self.stats.set_last_error(text);
                self.refused_revision
                    .store(revision.unwrap_or(0), Ordering::Relaxed);
            }
            Err(error) => tracing::error!(%error, "bundle verification stopped unexpectedly"),
        }
    }

    /// Fetches at start, on notices, and every 30 s.
    pub async fn bundle_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut etag = None;
        let mut last_call: Option<Instant> = None;
        loop {
            if self.stats.is_revoked()
                && let Some(at) = last_call
                && pause(REVOKED_RETRY.saturating_sub(at.elapsed()), &mut shutdown).await
            {
                return;
            }
            last_call = Some(Instant::now());
            self.fetch_once(&mut etag).await;
            let every = if self.stats.is_revoked() {
                REVOKED_RETRY
            } else {
                POLL_EVERY
            };
            tokio::select! {
                _ = self.fetch_now.notified() => {}
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Posts the status every 10 s, and soon after a bundle is activated.
    pub async fn heartbeat_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let status = self.stats.heartbeat(self.enforcer.active());
            match self.client.post_status(&status).await {
                Ok(notice) => {
                    self.mark_accepted();
                    self.on_notice(notice);
                }
                Err(ControlError::Revoked) => self.mark_revoked(),
                Err(error) => tracing::debug!(%error, "heartbeat failed"),
            }
            if self.stats.is_revoked() {
                if pause(REVOKED_RETRY, &mut shutdown).await {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = self.heartbeat_now.notified() => {}
                _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Follows the event stream, reconnecting with backoff.
    pub async fn events_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        loop {
            match self.client.open_events().await {
                Ok(mut response) => {
                    self.mark_accepted();
                    attempt = 0;
                    tracing::debug!("event stream open");
                    let mut parser = sse::Parser::default();
                    loop {
                        let next = tokio::select! {
                            next = tokio::time::timeout(EVENTS_IDLE, response.chunk()) => next,
                            _ = shutdown.changed() => return,
                        };
                        let bytes = match next {
                            Ok(Ok(Some(bytes))) => bytes,
                            Ok(Ok(None)) => break,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "event stream broke");
                                break;
                            }
                            Err(_) => {
                                tracing::debug!("event stream silent too long; reconnecting");
                                break;
                            }
                        };
                        for event in parser.push(&bytes) {
                            match event.name.as_str() {
                                "revision" => {
                                    match serde_json::from_str::<RevisionNotice>(&event.data) {
                                        Ok(notice) => self.on_notice(notice),
                                        Err(error) => {
                                            tracing::warn!(%error, "unreadable revision notice")
                                        }
                                    }
                                }
                                "revoked" => self.mark_revoked(),
                                _ => {}
                            }
                        }
                    }
                }
                Err(ControlError::Revoked) => self.mark_revoked(),
                Err(error) => tracing::debug!(%error, "event stream unavailable"),
            }
            attempt = attempt.saturating_add(1);
            let delay = if self.stats.is_revoked() {
                REVOKED_RETRY
            } else {
                backoff(attempt)
            };
            if pause(delay, &mut shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds() {
        for attempt in 0..40 {
            let delay = backoff(attempt);
            assert!(
                delay >= BACKOFF_MIN && delay <= BACKOFF_MAX,
                "{attempt}: {delay:?}"
            );
        }
        assert!(backoff(20) >= BACKOFF_MAX / 2, "the ceiling is reached");
    }
}
