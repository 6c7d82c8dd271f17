//! Intake: new requests written in groups by one writer thread (one sync for many requests),
//! and the WAL kept short beside it.

use super::{
    now_ms, Intake, LedgerError, LimitReached, NewRequest, Request, StateColumn, LAST_HASH_SQL, RATE_WINDOW_MS,
};
use crate::audit_line::Subject;
use crate::events::Notice;
use crate::ids::{RequestId, RequestIds};
use crate::state::RequestState;
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use sqlx::AnyPool;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The open request of a person for a service and cluster: the `requests_recent_by_requester`
/// index (an open request is always `recent`).
pub(super) const OPEN_REQUEST_ID_SQL: &str =
    "SELECT id FROM requests WHERE requester_id = ?1 AND recent = 1 AND service = ?2 AND cluster = ?3
       AND state IN ('requested','awaiting_approval','approved','provisioning','ready')";
/// Bastions running or on their way (`limits.live_bastions`), a request waiting for its
/// approver included (it holds its place: an approval never goes past the cap), counted up to
/// ?1 (the cap: all the check needs, so its cost is bounded by the cap): the `requests_due`
/// index.
pub(super) const LIVE_SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM requests
       WHERE state IN ('requested','awaiting_approval','approved','provisioning','ready','ending') LIMIT ?1) AS live";
/// One person's open requests (`limits.open_per_person`), their requests since ?2 and the
/// oldest of those (`limits.per_person_per_hour`), in one look at the
/// `requests_recent_by_requester` index: it holds only what is open or under an hour old
/// (migration 0006), so its cost is bounded by the limits themselves.
pub(super) const PERSON_SQL: &str = "SELECT
       COUNT(*) FILTER (WHERE state IN ('requested','awaiting_approval','approved','provisioning','ready')),
       COUNT(*) FILTER (WHERE created_at > ?2), MIN(created_at) FILTER (WHERE created_at > ?2)
     FROM requests WHERE requester_id = ?1 AND recent = 1";
/// A new request; a second open request of the same person and service (the partial unique
/// index `requests_recent_by_requester`) or an id already taken is skipped by ON CONFLICT, and
/// the open-request lookup tells which.
pub(super) const INSERT_REQUEST_SQL: &str = "INSERT INTO requests (id, state, requester_id, requester_name,
        team_id, channel_id, service, cluster, container, requested_task, ttl_secs, response_url, created_at,
        updated_at, max_ttl_secs, reason, break_glass, approvals_channel, decide_by)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17, ?18)
     ON CONFLICT DO NOTHING";
pub(super) const AUDIT_REQUESTED_SQL: &str = "INSERT INTO audit_events (request_id, at, actor, kind, detail,
        prev_hash, hash) VALUES (?1, ?2, ?3, 'requested', ?4, ?5, ?6)";
pub(super) const PROVISION_JOB_SQL: &str = "INSERT INTO jobs (request_id, kind, run_at) VALUES (?1, 'provision', ?2)";
pub(super) const OUTBOX_SQL: &str =
    "INSERT INTO outbox (request_id, notice, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?3)";
/// How often the WAL is copied into the database beside the intake (`checkpointer`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Bytes the WAL file is cut back to when it starts again (64 MiB).
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// The intake connection's page cache, negative: in KiB (SQLite's convention).
const INTAKE_CACHE_KIB: i64 = -1024;
/// Most requests committed in one transaction.
pub(super) const INTAKE_BATCH: usize = 256;

/// The one writer of new requests, on a thread of its own with its own connection (rusqlite:
/// one plain call per statement, no hand-off per statement as in an async driver). It takes
/// every request waiting (up to `INTAKE_BATCH`), writes them in one transaction and answers
/// each only after the commit, so an acknowledged request is durable and a burst costs one
/// sync instead of one each. Between two batches it finishes the latest background checkpoint
/// (`WalRestart`). It ends when the last `Ledger` is dropped.
pub(super) fn intake_writer(path: PathBuf, mut queue: mpsc::Receiver<Intake>, checkpoints: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    let mut connection: Option<rusqlite::Connection> = None;
    let mut ids = RequestIds::new();
    let mut wal = WalRestart::default();
    let mut live = None;
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
            Some(conn) => write_batch(conn, &mut ids, &mut live, &batch).map_err(|e| {
                live = None; // counted again at the next batch
                e.to_string()
            }),
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
pub(super) async fn checkpointer(pool: AnyPool, done: Arc<AtomicU64>) {
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
    // 1 MiB of page cache (SQLite's default is 2): the intake appends to the right edge of most
    // of its B-trees, and the pages it would keep beyond that are dropped anyway whenever another
    // connection (the worker, the notifier) has written since its last transaction.
    conn.pragma_update(None, "cache_size", INTAKE_CACHE_KIB)?;
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
pub(super) enum Written {
    Created(Box<Request>),
    /// The id of the person's open request for the same service.
    AlreadyOpen(String),
    /// Over a limit: nothing written.
    Refused(LimitReached),
}

/// The id of the open request of `new`'s person for the same service and cluster.
fn open_request_of(open: &mut rusqlite::CachedStatement<'_>, new: &NewRequest) -> rusqlite::Result<Option<String>> {
    open.query_row(rusqlite::params![new.requester_id, new.service, new.cluster], |row| row.get(0)).optional()
}

/// The first limit `new` would go over, with `live` bastions counted so far.
fn over_limit(
    person: &mut rusqlite::CachedStatement<'_>,
    live: i64,
    new: &NewRequest,
    now: i64,
) -> rusqlite::Result<Option<LimitReached>> {
    let counts = person.query_row(rusqlite::params![new.requester_id, now - RATE_WINDOW_MS], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(first_limit(new, live, counts, now))
}

/// The first limit `new` would go over, from `live` bastions and the person's
/// `(open, recent, oldest recent)` requests (`PERSON_SQL`).
pub(super) fn first_limit(
    new: &NewRequest,
    live: i64,
    (open, recent, oldest): (i64, i64, Option<i64>),
    now: i64,
) -> Option<LimitReached> {
    let limits = new.limits;
    if open >= limits.open_per_person {
        return Some(LimitReached::OpenPerPerson { limit: limits.open_per_person });
    }
    if recent >= limits.per_person_per_hour {
        let retry_at = oldest.unwrap_or(now) + RATE_WINDOW_MS;
        return Some(LimitReached::PerPersonPerHour { limit: limits.per_person_per_hour, retry_at });
    }
    if live >= limits.live_bastions {
        return Some(LimitReached::LiveBastions { limit: limits.live_bastions });
    }
    None
}

/// Writes one batch. `live` is the writer's count of live bastions from the last batch: only
/// this writer adds live requests, so it never counts too few, and it is trusted while under a
/// request's cap; at or over it, the count is taken again in this transaction before anyone
/// is refused (so a bastion that ended meanwhile frees its place at once, and a request costs
/// no count at all far from the cap).
fn write_batch(
    conn: &mut rusqlite::Connection,
    ids: &mut RequestIds,
    live: &mut Option<i64>,
    batch: &[Intake],
) -> rusqlite::Result<Vec<Written>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut live_now = None;
    {
        // A second open request of the same person and service (the partial unique index
        // `requests_recent_by_requester`) or an id already taken is skipped by ON CONFLICT;
        // the open-request lookup tells which.
        let mut insert = tx.prepare_cached(INSERT_REQUEST_SQL)?;
        let mut open = tx.prepare_cached(OPEN_REQUEST_ID_SQL)?;
        let mut audit = tx.prepare_cached(AUDIT_REQUESTED_SQL)?;
        let mut job = tx.prepare_cached(PROVISION_JOB_SQL)?;
        let mut outbox = tx.prepare_cached(OUTBOX_SQL)?;
        let mut last_hash: Option<String> = tx.query_row(LAST_HASH_SQL, [], |row| row.get(0)).optional()?.flatten();
        let mut person = tx.prepare_cached(PERSON_SQL)?;
        let mut count_live = tx.prepare_cached(LIVE_SQL)?;
        for intake in batch {
            let new = &intake.new;
            let cap = new.limits.live_bastions;
            let known = live_now.or(*live).filter(|n| *n < cap);
            let count = match known {
                Some(n) => n,
                None => count_live.query_row(rusqlite::params![cap], |row| row.get(0))?,
            };
            live_now = Some(count);
            if let Some(limit) = over_limit(&mut person, count, new, now)? {
                // Enter pressed twice is still told about its open request, not a limit.
                outcomes.push(match open_request_of(&mut open, new)? {
                    Some(id) => Written::AlreadyOpen(id),
                    None => Written::Refused(limit),
                });
                continue;
            }
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
                    live_now = Some(count + 1);
                    if let Some(line) = break_glass_line(new, id.as_str()) {
                        outbox.execute(rusqlite::params![id.as_str(), line, now])?;
                    }
                    break Written::Created(Box::new(stored_request(new, id.as_str(), now)));
                }
                if let Some(existing) = open_request_of(&mut open, new)? {
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
    *live = live_now.or(*live);
    Ok(outcomes)
}

/// The audit channel's line for a request that skipped approval (break-glass), as an outbox
/// notice.
pub(super) fn break_glass_line(new: &NewRequest, id: &str) -> Option<String> {
    if !new.break_glass {
        return None;
    }
    let subject = Subject { requester: &new.requester_id, service: &new.service, cluster: &new.cluster, request: id };
    let line = Notice::AuditLine {
        text: format!(
            "{}: {}",
            subject.line(":rotating_light: BREAK-GLASS, without approval", None),
            crate::audit_line::person_text(new.reason.as_deref().unwrap_or(""))
        ),
    };
    Some(serde_json::to_string(&line).expect("a notice serializes"))
}

pub(super) const CARD_JSON: &str = r#"{"kind":"card"}"#;
pub(super) const APPROVAL_CARD_JSON: &str = r#"{"kind":"approval_card"}"#;

pub(super) fn requested_detail(new: &NewRequest) -> Value {
    json!({
        "service": new.service, "cluster": new.cluster, "container": new.container, "task": new.task,
        "ttl_secs": new.ttl_secs, "channel_id": new.channel_id,
        "requester_name": new.requester_name, "reason": new.reason, "break_glass": new.break_glass,
        "approval_needed": new.approval.is_some(),
    })
}

/// The row just inserted for `new`, without reading it back.
pub(super) fn stored_request(new: &NewRequest, id: &str, now: i64) -> Request {
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
        break_glass: super::Flag(new.break_glass),
        approvals_channel: new.approval.as_ref().map(|a| a.channel.clone()),
        decide_by: new.approval.as_ref().map(|a| a.decide_by_ms),
        decided_by: None,
        decided_at: None,
        max_ttl_secs: Some(new.max_ttl_secs),
        reminded_at: None,
        ended_by: None,
        hard_stop_at: None,
        told_at: None,
    }
}
