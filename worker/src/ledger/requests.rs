//! Requests through their states: each change a guarded update with its audit event, outbox
//! rows and jobs in the same transaction.

use super::intake::Written;
use super::{
    append_audit, append_audit_opt, enqueue_job, fetch, guarded, now_ms, push_outbox, AuditEvent, CreateOutcome,
    Intake, JobKind, Ledger, LedgerError, NewRequest, Request, WORKER,
};
use crate::audit_line::person_text;
use crate::events::{Check, EndReason, LaunchInfo, Moment, Notice};
use crate::state::RequestState;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Requests ending since before $1 whose teardown was not raised yet (a housekeeping query:
/// `requests_due` finds the ending ones).
pub(crate) const STUCK_TEARDOWNS_SQL: &str = "SELECT r.id, r.updated_at, j.last_error FROM requests r
   LEFT JOIN jobs j ON j.request_id = r.id AND j.kind = 'teardown'
  WHERE r.state = 'ending' AND r.updated_at < $1
    AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.request_id = r.id AND a.kind = 'teardown_stuck')";

// The queries the loops run every tick; a test holds each to an index (EXPLAIN QUERY PLAN),
// so their cost stays flat however many requests the ledger holds.
pub(super) const EXPIRE_DUE_SQL: &str =
    "SELECT id FROM requests WHERE state = 'ready' AND expires_at <= $1 ORDER BY expires_at";
pub(super) const NEXT_EXPIRY_SQL: &str = "SELECT MIN(expires_at) FROM requests WHERE state = 'ready'";

impl Ledger {
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
            Written::Refused(limit) => Ok(CreateOutcome::Refused(limit)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Request, LedgerError> {
        sqlx::query_as("SELECT * FROM requests WHERE id = $1")
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
    /// A bastion whose tags no longer say whose it is: an audit event and a line for the audit
    /// channel, in one transaction.
    pub async fn record_tag_change(&self, id: &str, detail: Value, line: String) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        append_audit(&mut tx, id, WORKER, "requester_tag_changed", detail, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::AuditLine { text: line }, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Teardowns that have not finished `after_ms` after the request began ending (a role IAM
    /// will not delete, an AWS outage…): each is raised once, as an audit event and a line for
    /// the audit channel naming the last error. Returns their ids.
    pub async fn flag_stuck_teardowns(&self, now: i64, after_ms: i64) -> Result<Vec<String>, LedgerError> {
        let mut tx = self.write().await?;
        let stuck: Vec<(String, i64, Option<String>)> =
            sqlx::query_as(STUCK_TEARDOWNS_SQL).bind(now - after_ms).fetch_all(&mut *tx).await?;
        for (id, since, last_error) in &stuck {
            let request = fetch(&mut tx, id).await?;
            let minutes = (now - since) / 60_000;
            let why = last_error.as_deref().map(person_text).unwrap_or_else(|| "no error recorded".into());
            let line = request.subject().line(
                &format!(":warning: teardown not finished after {minutes} min (last error: {why}); still trying"),
                None,
            );
            let detail = json!({"ending_since": since, "last_error": last_error});
            append_audit(&mut tx, id, WORKER, "teardown_stuck", detail, now).await?;
            push_outbox(&mut tx, Some(id), &Notice::AuditLine { text: line }, now).await?;
        }
        tx.commit().await?;
        Ok(stuck.into_iter().map(|(id, _, _)| id).collect())
    }

    /// Ends a live request whose bastion was retagged (`tag_watch`): ending, with the reason,
    /// and its teardown queued. Returns whether it was live.
    pub async fn end_retagged(&self, id: &str) -> Result<bool, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let live = [RequestState::Provisioning, RequestState::Ready];
        if !guarded(&mut tx, id, &live, RequestState::Ending, now).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE requests SET end_reason = 'retagged', ended_by = $1 WHERE id = $2")
            .bind(WORKER)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, "end_requested", json!({"reason": "retagged"}), now).await?;
        enqueue_job(&mut tx, id, JobKind::Teardown, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        tx.commit().await?;
        Ok(true)
    }

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
        sqlx::query("UPDATE requests SET task_arn = $1, container = $2, warnings = $3, updated_at = $4 WHERE id = $5")
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
            "UPDATE requests SET hard_stop_at = COALESCE(hard_stop_at, $1) WHERE id = $2 RETURNING hard_stop_at",
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
        sqlx::query("UPDATE requests SET role_name = $1, updated_at = $2 WHERE id = $3")
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
        sqlx::query(
            "UPDATE requests SET instance_id = $1, instance_type = $2, launch = $3, updated_at = $4 WHERE id = $5",
        )
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

    /// provisioning → ready. The time box starts when the person is told (`told_ready`); until
    /// then it runs for at most `untold_limit_ms`, so a bastion nobody could be told about
    /// is ended unused. Writes the audit event and the notices.
    pub async fn mark_ready(
        &self,
        id: &str,
        region: &str,
        untold_limit_ms: i64,
    ) -> Result<Option<Request>, LedgerError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let request = fetch(&mut tx, id).await?;
        let expires_at = now + (request.ttl_secs * 1000).min(untold_limit_ms);
        let changed = sqlx::query(
            "UPDATE requests SET state = 'ready', ready_at = $1, expires_at = $2, updated_at = $3
             WHERE id = $4 AND state = 'provisioning'",
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
        // The audit channel's "granted" line comes when the person is told (`told_ready`).
        push_outbox(&mut tx, Some(id), &Notice::Tell { moment: Moment::Ready }, now).await?;
        let request = fetch(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(request))
    }

    /// The requester was told (at `at`) that their bastion is ready: the time box starts now,
    /// with what extensions already added. The bastion's own deadline is moved (a reschedule
    /// job) when it would no longer be a minute past the new expiry. Does nothing for a
    /// request no longer ready, or already told.
    pub async fn told_ready(&self, id: &str, at: i64, untold_limit_ms: i64) -> Result<(), LedgerError> {
        let mut tx = self.write().await?;
        let request = fetch(&mut tx, id).await?;
        let (RequestState::Ready, None, Some(ready_at), Some(expires_at)) =
            (request.state(), request.told_at, request.ready_at, request.expires_at)
        else {
            return Ok(());
        };
        let new_expiry = request.expiry_once_told(at, untold_limit_ms);
        let extended_before = expires_at - ready_at > (request.ttl_secs * 1000).min(untold_limit_ms);
        sqlx::query(
            "UPDATE requests SET told_at = $1, ready_at = $1, expires_at = $2, updated_at = $1,
                reminded_at = CASE WHEN expires_at = $2 THEN reminded_at END
             WHERE id = $3 AND state = 'ready' AND told_at IS NULL",
        )
        .bind(at)
        .bind(new_expiry)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let detail = json!({"expires_at": new_expiry, "previous_expires_at": expires_at, "late_ms": at - ready_at});
        append_audit(&mut tx, id, WORKER, "told_ready", detail, at).await?;
        if new_expiry != expires_at {
            push_outbox(&mut tx, Some(id), &Notice::Card, at).await?;
        }
        let what = if request.break_glass.0 { "granted (BREAK-GLASS)" } else { "granted" };
        let line = request.subject().line(what, Some(new_expiry));
        push_outbox(&mut tx, Some(id), &Notice::AuditLine { text: line }, at).await?;
        // The bastion's own deadline: moved when an extension before now set it (to the
        // untold expiry) or when it would come less than a minute after the new expiry.
        if extended_before || request.hard_stop_at.is_some_and(|stop| new_expiry + 60_000 > stop) {
            enqueue_job(&mut tx, id, JobKind::Reschedule, at).await?;
        }
        tx.commit().await?;
        Ok(())
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
        sqlx::query("UPDATE requests SET end_reason = $1, ended_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, id, WORKER, "failed", json!({"reason": reason, "checks": checks}), now).await?;
        crate::metrics::METRICS.request("failed");
        push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
        push_outbox(&mut tx, Some(id), &Notice::Tell { moment: Moment::Failed }, now).await?;
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
                // Never told it was ready (Slack unreachable the whole time): ended unused.
                sqlx::query(
                    "UPDATE requests SET end_reason = CASE WHEN told_at IS NULL THEN 'never_told' ELSE 'expired' END
                     WHERE id = $1",
                )
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
            sqlx::query("UPDATE requests SET ended_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            let reason = match request.end_reason.as_deref() {
                Some("ended_by_user") => EndReason::EndedByUser,
                Some("cancelled") => EndReason::Cancelled,
                Some("never_told") => EndReason::NeverTold,
                Some("retagged") => EndReason::Retagged,
                _ => EndReason::Expired,
            };
            append_audit(&mut tx, id, WORKER, "torn_down", detail, now).await?;
            append_audit(&mut tx, id, WORKER, "ended", json!({"reason": reason.as_str()}), now).await?;
            crate::metrics::METRICS.request("ended");
            push_outbox(&mut tx, Some(id), &Notice::Card, now).await?;
            push_outbox(&mut tx, Some(id), &Notice::Tell { moment: Moment::Ended }, now).await?;
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
        Ok(sqlx::query_as("SELECT * FROM audit_events WHERE request_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }
}
