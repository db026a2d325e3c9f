//! Which revision each agent is meant to run, kept in memory and refreshed the moment
//! bundles or pins change, so a publish reaches every connected agent within a second and
//! a thousand event streams do not each query the database.
//!
//! Changes are noticed through the `bundle_generation` counter that database triggers bump
//! in the changing transaction (bundles, pins, and agent revocations, which open event
//! streams must act on). On PostgreSQL the trigger also NOTIFYs `palisade_bundles`,
//! which reaches every replica at commit; a slow poll covers a dropped LISTEN connection
//! (and agents' heartbeats, answered with their meant revision, catch up meanwhile).
//! On SQLite (one machine) a fast poll of that one-row table does the same job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::bundles::{self, BundlePin, Labels};
use store::{Backend, Db};
use tokio::sync::{Notify, watch};

/// The PostgreSQL channel the bundle triggers notify.
const CHANNEL: &str = "palisade_bundles";
/// Signed bundles kept in memory: the few revisions agents are fetching.
const CACHED_BUNDLES: usize = 16;

/// What agents are meant to run, as of one generation.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `None` until the first load.
    pub generation: Option<i64>,
    pins: Vec<BundlePin>,
    newest_by_target: Vec<(Labels, i64)>,
}

impl Snapshot {
    /// The revision an agent with `labels` is meant to run.
    pub fn meant_for(&self, labels: &Labels) -> Option<i64> {
        bundles::meant_for(labels, &self.pins, &self.newest_by_target)
    }
}

/// A handle on the distribution state; cheap to clone. The refresher task runs for as
/// long as a handle does.
#[derive(Clone)]
pub struct Distribution {
    current: watch::Receiver<Arc<Snapshot>>,
    signed: Arc<Mutex<HashMap<i64, Arc<str>>>>,
}

impl Distribution {
    /// Starts the refresher. Must be called inside a Tokio runtime.
    pub fn start(db: Db) -> Distribution {
        let (sender, current) = watch::channel(Arc::new(Snapshot::default()));
        let changed = Arc::new(Notify::new());
        let poll = match db.backend() {
            Backend::Sqlite => Duration::from_millis(100),
            // Only a safety net: NOTIFY is what carries changes across replicas.
            Backend::Postgres => Duration::from_secs(30),
        };
        if let Some(url) = db.listen_url() {
            tokio::spawn(listen(url.to_owned(), changed.clone(), sender.clone()));
        }
        tokio::spawn(refresh(db, sender, changed, poll));
        Distribution { current, signed: Arc::default() }
    }

    /// The current snapshot, once loaded.
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        let mut current = self.current.clone();
        match current.wait_for(|snapshot| snapshot.generation.is_some()).await {
            Ok(snapshot) => snapshot.clone(),
            Err(_) => self.current.borrow().clone(),
        }
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.clone()
    }

    /// A revision's signed bytes. Revisions never change once stored, so they are cached.
    pub async fn signed(&self, db: &Db, revision: i64) -> Result<Arc<str>, store::StoreError> {
        if let Some(bytes) = self.signed.lock().ok().and_then(|cache| cache.get(&revision).cloned()) {
            return Ok(bytes);
        }
        let bytes: Arc<str> = bundles::find_signed(db, revision).await?.into();
        if let Ok(mut cache) = self.signed.lock() {
            if cache.len() >= CACHED_BUNDLES
                && let Some(oldest) = cache.keys().min().copied()
            {
                cache.remove(&oldest);
            }
            cache.insert(revision, bytes.clone());
        }
        Ok(bytes)
    }
}

async fn load(db: &Db, generation: i64) -> Result<Snapshot, store::StoreError> {
    Ok(Snapshot {
        generation: Some(generation),
        pins: bundles::list_pins(db).await?,
        newest_by_target: bundles::newest_by_target(db).await?,
    })
}

/// Reloads whenever the generation moves: on a notification, or at each poll.
async fn refresh(db: Db, sender: watch::Sender<Arc<Snapshot>>, changed: Arc<Notify>, poll: Duration) {
    let mut loaded: Option<i64> = None;
    loop {
        match store::agent_reports::bundle_generation(&db).await {
            // The generation is read before the state it stands for, so a change that
            // lands in between is loaded now and noticed again next time: never missed.
            Ok(generation) if loaded != Some(generation) => match load(&db, generation).await {
                Ok(snapshot) => {
                    loaded = Some(generation);
                    sender.send_replace(Arc::new(snapshot));
                }
                Err(error) => tracing::warn!(%error, "could not load what agents are meant to run"),
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not read the bundle generation"),
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(poll) => {}
            () = sender.closed() => return,
        }
    }
}

/// Holds a LISTEN connection on PostgreSQL and wakes the refresher on each notification;
/// reconnects with a growing pause when the connection drops.
async fn listen(url: String, changed: Arc<Notify>, sender: watch::Sender<Arc<Snapshot>>) {
    let mut pause = Duration::from_millis(200);
    loop {
        let attempt = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            // Anything published while we were not listening is picked up now.
            changed.notify_one();
            loop {
                listener.recv().await?;
                changed.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = attempt => {
                if let Err(error) = result {
                    tracing::warn!(%error, "lost the LISTEN connection for bundle notifications; reconnecting");
                }
            }
            () = sender.closed() => return,
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}
