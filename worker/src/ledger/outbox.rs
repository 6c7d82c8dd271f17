//! The outbox: what Slack must hear, in order per request, delivered by the notifier.

use super::{now_ms, Backend, Ledger, LedgerError};
use crate::events::Notice;
use sqlx::{Any, FromRow, Transaction};

pub(super) const DUE_OUTBOX_SQL: &str = "SELECT o.id, o.request_id, o.notice, o.attempts FROM outbox o
     WHERE o.id IN (SELECT MIN(id) FROM outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                    GROUP BY request_id)
       AND o.next_attempt_at <= $1
     ORDER BY o.id LIMIT $2";
/// PostgreSQL: the due rows are claimed, not only read: their `next_attempt_at` moves to the
/// claim's end (`$3`), so another replica's notifier passes them by until this one settles
/// them (or dies and the claim runs out). A replica that loses the race for a row skips it:
/// PostgreSQL re-checks `next_attempt_at` on the row it waited for.
pub(super) const CLAIM_OUTBOX_SQL_PG: &str = "UPDATE outbox SET next_attempt_at = $3
     WHERE id IN (SELECT o.id FROM outbox o
                  WHERE o.id IN (SELECT MIN(id) FROM outbox
                                 WHERE delivered_at IS NULL AND failed_at IS NULL
                                 GROUP BY request_id)
                    AND o.next_attempt_at <= $1
                  ORDER BY o.id LIMIT $2)
       AND next_attempt_at <= $1 AND delivered_at IS NULL AND failed_at IS NULL
     RETURNING id, request_id, notice, attempts";
/// How long a notifier's claim on due rows lasts (PostgreSQL): longer than a pass takes.
pub const OUTBOX_CLAIM_MS: i64 = 120_000;
pub(super) const NEXT_OUTBOX_SQL: &str =
    "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL";

#[derive(Debug, Clone, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub request_id: Option<String>,
    pub notice: String,
    pub attempts: i64,
}

impl OutboxRow {
    pub fn notice(&self) -> Result<Notice, LedgerError> {
        serde_json::from_str(&self.notice).map_err(|e| LedgerError::Corrupt(e.to_string()))
    }
}

impl Ledger {
    /// The rows due now, the first undelivered one of each request, oldest first. One process
    /// holds a SQLite ledger, so there they are only read; on PostgreSQL they are claimed for
    /// `OUTBOX_CLAIM_MS` (`CLAIM_OUTBOX_SQL_PG`), so each is delivered by one replica.
    pub async fn due_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, LedgerError> {
        let now = now_ms();
        let mut rows: Vec<OutboxRow> = match self.backend {
            Backend::Sqlite => sqlx::query_as(DUE_OUTBOX_SQL).bind(now).bind(limit).fetch_all(&self.pool).await?,
            Backend::Postgres => {
                sqlx::query_as(CLAIM_OUTBOX_SQL_PG)
                    .bind(now)
                    .bind(limit)
                    .bind(now + OUTBOX_CLAIM_MS)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Gives claimed rows back, due at once (a pass that stopped before reaching them).
    pub async fn release_outbox(&self, ids: &[i64]) -> Result<(), LedgerError> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = $1 WHERE id = $2 AND delivered_at IS NULL AND failed_at IS NULL",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The newest queued row of `notice` for the request (the one a card render covers up to).
    pub async fn last_queued(&self, request_id: &str, notice: &str) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(id) FROM outbox WHERE request_id = $1 AND notice = $2 AND delivered_at IS NULL AND failed_at IS NULL",
        )
        .bind(request_id)
        .bind(notice)
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many posts already went to this request's `response_url` (Slack allows 5 in 30 min).
    pub async fn delivered_count(&self, request_id: &str) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE request_id = $1 AND via = 'response_url'")
            .bind(request_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Next time an outbox row becomes due, for the notifier's sleep.
    pub async fn next_outbox_at(&self) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(NEXT_OUTBOX_SQL).fetch_one(&self.pool).await?)
    }
}

pub(crate) async fn push_outbox(
    tx: &mut Transaction<'static, Any>,
    request_id: Option<&str>,
    notice: &Notice,
    now: i64,
) -> Result<(), LedgerError> {
    let text = serde_json::to_string(notice).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    sqlx::query("INSERT INTO outbox (request_id, notice, created_at, next_attempt_at) VALUES ($1, $2, $3, $4)")
        .bind(request_id)
        .bind(text)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
