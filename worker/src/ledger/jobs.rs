//! Jobs: the worker's provision, teardown and reschedule work, claimed under a lease.

use super::{now_ms, Ledger, LedgerError};
use sqlx::{Sqlite, Transaction};
use std::time::Duration;

/// Claims the earliest due job whose kind is (`?4 = 1`) or is not (`?4 = 0`) a teardown: the
/// two have their own slots, so a teardown never waits behind provisioning.
pub(super) const CLAIM_JOB_SQL: &str = "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1
     WHERE id = (SELECT id FROM jobs WHERE run_at <= ?2
                   AND (lease_until IS NULL OR lease_until < ?3)
                   AND (kind = 'teardown') = ?4
                 ORDER BY run_at, id LIMIT 1)
     RETURNING id, request_id, kind, attempts";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Provision,
    Teardown,
    /// Re-schedule the bastion's own shutdown after an extension.
    Reschedule,
}

impl JobKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobKind::Provision => "provision",
            JobKind::Teardown => "teardown",
            JobKind::Reschedule => "reschedule",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub request_id: String,
    pub kind: JobKind,
    /// Including this one.
    pub attempts: i64,
}

impl Ledger {
    /// Claims the next due job whose lease (if any) has run out.
    /// Claims the earliest due job of the given pool: teardowns, or everything else.
    pub async fn claim_job(&self, lease: Duration, teardown: bool) -> Result<Option<Job>, LedgerError> {
        let now = now_ms();
        let row: Option<(i64, String, String, i64)> = sqlx::query_as(CLAIM_JOB_SQL)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(now)
            .bind(teardown)
            .fetch_optional(&self.pool)
            .await?;
        let Some((id, request_id, kind, attempts)) = row else { return Ok(None) };
        let kind = match kind.as_str() {
            "provision" => JobKind::Provision,
            "teardown" => JobKind::Teardown,
            "reschedule" => JobKind::Reschedule,
            other => return Err(LedgerError::Corrupt(format!("job kind `{other}`"))),
        };
        Ok(Some(Job { id, request_id, kind, attempts }))
    }

    pub async fn renew_lease(&self, job_id: i64, lease: Duration) -> Result<(), LedgerError> {
        sqlx::query("UPDATE jobs SET lease_until = ? WHERE id = ?")
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn complete_job(&self, job_id: i64) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM jobs WHERE id = ?").bind(job_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn retry_job(&self, job_id: i64, after: Duration, error: &str) -> Result<(), LedgerError> {
        sqlx::query("UPDATE jobs SET run_at = ?, lease_until = NULL, last_error = ? WHERE id = ?")
            .bind(now_ms() + after.as_millis() as i64)
            .bind(error)
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- outbox -----------------------------------------------------------------------------
}

pub(crate) async fn enqueue_job(
    tx: &mut Transaction<'_, Sqlite>,
    request_id: &str,
    kind: JobKind,
    run_at: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO jobs (request_id, kind, run_at) VALUES (?, ?, ?)
         ON CONFLICT (request_id, kind) DO UPDATE SET run_at = MIN(run_at, excluded.run_at)",
    )
    .bind(request_id)
    .bind(kind.as_str())
    .bind(run_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
