//! The ledger: SQLite (WAL, `synchronous=FULL`) holding requests, their audit history, the
//! worker's jobs and the outbox. Every state change is a guarded update that writes its audit
//! event (and, where Slack must hear of it, an outbox row) in the same transaction; zero rows
//! changed means someone else won and nothing is written.

use crate::audit_line::Subject;
use crate::events::{Check, EndReason, LaunchInfo, Notice};
use crate::ids::{RequestId, RequestIds};
use crate::state::RequestState;
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, FromRow, Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("request {0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the ledger is shutting down")]
    Closed,
    #[error("the batch this request was written in failed: {0}")]
    Batch(String),
}

/// The database file behind a `sqlite:` URL.
fn options_path(url: &str) -> Result<PathBuf, LedgerError> {
    Ok(SqliteConnectOptions::from_str(url)?.get_filename().to_path_buf())
}

/// Milliseconds since the Unix epoch, the ledger's unit of time.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

#[derive(Clone, Debug)]
pub struct Ledger {
    pool: SqlitePool,
    intake: mpsc::Sender<Intake>,
}

/// A new request waiting for the intake writer, with where to send its outcome.
#[derive(Debug)]
struct Intake {
    new: NewRequest,
    reply: oneshot::Sender<Result<Written, LedgerError>>,
}

// The queries the loops run every tick; a test holds each to an index (EXPLAIN QUERY PLAN),
// so their cost stays flat however many requests the ledger holds.
const EXPIRE_DUE_SQL: &str = "SELECT id FROM requests WHERE state = 'ready' AND expires_at <= ? ORDER BY expires_at";
const NEXT_EXPIRY_SQL: &str = "SELECT MIN(expires_at) FROM requests WHERE state = 'ready'";
/// Claims the earliest due job whose kind is (`?4 = 1`) or is not (`?4 = 0`) a teardown: the
/// two have their own slots, so a teardown never waits behind provisioning.
const CLAIM_JOB_SQL: &str = "UPDATE jobs SET lease_until = ?1, attempts = attempts + 1
     WHERE id = (SELECT id FROM jobs WHERE run_at <= ?2
                   AND (lease_until IS NULL OR lease_until < ?3)
                   AND (kind = 'teardown') = ?4
                 ORDER BY run_at, id LIMIT 1)
     RETURNING id, request_id, kind, attempts";
const DUE_OUTBOX_SQL: &str = "SELECT o.id, o.request_id, o.notice, o.attempts FROM outbox o
     WHERE o.id IN (SELECT MIN(id) FROM outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                    GROUP BY request_id)
       AND o.next_attempt_at <= ?
     ORDER BY o.id LIMIT ?";
const NEXT_OUTBOX_SQL: &str =
    "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL";
const LAST_HASH_SQL: &str = "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1";
const OPEN_REQUEST_ID_SQL: &str = "SELECT id FROM requests WHERE requester_id = ?1 AND service = ?2 AND cluster = ?3
       AND state IN ('requested','awaiting_approval','approved','provisioning','ready')";
/// How often the WAL is copied into the database beside the intake (`checkpointer`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Bytes the WAL file is cut back to when it starts again (64 MiB).
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// Most requests committed in one transaction.
const INTAKE_BATCH: usize = 256;

/// One access request, as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Request {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub state: StateColumn,
    pub requester_id: String,
    pub requester_name: String,
    pub team_id: String,
    pub channel_id: String,
    pub service: String,
    pub cluster: String,
    pub container: Option<String>,
    pub requested_task: Option<String>,
    pub ttl_secs: i64,
    pub response_url: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub ready_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub task_arn: Option<String>,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub role_name: Option<String>,
    pub launch: Option<String>,
    pub warnings: Option<String>,
    pub end_reason: Option<String>,
    pub reason: Option<String>,
    pub break_glass: bool,
    pub approvals_channel: Option<String>,
    pub decide_by: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub max_ttl_secs: Option<i64>,
    pub reminded_at: Option<i64>,
    pub ended_by: Option<String>,
    /// The bastion's own deadline (UTC ms), fixed at the first launch attempt.
    pub hard_stop_at: Option<i64>,
}

/// `RequestState` as read from its text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateColumn(pub RequestState);

impl TryFrom<String> for StateColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(StateColumn)
    }
}

impl Request {
    pub fn state(&self) -> RequestState {
        self.state.0
    }

    /// Who asked for what, as the audit channel's lines name it.
    pub fn subject(&self) -> Subject<'_> {
        Subject { requester: &self.requester_id, service: &self.service, cluster: &self.cluster, request: &self.id }
    }

    /// The task id: the last part of the task ARN.
    pub fn task_id(&self) -> Option<&str> {
        self.task_arn.as_deref().and_then(|arn| arn.rsplit('/').next())
    }
}

/// What the ingress knows when a person asks for access.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub requester_id: String,
    pub requester_name: String,
    pub team_id: String,
    pub channel_id: String,
    pub service: String,
    pub cluster: String,
    pub container: Option<String>,
    /// A task id or ARN the person named.
    pub task: Option<String>,
    pub ttl_secs: i64,
    pub response_url: String,
    /// The most the time box may grow to by extensions.
    pub max_ttl_secs: i64,
    pub reason: Option<String>,
    /// Approval skipped under the policy's break-glass rule (always told to the audit channel).
    pub break_glass: bool,
    /// Set when the request waits for a decision before anything is started.
    pub approval: Option<ApprovalNeeded>,
}

/// Where the approval card goes and until when a decision is awaited.
#[derive(Debug, Clone)]
pub struct ApprovalNeeded {
    pub channel: String,
    pub decide_by_ms: i64,
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created(Request),
    /// The same person already has an open request for the same service (Enter pressed twice).
    AlreadyOpen(Request),
}

pub use crate::audit::AuditEvent;

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

const WORKER: &str = "worker";

impl Ledger {
    /// Opens (creating if missing) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 1 MiB of page cache per connection: the loops read little, and memory is a budget.
            .pragma("cache_size", "-1024");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // sqlx 0.8 `begin_with`: a future dropped after its BEGIN ran but before it handed
            // over the transaction (a Slack client hanging up, a job stopped at shutdown) puts
            // the connection back still inside it, holding SQLite's one write lock for good.
            // Such a connection is closed instead (which rolls it back). The ping first lets a
            // rollback already queued by a dropped `Transaction` run.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let (intake, queue) = mpsc::channel(4 * INTAKE_BATCH);
        let checkpoints = Arc::new(AtomicU64::new(0));
        tokio::spawn(checkpointer(pool.clone(), checkpoints.clone()));
        let path = options_path(url)?;
        std::thread::Builder::new()
            .name("ledger-intake".into())
            .spawn(move || intake_writer(path, queue, checkpoints))
            .map_err(|e| LedgerError::Batch(format!("cannot start the intake writer: {e}")))?;
        Ok(Self { pool, intake })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that takes the write lock up front, so it never fails half-way
    /// on a lock upgrade.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Sqlite>, LedgerError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records a new request with its first audit event and its provisioning job, in one
    /// transaction, unless the same person already has an open request for that service.
    /// Returns once the transaction is durable. Concurrent calls are committed together by one
    /// writer (group commit: one sync for many requests); see `intake_writer`.
    pub async fn create_request(&self, new: NewRequest) -> Result<CreateOutcome, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.intake.send(Intake { new, reply }).await.map_err(|_| LedgerError::Closed)?;
        match answer.await.map_err(|_| LedgerError::Closed)?? {
            Written::Created(request) => Ok(CreateOutcome::Created(*request)),
            Written::AlreadyOpen(id) => Ok(CreateOutcome::AlreadyOpen(self.get(&id).await?)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Request, LedgerError> {
        sqlx::query_as("SELECT * FROM requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| LedgerError::NotFound(id.to_string()))
    }

    /// Moves `id` from `from` to `to`, writing `kind` to the audit history (and, on the way to
    /// `provisioning`, the requester's card to the outbox). Returns false (and writes nothing)
    /// when the request was not in `from`.
    pub async fn transition(
        &self,
        id: &str,
        from: RequestState,
        to: RequestState,
        kind: &str,
        detail: Value,
    ) -> Result<bool, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        if !guarded(&mut tx, id, &[from], to, now).await? {
            return Ok(false);
        }
        append_audit(&mut tx, id, WORKER, kind, detail, now).await?;
        if to == RequestState::Provisioning {
            push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records a provisioning step that changed no state, e.g. `role_created`.
    pub async fn record_step(&self, id: &str, kind: &str, detail: Value) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        append_audit(&mut tx, id, WORKER, kind, detail, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Preflight chose the task and container; `warnings` are the checks that warned.
    pub async fn set_target(
        &self,
        id: &str,
        task_arn: &str,
        container: &str,
        warnings: &[Check],
        detail: Value,
    ) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let warnings = serde_json::to_string(warnings).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE requests SET task_arn = ?, container = ?, warnings = ?, updated_at = ? WHERE id = ?")
            .bind(task_arn)
            .bind(container)
            .bind(warnings)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, "preflight_passed", detail, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The bastion's own deadline: `proposed` (UTC ms) on the first call for the request, the
    /// stored one on every later call, so each launch attempt renders the same user data.
    pub async fn hard_stop(&self, id: &str, proposed: i64) -> Result<i64, LedgerError> {
        let mut tx = self.write().await?;
        let (stored,): (i64,) = sqlx::query_as(
            "UPDATE requests SET hard_stop_at = COALESCE(hard_stop_at, ?) WHERE id = ? RETURNING hard_stop_at",
        )
        .bind(proposed)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn set_role(&self, id: &str, role_name: &str, detail: Value) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        sqlx::query("UPDATE requests SET role_name = ?, updated_at = ? WHERE id = ?")
            .bind(role_name)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, "role_created", detail, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instance exists (launched now, or found by tag after a restart).
    pub async fn set_instance(
        &self,
        id: &str,
        instance_id: &str,
        launch: &LaunchInfo,
        kind: &str,
        detail: Value,
    ) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let launch_json = serde_json::to_string(launch).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE requests SET instance_id = ?, instance_type = ?, launch = ?, updated_at = ? WHERE id = ?")
            .bind(instance_id)
            .bind(&launch.instance_type)
            .bind(launch_json)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, kind, detail, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// provisioning → ready: the time box starts now. Writes the audit event and the notice.
    pub async fn mark_ready(&self, id: &str, region: &str) -> Result<Option<Request>, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let request = fetch(&mut tx, id).await?;
        let expires_at = now + request.ttl_secs * 1000;
        let changed = sqlx::query(
            "UPDATE requests SET state = 'ready', ready_at = ?, expires_at = ?, updated_at = ?
             WHERE id = ? AND state = 'provisioning'",
        )
        .bind(now)
        .bind(expires_at)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let (Some(instance_id), Some(_)) = (&request.instance_id, &request.task_arn) else {
            return Err(LedgerError::Corrupt(format!("{id} is ready without instance or task")));
        };
        let detail = json!({"instance_id": instance_id, "expires_at": expires_at, "region": region});
        append_audit(&mut tx, id, WORKER, "ready", detail, now).await?;
        crate::metrics::METRICS.request("ready");
        crate::metrics::METRICS.ready_after(now - request.created_at);
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        let what = if request.break_glass { "granted (BREAK-GLASS)" } else { "granted" };
        let line = request.subject().line(what, Some(expires_at));
        push_outbox(&mut tx, Some(id), &Notice::AuditLine { text: line }, now).await?;
        let request = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(request))
    }

    /// Any open state → failed, with the reason told to the person, and a teardown job for
    /// whatever was created. Returns false when the request was already final.
    pub async fn mark_failed(&self, id: &str, reason: &str, checks: &[Check]) -> Result<bool, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        // Not `ending`: a request someone ended is already being torn down, and ends as ended.
        let open: Vec<RequestState> =
            RequestState::ALL.into_iter().filter(|s| s.is_open() && *s != RequestState::Ending).collect();
        if !guarded(&mut tx, id, &open, RequestState::Failed, now).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE requests SET end_reason = ?, ended_at = ? WHERE id = ?")
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, "failed", json!({"reason": reason, "checks": checks}), now).await?;
        crate::metrics::METRICS.request("failed");
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        enqueue_job(&mut tx, id, JobKind::Teardown, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// ready → ending for every request whose time box is over, each with its audit event and
    /// a teardown job. Returns the ids moved.
    pub async fn expire_due(&self, now: i64) -> Result<Vec<String>, LedgerError> {
        let due: Vec<String> = sqlx::query_scalar(EXPIRE_DUE_SQL).bind(now).fetch_all(&self.pool).await?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.write().await?;
        let mut moved = Vec::with_capacity(due.len());
        for id in due {
            if guarded(&mut tx, &id, &[RequestState::Ready], RequestState::Ending, now).await? {
                sqlx::query("UPDATE requests SET end_reason = 'expired' WHERE id = ?")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, &id, WORKER, "expired", json!({}), now).await?;
                push_outbox(&mut tx, Some(&id), &Notice::Card, now).await?;
                enqueue_job(&mut tx, &id, JobKind::Teardown, now).await?;
                moved.push(id);
            }
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Earliest expiry among ready requests, so the expiry loop can sleep until then.
    pub async fn next_expiry(&self) -> Result<Option<i64>, LedgerError> {
        Ok(sqlx::query_scalar(NEXT_EXPIRY_SQL).fetch_one(&self.pool).await?)
    }

    /// Teardown finished: ending → ended with the notice, or, for a failed request, the audit
    /// event that its resources are gone.
    pub async fn mark_torn_down(&self, id: &str, detail: Value) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let request = fetch(&mut tx, id).await?;
        if guarded(&mut tx, id, &[RequestState::Ending], RequestState::Ended, now).await? {
            sqlx::query("UPDATE requests SET ended_at = ? WHERE id = ?").bind(now).bind(id).execute(&mut *tx).await?;
            let reason = match request.end_reason.as_deref() {
                Some("ended_by_user") => EndReason::EndedByUser,
                Some("cancelled") => EndReason::Cancelled,
                _ => EndReason::Expired,
            };
            append_audit(&mut tx, id, WORKER, "torn_down", detail, now).await?;
            append_audit(&mut tx, id, WORKER, "ended", json!({"reason": reason.as_str()}), now).await?;
            crate::metrics::METRICS.request("ended");
            push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
            let by = match (&request.ended_by, reason) {
                (Some(by), EndReason::EndedByUser | EndReason::Cancelled) => format!(" by <@{by}>"),
                _ => String::new(),
            };
            let what = format!("ended ({}){by}", reason.as_str().replace('_', " "));
            let line = request.subject().line(&what, None);
            push_outbox(&mut tx, Some(id), &Notice::AuditLine { text: line }, now).await?;
        } else {
            append_audit(&mut tx, id, WORKER, "torn_down", detail, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The reaper removed something of `request_id` (or of no request this ledger knows).
    pub async fn record_reaped(&self, request_id: Option<&str>, detail: Value) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        append_audit_opt(&mut tx, request_id, "reaper", "reaped", detail, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit_for(&self, id: &str) -> Result<Vec<AuditEvent>, LedgerError> {
        Ok(sqlx::query_as("SELECT * FROM audit_events WHERE request_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    // ---- jobs -------------------------------------------------------------------------------

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

    /// Due outbox rows, at most one per request: the oldest undelivered, so each request's
    /// messages arrive in order.
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

/// The one writer of new requests, on a thread of its own with its own connection (rusqlite:
/// one plain call per statement, no hand-off per statement as in an async driver). It takes
/// every request waiting (up to `INTAKE_BATCH`), writes them in one transaction and answers
/// each only after the commit, so an acknowledged request is durable and a burst costs one
/// sync instead of one each. Between two batches it finishes the latest background checkpoint
/// (`WalRestart`). It ends when the last `Ledger` is dropped.
fn intake_writer(path: PathBuf, mut queue: mpsc::Receiver<Intake>, checkpoints: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    let mut connection: Option<rusqlite::Connection> = None;
    let mut ids = RequestIds::new();
    let mut wal = WalRestart::default();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < INTAKE_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if connection.is_none() {
            connection = open_intake(&path).map_err(|e| tracing::error!(error = %e, "intake connection")).ok();
        }
        let written = match connection.as_mut() {
            Some(conn) => write_batch(conn, &mut ids, &batch).map_err(|e| e.to_string()),
            None => Err("no database connection".to_string()),
        };
        match written {
            Ok(outcomes) => {
                for (intake, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = intake.reply.send(Ok(outcome));
                }
                if let Some(conn) = connection.as_ref() {
                    wal.after_batch(conn, checkpoints.load(Ordering::Acquire));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = batch.len(), "could not record new requests");
                connection = None; // do not reuse a connection that failed
                for intake in batch.drain(..) {
                    let _ = intake.reply.send(Err(LedgerError::Batch(e.clone())));
                }
            }
        }
    }
}

/// Copies the WAL into the database every `CHECKPOINT_EVERY`, off the intake's commit path
/// (PASSIVE: it never waits for, nor blocks, a writer), and counts each one in `done` for
/// [`WalRestart`]. Ends when the pool is closed.
async fn checkpointer(pool: SqlitePool, done: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
            Ok((busy, log, copied)) => {
                tracing::trace!(busy, log, copied, "background checkpoint");
                done.fetch_add(1, Ordering::Release);
            }
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    }
}

/// Brings the WAL back to its beginning under a steady stream of requests, run by the intake
/// writer between two batches. SQLite starts the WAL again only at a commit that finds every
/// frame already copied into the database and no reader still using them; the background
/// checkpoint alone never catches up with a writer that never pauses, and the WAL file then
/// grows for as long as the stream lasts. A growing file also makes each commit's sync dearer
/// (the file's size is metadata the sync must write too), where overwriting the same blocks
/// is not (docs/PERFORMANCE.md).
///
/// After each background checkpoint, the writer copies the few frames committed meanwhile
/// (`finish_checkpoint`), and again after each following batch until it sees the WAL shorter
/// than the time before (it started again), at most `WAL_RESTART_TRIES` times a round: a
/// reader that began before the copy holds the start back until it ends.
#[derive(Debug, Default)]
struct WalRestart {
    rounds_seen: u64,
    tries_left: u32,
    frames_before: Option<i64>,
}

/// Most checkpoints the intake writer runs after one background checkpoint.
const WAL_RESTART_TRIES: u32 = 8;

impl WalRestart {
    fn after_batch(&mut self, conn: &rusqlite::Connection, rounds: u64) {
        if rounds != self.rounds_seen {
            self.rounds_seen = rounds;
            self.tries_left = WAL_RESTART_TRIES;
            self.frames_before = None;
        }
        if self.tries_left == 0 {
            return;
        }
        self.tries_left -= 1;
        if let Some(frames) = finish_checkpoint(conn) {
            if self.frames_before.is_some_and(|before| frames < before) {
                tracing::trace!(frames, tries_left = self.tries_left, "the WAL started again");
                self.tries_left = 0;
                return;
            }
            self.frames_before = Some(frames);
        }
        if self.tries_left == 0 {
            tracing::debug!(frames = ?self.frames_before, "the WAL did not start again this round (a reader was in the way)");
        }
    }
}

/// A PASSIVE checkpoint on the intake's connection. Returns the frames in the WAL when all of
/// them are now in the database; None when a reader or writer kept some back, or it failed
/// (only logged: the next one tries again).
fn finish_checkpoint(conn: &rusqlite::Connection) -> Option<i64> {
    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match outcome {
        Ok((_, log, copied)) if log == copied => Some(log),
        Ok((_, log, copied)) => {
            tracing::debug!(log, copied, "WAL not wholly checkpointed (a reader or writer was in the way)");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint by the intake writer failed");
            None
        }
    }
}

fn open_intake(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints (copying the WAL into the database, with its own syncs) would land on
    // whichever commit crosses the threshold; `checkpointer` does them beside the intake.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL starts again from its beginning, a file that grew past this (a burst while a
    // reader held the checkpoint back) is cut back, so the disk is given back.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

/// What the intake writer did with one request.
#[derive(Debug)]
enum Written {
    Created(Box<Request>),
    /// The id of the person's open request for the same service.
    AlreadyOpen(String),
}

fn write_batch(
    conn: &mut rusqlite::Connection,
    ids: &mut RequestIds,
    batch: &[Intake],
) -> rusqlite::Result<Vec<Written>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        // A second open request of the same person and service (the partial unique index) or
        // an id already taken is skipped by ON CONFLICT; the open-request lookup tells which.
        let mut insert = tx.prepare_cached(
            "INSERT INTO requests (id, state, requester_id, requester_name, team_id, channel_id,
                service, cluster, container, requested_task, ttl_secs, response_url, created_at, updated_at,
                max_ttl_secs, reason, break_glass, approvals_channel, decide_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT DO NOTHING",
        )?;
        let mut open = tx.prepare_cached(OPEN_REQUEST_ID_SQL)?;
        let mut audit = tx.prepare_cached(
            "INSERT INTO audit_events (request_id, at, actor, kind, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, 'requested', ?4, ?5, ?6)",
        )?;
        let mut job = tx.prepare_cached("INSERT INTO jobs (request_id, kind, run_at) VALUES (?1, 'provision', ?2)")?;
        let mut outbox = tx.prepare_cached(
            "INSERT INTO outbox (request_id, notice, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?3)",
        )?;
        let mut last_hash: Option<String> = tx.query_row(LAST_HASH_SQL, [], |row| row.get(0)).optional()?.flatten();
        for intake in batch {
            let new = &intake.new;
            let state = if new.approval.is_some() { "awaiting_approval" } else { "requested" };
            let mut collided = false;
            let outcome = loop {
                let id = if collided { RequestId::generate() } else { ids.next_at(now) };
                let inserted = insert.execute(rusqlite::params![
                    id.as_str(),
                    state,
                    new.requester_id,
                    new.requester_name,
                    new.team_id,
                    new.channel_id,
                    new.service,
                    new.cluster,
                    new.container,
                    new.task,
                    new.ttl_secs,
                    new.response_url,
                    now,
                    new.max_ttl_secs,
                    new.reason,
                    new.break_glass,
                    new.approval.as_ref().map(|a| a.channel.as_str()),
                    new.approval.as_ref().map(|a| a.decide_by_ms),
                ])?;
                if inserted == 1 {
                    let detail = requested_detail(new).to_string();
                    let hash = crate::audit::event_hash(
                        last_hash.as_deref(),
                        Some(id.as_str()),
                        now,
                        &new.requester_id,
                        "requested",
                        &detail,
                    );
                    audit.execute(rusqlite::params![id.as_str(), now, new.requester_id, detail, last_hash, hash])?;
                    last_hash = Some(hash);
                    if new.approval.is_some() {
                        // Nothing starts until someone decides: both cards go out now.
                        outbox.execute(rusqlite::params![id.as_str(), CARD_JSON, now])?;
                        outbox.execute(rusqlite::params![id.as_str(), APPROVAL_CARD_JSON, now])?;
                    } else {
                        // The card is first posted when provisioning starts (`transition`), a
                        // moment later; the acknowledgement already says it is on its way.
                        job.execute(rusqlite::params![id.as_str(), now])?;
                    }
                    if new.break_glass {
                        let line = Notice::AuditLine {
                            text: format!(
                                "{}: {}",
                                Subject {
                                    requester: &new.requester_id,
                                    service: &new.service,
                                    cluster: &new.cluster,
                                    request: id.as_str(),
                                }
                                .line(":rotating_light: BREAK-GLASS, without approval", None),
                                crate::audit_line::person_text(new.reason.as_deref().unwrap_or(""))
                            ),
                        };
                        let line = serde_json::to_string(&line).expect("a notice serializes");
                        outbox.execute(rusqlite::params![id.as_str(), line, now])?;
                    }
                    break Written::Created(Box::new(stored_request(new, id.as_str(), now)));
                }
                let existing: Option<String> = open
                    .query_row(rusqlite::params![new.requester_id, new.service, new.cluster], |row| row.get(0))
                    .optional()?;
                if let Some(existing) = existing {
                    break Written::AlreadyOpen(existing);
                }
                // Otherwise the id was taken (by another writer, or before a restart): draw
                // again at random, and move the counter on for the requests after this one.
                collided = true;
                ids.jump();
            };
            outcomes.push(outcome);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

const CARD_JSON: &str = r#"{"kind":"card"}"#;
const APPROVAL_CARD_JSON: &str = r#"{"kind":"approval_card"}"#;

fn requested_detail(new: &NewRequest) -> Value {
    json!({
        "service": new.service, "cluster": new.cluster, "container": new.container, "task": new.task,
        "ttl_secs": new.ttl_secs, "channel_id": new.channel_id,
        "requester_name": new.requester_name, "reason": new.reason, "break_glass": new.break_glass,
        "approval_needed": new.approval.is_some(),
    })
}

/// The row just inserted for `new`, without reading it back.
fn stored_request(new: &NewRequest, id: &str, now: i64) -> Request {
    Request {
        id: id.to_string(),
        state: StateColumn(if new.approval.is_some() {
            RequestState::AwaitingApproval
        } else {
            RequestState::Requested
        }),
        requester_id: new.requester_id.clone(),
        requester_name: new.requester_name.clone(),
        team_id: new.team_id.clone(),
        channel_id: new.channel_id.clone(),
        service: new.service.clone(),
        cluster: new.cluster.clone(),
        container: new.container.clone(),
        requested_task: new.task.clone(),
        ttl_secs: new.ttl_secs,
        response_url: new.response_url.clone(),
        created_at: now,
        updated_at: now,
        ready_at: None,
        expires_at: None,
        ended_at: None,
        task_arn: None,
        instance_id: None,
        instance_type: None,
        role_name: None,
        launch: None,
        warnings: None,
        end_reason: None,
        reason: new.reason.clone(),
        break_glass: new.break_glass,
        approvals_channel: new.approval.as_ref().map(|a| a.channel.clone()),
        decide_by: new.approval.as_ref().map(|a| a.decide_by_ms),
        decided_by: None,
        decided_at: None,
        max_ttl_secs: Some(new.max_ttl_secs),
        reminded_at: None,
        ended_by: None,
        hard_stop_at: None,
    }
}

pub(crate) async fn fetch(tx: &mut Transaction<'static, Sqlite>, id: &str) -> Result<Request, LedgerError> {
    sqlx::query_as("SELECT * FROM requests WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| LedgerError::NotFound(id.to_string()))
}

pub(crate) async fn guarded(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
    from: &[RequestState],
    to: RequestState,
    now: i64,
) -> Result<bool, LedgerError> {
    let placeholders = vec!["?"; from.len()].join(",");
    let sql = format!("UPDATE requests SET state = ?, updated_at = ? WHERE id = ? AND state IN ({placeholders})");
    let mut query = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(id);
    for state in from {
        query = query.bind(state.as_str());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

pub(crate) async fn append_audit(
    tx: &mut Transaction<'_, Sqlite>,
    request_id: &str,
    actor: &str,
    kind: &str,
    detail: Value,
    at: i64,
) -> Result<(), LedgerError> {
    append_audit_opt(tx, Some(request_id), actor, kind, detail, at).await
}

/// Appends an event linked to the one before it (the write transaction holds the lock, so
/// "the one before" cannot change underneath).
pub(crate) async fn append_audit_opt(
    tx: &mut Transaction<'_, Sqlite>,
    request_id: Option<&str>,
    actor: &str,
    kind: &str,
    detail: Value,
    at: i64,
) -> Result<(), LedgerError> {
    let prev: Option<Option<String>> = sqlx::query_scalar(LAST_HASH_SQL).fetch_optional(&mut **tx).await?;
    let prev = prev.flatten();
    let detail = detail.to_string();
    let hash = crate::audit::event_hash(prev.as_deref(), request_id, at, actor, kind, &detail);
    sqlx::query(
        "INSERT INTO audit_events (request_id, at, actor, kind, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(request_id)
    .bind(at)
    .bind(actor)
    .bind(kind)
    .bind(detail)
    .bind(prev)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn ledger() -> (Ledger, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let url = format!("sqlite://{}/t.db", dir.0.display());
        (Ledger::open(&url).await.unwrap(), dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!("fc-ledger-{}", rand::random::<u64>()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn new_request(user: &str) -> NewRequest {
        NewRequest {
            requester_id: user.into(),
            requester_name: "alice".into(),
            team_id: "T1".into(),
            channel_id: "C1".into(),
            service: "web".into(),
            cluster: "prod".into(),
            container: None,
            task: None,
            ttl_secs: 60,
            response_url: "http://127.0.0.1/x".into(),
            max_ttl_secs: 3600,
            reason: None,
            break_glass: false,
            approval: None,
        }
    }

    #[tokio::test]
    async fn create_writes_request_audit_and_job_and_refuses_a_duplicate() {
        let (ledger, _dir) = ledger().await;
        let CreateOutcome::Created(first) = ledger.create_request(new_request("U1")).await.unwrap() else {
            panic!("expected a new request")
        };
        assert_eq!(first.state(), RequestState::Requested);
        let audit = ledger.audit_for(&first.id).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].kind, "requested");
        // Not a teardown: the teardown pool does not see it.
        assert!(ledger.claim_job(Duration::from_secs(60), true).await.unwrap().is_none());
        let job = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().unwrap();
        assert_eq!(job.request_id, first.id);
        assert_eq!(job.kind, JobKind::Provision);
        // Leased: nobody else gets it.
        assert!(ledger.claim_job(Duration::from_secs(60), false).await.unwrap().is_none());
        match ledger.create_request(new_request("U1")).await.unwrap() {
            CreateOutcome::AlreadyOpen(existing) => assert_eq!(existing.id, first.id),
            CreateOutcome::Created(_) => panic!("a second open request for the same service"),
        }
        assert!(matches!(ledger.create_request(new_request("U2")).await.unwrap(), CreateOutcome::Created(_)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_committed_together_and_duplicates_still_caught() {
        let (ledger, _dir) = ledger().await;
        let mut calls = Vec::new();
        for i in 0..300 {
            let ledger = ledger.clone();
            // Every third call is the same person asking for the same service again.
            let user = if i % 3 == 0 { "U0SAME".to_string() } else { format!("U{i}") };
            calls.push(tokio::spawn(async move { ledger.create_request(new_request(&user)).await.unwrap() }));
        }
        let mut created = 0;
        let mut already = 0;
        for call in calls {
            match call.await.unwrap() {
                CreateOutcome::Created(_) => created += 1,
                CreateOutcome::AlreadyOpen(_) => already += 1,
            }
        }
        assert_eq!((created, already), (201, 99));
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(ledger.pool()).await.unwrap();
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(ledger.pool()).await.unwrap();
        let audits: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(ledger.pool()).await.unwrap();
        assert_eq!((stored, jobs, audits), (201, 201, 201));
    }

    /// A write whose future is dropped while it begins (a Slack client that hangs up, a job
    /// stopped at shutdown) must not leave its connection inside the transaction: that would
    /// hold SQLite's one write lock, and every later write, the intake's too, would wait for
    /// it until it failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_while_it_begins_leaves_no_lock_behind() {
        let (ledger, _dir) = ledger().await;
        for i in 0..3000u64 {
            // Dropped at every point of `begin`, including after BEGIN ran but before the
            // transaction was handed over.
            let _ = tokio::time::timeout(Duration::from_micros(i % 300), ledger.write()).await;
        }
        for i in 0..8 {
            let write = async {
                let mut tx = ledger.write().await?;
                sqlx::query("UPDATE jobs SET attempts = attempts WHERE id = -1").execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<_, LedgerError>(())
            };
            let done = tokio::time::timeout(Duration::from_secs(5), write).await;
            assert!(matches!(done, Ok(Ok(()))), "write {i} after the dropped ones: {done:?}");
        }
        let intake = tokio::time::timeout(Duration::from_secs(5), ledger.create_request(new_request("U1"))).await;
        assert!(matches!(intake, Ok(Ok(CreateOutcome::Created(_)))), "the intake: {intake:?}");
    }

    /// `mxFrame` of the WAL index header (the frames in the WAL now): a u32 at byte 16 of the
    /// `-shm` file, in the machine's byte order (https://sqlite.org/walformat.html).
    fn wal_frames(dir: &std::path::Path) -> u32 {
        let shm = std::fs::read(dir.join("t.db-shm")).unwrap();
        u32::from_ne_bytes(shm[16..20].try_into().unwrap())
    }

    /// Under a stream of requests that never leaves the writer idle, the WAL still starts
    /// again from its beginning (the intake finishes each background checkpoint), instead of
    /// growing for as long as the stream lasts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_again_under_steady_load() {
        let (ledger, dir) = ledger().await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..16 {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    ledger.create_request(new_request(&format!("U{w}x{i}"))).await.unwrap();
                    i += 1;
                }
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let (mut restarts, mut last) = (0, 0);
        while restarts < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let frames = wal_frames(&dir.0);
            if frames < last {
                restarts += 1;
            }
            last = frames;
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(restarts >= 3, "the WAL started again {restarts} times in 20 s of steady writes");
    }

    /// The loops' queries stay index lookups with 1,000 live requests in the ledger.
    #[tokio::test]
    async fn the_loops_queries_use_indexes() {
        let (ledger, _dir) = ledger().await;
        for i in 0..1000 {
            ledger.create_request(new_request(&format!("U{i}"))).await.unwrap();
        }
        sqlx::query(
            "UPDATE requests SET state = CASE WHEN rowid % 2 = 0 THEN 'ready' ELSE 'awaiting_approval' END,
               ready_at = created_at, expires_at = created_at + 3600000, decide_by = created_at + 900000",
        )
        .execute(ledger.pool())
        .await
        .unwrap();
        sqlx::query("ANALYZE").execute(ledger.pool()).await.unwrap();
        for (sql, index) in [
            (EXPIRE_DUE_SQL, "requests_due"),
            (NEXT_EXPIRY_SQL, "requests_due"),
            (CLAIM_JOB_SQL, "jobs_due"),
            (DUE_OUTBOX_SQL, "outbox_pending"),
            (NEXT_OUTBOX_SQL, "outbox_next"),
            (crate::workflow::LOOP_QUERIES[0].0, crate::workflow::LOOP_QUERIES[0].1),
            (crate::workflow::LOOP_QUERIES[1].0, crate::workflow::LOOP_QUERIES[1].1),
            (OPEN_REQUEST_ID_SQL, "requests_open_by_user"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(ledger.pool()).await.unwrap();
            let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(details.iter().any(|d| d.contains(index)), "{sql}\n{details:?}");
            for detail in &details {
                let full_scan = detail.starts_with("SCAN ") && !detail.contains("INDEX");
                assert!(!full_scan, "a full scan in {sql}\n{details:?}");
            }
        }
    }

    #[tokio::test]
    async fn guarded_transitions_let_exactly_one_writer_win() {
        let (ledger, _dir) = ledger().await;
        let CreateOutcome::Created(r) = ledger.create_request(new_request("U1")).await.unwrap() else { panic!() };
        let (a, b) = tokio::join!(
            ledger.transition(&r.id, RequestState::Requested, RequestState::Provisioning, "provisioning", json!({})),
            ledger.transition(&r.id, RequestState::Requested, RequestState::Provisioning, "provisioning", json!({})),
        );
        assert!(a.unwrap() ^ b.unwrap());
        assert_eq!(ledger.audit_for(&r.id).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_changed_or_deleted() {
        let (ledger, _dir) = ledger().await;
        let CreateOutcome::Created(r) = ledger.create_request(new_request("U1")).await.unwrap() else { panic!() };
        let update = sqlx::query("UPDATE audit_events SET kind = 'x' WHERE request_id = ?")
            .bind(&r.id)
            .execute(ledger.pool())
            .await;
        assert!(update.is_err());
        let delete = sqlx::query("DELETE FROM audit_events").execute(ledger.pool()).await;
        assert!(delete.is_err());
    }

    #[tokio::test]
    async fn expiry_moves_only_due_ready_requests() {
        let (ledger, _dir) = ledger().await;
        let CreateOutcome::Created(r) = ledger.create_request(new_request("U1")).await.unwrap() else { panic!() };
        ledger.transition(&r.id, RequestState::Requested, RequestState::Provisioning, "p", json!({})).await.unwrap();
        ledger.set_target(&r.id, "arn:task", "app", &[], json!({})).await.unwrap();
        let launch = LaunchInfo { instance_type: "t3.micro".into(), spot: true, ..Default::default() };
        ledger.set_instance(&r.id, "i-1", &launch, "instance_launched", json!({})).await.unwrap();
        let ready = ledger.mark_ready(&r.id, "eu-west-1").await.unwrap().unwrap();
        let expires = ready.expires_at.unwrap();
        assert!(ledger.expire_due(expires - 1).await.unwrap().is_empty());
        assert_eq!(ledger.expire_due(expires).await.unwrap(), vec![r.id.clone()]);
        assert!(ledger.expire_due(expires + 1).await.unwrap().is_empty());
        assert_eq!(ledger.get(&r.id).await.unwrap().state(), RequestState::Ending);
    }
}
