//! The outbox: what Slack must hear, in order per request, delivered by the notifier.

use super::{now_ms, Ledger, LedgerError};
use crate::events::Notice;
use sqlx::{FromRow, Sqlite, Transaction};

pub(super) const DUE_OUTBOX_SQL: &str = "SELECT o.id, o.request_id, o.notice, o.attempts FROM outbox o
     WHERE o.id IN (SELECT MIN(id) FROM outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                    GROUP BY request_id)
       AND o.next_attempt_at <= ?
     ORDER BY o.id LIMIT ?";
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
    pub async fn due_outbox(&self, limit: i64) -> Result<Vec<OutboxRow>, LedgerError> {
        Ok(sqlx::query_as(DUE_OUTBOX_SQL).bind(now_ms()).bind(limit).fetch_all(&self.pool).await?)
    }

    /// The newest queued row of `notice` for the request (the one a card render covers up to).
    pub async fn last_queued(&self, request_id: &str, notice: &str) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(id) FROM outbox WHERE request_id = ? AND notice = ? AND delivered_at IS NULL AND failed_at IS NULL",
        )
        .bind(request_id)
        .bind(notice)
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many posts already went to this request's `response_url` (Slack allows 5 in 30 min).
    pub async fn delivered_count(&self, request_id: &str) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE request_id = ? AND via = 'response_url'")
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
    tx: &mut Transaction<'static, Sqlite>,
    request_id: Option<&str>,
    notice: &Notice,
    now: i64,
) -> Result<(), LedgerError> {
    let text = serde_json::to_string(notice).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    sqlx::query("INSERT INTO outbox (request_id, notice, created_at, next_attempt_at) VALUES (?, ?, ?, ?)")
        .bind(request_id)
        .bind(text)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
