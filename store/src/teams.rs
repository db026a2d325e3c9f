//! Teams: the unit that owns APIs and that developers belong to.

use crate::audit::{self, AuditContext, Change};
use crate::error::ResultExt;
use crate::{Db, StoreError, Team, TeamId, now_millis};
use sqlx::Row;

const MAX_TEAM_NAME_CHARS: usize = 64;

fn validate_name(name: &str) -> Result<String, StoreError> {
    crate::text::clean_name("team name", name, MAX_TEAM_NAME_CHARS)
}

pub async fn create_team(db: &Db, name: &str, context: &AuditContext) -> Result<Team, StoreError> {
    let name = validate_name(name)?;
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let team_id: i64 =
        sqlx::query_scalar("INSERT INTO team (name, created_at) VALUES ($1, $2) RETURNING team_id")
            .bind(&name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .on_unique("team name")?;
    let details = serde_json::json!({"after": {"name": name}});
    audit::append(&mut tx, context, Change::success("team.create", "team", team_id).with_details(details)).await?;
    tx.commit().await?;
    Ok(Team { id: TeamId(team_id), name, member_count: 0, created_at: now })
}

pub async fn list_teams(db: &Db) -> Result<Vec<Team>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.team_id, t.name, t.created_at, COUNT(m.account_id) AS member_count \
         FROM team t LEFT JOIN team_member m ON m.team_id = t.team_id \
         GROUP BY t.team_id, t.name, t.created_at ORDER BY t.name",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Team {
                id: TeamId(row.try_get("team_id")?),
                name: row.try_get("name")?,
                member_count: row.try_get("member_count")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

pub async fn find_team_by_name(db: &Db, name: &str) -> Result<Team, StoreError> {
    let name = name.trim();
    list_teams(db)
        .await?
        .into_iter()
        .find(|team| team.name.eq_ignore_ascii_case(name))
        .ok_or(StoreError::NotFound("team"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn team_names_are_checked() {
        assert!(super::validate_name("").is_err());
        assert!(super::validate_name(&"t".repeat(65)).is_err());
        assert_eq!(super::validate_name(" Payments ").unwrap(), "Payments");
    }
}
