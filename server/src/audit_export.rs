//! The out-of-band copy of the audit trail: entries and signed checkpoints as JSON Lines,
//! appended and fsynced by a background task. It never blocks a change: entries are
//! written to the database first, and the exporter catches up from the last entry and
//! checkpoint in the file, so a slow or failing sink loses nothing once it recovers.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::audit::{self, ChainBreak};
use store::audit_sinks::SinkCursor;
use store::checkpoints::{self, CheckpointCheck};
use store::signing::KeySet;
use store::{AuditEntry, Checkpoint, Db, TrailSummary};

/// One line of an export (the file, or a webhook's request body). Lines live only while
/// being written or read, so the size gap between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExportLine {
    Entry(AuditEntry),
    Checkpoint(Checkpoint),
}

impl ExportLine {
    fn seq(&self) -> i64 {
        match self {
            ExportLine::Entry(entry) => entry.seq,
            ExportLine::Checkpoint(checkpoint) => checkpoint.seq,
        }
    }
}

/// The next lines a sink at `cursor` lacks: up to `limit` entries, and every checkpoint
/// up to the last of them, in sequence order (a checkpoint after the entry it signs).
/// A checkpoint committed after later entries were exported still follows, late.
pub async fn next_lines(db: &Db, cursor: SinkCursor, limit: i64) -> Result<(Vec<ExportLine>, SinkCursor), String> {
    let entries = audit::list_entries(db, cursor.entry_seq, limit).await.map_err(|e| e.to_string())?;
    let entry_seq = entries.last().map_or(cursor.entry_seq, |entry| entry.seq);
    let signed = checkpoints::list_checkpoints(db, cursor.checkpoint_seq, entry_seq, i64::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let checkpoint_seq = signed.last().map_or(cursor.checkpoint_seq, |checkpoint| checkpoint.seq);
    let mut lines: Vec<ExportLine> = entries.into_iter().map(ExportLine::Entry).collect();
    lines.extend(signed.into_iter().map(ExportLine::Checkpoint));
    // Stable: an entry stays before the checkpoint with its sequence number.
    lines.sort_by_key(|line| (line.seq(), matches!(line, ExportLine::Checkpoint(_))));
    Ok((lines, SinkCursor { entry_seq, checkpoint_seq }))
}

/// How far back the exporter first reads to find the file's last lines.
const TAIL_BYTES: u64 = 1 << 20;

/// The last entry and checkpoint in the file (zero for a new or empty file). A torn last
/// line, left by a crash mid-write, is cut off so the next write starts on a clean line.
fn resume_point(path: &Path) -> std::io::Result<SinkCursor> {
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(SinkCursor::default()),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let mut window = TAIL_BYTES;
    loop {
        let start = length.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < tail.len() {
            file.set_len(start + complete as u64)?;
            file.sync_all()?;
        }
        // The first line of a window that does not start the file may be partial.
        let whole_lines = if start == 0 { &tail[..complete] } else { skip_first_line(&tail[..complete]) };
        let (mut entry_seq, mut checkpoint_seq) = (None, None);
        for line in whole_lines.split(|b| *b == b'\n').filter(|line| !line.is_empty()).rev() {
            match serde_json::from_slice::<ExportLine>(line) {
                Ok(ExportLine::Entry(entry)) => entry_seq = entry_seq.or(Some(entry.seq)),
                Ok(ExportLine::Checkpoint(checkpoint)) => checkpoint_seq = checkpoint_seq.or(Some(checkpoint.seq)),
                Err(error) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
            }
            if entry_seq.is_some() && checkpoint_seq.is_some() {
                break;
            }
        }
        if (entry_seq.is_some() && checkpoint_seq.is_some()) || start == 0 {
            return Ok(SinkCursor { entry_seq: entry_seq.unwrap_or(0), checkpoint_seq: checkpoint_seq.unwrap_or(0) });
        }
        window *= 2;
    }
}

fn skip_first_line(bytes: &[u8]) -> &[u8] {
    bytes.iter().position(|b| *b == b'\n').map_or(&[], |i| &bytes[i + 1..])
}

/// Lines as JSON Lines bytes.
pub fn encode_lines(lines: &[ExportLine]) -> Vec<u8> {
    let mut buffer = Vec::new();
    for line in lines {
        // Our own types always serialise.
        let _ = serde_json::to_writer(&mut buffer, line);
        buffer.push(b'\n');
    }
    buffer
}

fn append_to_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(bytes)?;
    // An exported line is one that survives a crash of this machine.
    file.sync_all()
}

/// One writer at a time: the file's own last line is the resume point, so two exports
/// running at once (the periodic one and the flush at shutdown) would both append the
/// same lines.
static FILE_WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Copies every entry and checkpoint the file does not have yet; returns how many lines.
pub async fn export_once(db: &Db, path: &Path) -> Result<usize, String> {
    let _only_writer = FILE_WRITER.lock().await;
    let owned = path.to_path_buf();
    let mut cursor = tokio::task::spawn_blocking(move || resume_point(&owned))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut exported = 0;
    loop {
        let (lines, next) = next_lines(db, cursor, 500).await?;
        if lines.is_empty() {
            return Ok(exported);
        }
        let owned = path.to_path_buf();
        let bytes = encode_lines(&lines);
        tokio::task::spawn_blocking(move || append_to_file(&owned, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", path.display()))?;
        exported += lines.len();
        cursor = next;
    }
}

/// Keeps the file up to date every `interval`, warning (once per outage) while it cannot.
pub fn spawn(db: Db, path: PathBuf, interval: Duration) {
    tokio::spawn(async move {
        let mut outage = crate::outage::Outage::new("audit export file");
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            outage.record(&export_once(&db, &path).await);
        }
    });
}

/// Reads an export file line by line, handing each parsed line and its line number on.
fn for_each_line(path: &Path, mut visit: impl FnMut(usize, ExportLine) -> Result<(), String>) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<ExportLine>(&line)
            .map_err(|error| format!("line {}: not an audit line ({error})", index + 1))?;
        visit(index + 1, parsed)?;
    }
    Ok(())
}

/// Verifies an export file on its own, with only the public keys: every entry's hash and
/// link from the first entry, and every signed checkpoint, including one that signs
/// entries the file no longer has (a cut tail).
pub fn verify_file(path: &Path, keys: &KeySet) -> Result<TrailSummary, String> {
    // First pass: the checkpoints, which may follow the entries they sign by any distance.
    let mut signed: Vec<Checkpoint> = Vec::new();
    for_each_line(path, |number, line| {
        if let ExportLine::Checkpoint(checkpoint) = line {
            if let Some(same) = signed.iter().find(|seen| seen.seq == checkpoint.seq) {
                if *same != checkpoint {
                    return Err(format!("line {number}: a second, different checkpoint at {}", checkpoint.seq));
                }
                return Ok(());
            }
            signed.push(checkpoint);
        }
        Ok(())
    })?;
    // Second pass: the chain, a page at a time, each entry checked against its checkpoint.
    let mut walk = Walk { check: CheckpointCheck::new(signed, keys), last_seq: 0, last_hash: audit::GENESIS_HASH.into() };
    let mut page: Vec<AuditEntry> = Vec::with_capacity(PAGE);
    for_each_line(path, |_, line| {
        if let ExportLine::Entry(entry) = line {
            page.push(entry);
            if page.len() == PAGE {
                walk.verify(&mut page).map_err(|broken| broken.to_string())?;
            }
        }
        Ok(())
    })?;
    walk.verify(&mut page).map_err(|broken| broken.to_string())?;
    walk.check.finish(walk.last_seq, walk.last_seq).map_err(|broken| broken.to_string())
}

const PAGE: usize = 1_000;

/// Where a verification walking the file in pages has got to.
struct Walk<'k> {
    check: CheckpointCheck<'k>,
    last_seq: i64,
    last_hash: String,
}

impl Walk<'_> {
    fn verify(&mut self, page: &mut Vec<AuditEntry>) -> Result<(), ChainBreak> {
        audit::verify_chain(page, self.last_seq, &self.last_hash)?;
        page.iter().try_for_each(|entry| self.check.check(entry))?;
        if let Some(last) = page.last() {
            (self.last_seq, self.last_hash) = (last.seq, last.hash.clone());
        }
        page.clear();
        Ok(())
    }
}
