//! The decision-log spool: every decision reaches disk before it is uploaded, so none is
//! lost through a control-plane outage, a restart or a kill.
//!
//! The request path hands records to a bounded channel. A writer thread appends them as
//! JSON lines to `spool/open.jsonl`, writing each burst out at once, and every 5 ms while
//! records keep coming (a kill loses at most what is still in the channel), and seals the file into `spool/batch-<seq>.jsonl` every
//! second or 5,000 records. When the writer falls behind, requests wait for room in the
//! channel instead of their records being dropped: a decision that is not recorded did
//! not happen as far as an auditor can tell, so the log slows traffic rather than lose it.
//! The uploader sends sealed batches oldest first as gzip and deletes each only after the control plane took it.
//! At start an `open.jsonl` left by a killed agent is sealed first; a torn last line is
//! skipped when read.
//!
//! The sealed batches are held to a size cap (`--spool-max-mb`): an outage long enough
//! to fill it must not fill the disk the API's host runs on. Past it, the oldest batches
//! are dropped (never the one being uploaded, never the newest), counted in the heartbeat
//! and named in the last error: a gap an auditor can see, rather than a host that stops.

use crate::fsutil;
use crate::pause;
use crate::status::Stats;
use flate2::Compression;
use flate2::write::GzEncoder;
use flume::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use policy::agent_api::{
    DecisionRecord, MAX_BATCH_BYTES, MAX_BATCH_INFLATED_BYTES, MAX_BATCH_RECORDS,
};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

pub const SPOOL_DIR: &str = "spool";
pub const OPEN_FILE: &str = "open.jsonl";
/// One upload's worth: fewer seals mean fewer fsyncs under load.
const SEAL_RECORDS: usize = MAX_BATCH_RECORDS;
const SEAL_AFTER: Duration = Duration::from_secs(1);
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// While records keep coming, how often the writer takes what has arrived and writes it.
const BUSY_BEAT: Duration = Duration::from_millis(5);
/// Records waiting for the writer; beyond it requests wait for room.
pub const CHANNEL_CAPACITY: usize = 16_384;
/// The sealed batches' size cap unless configured: some three million records.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Uploads are tried again at most this often while the agent is revoked or refused.
const SLOW_RETRY: Duration = Duration::from_secs(60);

enum Message {
    Record(Box<DecisionRecord>),
    /// Seal what is open, then acknowledge.
    Seal(Sender<()>),
    /// Seal and stop.
    Stop(Sender<()>),
}

/// The request path's handle: cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    tx: Sender<Message>,
    stats: Arc<Stats>,
}

impl DecisionLog {
    /// Hands a record to the writer, waiting for room when it is behind.
    pub async fn record(&self, record: DecisionRecord) {
        let message = match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => return,
            Err(TrySendError::Full(message)) => message,
            Err(TrySendError::Disconnected(_)) => return self.lost(),
        };
        let waits = self.stats.spool_waits.fetch_add(1, Ordering::Relaxed);
        // One line per ten thousand waits is enough to see it; more would flood the log.
        if waits.is_multiple_of(10_000) {
            tracing::warn!("the decision spool is behind: requests wait for it to catch up");
        }
        if self.tx.send_async(message).await.is_err() {
            self.lost();
        }
    }

    /// [`DecisionLog::record`] from a thread that may block.
    pub fn record_blocking(&self, record: DecisionRecord) {
        if self.tx.send(Message::Record(Box::new(record))).is_err() {
            self.lost();
        }
    }

    /// The writer has stopped (shutdown): count the record instead of losing it silently.
    fn lost(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Seals what is open and waits until it is on disk (blocking: call from a blocking
    /// context).
    pub fn seal_now(&self) {
        let (ack, done) = flume::bounded(1);
        if self.tx.send(Message::Seal(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Seals and stops the writer (blocking). Records sent later are counted as errors.
    pub fn stop(&self) {
        let (ack, done) = flume::bounded(1);
        if self.tx.send(Message::Stop(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

/// The spool, started.
pub struct Spool {
    pub log: DecisionLog,
    /// Notified when a batch is sealed.
    pub sealed: Arc<Notify>,
    pub dir: PathBuf,
}

/// How large the spool may grow.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Records waiting for the writer; beyond it requests wait for room.
    pub channel: usize,
    /// Bytes of sealed batches kept; beyond it the oldest are dropped.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { channel: CHANNEL_CAPACITY, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// Opens the spool under `data_dir`, sealing a left-over open file, and starts the writer.
pub fn open(data_dir: &Path, stats: Arc<Stats>) -> io::Result<Spool> {
    open_with(data_dir, stats, Limits::default())
}

/// [`open`] within `limits` (tests use small ones to make the writer fall behind or the
/// spool fill up).
pub fn open_with(data_dir: &Path, stats: Arc<Stats>, limits: Limits) -> io::Result<Spool> {
    let dir = data_dir.join(SPOOL_DIR);
    fsutil::create_private_dir(&dir)?;
    let mut next_seq = batches(&dir)?.last().map_or(1, |(seq, _)| seq + 1);
    let open_path = dir.join(OPEN_FILE);
    match fs::metadata(&open_path) {
        Ok(meta) if meta.len() > 0 => {
            fs::rename(&open_path, dir.join(batch_name(next_seq)))?;
            fsutil::sync_dir(&dir)?;
            tracing::info!(
                seq = next_seq,
                "sealed the decision records an earlier run left open"
            );
            next_seq += 1;
        }
        Ok(_) => fs::remove_file(&open_path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // Sizes now (a directory listing); records counted in the background: a backlog left
    // by a long outage must not delay serving.
    let backlog = batches(&dir)?;
    let bytes: u64 = backlog.iter().filter_map(|(_, path)| fs::metadata(path).ok()).map(|meta| meta.len()).sum();
    stats.spool_bytes.fetch_add(bytes, Ordering::Relaxed);
    let counted = stats.clone();
    std::thread::Builder::new()
        .name("spool-count".into())
        .spawn(move || {
            let waiting: u64 = backlog
                .iter()
                .filter_map(|(_, path)| fs::read(path).ok())
                .map(|bytes| count_lines(&bytes))
                .sum();
            counted.spooled.fetch_add(waiting, Ordering::Relaxed);
        })?;
    let (tx, rx) = flume::bounded(limits.channel.max(1));
    let sealed = Arc::new(Notify::new());
    let writer = Writer {
        dir: dir.clone(),
        file: None,
        open_records: 0,
        opened_at: None,
        dirty_since: None,
        next_seq,
        max_bytes: limits.max_bytes,
        stats: stats.clone(),
        sealed: sealed.clone(),
    };
    std::thread::Builder::new()
        .name("decision-spool".into())
        .spawn(move || writer.run(rx))?;
    Ok(Spool {
        log: DecisionLog { tx, stats },
        sealed,
        dir,
    })
}

fn batch_name(seq: u64) -> String {
    // Zero-padded so names sort like their numbers.
    format!("batch-{seq:020}.jsonl")
}

/// The sealed batches, oldest first.
pub fn batches(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("batch-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        found.push((seq, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// Takes `n` off a gauge without going below zero (counts made at start run behind).
fn take_off(gauge: &std::sync::atomic::AtomicU64, n: u64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| Some(value.saturating_sub(n)));
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .count() as u64
}

struct Writer {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    open_records: usize,
    opened_at: Option<Instant>,
    /// Written into the buffer but not yet to the file, since.
    dirty_since: Option<Instant>,
    next_seq: u64,
    max_bytes: u64,
    stats: Arc<Stats>,
    sealed: Arc<Notify>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        // Idle, the writer sleeps in `recv` and the first record wakes it. Busy, it polls
        // on a short beat instead: a parked receiver costs every sender a futex wake (a
        // system call and a context switch on the request path), and each wake-up a write.
        let mut busy = false;
        loop {
            let first = if busy {
                std::thread::sleep(BUSY_BEAT);
                match rx.try_recv() {
                    Ok(message) => Some(message),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        self.seal();
                        return;
                    }
                }
            } else {
                let timeout = self
                    .opened_at
                    .map_or(SEAL_AFTER, |at| SEAL_AFTER.saturating_sub(at.elapsed()))
                    .max(Duration::from_millis(1));
                match rx.recv_timeout(timeout.min(FLUSH_EVERY)) {
                    Ok(message) => Some(message),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.seal();
                        return;
                    }
                }
            };
            busy = first.is_some();
            if let Some(message) = first {
                if !self.handle(message) {
                    return;
                }
                // Take the rest of a burst before writing it out, up to one batch.
                for _ in 0..SEAL_RECORDS {
                    match rx.try_recv() {
                        Ok(message) => {
                            if !self.handle(message) {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            if self.dirty_since.is_some() {
                self.flush();
            }
            if self.open_records >= SEAL_RECORDS
                || self.opened_at.is_some_and(|at| at.elapsed() >= SEAL_AFTER)
            {
                self.seal();
            }
        }
    }

    /// `false` when the writer must stop.
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Record(record) => {
                self.append(&record);
                if self.open_records >= SEAL_RECORDS {
                    self.seal();
                }
                true
            }
            Message::Seal(ack) => {
                self.seal();
                let _ = ack.send(());
                true
            }
            Message::Stop(ack) => {
                self.seal();
                let _ = ack.send(());
                false
            }
        }
    }

    fn fail(&self, what: &str, error: &io::Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let text = format!("decision spool: {what}: {error}");
        tracing::error!("{text}");
        self.stats.set_last_error(text);
    }

    fn append(&mut self, record: &DecisionRecord) {
        if self.file.is_none() {
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join(OPEN_FILE));
            match opened {
                Ok(file) => {
                    self.file = Some(BufWriter::with_capacity(256 * 1024, file));
                    self.opened_at = Some(Instant::now());
                }
                Err(error) => {
                    return self.fail("cannot open the spool file, a record is lost", &error);
                }
            }
        }
        if let Some(file) = &mut self.file {
            // Serialised straight into the file's buffer: no allocation per record. A
            // failure mid-line leaves a torn line, which the reader skips.
            let written = serde_json::to_writer(&mut *file, record)
                .map_err(io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            match written {
                Ok(()) => {
                    self.open_records += 1;
                    self.stats.spooled.fetch_add(1, Ordering::Relaxed);
                    self.dirty_since.get_or_insert_with(Instant::now);
                }
                Err(error) => self.fail("cannot write the spool file, a record is lost", &error),
            }
        }
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.file
            && let Err(error) = file.flush()
        {
            self.fail("cannot write the spool file", &error);
        }
        self.dirty_since = None;
    }

    fn seal(&mut self) {
        let Some(mut file) = self.file.take() else {
            return;
        };
        let result = (|| {
            file.flush()?;
            file.get_ref().sync_all()?;
            let size = file.get_ref().metadata()?.len();
            drop(file);
            fs::rename(
                self.dir.join(OPEN_FILE),
                self.dir.join(batch_name(self.next_seq)),
            )?;
            fsutil::sync_dir(&self.dir)?;
            Ok::<_, io::Error>(size)
        })();
        match result {
            Ok(size) => {
                self.next_seq += 1;
                self.sealed.notify_one();
                if self.stats.spool_bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
                    self.make_room();
                }
            }
            // The open file stays where it is; the next start seals it.
            Err(error) => self.fail("cannot seal the spool file", &error),
        }
        self.open_records = 0;
        self.opened_at = None;
        self.dirty_since = None;
    }

    /// Drops the oldest sealed batches until the rest fit under the cap, but never the
    /// one the uploader holds nor the newest.
    fn make_room(&mut self) {
        let listed = match batches(&self.dir) {
            Ok(listed) => listed,
            Err(error) => return self.fail("cannot list the spool to make room", &error),
        };
        let uploading = self.stats.uploading.load(Ordering::Relaxed);
        let (mut dropped_records, mut dropped_batches) = (0, 0);
        for (seq, path) in listed.iter().take(listed.len().saturating_sub(1)) {
            if self.stats.spool_bytes.load(Ordering::Relaxed) <= self.max_bytes {
                break;
            }
            if *seq == uploading {
                continue;
            }
            let Ok(bytes) = fs::read(path) else { continue };
            if fs::remove_file(path).is_err() {
                continue;
            }
            let lines = count_lines(&bytes);
            take_off(&self.stats.spool_bytes, bytes.len() as u64);
            take_off(&self.stats.spooled, lines);
            self.stats.dropped.fetch_add(lines, Ordering::Relaxed);
            dropped_records += lines;
            dropped_batches += 1;
        }
        if dropped_batches == 0 {
            return;
        }
        if let Err(error) = fsutil::sync_dir(&self.dir) {
            self.fail("cannot sync the spool after making room", &error);
        }
        let text = format!(
            "decision spool full ({} MiB): dropped the oldest {dropped_records} records ({dropped_batches} batches) while uploads did not go through",
            self.max_bytes / (1024 * 1024)
        );
        tracing::error!("{text}");
        self.stats.set_last_error(text);
    }
}

/// Why an upload did not go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadError {
    /// 429: wait this long.
    RetryAfter(Duration),
    /// The agent is revoked.
    Revoked,
    /// 401/403 for another reason.
    Refused(String),
    /// The control plane will never take this batch (400, 413, 422).
    Rejected(String),
    /// Unreachable, 5xx, timeouts: try again later.
    Transient(String),
}

/// Where sealed batches go (the control plane, or a test's stand-in).
pub trait BatchSink: Send + Sync + 'static {
    fn upload(&self, gzipped: Vec<u8>) -> impl Future<Output = Result<(), UploadError>> + Send;
}

/// A sealed batch ready to send: its gzip chunks within the upload limits.
#[derive(Debug)]
pub struct Prepared {
    pub chunks: Vec<Vec<u8>>,
    /// Lines in the file, as counted in `spooled`.
    pub lines: u64,
    /// Lines that were not records (a torn write) or too large to send alone.
    pub skipped: u64,
}

/// Reads a batch file and cuts it into uploads.
pub fn prepare(bytes: &[u8]) -> Prepared {
    let mut skipped = 0;
    let mut records: Vec<&[u8]> = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        // A syntax check is enough to drop a torn line; the control plane checks each record.
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
            records.push(line);
        } else {
            skipped += 1;
        }
    }
    let mut chunks = Vec::new();
    let mut group: Vec<&[u8]> = Vec::new();
    let mut group_bytes = 0;
    for line in records.iter().copied() {
        if !group.is_empty()
            && (group.len() >= MAX_BATCH_RECORDS
                || group_bytes + line.len() + 1 > MAX_BATCH_INFLATED_BYTES)
        {
            skipped += compress_within_limits(&group, &mut chunks);
            group.clear();
            group_bytes = 0;
        }
        group.push(line);
        group_bytes += line.len() + 1;
    }
    if !group.is_empty() {
        skipped += compress_within_limits(&group, &mut chunks);
    }
    Prepared {
        chunks,
        lines: count_lines(bytes),
        skipped,
    }
}

/// Gzips `lines` into `out`, halving groups whose gzip is over the limit; returns how many
/// single lines were too large to send at all.
fn compress_within_limits(lines: &[&[u8]], out: &mut Vec<Vec<u8>>) -> u64 {
    let gz = gzip(lines);
    let inflated: usize = lines.iter().map(|l| l.len() + 1).sum();
    if gz.len() <= MAX_BATCH_BYTES && inflated <= MAX_BATCH_INFLATED_BYTES {
        out.push(gz);
        return 0;
    }
    if lines.len() == 1 {
        return 1;
    }
    let (left, right) = lines.split_at(lines.len() / 2);
    compress_within_limits(left, out) + compress_within_limits(right, out)
}

fn gzip(lines: &[&[u8]]) -> Vec<u8> {
    // One write of the whole text: the encoder clears a 32 KiB output buffer on every
    // write, so two writes per record cost more than the compression itself.
    let mut text = Vec::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 8), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(&text);
    encoder.finish().unwrap_or_default()
}

/// Sends sealed batches oldest first until shutdown.
pub async fn upload_loop<S: BatchSink>(
    dir: PathBuf,
    sink: Arc<S>,
    stats: Arc<Stats>,
    sealed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let listed = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || batches(&dir)).await
        };
        let pending = match listed {
            Ok(Ok(pending)) => pending,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot list the decision spool");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        if pending.is_empty() {
            tokio::select! {
                _ = sealed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        for (seq, path) in pending {
            // Held from here until it is removed: a full spool does not drop it meanwhile.
            stats.uploading.store(seq, Ordering::Relaxed);
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || fs::read(&path).map(|bytes| (bytes.len() as u64, prepare(&bytes))))
                    .await
            };
            let (size, batch) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => continue,
                Ok(Err(error)) => {
                    tracing::error!(seq, %error, "cannot read a decision batch");
                    if pause(backoff, &mut shutdown).await {
                        return;
                    }
                    break;
                }
                Err(_) => break,
            };
            if batch.skipped > 0 {
                tracing::warn!(
                    seq,
                    skipped = batch.skipped,
                    "decision lines that are not records (a torn write) or too large were skipped"
                );
            }
            let mut rejected = None;
            for chunk in batch.chunks {
                loop {
                    if stats.is_revoked() && pause(SLOW_RETRY, &mut shutdown).await {
                        return;
                    }
                    let wait = match sink.upload(chunk.clone()).await {
                        Ok(()) => {
                            backoff = Duration::from_secs(1);
                            break;
                        }
                        Err(UploadError::RetryAfter(wait)) => wait,
                        Err(UploadError::Revoked) => {
                            if !stats.revoked.swap(true, Ordering::Relaxed) {
                                tracing::error!(
                                    "the control plane has revoked this agent: decisions stay spooled"
                                );
                            }
                            Duration::ZERO
                        }
                        Err(UploadError::Refused(message)) => {
                            tracing::warn!(%message, "decision upload refused; records stay spooled");
                            stats.set_last_error(format!("decision upload refused: {message}"));
                            SLOW_RETRY
                        }
                        Err(UploadError::Rejected(message)) => {
                            rejected = Some(message);
                            break;
                        }
                        Err(UploadError::Transient(message)) => {
                            tracing::debug!(%message, "decision upload failed; will retry");
                            stats.set_last_error(format!("decision upload failed: {message}"));
                            let wait = backoff;
                            backoff = (backoff * 2).min(SLOW_RETRY);
                            wait
                        }
                    };
                    if pause(wait, &mut shutdown).await {
                        return;
                    }
                }
                if rejected.is_some() {
                    break;
                }
            }
            let done = {
                let (path, dir) = (path.clone(), dir.clone());
                let rejected = rejected.clone();
                tokio::task::spawn_blocking(move || -> io::Result<()> {
                    match rejected {
                        // Kept on disk for inspection, out of the upload queue.
                        Some(_) => {
                            fs::rename(&path, dir.join(format!("rejected-{seq:020}.jsonl")))?
                        }
                        None => fs::remove_file(&path)?,
                    }
                    fsutil::sync_dir(&dir)
                })
                .await
            };
            if let Some(message) = rejected {
                tracing::error!(seq, %message, "the control plane will not take this decision batch; moved aside as rejected-{seq}");
                stats.set_last_error(format!("decision batch {seq} rejected: {message}"));
            }
            match done {
                Ok(Ok(())) => {
                    take_off(&stats.spooled, batch.lines);
                    take_off(&stats.spool_bytes, size);
                }
                Ok(Err(error)) => {
                    tracing::error!(seq, %error, "cannot remove an uploaded decision batch; it may be sent twice")
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Mutex;

    pub(crate) fn record(n: u64) -> DecisionRecord {
        DecisionRecord {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            at: 1_700_000_000_000,
            revision: Some(1),
            method: "GET".into(),
            path: format!("/pets/{n}"),
            api_id: Some(1),
            operation_id: Some(2),
            outcome: "allow".into(),
            status: 200,
            reason: None,
            source: "127.0.0.1".into(),
            caller: None,
            decision_micros: 3,
        }
    }

    fn ungzip(bytes: &[u8]) -> Vec<DecisionRecord> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn spooled_ids(dir: &Path) -> Vec<String> {
        let mut ids = Vec::new();
        for (_, path) in batches(&dir.join(SPOOL_DIR)).unwrap() {
            let bytes = fs::read(path).unwrap();
            for chunk in prepare(&bytes).chunks {
                ids.extend(ungzip(&chunk).into_iter().map(|r| r.id));
            }
        }
        ids
    }

    #[test]
    fn records_are_written_promptly_sealed_in_batches_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let spool = open(dir.path(), stats.clone()).unwrap();
        for n in 0..12_500 {
            spool.log.record_blocking(record(n));
        }
        // Written to the open file within the flush interval, before any seal is asked for.
        std::thread::sleep(Duration::from_millis(300));
        let on_disk: u64 = batches(&spool.dir)
            .unwrap()
            .iter()
            .map(|(_, p)| count_lines(&fs::read(p).unwrap()))
            .sum::<u64>()
            + fs::read(spool.dir.join(OPEN_FILE)).map_or(0, |b| count_lines(&b));
        assert_eq!(on_disk, 12_500);
        spool.log.stop();
        assert!(
            !spool.dir.join(OPEN_FILE).exists(),
            "stopping seals the open file"
        );
        assert!(
            batches(&spool.dir).unwrap().len() >= 3,
            "sealed every 5,000 records"
        );
        let ids = spooled_ids(dir.path());
        assert_eq!(ids.len(), 12_500);
        assert_eq!(ids[0], record(0).id, "oldest first");
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 12_500);
        // After the writer stopped, records count as errors instead of vanishing silently.
        spool.log.record_blocking(record(9));
        assert_eq!(stats.errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_falls_behind_slows_requests_and_loses_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        // Eight places for 64 concurrent senders: most sends must wait for the writer.
        let spool = open_with(dir.path(), stats.clone(), Limits { channel: 8, ..Limits::default() }).unwrap();
        let senders: Vec<_> = (0..64u64)
            .map(|task| {
                let log = spool.log.clone();
                tokio::spawn(async move {
                    for n in 0..500 {
                        log.record(record(task * 1_000 + n)).await;
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }
        let log = spool.log.clone();
        tokio::task::spawn_blocking(move || log.stop())
            .await
            .unwrap();
        let mut ids = spooled_ids(dir.path());
        assert_eq!(ids.len(), 32_000, "every record reached the spool");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 32_000, "each exactly once");
        assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
        assert!(
            stats.spool_waits.load(Ordering::Relaxed) > 0,
            "the senders had to wait"
        );
    }

    #[test]
    fn an_open_file_left_by_a_killed_agent_is_sealed_at_start_and_a_torn_line_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join(SPOOL_DIR);
        fs::create_dir_all(&spool_dir).unwrap();
        let mut left = Vec::new();
        for n in 0..3 {
            left.extend(serde_json::to_vec(&record(n)).unwrap());
            left.push(b'\n');
        }
        fs::write(spool_dir.join(batch_name(4)), &left).unwrap();
        left.extend_from_slice(br#"{"id":"torn","at":17"#);
        fs::write(spool_dir.join(OPEN_FILE), &left).unwrap();

        let stats = Arc::new(Stats::default());
        let spool = open(dir.path(), stats.clone()).unwrap();
        assert_eq!(
            batches(&spool.dir)
                .unwrap()
                .iter()
                .map(|(seq, _)| *seq)
                .collect::<Vec<_>>(),
            [4, 5],
            "sealed after the existing batch"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.spooled.load(Ordering::Relaxed) < 7 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            stats.spooled.load(Ordering::Relaxed),
            7,
            "three, and three plus a torn line"
        );
        let prepared = prepare(&fs::read(spool_dir.join(batch_name(5))).unwrap());
        assert_eq!(prepared.skipped, 1);
        assert_eq!(ungzip(&prepared.chunks[0]).len(), 3);
        spool.log.record_blocking(record(10));
        spool.log.seal_now();
        assert_eq!(batches(&spool.dir).unwrap().last().unwrap().0, 6);
        spool.log.stop();
    }

    #[test]
    fn a_full_spool_drops_its_oldest_batches_but_not_the_one_being_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        // Records 10 to 69 are all the same size: room for three and a half batches of ten.
        let line = serde_json::to_vec(&record(10)).unwrap().len() as u64 + 1;
        let spool = open_with(dir.path(), stats.clone(), Limits { max_bytes: line * 35, ..Limits::default() }).unwrap();
        stats.uploading.store(2, Ordering::Relaxed);
        for batch in 1..=6u64 {
            for n in 0..10 {
                spool.log.record_blocking(record(batch * 10 + n));
            }
            spool.log.seal_now();
        }
        let kept: Vec<u64> = batches(&spool.dir).unwrap().iter().map(|(seq, _)| *seq).collect();
        assert_eq!(kept, [2, 5, 6], "the oldest dropped first, but not the one being uploaded");
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 30);
        assert_eq!(stats.counters().dropped_decisions, 30, "reported in the heartbeat");
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 30);
        assert_eq!(stats.spool_bytes.load(Ordering::Relaxed), line * 30);
        assert!(stats.last_error().unwrap().contains("dropped the oldest 10 records"));
        let ids = spooled_ids(dir.path());
        assert_eq!((ids.first(), ids.last()), (Some(&record(20).id), Some(&record(69).id)));
        spool.log.stop();

        // Opened again, the spool counts what it holds.
        let reopened = Arc::new(Stats::default());
        let spool = open_with(dir.path(), reopened.clone(), Limits { max_bytes: line * 35, ..Limits::default() }).unwrap();
        assert_eq!(reopened.spool_bytes.load(Ordering::Relaxed), line * 30);
        spool.log.stop();
    }

    #[test]
    fn uploads_respect_the_record_and_size_limits() {
        let mut bytes = Vec::new();
        for n in 0..(MAX_BATCH_RECORDS as u64 + 10) {
            bytes.extend(serde_json::to_vec(&record(n)).unwrap());
            bytes.push(b'\n');
        }
        let prepared = prepare(&bytes);
        assert_eq!(prepared.chunks.len(), 2);
        assert_eq!(ungzip(&prepared.chunks[0]).len(), MAX_BATCH_RECORDS);
        assert!(prepared.chunks.iter().all(|c| c.len() <= MAX_BATCH_BYTES));
    }

    /// Refuses the first `failures` uploads, then keeps what it is sent.
    struct FlakySink {
        failures: Mutex<Vec<UploadError>>,
        received: Mutex<Vec<DecisionRecord>>,
    }

    impl BatchSink for FlakySink {
        async fn upload(&self, gzipped: Vec<u8>) -> Result<(), UploadError> {
            if let Some(error) = self.failures.lock().unwrap().pop() {
                return Err(error);
            }
            self.received.lock().unwrap().extend(ungzip(&gzipped));
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_uploader_deletes_a_batch_only_after_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let spool = open(dir.path(), stats.clone()).unwrap();
        for n in 0..1_500 {
            spool.log.record(record(n)).await;
        }
        let log = spool.log.clone();
        tokio::task::spawn_blocking(move || log.seal_now())
            .await
            .unwrap();
        let sink = Arc::new(FlakySink {
            failures: Mutex::new(vec![
                UploadError::RetryAfter(Duration::from_millis(10)),
                UploadError::Transient("down".into()),
            ]),
            received: Mutex::new(Vec::new()),
        });
        let (stop, shutdown) = watch::channel(false);
        let uploader = tokio::spawn(upload_loop(
            spool.dir.clone(),
            sink.clone(),
            stats.clone(),
            spool.sealed.clone(),
            shutdown,
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.received.lock().unwrap().len() < 1_500 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The count goes down once the removal is on disk, just after the file is gone.
        while (!batches(&spool.dir).unwrap().is_empty()
            || stats.spooled.load(Ordering::Relaxed) > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = sink.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1_500);
        assert_eq!(received[0].id, record(0).id, "oldest first");
        assert!(batches(&spool.dir).unwrap().is_empty());
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 0);
        stop.send(true).unwrap();
        uploader.await.unwrap();
        let log = spool.log.clone();
        tokio::task::spawn_blocking(move || log.stop())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_batch_the_control_plane_rejects_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let spool = open(dir.path(), stats.clone()).unwrap();
        spool.log.record(record(1)).await;
        let log = spool.log.clone();
        tokio::task::spawn_blocking(move || log.stop())
            .await
            .unwrap();
        let sink = Arc::new(FlakySink {
            failures: Mutex::new(vec![UploadError::Rejected("bad".into())]),
            received: Mutex::new(Vec::new()),
        });
        let (stop, shutdown) = watch::channel(false);
        let uploader = tokio::spawn(upload_loop(
            spool.dir.clone(),
            sink,
            stats.clone(),
            spool.sealed.clone(),
            shutdown,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !batches(&spool.dir).unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(spool.dir.join(format!("rejected-{:020}.jsonl", 1)).exists());
        assert!(stats.last_error().unwrap().contains("rejected"));
        stop.send(true).unwrap();
        uploader.await.unwrap();
    }
}
