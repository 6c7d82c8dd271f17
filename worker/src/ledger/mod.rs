//! The ledger: SQLite (WAL, `synchronous=FULL`) or PostgreSQL (several replicas on one
//! database) holding requests, their audit history, the worker's jobs and the outbox. Every state change is a guarded update that writes its audit
//! event (and, where Slack must hear of it, an outbox row) in the same transaction; zero rows
//! changed means someone else won and nothing is written.
//!
//! Both run the same SQL through sqlx's `Any` driver (`$1` placeholders, portable SQL; the few
//! statements that differ are chosen by [`Backend`]). Writers are serialized on both: SQLite by
//! `BEGIN IMMEDIATE`, PostgreSQL by a transaction-scoped advisory lock taken first, so a
//! transaction's reads see every earlier write and the audit chain stays one chain.
//!
//! This file holds what every part shares (the types, opening the database, the guarded update
//! and the audit append); `intake` writes new requests in groups, `requests` moves them through
//! their states, `jobs` hands the worker its jobs and `outbox` the notifier its messages.

mod intake;
mod intake_pg;
mod jobs;
mod outbox;
mod requests;
#[cfg(test)]
mod tests;

pub(crate) use jobs::enqueue_job;
pub use jobs::{Job, JobKind, Lease};
pub(crate) use outbox::push_outbox;
pub use outbox::{OutboxRow, OUTBOX_CLAIM_MS};

use crate::audit_line::Subject;
use crate::events::LaunchInfo;
use crate::state::RequestState;
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::AnyPool;
use sqlx::{Any, ConnectOptions, Connection, Executor, FromRow, Transaction};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
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
    #[error("{0}")]
    Url(String),
}

/// The database file behind a `sqlite:` URL.
fn options_path(url: &str) -> Result<PathBuf, LedgerError> {
    Ok(SqliteConnectOptions::from_str(url)?.get_filename().to_path_buf())
}

/// Milliseconds since the Unix epoch, the ledger's unit of time.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// Which database holds the ledger, from the scheme of `database.url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:…`: one process, the embedded default.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: any number of replicas on one database.
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Self, LedgerError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(LedgerError::Url(format!(
                "database.url must start with sqlite: or postgres:// (it starts with `{scheme}:`)"
            ))),
        }
    }

    /// One of two spellings of a statement: SQLite's, PostgreSQL's.
    pub fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }
}

/// `url` with its password hidden, for messages and logs: the one in the authority
/// (`postgres://user:password@host/…`) and the `password=` and `sslpassword=` (a client key's)
/// query parameters, which libpq and sqlx also read.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
            format!("{hidden}@{host}")
        }
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if ["password", "sslpassword"].iter().any(|k| key.eq_ignore_ascii_case(k)) => {
                        format!("{key}=***")
                    }
                    _ => param.to_string(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{before}?{}{fragment}", params.join("&"))
        }
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// The advisory lock every PostgreSQL write transaction takes first (`Ledger::write`): one
/// writer at a time, as on SQLite. An arbitrary constant ("fc-ledg").
pub const WRITER_LOCK: i64 = 0x0066_632d_6c65_6467;

#[derive(Clone, Debug)]
pub struct Ledger {
    pool: AnyPool,
    intake: mpsc::Sender<Intake>,
    backend: Backend,
}

/// A new request waiting for the intake writer, with where to send its outcome.
#[derive(Debug)]
struct Intake {
    new: NewRequest,
    reply: oneshot::Sender<Result<intake::Written, LedgerError>>,
}

/// How far back `limits.per_person_per_hour` counts a person's requests; a closed request
/// older than this leaves the index the limits use (`Ledger::age_requests`).
pub const RATE_WINDOW_MS: i64 = 3_600_000;

const LAST_HASH_SQL: &str = "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1";

/// One access request, as stored.
#[derive(Debug, Clone, Default, FromRow)]
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
    #[sqlx(try_from = "i64")]
    pub break_glass: Flag,
    pub approvals_channel: Option<String>,
    pub decide_by: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub max_ttl_secs: Option<i64>,
    pub reminded_at: Option<i64>,
    pub ended_by: Option<String>,
    /// The bastion's own deadline (UTC ms), fixed at the first launch attempt.
    pub hard_stop_at: Option<i64>,
    /// When the requester was told it is ready (the time box starts then).
    pub told_at: Option<i64>,
}

/// A yes/no column, stored as 0/1 on both backends (the `Any` driver reads SQLite's integers
/// as integers, never as booleans).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl From<i64> for Flag {
    fn from(n: i64) -> Self {
        Flag(n != 0)
    }
}

/// `RequestState` as read from its text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateColumn(pub RequestState);

impl Default for StateColumn {
    fn default() -> Self {
        StateColumn(RequestState::Requested)
    }
}

impl TryFrom<String> for StateColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(StateColumn)
    }
}

impl Request {
    /// The expiry of this ready request if its person is told at `at`: the time box from
    /// then, plus what extensions added before, never past the service's maximum.
    /// (`untold_limit_ms`: the box it ran on until then, `worker.untold_limit`.)
    pub fn expiry_once_told(&self, at: i64, untold_limit_ms: i64) -> i64 {
        let ttl = self.ttl_secs * 1000;
        let (Some(ready_at), Some(expires_at)) = (self.ready_at, self.expires_at) else { return at + ttl };
        let extended = (expires_at - ready_at - ttl.min(untold_limit_ms)).max(0);
        let max = self.max_ttl_secs.unwrap_or(self.ttl_secs) * 1000;
        at + (ttl + extended).min(max.max(ttl))
    }

    pub fn state(&self) -> RequestState {
        self.state.0
    }

    /// Who asked for what, as the audit channel's lines name it.
    pub fn subject(&self) -> Subject<'_> {
        Subject { requester: &self.requester_id, service: &self.service, cluster: &self.cluster, request: &self.id }
    }

    /// When its bastion was launched (UTC ms), from the launch details.
    pub fn launched_at(&self) -> Option<i64> {
        self.launch.as_deref().and_then(|l| serde_json::from_str::<LaunchInfo>(l).ok()).and_then(|l| l.launched_at)
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
    /// Checked in the transaction that would record it.
    pub limits: crate::config::LimitSettings,
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
    /// Over one of the limits; nothing was recorded.
    Refused(LimitReached),
}

/// Which limit a request met, and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReached {
    /// `limits.live_bastions` bastions are running or on their way.
    LiveBastions { limit: i64 },
    /// The person has `limits.open_per_person` open requests.
    OpenPerPerson { limit: i64 },
    /// The person made `limits.per_person_per_hour` requests in the last hour; the next one is
    /// possible at `retry_at` (UTC ms).
    PerPersonPerHour { limit: i64, retry_at: i64 },
}

impl LimitReached {
    /// The label `/metrics` counts it under (`fargate_connect_requests_total{outcome}`).
    pub fn outcome(&self) -> &'static str {
        match self {
            LimitReached::LiveBastions { .. } => "limit_live_bastions",
            LimitReached::OpenPerPerson { .. } => "limit_open_per_person",
            LimitReached::PerPersonPerHour { .. } => "limit_per_person_per_hour",
        }
    }
}

pub use crate::audit::AuditEvent;

/// The actor of the worker's own audit events.
pub const WORKER: &str = "worker";

impl Ledger {
    /// Opens (creating if missing) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        match Backend::of(url)? {
            Backend::Sqlite => Self::open_sqlite(url).await,
            Backend::Postgres => Self::open_postgres(url).await,
        }
    }

    async fn open_sqlite(url: &str) -> Result<Self, LedgerError> {
        // The file is created, and switched to WAL (which lasts), before the pool opens it.
        SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await?
            .close()
            .await?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // 256 KiB of page cache per connection: the loops read little (through
                    // indexes), and memory is a budget (docs/PERFORMANCE.md).
                    conn.execute(
                        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;
                         PRAGMA cache_size = -256;",
                    )
                    .await?;
                    Ok(())
                })
            })
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
            .connect(url)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let (intake, queue) = mpsc::channel(4 * intake::INTAKE_BATCH);
        let checkpoints = Arc::new(AtomicU64::new(0));
        tokio::spawn(intake::checkpointer(pool.clone(), checkpoints.clone()));
        let path = options_path(url)?;
        std::thread::Builder::new()
            .name("ledger-intake".into())
            .spawn(move || intake::intake_writer(path, queue, checkpoints))
            .map_err(|e| LedgerError::Batch(format!("cannot start the intake writer: {e}")))?;
        Ok(Self { pool, intake, backend: Backend::Sqlite })
    }

    async fn open_postgres(url: &str) -> Result<Self, LedgerError> {
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .connect(url)
            .await?;
        // Replicas starting together: the migrator takes its own advisory lock on PostgreSQL.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        let (intake, queue) = mpsc::channel(4 * intake::INTAKE_BATCH);
        tokio::spawn(intake_pg::intake_writer(pool.clone(), queue));
        Ok(Self { pool, intake, backend: Backend::Postgres })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction that holds the one writer's place from its first statement: on
    /// SQLite it takes the write lock up front (so it never fails half-way on a lock upgrade),
    /// on PostgreSQL the writer's advisory lock.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Any>, LedgerError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                take_writer_lock(&mut tx).await?;
                Ok(tx)
            }
        }
    }

    /// Holds `lock` among all replicas while the returned guard lives, or None when another
    /// replica holds it now (PostgreSQL: a transaction-scoped advisory lock, given up when the
    /// guard's transaction ends). On SQLite, one process holds the ledger: always granted.
    pub async fn exclusive(&self, lock: i64) -> Result<Option<Exclusive>, LedgerError> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(Exclusive(None)));
        }
        let mut tx = self.pool.begin().await?;
        let held: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(lock).fetch_one(&mut *tx).await?;
        Ok(held.then_some(Exclusive(Some(tx))))
    }

    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// An advisory lock held among replicas (`Ledger::exclusive`); dropped, it is given up.
#[derive(Debug)]
pub struct Exclusive(#[allow(dead_code)] Option<Transaction<'static, Any>>);

/// The reaper's lock: one replica sweeps at a time ("fc-reap").
pub const REAPER_LOCK: i64 = 0x0066_632d_7265_6170;

/// How long a PostgreSQL writer waits for the writer's place before it gives up (an error the
/// person sees as "try again"; nothing was written), and how long a writer may sit idle in its
/// transaction before the server ends its session and so frees the place. Writers hold it for
/// milliseconds; these bound a stuck one (a replica frozen mid-transaction, a network partition)
/// so that it cannot stop every other replica's writes.
pub const WRITER_LOCK_WAIT: &str = "5s";
pub const WRITER_IDLE_AT_MOST: &str = "30s";

/// PostgreSQL: waits (at most `WRITER_LOCK_WAIT`) for, then holds until the transaction ends,
/// the one writer's place. The limits are `SET LOCAL`: they end with this transaction, so the
/// reaper's `Exclusive`, idle in its own transaction on purpose, is not cut.
pub(crate) async fn take_writer_lock(tx: &mut Transaction<'_, Any>) -> Result<(), LedgerError> {
    // One round trip. The settings are made in a subquery, which PostgreSQL evaluates first
    // (volatile functions keep it from being folded into the outer query); `set_config(…,
    // true)` is `SET LOCAL`.
    sqlx::query(
        "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1) FROM
           (SELECT set_config('lock_timeout', $2, true),
                   set_config('idle_in_transaction_session_timeout', $3, true)) AS limits) AS l",
    )
    .bind(WRITER_LOCK)
    .bind(WRITER_LOCK_WAIT)
    .bind(WRITER_IDLE_AT_MOST)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn fetch(tx: &mut Transaction<'static, Any>, id: &str) -> Result<Request, LedgerError> {
    sqlx::query_as("SELECT * FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| LedgerError::NotFound(id.to_string()))
}

pub(crate) async fn guarded(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    from: &[RequestState],
    to: RequestState,
    now: i64,
) -> Result<bool, LedgerError> {
    let placeholders = (0..from.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(",");
    let sql = format!("UPDATE requests SET state = $1, updated_at = $2 WHERE id = $3 AND state IN ({placeholders})");
    let mut query = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(id);
    for state in from {
        query = query.bind(state.as_str());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

pub(crate) async fn append_audit(
    tx: &mut Transaction<'_, Any>,
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
    tx: &mut Transaction<'_, Any>,
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
        "INSERT INTO audit_events (request_id, at, actor, kind, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
