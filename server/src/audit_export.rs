//! The out-of-band copy of the audit trail: a JSON Lines file, appended and fsynced by a
//! background task. It never blocks a change: entries are written to the database first,
//! and the exporter catches up from the last entry in the file, so a slow or failing sink
//! loses nothing once it recovers.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::{AuditEntry, Db, audit};

/// One line of the export file.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExportLine {
    Entry(AuditEntry),
}

/// How far back the exporter reads to find the file's last line.
const TAIL_BYTES: u64 = 1 << 20;

/// The last sequence number in the file (0 for a new or empty file). A torn last line,
/// left by a crash mid-write, is cut off so the next write starts on a clean line.
fn resume_point(path: &Path) -> std::io::Result<i64> {
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < tail.len() {
        file.set_len(start + complete as u64)?;
        file.sync_all()?;
    }
    let last = tail[..complete].split(|b| *b == b'\n').filter(|line| !line.is_empty()).next_back();
    Ok(match last.map(serde_json::from_slice::<ExportLine>) {
        Some(Ok(ExportLine::Entry(entry))) => entry.seq,
        Some(Err(error)) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
        None => 0,
    })
}

fn append_lines(path: &Path, entries: &[AuditEntry]) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut buffer, &ExportLine::Entry(entry.clone()))?;
        buffer.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&buffer)?;
    // An exported entry is one that survives a crash of this machine.
    file.sync_all()
}

/// Copies every entry the file does not have yet; returns how many.
pub async fn export_once(db: &Db, path: &Path) -> Result<usize, String> {
    let owned = path.to_path_buf();
    let mut after = tokio::task::spawn_blocking(move || resume_point(&owned))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut exported = 0;
    loop {
        let page = audit::list_entries(db, after, 500).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|entry| entry.seq) else { return Ok(exported) };
        let owned = path.to_path_buf();
        let count = page.len();
        tokio::task::spawn_blocking(move || append_lines(&owned, &page))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", path.display()))?;
        exported += count;
        after = last;
    }
}

/// Keeps the file up to date every `interval`, warning (once per outage) while it cannot.
pub fn spawn(db: Db, path: PathBuf, interval: Duration) {
    tokio::spawn(async move {
        let mut failing = false;
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match export_once(&db, &path).await {
                Ok(_) if failing => {
                    tracing::info!(path = %path.display(), "audit export recovered");
                    failing = false;
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    tracing::warn!(%error, "audit export failing; entries stay in the database and will follow");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}

/// Verifies an export file on its own: every entry's hash and its link to the previous
/// one, from the first entry. Returns how many entries it holds.
pub fn verify_file(path: &Path) -> Result<i64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        match serde_json::from_str::<ExportLine>(line) {
            Ok(ExportLine::Entry(entry)) => entries.push(entry),
            Err(error) => return Err(format!("line {}: not an audit line ({error})", number + 1)),
        }
    }
    audit::verify_chain(&entries, 0, audit::GENESIS_HASH).map_err(|broken| broken.to_string())?;
    Ok(entries.len() as i64)
}
