//! The ledger's side of the Slack workflow: approval decisions (first one wins), extend and
//! end, reminders and approval deadlines for the loops, the lists people ask for, the Slack
//! messages a request owns, and the audit chain's readers. Every change is a guarded update
//! that writes its audit event and outbox rows in the same transaction.

use crate::audit::{ExportRow, ExportSource, Verdict, Verifier, EXPORT_SQL};
use crate::events::{Moment, Notice};
use crate::ledger::{
    append_audit, append_audit_opt, enqueue_job, fetch, guarded, now_ms, push_outbox, JobKind, Ledger, LedgerError,
    Request,
};
use crate::state::RequestState;
use futures_util::TryStreamExt;
use serde_json::json;

/// Through the `requests_response_url_kept` index, so its cost is what it changes.
pub const FORGET_RESPONSE_URLS_SQL: &str =
    "UPDATE requests SET response_url = '' WHERE response_url != '' AND created_at < $1";

/// An outbox row's notice once settled: a private answer's `reply_url` (a `response_url`, a
/// capability to post into someone's Slack) is not kept past its delivery or its failure.
const FORGET_REPLY_URL: &str =
    "notice = CASE WHEN json_extract(notice, '$.kind') = 'ephemeral' THEN json_set(notice, '$.reply_url', '') ELSE notice END";
const FORGET_REPLY_URL_PG: &str = "notice = CASE WHEN notice::jsonb ->> 'kind' = 'ephemeral'
    THEN jsonb_set(notice::jsonb, '{reply_url}', '\"\"')::text ELSE notice END";

/// Requests closed and over an hour old leave what the per-person limits look at: through the
/// `requests_recent` index, whose rows are only those still `recent`.
pub const LEAVE_RATE_WINDOW_SQL: &str = "UPDATE requests SET recent = 0 WHERE recent = 1 AND created_at < $1
       AND state NOT IN ('requested','awaiting_approval','approved','provisioning','ready')";

/// What [`Ledger::age_requests`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Aged {
    pub response_urls: u64,
    pub left_rate_window: u64,
}

/// The result of an Approve or Deny click.
#[derive(Debug)]
pub enum Decided {
    /// This click decided the request.
    Now(Box<Request>),
    /// Someone decided first (or it expired or was cancelled); nothing changed.
    Already(Box<Request>),
}

/// The result of an extension.
#[derive(Debug)]
pub enum Extended {
    Now(Box<Request>),
    /// Past the service's maximum: at most `can_add_secs` more may be asked for.
    TooLong {
        max_secs: i64,
        can_add_secs: i64,
    },
    /// Only a ready request can be extended.
    NotReady(RequestState),
}

/// The result of an End.
#[derive(Debug)]
pub enum Ended {
    /// Teardown is queued (or, for a request still awaiting approval, it is simply cancelled).
    Now(Box<Request>),
    AlreadyOver(RequestState),
}

/// `history` filters, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub service: Option<String>,
    pub user: Option<String>,
    pub since_ms: i64,
    pub offset: i64,
    pub limit: i64,
}

const OPEN_STATES: &str = "('requested','awaiting_approval','approved','provisioning','ready','ending')";
/// `INDEXED BY` (SQLite; PostgreSQL has no such hint and needs none): the planner's statistics
/// sometimes favour `requests_due` (state) and a sort; the partial index answers the range in
/// order, however many requests wait.
macro_rules! due_approvals_sql {
    ($hint:literal) => {
        concat!(
            "SELECT id FROM requests ",
            $hint,
            " WHERE state = 'awaiting_approval' AND decide_by <= $1 ORDER BY decide_by"
        )
    };
}
const DUE_APPROVALS_SQL: &str = due_approvals_sql!("INDEXED BY requests_decide");
const DUE_APPROVALS_SQL_PG: &str = due_approvals_sql!("");
/// Requests waiting for a decision past half their time to decide, not yet reminded: a scan
/// of the partial index, which holds only the requests waiting (bounded by `limits`).
macro_rules! due_approver_reminders_sql {
    ($hint:literal) => {
        concat!(
            "SELECT id FROM requests ",
            $hint,
            " WHERE state = 'awaiting_approval' AND approvers_reminded_at IS NULL
                AND created_at + decide_by <= 2 * $1 ORDER BY decide_by"
        )
    };
}
const DUE_APPROVER_REMINDERS_SQL: &str = due_approver_reminders_sql!("INDEXED BY requests_decide");
const DUE_APPROVER_REMINDERS_SQL_PG: &str = due_approver_reminders_sql!("");
/// Only time boxes longer than the lead get a reminder: for a shorter one it would come at once.
const DUE_REMINDERS_SQL: &str = "SELECT id FROM requests WHERE state = 'ready' AND expires_at <= $1
       AND reminded_at IS NULL AND expires_at - ready_at > $2 ORDER BY expires_at";

impl Ledger {
    /// Approve or deny, as `approver`. Exactly one decision is recorded however many clicks
    /// arrive together: the guarded update lets one through.
    pub async fn decide(&self, id: &str, approver: &str, approve: bool) -> Result<Decided, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let to = if approve { RequestState::Approved } else { RequestState::Denied };
        if !guarded(&mut tx, id, &[RequestState::AwaitingApproval], to, now).await? {
            let request = fetch(&mut tx, id).await?;
            return Ok(Decided::Already(Box::new(request)));
        }
        sqlx::query("UPDATE requests SET decided_by = $1, decided_at = $2 WHERE id = $3")
            .bind(approver)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if !approve {
            sqlx::query("UPDATE requests SET ended_at = $1, end_reason = 'denied', ended_by = $2 WHERE id = $3")
                .bind(now)
                .bind(approver)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let kind = if approve { "approved" } else { "denied" };
        append_audit(&mut tx, id, approver, kind, json!({}), now).await?;
        crate::metrics::METRICS.request(kind);
        if approve {
            enqueue_job(&mut tx, id, JobKind::Provision, now).await?;
        }
        let request = fetch(&mut tx, id).await?;
        push_outbox(&mut tx, Some(id), &Notice::ApprovalCard, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        let moment = if approve { Moment::Approved } else { Moment::Denied };
        push_outbox(&mut tx, Some(id), &Notice::Tell { moment }, now).await?;
        if !approve {
            let text = request.subject().line(&format!("denied by <@{approver}>"), None);
            push_outbox(&mut tx, Some(id), &Notice::AuditLine { text }, now).await?;
        }
        tx.commit().await?;
        Ok(Decided::Now(Box::new(request)))
    }

    /// Requests whose approval did not come in time: cancelled, both cards updated.
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<String>, LedgerError> {
        let due: Vec<String> = sqlx::query_scalar(self.backend().pick(DUE_APPROVALS_SQL, DUE_APPROVALS_SQL_PG))
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.write().await?;
        let mut moved = Vec::new();
        for id in due {
            if guarded(&mut tx, &id, &[RequestState::AwaitingApproval], RequestState::Cancelled, now).await? {
                sqlx::query("UPDATE requests SET ended_at = $1, end_reason = 'approval_expired' WHERE id = $2")
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                append_audit(&mut tx, &id, "worker", "approval_expired", json!({}), now).await?;
                crate::metrics::METRICS.request("approval_expired");
                push_outbox(&mut tx, Some(&id), &Notice::ApprovalCard, now).await?;
                push_outbox(&mut tx, Some(&id), &Notice::Card, now).await?;
                push_outbox(&mut tx, Some(&id), &Notice::Tell { moment: Moment::Ended }, now).await?;
                moved.push(id);
            }
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Requests still waiting for a decision at half their time to decide: the approvers are
    /// reminded once (a message naming them again). Returns the ids.
    pub async fn remind_approvers(&self, now: i64) -> Result<Vec<String>, LedgerError> {
        let due: Vec<String> =
            sqlx::query_scalar(self.backend().pick(DUE_APPROVER_REMINDERS_SQL, DUE_APPROVER_REMINDERS_SQL_PG))
                .bind(now)
                .fetch_all(self.pool())
                .await?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.write().await?;
        let mut reminded = Vec::new();
        for id in due {
            let changed = sqlx::query(
                "UPDATE requests SET approvers_reminded_at = $1
                 WHERE id = $2 AND state = 'awaiting_approval' AND approvers_reminded_at IS NULL",
            )
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                append_audit(&mut tx, &id, "worker", "approvers_reminded", json!({}), now).await?;
                push_outbox(&mut tx, Some(&id), &Notice::ApprovalReminder, now).await?;
                reminded.push(id);
            }
        }
        tx.commit().await?;
        Ok(reminded)
    }

    /// The approval card could not be posted, for good (`slack_error`: the bot is not in the
    /// approvals channel, or there is no such channel): nobody can approve, so the request is
    /// cancelled now and its requester told what to ask their admin, instead of waiting out
    /// the time to decide. Returns false when it was no longer waiting.
    pub async fn approvals_unreachable(&self, id: &str, slack_error: &str) -> Result<bool, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        if !guarded(&mut tx, id, &[RequestState::AwaitingApproval], RequestState::Cancelled, now).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE requests SET ended_at = $1, end_reason = 'approvals_unreachable' WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, "worker", "approvals_unreachable", json!({"slack_error": slack_error}), now).await?;
        crate::metrics::METRICS.request("approvals_unreachable");
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Tell { moment: Moment::Ended }, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ready requests whose time box ends within `before_ms` and that were not reminded yet:
    /// each gets one reminder (with an Extend button).
    pub async fn remind_due(&self, now: i64, before_ms: i64) -> Result<Vec<String>, LedgerError> {
        let due: Vec<String> =
            sqlx::query_scalar(DUE_REMINDERS_SQL).bind(now + before_ms).bind(before_ms).fetch_all(self.pool()).await?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.write().await?;
        let mut reminded = Vec::new();
        for id in due {
            let changed = sqlx::query(
                "UPDATE requests SET reminded_at = $1 WHERE id = $2 AND state = 'ready' AND reminded_at IS NULL",
            )
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                let request = fetch(&mut tx, &id).await?;
                let expires_at_ms = request.expires_at.unwrap_or(now);
                append_audit(&mut tx, &id, "worker", "reminded", json!({"expires_at": expires_at_ms}), now).await?;
                push_outbox(&mut tx, Some(&id), &Notice::Reminder { expires_at_ms }, now).await?;
                reminded.push(id);
            }
        }
        tx.commit().await?;
        Ok(reminded)
    }

    /// Moves the expiry of a ready request `by_secs` later, within its maximum, and queues the
    /// bastion's own shutdown to be re-scheduled.
    pub async fn extend(&self, id: &str, actor: &str, by_secs: i64) -> Result<Extended, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let request = fetch(&mut tx, id).await?;
        let (RequestState::Ready, Some(ready_at), Some(expires_at)) =
            (request.state(), request.ready_at, request.expires_at)
        else {
            return Ok(Extended::NotReady(request.state()));
        };
        let max_secs = request.max_ttl_secs.unwrap_or(request.ttl_secs);
        let new_expiry = expires_at + by_secs * 1000;
        if new_expiry - ready_at > max_secs * 1000 {
            let can_add_secs = (max_secs * 1000 - (expires_at - ready_at)).max(0) / 1000;
            return Ok(Extended::TooLong { max_secs, can_add_secs });
        }
        let changed = sqlx::query(
            "UPDATE requests SET expires_at = $1, reminded_at = NULL, updated_at = $2
             WHERE id = $3 AND state = 'ready' AND expires_at = $4",
        )
        .bind(new_expiry)
        .bind(now)
        .bind(id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            // It expired (or was extended) in between; say so rather than guess.
            let state = fetch(&mut tx, id).await?.state();
            return Ok(Extended::NotReady(state));
        }
        let detail = json!({"by_secs": by_secs, "expires_at": new_expiry, "previous_expires_at": expires_at});
        append_audit(&mut tx, id, actor, "extended", detail, now).await?;
        enqueue_job(&mut tx, id, JobKind::Reschedule, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        let by = crate::duration::HumanDuration::from_secs(by_secs as u64);
        let text = request.subject().line(&format!("extended by <@{actor}> by {by}"), Some(new_expiry));
        push_outbox(&mut tx, Some(id), &Notice::AuditLine { text }, now).await?;
        let request = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Extended::Now(Box::new(request)))
    }

    /// Ends a request at once, as `actor`: a ready or provisioning one is torn down, one still
    /// awaiting approval is cancelled (nothing was created).
    pub async fn end(&self, id: &str, actor: &str) -> Result<Ended, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let from_live =
            [RequestState::Requested, RequestState::Approved, RequestState::Provisioning, RequestState::Ready];
        let (to, reason) =
            if guarded(&mut tx, id, &[RequestState::AwaitingApproval], RequestState::Cancelled, now).await? {
                (RequestState::Cancelled, "cancelled")
            } else if guarded(&mut tx, id, &from_live, RequestState::Ending, now).await? {
                let request = fetch(&mut tx, id).await?;
                let reason = if request.ready_at.is_some() { "ended_by_user" } else { "cancelled" };
                (RequestState::Ending, reason)
            } else {
                let state = fetch(&mut tx, id).await?.state();
                return Ok(Ended::AlreadyOver(state));
            };
        sqlx::query("UPDATE requests SET end_reason = $1, ended_by = $2 WHERE id = $3")
            .bind(reason)
            .bind(actor)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, actor, "end_requested", json!({"reason": reason}), now).await?;
        if to == RequestState::Cancelled {
            sqlx::query("UPDATE requests SET ended_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            push_outbox(&mut tx, Some(id), &Notice::ApprovalCard, now).await?;
            // Nothing to tear down, so no later "ended": a requester whose request someone else
            // cancelled is told now (one who clicked Cancel saw it happen).
            if fetch(&mut tx, id).await?.requester_id != actor {
                push_outbox(&mut tx, Some(id), &Notice::Tell { moment: Moment::Ended }, now).await?;
            }
        } else {
            enqueue_job(&mut tx, id, JobKind::Teardown, now).await?;
        }
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        let request = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Ended::Now(Box::new(request)))
    }

    /// Queues a teardown for `id` again (a provisioning job that finds its request ended under
    /// it calls this after creating something, so nothing it made outlives the request).
    pub async fn ensure_teardown(&self, id: &str) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        enqueue_job(&mut tx, id, JobKind::Teardown, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A request refused by policy: an audit event with no request, and a line for the audit
    /// channel.
    pub async fn record_denial(&self, actor: &str, detail: serde_json::Value, line: String) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        append_audit_opt(&mut tx, None, actor, "denied_by_policy", detail, now).await?;
        crate::metrics::METRICS.request("denied_by_policy");
        push_outbox(&mut tx, None, &Notice::AuditLine { text: line }, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What ages out of a request, in one transaction: its `response_url` once made before
    /// `response_urls_before` (Slack honours one for 30 minutes, and a capability nobody can
    /// use is not worth keeping), and its place in the per-person limits once closed and made
    /// before `rate_window_before` (migration 0006). Returns how many of each.
    pub async fn age_requests(&self, response_urls_before: i64, rate_window_before: i64) -> Result<Aged, LedgerError> {
        let mut tx = self.write().await?;
        let response_urls =
            sqlx::query(FORGET_RESPONSE_URLS_SQL).bind(response_urls_before).execute(&mut *tx).await?.rows_affected();
        let left_rate_window =
            sqlx::query(LEAVE_RATE_WINDOW_SQL).bind(rate_window_before).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(Aged { response_urls, left_rate_window })
    }

    /// Bastions that exist or may: requests past launch and not yet torn down.
    pub async fn live_bastions(&self) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE state IN ('provisioning','ready','ending') AND instance_id IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Open requests, of `user` or (None) of everyone, newest first.
    pub async fn open_requests(&self, user: Option<&str>) -> Result<Vec<Request>, LedgerError> {
        let sql = format!(
            "SELECT * FROM requests WHERE state IN {OPEN_STATES} AND ($1 IS NULL OR requester_id = $1)
             ORDER BY created_at DESC LIMIT 100"
        );
        Ok(sqlx::query_as(&sql).bind(user).fetch_all(self.pool()).await?)
    }

    /// Requests waiting for a decision, the oldest deadline first (the `requests_decide`
    /// index holds only these).
    pub async fn awaiting_approval(&self) -> Result<Vec<Request>, LedgerError> {
        let sql = self.backend().pick(
            "SELECT * FROM requests INDEXED BY requests_decide WHERE state = 'awaiting_approval'
             ORDER BY decide_by LIMIT 100",
            "SELECT * FROM requests WHERE state = 'awaiting_approval' ORDER BY decide_by LIMIT 100",
        );
        Ok(sqlx::query_as(sql).fetch_all(self.pool()).await?)
    }

    /// The access history, newest first.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<Request>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT * FROM requests WHERE created_at >= $1 AND ($2 IS NULL OR service = $2)
               AND ($3 IS NULL OR requester_id = $3)
             ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
        )
        .bind(q.since_ms)
        .bind(&q.service)
        .bind(&q.user)
        .bind(q.limit)
        .bind(q.offset)
        .fetch_all(self.pool())
        .await?)
    }

    /// A request by the id people see (`fc-xxxxxxxx`, or just the part after `fc-`).
    pub async fn find(&self, shown: &str) -> Result<Option<Request>, LedgerError> {
        let id = if shown.starts_with("fc-") { shown.to_string() } else { format!("fc-{shown}") };
        Ok(sqlx::query_as("SELECT * FROM requests WHERE id = $1").bind(id).fetch_optional(self.pool()).await?)
    }

    /// The message posted for `kind` (`requester`, `approval`) of a request, if any.
    pub async fn slack_message(&self, request_id: &str, kind: &str) -> Result<Option<(String, String)>, LedgerError> {
        Ok(sqlx::query_as("SELECT channel, ts FROM slack_messages WHERE request_id = $1 AND kind = $2")
            .bind(request_id)
            .bind(kind)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Walks the whole audit chain (streamed, in `seq` order).
    pub async fn verify_audit(&self) -> Result<Verdict, LedgerError> {
        let mut verifier = Verifier::default();
        let mut rows = sqlx::query_as::<_, crate::ledger::AuditEvent>("SELECT * FROM audit_events ORDER BY seq")
            .fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            verifier.push(&row);
        }
        Ok(verifier.verdict())
    }

    /// The history of requests created since `since_ms`, newest first, for export.
    pub async fn export(&self, since_ms: i64) -> Result<Vec<ExportRow>, LedgerError> {
        let rows: Vec<ExportSource> = sqlx::query_as(EXPORT_SQL).bind(since_ms).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(ExportRow::from).collect())
    }
}

/// The queries the loops run each tick, for the index test.
pub const LOOP_QUERIES: [(&str, &str); 3] = [
    (DUE_APPROVALS_SQL, "requests_decide"),
    (DUE_REMINDERS_SQL, "requests_due"),
    (DUE_APPROVER_REMINDERS_SQL, "requests_decide"),
];

impl Ledger {
    /// A refusal or other private answer to a click, delivered through the outbox like
    /// everything else, with an audit event when `audit_kind` is given.
    pub async fn queue_ephemeral(
        &self,
        request_id: Option<&str>,
        actor: &str,
        reply_url: &str,
        text: &str,
        audit_kind: Option<&str>,
    ) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        if let Some(kind) = audit_kind {
            append_audit_opt(&mut tx, request_id, actor, kind, json!({"told": text}), now).await?;
        }
        let notice = Notice::Ephemeral { reply_url: reply_url.to_string(), text: text.to_string() };
        push_outbox(&mut tx, request_id, &notice, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A refused action that is worth an audit event (someone else's request, past a limit).
    pub async fn record_refusal(
        &self,
        request_id: Option<&str>,
        actor: &str,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        append_audit_opt(&mut tx, request_id, actor, kind, detail, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What became of one outbox row in a notifier pass.
#[derive(Debug, Clone)]
pub enum Settlement {
    Delivered {
        id: i64,
        via_response_url: bool,
        /// A card drawn now also serves its queued refreshes up to this row: (request, notice, id).
        covers: Option<(String, &'static str, i64)>,
        /// A message posted for the first time, to be updated in place later.
        posted: Option<PostedMessage>,
    },
    Retry {
        id: i64,
        after: std::time::Duration,
        error: String,
    },
    Failed {
        id: i64,
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct PostedMessage {
    pub request_id: String,
    pub kind: &'static str,
    pub channel: String,
    pub ts: String,
}

impl Ledger {
    /// Records the outcomes of a notifier pass in one transaction (one sync for the pass).
    pub async fn settle_outbox(&self, settlements: &[Settlement]) -> Result<(), LedgerError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let forget = self.backend().pick(FORGET_REPLY_URL, FORGET_REPLY_URL_PG);
        let mut tx = self.write().await?;
        let now = now_ms();
        for s in settlements {
            match s {
                Settlement::Delivered { id, via_response_url, covers, posted } => {
                    if let Some(p) = posted {
                        sqlx::query(
                            "INSERT INTO slack_messages (request_id, kind, channel, ts) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (request_id, kind) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
                        )
                        .bind(&p.request_id)
                        .bind(p.kind)
                        .bind(&p.channel)
                        .bind(&p.ts)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let sql = format!(
                        "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, via = $2, {forget} WHERE id = $3"
                    );
                    sqlx::query(&sql)
                        .bind(now)
                        .bind(if *via_response_url { "response_url" } else { "web_api" })
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some((request_id, notice, upto)) = covers {
                        sqlx::query(
                            "UPDATE outbox SET delivered_at = $1, via = 'web_api' WHERE request_id = $2 AND notice = $3
                               AND id <= $4 AND delivered_at IS NULL AND failed_at IS NULL",
                        )
                        .bind(now)
                        .bind(request_id)
                        .bind(notice)
                        .bind(upto)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                Settlement::Retry { id, after, error } => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(now + after.as_millis() as i64)
                    .bind(error)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                Settlement::Failed { id, error } => {
                    let sql = format!(
                        "UPDATE outbox SET attempts = attempts + 1, failed_at = $1, last_error = $2, {forget} WHERE id = $3"
                    );
                    sqlx::query(&sql).bind(now).bind(error).bind(id).execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
