//! Jobs: the worker's provision, teardown and reschedule work, claimed under a fenced lease.
//!
//! A claim draws a `lease_token`; renewing, finishing, retrying or postponing a job is done
//! only with it, so a worker whose lease ran out (and whose job another worker took over)
//! changes nothing. Asking again for a job that is running bumps its `generation`; the run
//! that finishes deletes the row only if it claimed the latest generation, else the job runs
//! once more. A job that waits (a bastion becoming ready) is postponed with its `progress`
//! instead of sleeping in a worker slot.

use super::{now_ms, Ledger, LedgerError};
use sqlx::{Any, Transaction};
use std::time::Duration;

/// Claims the earliest due job whose kind is (`?4 = 1`) or is not (`?4 = 0`) a teardown: the
/// two have their own slots, so a teardown never waits behind provisioning. `run_at` moves to
/// the lease's end, so `MIN(run_at)` is when the next job may be claimed (a crashed worker's
/// included) and the runner can sleep until then.
macro_rules! claim_job_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET lease_until = $1, run_at = $1, lease_token = $5, attempts = attempts + 1
             WHERE id = (SELECT id FROM jobs WHERE run_at <= $2
                           AND (lease_until IS NULL OR lease_until < $3)
                           AND (kind = 'teardown') = $4
                         ORDER BY run_at, id LIMIT 1 ",
            $lock,
            ")
             RETURNING id, request_id, kind, attempts, COALESCE(covers, generation), lease_token, progress"
        )
    };
}
pub(super) const CLAIM_JOB_SQL: &str = claim_job_sql!("");
/// PostgreSQL: replicas claiming at once each take a different row (`SKIP LOCKED`); without it
/// the second would wait for the first's row and then take it too.
pub(super) const CLAIM_JOB_SQL_PG: &str = claim_job_sql!("FOR UPDATE SKIP LOCKED");
pub(super) const NEXT_JOB_SQL: &str = "SELECT MIN(run_at) FROM jobs";

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

    fn parse(s: &str) -> Result<Self, LedgerError> {
        match s {
            "provision" => Ok(JobKind::Provision),
            "teardown" => Ok(JobKind::Teardown),
            "reschedule" => Ok(JobKind::Reschedule),
            other => Err(LedgerError::Corrupt(format!("job kind `{other}`"))),
        }
    }
}

/// A claimed job: what to do, and the lease that proves it is ours.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub request_id: String,
    pub kind: JobKind,
    /// Including this one (passes that only waited are not counted).
    pub attempts: i64,
    /// The generation this run's work covers: the row's when claimed, or, for a later pass of
    /// postponed work, the one that work began for.
    pub generation: i64,
    /// Drawn at the claim; every later write about this run carries it.
    pub lease_token: i64,
    /// Where an earlier pass left off (see `postpone_job`).
    pub progress: Option<String>,
}

/// Whether a write about a claimed job took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still ours: the write took effect.
    Held,
    /// Another worker took the job over after our lease ran out; nothing was written.
    Lost,
}

impl Lease {
    fn of(rows: u64) -> Self {
        if rows == 1 {
            Lease::Held
        } else {
            Lease::Lost
        }
    }
}

type ClaimedRow = (i64, String, String, i64, i64, i64, Option<String>);

impl Ledger {
    /// Claims the earliest due job of the given pool (teardowns, or everything else) whose
    /// lease, if any, has run out.
    pub async fn claim_job(&self, lease: Duration, teardown: bool) -> Result<Option<Job>, LedgerError> {
        let now = now_ms();
        let token: i64 = rand::random::<i64>() & i64::MAX;
        let row: Option<ClaimedRow> = sqlx::query_as(self.backend.pick(CLAIM_JOB_SQL, CLAIM_JOB_SQL_PG))
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(now)
            .bind(teardown)
            .bind(token)
            .fetch_optional(self.pool())
            .await?;
        let Some((id, request_id, kind, attempts, generation, lease_token, progress)) = row else { return Ok(None) };
        Ok(Some(Job { id, request_id, kind: JobKind::parse(&kind)?, attempts, generation, lease_token, progress }))
    }

    /// Extends the lease, if it is still ours.
    pub async fn renew_lease(&self, job: &Job, lease: Duration) -> Result<Lease, LedgerError> {
        let until = now_ms() + lease.as_millis() as i64;
        let rows = sqlx::query("UPDATE jobs SET lease_until = $1, run_at = $2 WHERE id = $3 AND lease_token = $4")
            .bind(until)
            .bind(until)
            .bind(job.id)
            .bind(job.lease_token)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(Lease::of(rows))
    }

    /// The run succeeded. The row goes, unless the job was asked for again while it ran (a
    /// newer generation): then it is due again at once, with its attempts counted afresh.
    pub async fn complete_job(&self, job: &Job) -> Result<Lease, LedgerError> {
        let deleted = sqlx::query("DELETE FROM jobs WHERE id = $1 AND generation = $2 AND lease_token = $3")
            .bind(job.id)
            .bind(job.generation)
            .bind(job.lease_token)
            .execute(self.pool())
            .await?
            .rows_affected();
        if deleted == 1 {
            return Ok(Lease::Held);
        }
        let rows = sqlx::query(
            "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL, attempts = 0, progress = NULL,
                    covers = NULL
             WHERE id = $2 AND lease_token = $3",
        )
        .bind(now_ms())
        .bind(job.id)
        .bind(job.lease_token)
        .execute(self.pool())
        .await?
        .rows_affected();
        if rows == 1 {
            tracing::debug!(job_id = job.id, request_id = %job.request_id, "asked for again while it ran; runs once more");
        }
        Ok(Lease::of(rows))
    }

    /// The run failed; try again after `after`, from the start (its progress is dropped: what
    /// it waited for may be what failed).
    pub async fn retry_job(&self, job: &Job, after: Duration, error: &str) -> Result<Lease, LedgerError> {
        let rows = sqlx::query(
            "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL, last_error = $2,
                    progress = NULL, covers = NULL
             WHERE id = $3 AND lease_token = $4",
        )
        .bind(now_ms() + after.as_millis() as i64)
        .bind(error)
        .bind(job.id)
        .bind(job.lease_token)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(Lease::of(rows))
    }

    /// The run is waiting for something outside (a bastion becoming ready): it gives its slot
    /// back and runs again after `after` from `progress`. Waiting is not an attempt.
    pub async fn postpone_job(&self, job: &Job, after: Duration, progress: &str) -> Result<Lease, LedgerError> {
        let rows = sqlx::query(
            "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL, progress = $2,
                    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, covers = $3
             WHERE id = $4 AND lease_token = $5",
        )
        .bind(now_ms() + after.as_millis() as i64)
        .bind(progress)
        .bind(job.generation)
        .bind(job.id)
        .bind(job.lease_token)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(Lease::of(rows))
    }

    /// When the next job becomes claimable (due, or its lease runs out), for the runner's sleep.
    pub async fn next_job_at(&self) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(NEXT_JOB_SQL).fetch_one(self.pool()).await?)
    }
}

/// Asks for a job: a new row, or, when the same (request, kind) job exists (perhaps running),
/// the earlier of the two due times (never before a running one's lease ends: it is not
/// claimable before, and `next_job_at` must not say otherwise) and a new generation, so a
/// running one runs again.
pub(crate) async fn enqueue_job(
    tx: &mut Transaction<'_, Any>,
    request_id: &str,
    kind: JobKind,
    run_at: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO jobs (request_id, kind, run_at) VALUES ($1, $2, $3)
         ON CONFLICT (request_id, kind) DO UPDATE SET
             run_at = CASE
                 WHEN COALESCE(jobs.lease_until, 0) > CASE WHEN excluded.run_at < jobs.run_at THEN excluded.run_at ELSE jobs.run_at END
                 THEN jobs.lease_until
                 ELSE CASE WHEN excluded.run_at < jobs.run_at THEN excluded.run_at ELSE jobs.run_at END
             END,
             generation = jobs.generation + 1",
    )
    .bind(request_id)
    .bind(kind.as_str())
    .bind(run_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
