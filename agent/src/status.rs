//! What the heartbeat reports: counters kept with atomics (the hot path only adds), the
//! last error, the spool's size and the uptime.

use policy::agent_api::{AgentStatus, Counters};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Shared by every task; cheap to update from the request path.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub monitored: AtomicU64,
    pub errors: AtomicU64,
    /// Records in the spool files, sealed and open (approximate).
    pub spooled: AtomicU64,
    /// Times a request waited for the spool writer to catch up.
    pub spool_waits: AtomicU64,
    /// Bytes in sealed spool batches (added at a seal, taken off at an upload or a drop).
    pub spool_bytes: AtomicU64,
    /// Records dropped because the spool was full.
    pub dropped: AtomicU64,
    /// The sealed batch the uploader holds (0: none): a full spool never drops it.
    pub uploading: AtomicU64,
    /// The control plane answered `agent_revoked`: calls slow to one a minute.
    pub revoked: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            monitored: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            spool_waits: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            uploading: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }
}

impl Stats {
    pub fn set_last_error(&self, error: impl Into<String>) {
        let error = error.into();
        // A poisoned lock only means another thread panicked mid-assignment of a string.
        let mut slot = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(error);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    pub fn counters(&self) -> Counters {
        Counters {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            monitored: self.monitored.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            dropped_decisions: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// The heartbeat for the bundle in force (`None` when none is).
    pub fn heartbeat(&self, active: Option<(u64, String)>) -> AgentStatus {
        let (revision, hash) = active.map_or((None, None), |(revision, hash)| {
            (i64::try_from(revision).ok(), Some(hash))
        });
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            active_revision: revision,
            bundle_hash: hash,
            last_error: self.last_error(),
            uptime_seconds: self.started.elapsed().as_secs(),
            counters: self.counters(),
            spooled_decisions: self.spooled.load(Ordering::Relaxed),
        }
    }
}
