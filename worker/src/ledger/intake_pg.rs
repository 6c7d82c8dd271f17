//! Intake on PostgreSQL: the same group commit as [`super::intake`] (every request waiting,
//! up to `INTAKE_BATCH`, in one transaction, each answered only after the commit), as a task
//! on the pool. The statements and decisions are the SQLite writer's; only the driver differs.
//! The batch holds the writers' advisory lock, so replicas' batches and other writes take
//! turns and the audit chain stays one chain.
//!
//! Unlike the SQLite writer, it counts live bastions again at every batch: another replica
//! may have added some since.

use super::intake::{
    break_glass_line, first_limit, requested_detail, stored_request, Written, APPROVAL_CARD_JSON, AUDIT_REQUESTED_SQL,
    CARD_JSON, INSERT_REQUEST_SQL, INTAKE_BATCH, LIVE_SQL, OPEN_REQUEST_ID_SQL, OUTBOX_SQL, PERSON_SQL,
    PROVISION_JOB_SQL,
};
use super::{now_ms, take_writer_lock, Intake, LedgerError, NewRequest, LAST_HASH_SQL, RATE_WINDOW_MS};
use crate::ids::{RequestId, RequestIds};
use sqlx::AnyPool;
use sqlx::{Any, Transaction};
use std::sync::LazyLock;
use tokio::sync::mpsc;

/// The SQLite writer's statements (`?N`) in PostgreSQL's spelling (`$N`).
struct Statements {
    insert: String,
    open: String,
    audit: String,
    job: String,
    outbox: String,
    person: String,
    live: String,
}

fn dollars(sql: &str) -> String {
    sql.replace('?', "$")
}

static SQL: LazyLock<Statements> = LazyLock::new(|| Statements {
    insert: dollars(INSERT_REQUEST_SQL),
    open: dollars(OPEN_REQUEST_ID_SQL),
    audit: dollars(AUDIT_REQUESTED_SQL),
    job: dollars(PROVISION_JOB_SQL),
    outbox: dollars(OUTBOX_SQL),
    person: dollars(PERSON_SQL),
    live: dollars(LIVE_SQL),
});

/// Writes what arrives, a batch at a time, until the last `Ledger` is dropped.
pub(super) async fn intake_writer(pool: AnyPool, mut queue: mpsc::Receiver<Intake>) {
    let mut ids = RequestIds::new();
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    while queue.recv_many(&mut batch, INTAKE_BATCH).await > 0 {
        match write_batch(&pool, &mut ids, &batch).await {
            Ok(outcomes) => {
                for (intake, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = intake.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let e = e.to_string();
                tracing::error!(error = %e, requests = batch.len(), "could not record new requests");
                for intake in batch.drain(..) {
                    let _ = intake.reply.send(Err(LedgerError::Batch(e.clone())));
                }
            }
        }
    }
}

async fn open_request_of(tx: &mut Transaction<'static, Any>, new: &NewRequest) -> Result<Option<String>, LedgerError> {
    Ok(sqlx::query_scalar(&SQL.open)
        .bind(&new.requester_id)
        .bind(&new.service)
        .bind(&new.cluster)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn write_batch(pool: &AnyPool, ids: &mut RequestIds, batch: &[Intake]) -> Result<Vec<Written>, LedgerError> {
    let mut tx = pool.begin().await?;
    take_writer_lock(&mut tx).await?;
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut last_hash: Option<String> = sqlx::query_scalar(LAST_HASH_SQL).fetch_optional(&mut *tx).await?.flatten();
    let mut live: Option<i64> = None;
    for intake in batch {
        let new = &intake.new;
        let cap = new.limits.live_bastions;
        let count = match live.filter(|n| *n < cap) {
            Some(n) => n,
            None => sqlx::query_scalar(&SQL.live).bind(cap).fetch_one(&mut *tx).await?,
        };
        live = Some(count);
        let person: (i64, i64, Option<i64>) =
            sqlx::query_as(&SQL.person).bind(&new.requester_id).bind(now - RATE_WINDOW_MS).fetch_one(&mut *tx).await?;
        if let Some(limit) = first_limit(new, count, person, now) {
            // Enter pressed twice is still told about its open request, not a limit.
            outcomes.push(match open_request_of(&mut tx, new).await? {
                Some(id) => Written::AlreadyOpen(id),
                None => Written::Refused(limit),
            });
            continue;
        }
        let state = if new.approval.is_some() { "awaiting_approval" } else { "requested" };
        let mut collided = false;
        let outcome = loop {
            let id = if collided { RequestId::generate() } else { ids.next_at(now) };
            let inserted = sqlx::query(&SQL.insert)
                .bind(id.as_str())
                .bind(state)
                .bind(&new.requester_id)
                .bind(&new.requester_name)
                .bind(&new.team_id)
                .bind(&new.channel_id)
                .bind(&new.service)
                .bind(&new.cluster)
                .bind(&new.container)
                .bind(&new.task)
                .bind(new.ttl_secs)
                .bind(&new.response_url)
                .bind(now)
                .bind(new.max_ttl_secs)
                .bind(&new.reason)
                .bind(i64::from(new.break_glass))
                .bind(new.approval.as_ref().map(|a| a.channel.clone()))
                .bind(new.approval.as_ref().map(|a| a.decide_by_ms))
                .execute(&mut *tx)
                .await?
                .rows_affected();
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
                sqlx::query(&SQL.audit)
                    .bind(id.as_str())
                    .bind(now)
                    .bind(&new.requester_id)
                    .bind(detail)
                    .bind(last_hash.take())
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                last_hash = Some(hash);
                let mut notices = Vec::new();
                if new.approval.is_some() {
                    // Nothing starts until someone decides: both cards go out now.
                    notices.extend([CARD_JSON.to_string(), APPROVAL_CARD_JSON.to_string()]);
                } else {
                    sqlx::query(&SQL.job).bind(id.as_str()).bind(now).execute(&mut *tx).await?;
                }
                notices.extend(break_glass_line(new, id.as_str()));
                for notice in notices {
                    sqlx::query(&SQL.outbox).bind(id.as_str()).bind(notice).bind(now).execute(&mut *tx).await?;
                }
                live = Some(count + 1);
                break Written::Created(Box::new(stored_request(new, id.as_str(), now)));
            }
            if let Some(existing) = open_request_of(&mut tx, new).await? {
                break Written::AlreadyOpen(existing);
            }
            // Otherwise the id was taken (by another replica's writer, or before a restart).
            collided = true;
            ids.jump();
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}
