//! How far each out-of-band audit sink has been delivered, for sinks that cannot be read
//! back to find out (a webhook). A file sink reads its own last line instead.

use crate::{Db, StoreError, now_millis};

/// The last entry and the last checkpoint a sink holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCursor {
    pub entry_seq: i64,
    pub checkpoint_seq: i64,
}

pub async fn find_sink_cursor(db: &Db, sink_id: &str) -> Result<SinkCursor, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT entry_seq, checkpoint_seq FROM audit_sink WHERE audit_sink_id = $1")
            .bind(sink_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map_or_else(SinkCursor::default, |(entry_seq, checkpoint_seq)| SinkCursor { entry_seq, checkpoint_seq }))
}

/// Records a delivery. The cursor only moves forward, so a replica that delivered an
/// older batch late cannot move it back.
pub async fn update_sink_cursor(db: &Db, sink_id: &str, cursor: SinkCursor) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_sink (audit_sink_id, entry_seq, checkpoint_seq, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (audit_sink_id) DO UPDATE SET entry_seq = excluded.entry_seq, \
         checkpoint_seq = excluded.checkpoint_seq, updated_at = excluded.updated_at \
         WHERE excluded.entry_seq >= audit_sink.entry_seq AND excluded.checkpoint_seq >= audit_sink.checkpoint_seq",
    )
    .bind(sink_id)
    .bind(cursor.entry_seq)
    .bind(cursor.checkpoint_seq)
    .bind(now_millis())
    .execute(db.pool())
    .await?;
    Ok(())
}
