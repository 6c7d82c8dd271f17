//! The worker loops: claim due jobs (provision, teardown, reschedule) and run them with a lease
//! kept alive by a heartbeat; move requests whose time box is over to `ending`. One loop, woken
//! by the ingress through a `Notify` or by its poll interval, whichever comes first. Teardowns
//! have their own `worker.concurrency` slots, so they never wait behind provisioning.

use crate::ledger::{now_ms, Job, JobKind, Lease, Ledger, LedgerError, RATE_WINDOW_MS};
use crate::provision::{JobError, Provisioner, Step};
use crate::tag_watch;
use crate::workflow::Aged;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

/// How long a request keeps its `response_url` (Slack honours one for 30 minutes).
const RESPONSE_URL_KEPT_MS: i64 = 30 * 60 * 1000;

/// The shortest time between two passes of the loop.
const MIN_PASS_GAP: Duration = Duration::from_millis(2);

pub struct Runner {
    provisioner: Arc<Provisioner>,
    wake: Arc<Notify>,
}

impl Runner {
    pub fn new(provisioner: Arc<Provisioner>, wake: Arc<Notify>) -> Self {
        Self { provisioner, wake }
    }

    fn ledger(&self) -> &Ledger {
        &self.provisioner.ledger
    }

    /// Cancels requests whose approval did not come in time, and reminds people whose time box
    /// ends within `reminder_before_ms`.
    async fn housekeeping(&self, reminder_before_ms: i64, teardown_alert_after_ms: i64) {
        match self.ledger().expire_approvals(now_ms()).await {
            Ok(moved) if !moved.is_empty() => {
                tracing::info!(count = moved.len(), "approvals not given in time; cancelled");
                self.provisioner.notices.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "approval expiry check failed"),
        }
        // Slack honours a response_url for 30 minutes; none is kept longer. The per-person
        // limits count the last hour (and what is open): older closed requests leave their index.
        let now = now_ms();
        match self.ledger().age_requests(now - RESPONSE_URL_KEPT_MS, now - RATE_WINDOW_MS).await {
            Ok(aged) if aged != Aged::default() => tracing::debug!(?aged, "requests aged"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "forgetting old response URLs and rate windows failed"),
        }
        match self.ledger().flag_stuck_teardowns(now_ms(), teardown_alert_after_ms).await {
            Ok(stuck) if !stuck.is_empty() => {
                tracing::error!(?stuck, "teardowns not finished in time; raised in the audit channel");
                self.provisioner.notices.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "stuck teardown check failed"),
        }
        match self.ledger().remind_approvers(now_ms()).await {
            Ok(reminded) if !reminded.is_empty() => self.provisioner.notices.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "approver reminder check failed"),
        }
        match self.ledger().remind_due(now_ms(), reminder_before_ms).await {
            Ok(reminded) if !reminded.is_empty() => {
                self.provisioner.notices.notify_one();
                // Whose each bastion is, as its tags say now; off the loop (AWS calls).
                let provisioner = self.provisioner.clone();
                tokio::spawn(async move { watch_tags(&provisioner, &reminded).await });
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reminder check failed"),
        }
    }

    /// Runs until `shutdown` resolves. Jobs still running then are stopped and handed back
    /// (their lease released), so the next start picks them up at once; every step is
    /// idempotent.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let settings = self.provisioner.worker.clone();
        // Two pools of `worker.concurrency` slots: teardowns never wait behind provisioning.
        // A provision waiting for its bastion to become ready gives its slot back between two
        // looks (`Step::Later`).
        let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let teardown_permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut in_flight: std::collections::HashMap<tokio::task::Id, Job> = Default::default();
        let mut next_reap = tokio::time::Instant::now() + settings.reaper_interval.as_duration();
        let mut reaping: Option<tokio::task::JoinHandle<()>> = None;
        let mut last_housekeeping: Option<tokio::time::Instant> = None;
        let mut last_pass: Option<tokio::time::Instant> = None;
        loop {
            // Under a burst every request wakes the loop; one pass per MIN_PASS_GAP serves
            // them all (a job waits at most that long to be claimed).
            if let Some(at) = last_pass {
                tokio::time::sleep_until(at + MIN_PASS_GAP).await;
            }
            last_pass = Some(tokio::time::Instant::now());
            // The reaper, on its schedule, one pass at a time, beside the jobs.
            if tokio::time::Instant::now() >= next_reap && reaping.as_ref().is_none_or(|r| r.is_finished()) {
                let provisioner = self.provisioner.clone();
                let ledger = self.ledger().clone();
                let grace = settings.reaper_grace.as_duration();
                reaping = Some(tokio::spawn(async move {
                    // One replica sweeps at a time; the others skip this round.
                    let _held = match ledger.exclusive(crate::ledger::REAPER_LOCK).await {
                        Ok(Some(held)) => held,
                        Ok(None) => return tracing::debug!("another replica is reaping"),
                        Err(e) => return tracing::error!(error = %e, "reaper lock"),
                    };
                    match crate::reaper::reap(&provisioner, grace).await {
                        Ok(reaped) if reaped != Default::default() => {
                            tracing::warn!(instances = ?reaped.instances, roles = ?reaped.roles, "reaper removed orphans")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "reaper pass failed"),
                    }
                }));
                next_reap = tokio::time::Instant::now() + settings.reaper_interval.as_duration();
            }
            // Expiry: every ready request whose time box is over gets a teardown job.
            match self.ledger().expire_due(now_ms()).await {
                Ok(moved) if !moved.is_empty() => tracing::info!(count = moved.len(), "time boxes over; tearing down"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "expiry check failed"),
            }
            // Approvals that did not come in time; reminders before expiry. Minutes-scale
            // deadlines: at most once per poll interval, however often the loop is woken.
            let housekeeping_due = last_housekeeping.is_none_or(|at| at.elapsed() >= settings.poll_interval());
            if housekeeping_due {
                last_housekeeping = Some(tokio::time::Instant::now());
                let alert_after = settings.teardown_alert_after.as_secs() as i64 * 1000;
                self.housekeeping(settings.reminder_before.as_secs() as i64 * 1000, alert_after).await;
            }
            // Jobs: as many as there are free permits, teardowns first, each from its own pool.
            for (pool, teardown) in [(&teardown_permits, true), (&permits, false)] {
                while let Ok(permit) = pool.clone().try_acquire_owned() {
                    match self.ledger().claim_job(settings.lease(), teardown).await {
                        Ok(Some(job)) => {
                            let provisioner = self.provisioner.clone();
                            let claimed = job.clone();
                            let handle = running.spawn(async move {
                                run_job(&provisioner, job).await;
                                drop(permit);
                            });
                            in_flight.insert(handle.id(), claimed);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "claiming a job failed");
                            break;
                        }
                    }
                }
            }
            let mut sleep = settings.poll_interval();
            if let Ok(Some(next)) = self.ledger().next_expiry().await {
                let until = Duration::from_millis((next - now_ms()).max(0) as u64);
                sleep = sleep.min(until);
            }
            // A postponed job (a bastion not ready yet) is due before the next poll. One due
            // already is waiting for a slot: a finishing job wakes the loop for it.
            if let Ok(Some(next)) = self.ledger().next_job_at().await {
                let now = now_ms();
                if next > now {
                    sleep = sleep.min(Duration::from_millis((next - now) as u64));
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                Some(done) = running.join_next_with_id() => {
                    in_flight.remove(&done.map_or_else(|e| e.id(), |(id, ())| id));
                }
                _ = tokio::time::sleep(sleep) => {}
            }
            while let Some(done) = running.try_join_next_with_id() {
                in_flight.remove(&done.map_or_else(|e| e.id(), |(id, ())| id));
            }
        }
        if let Some(reaping) = reaping {
            reaping.abort();
        }
        running.abort_all();
        while let Some(done) = running.join_next_with_id().await {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            if let Some(job) = in_flight.remove(&id) {
                if let Err(e) = self.ledger().retry_job(&job, Duration::ZERO, "interrupted by shutdown").await {
                    tracing::warn!(job_id = job.id, error = %e, "could not release a job at shutdown");
                }
            }
        }
    }
}

/// Runs one job with a heartbeat on its lease, and settles it: done, postponed (waiting for
/// its bastion), retried with backoff, or (for provisioning) failed with a reason and handed to
/// teardown. Teardown is never given up: nothing may be left behind. A job whose lease is found
/// lost (another worker took it over) is stopped at once and settles nothing.
pub async fn run_job(provisioner: &Provisioner, job: Job) {
    let ledger = &provisioner.ledger;
    let lease = provisioner.worker.lease();
    let (lost, mut lost_rx) = tokio::sync::oneshot::channel::<()>();
    let heartbeat = {
        let ledger = ledger.clone();
        let job = job.clone();
        tokio::spawn(async move {
            let mut held_until = tokio::time::Instant::now() + lease;
            loop {
                tokio::time::sleep(lease / 3).await;
                match ledger.renew_lease(&job, lease).await {
                    Ok(Lease::Held) => held_until = tokio::time::Instant::now() + lease,
                    Ok(Lease::Lost) => {
                        tracing::warn!(job_id = job.id, request_id = %job.request_id, "lease lost to another worker; stopping this run");
                        let _ = lost.send(());
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job_id = job.id, error = %e, "lease renewal failed");
                        // Not renewed in time: another worker may take the job now, so this
                        // run must not go on beside it.
                        if tokio::time::Instant::now() >= held_until {
                            tracing::warn!(job_id = job.id, "the lease ran out unrenewed; stopping this run");
                            let _ = lost.send(());
                            return;
                        }
                    }
                }
            }
        })
    };
    let _stop_heartbeat = AbortOnDrop(heartbeat);
    let request_id = job.request_id.as_str();
    let work = async {
        match job.kind {
            JobKind::Provision => provisioner.provision(&job).await,
            JobKind::Teardown => provisioner.teardown(&job).await,
            JobKind::Reschedule => provisioner.reschedule_shutdown(&job).await,
        }
    };
    let result = tokio::select! {
        result = work => result,
        Ok(()) = &mut lost_rx => return,
    };
    let settled = settle(ledger, &job, result, i64::from(provisioner.worker.max_attempts.max(1))).await;
    match settled {
        Ok(Lease::Held) => {}
        Ok(Lease::Lost) => {
            tracing::warn!(
                request_id,
                job_id = job.id,
                "the job was taken over before this run settled it; left to the new owner"
            )
        }
        Err(e) => {
            tracing::error!(request_id, error = %e, "could not record the job's outcome; its lease will run out and it will run again")
        }
    }
    provisioner.notices.notify_one();
}

async fn settle(
    ledger: &Ledger,
    job: &Job,
    result: Result<Step, JobError>,
    max_attempts: i64,
) -> Result<Lease, LedgerError> {
    let request_id = job.request_id.as_str();
    match result {
        Ok(Step::Done) => ledger.complete_job(job).await,
        Ok(Step::Later { after, progress }) => ledger.postpone_job(job, after, &progress).await,
        Err(JobError::Retry(reason)) if job.kind == JobKind::Teardown || job.attempts < max_attempts => {
            let backoff = backoff(job.attempts, job.kind == JobKind::Teardown);
            tracing::warn!(request_id, kind = job.kind.as_str(), attempt = job.attempts, ?backoff, %reason, "job will be retried");
            ledger.retry_job(job, backoff, &reason).await
        }
        Err(JobError::Ledger(e)) => {
            tracing::error!(request_id, error = %e, "ledger error in job; will retry");
            ledger.retry_job(job, backoff(job.attempts, true), &e.to_string()).await
        }
        Err(JobError::Refused { reason, checks }) => {
            tracing::info!(request_id, %reason, "preflight refused the request");
            ledger.mark_failed(request_id, &reason, &checks).await?;
            ledger.complete_job(job).await
        }
        Err(JobError::Retry(reason) | JobError::Fatal(reason)) => match job.kind {
            JobKind::Provision => {
                tracing::warn!(request_id, %reason, "provisioning failed");
                if !ledger.mark_failed(request_id, &reason, &[]).await? {
                    // Ended under us (someone pressed End): its teardown may have run before
                    // this attempt created something, so tear down once more.
                    ledger.ensure_teardown(request_id).await?;
                }
                ledger.complete_job(job).await
            }
            JobKind::Teardown => {
                tracing::error!(request_id, %reason, "teardown failed; will keep trying");
                ledger.retry_job(job, backoff(job.attempts, true), &reason).await
            }
            JobKind::Reschedule => {
                // The bastion keeps its earlier hard stop; the ledger's expiry still ends it
                // on time, and the card says the shutdown could not be moved.
                tracing::error!(request_id, %reason, "could not re-schedule the bastion's shutdown");
                ledger.record_step(request_id, "reschedule_failed", serde_json::json!({"error": reason})).await?;
                ledger.complete_job(job).await
            }
        },
    }
}

/// At a reminder: a bastion whose tags no longer name its requester (or no longer say it is
/// managed) is ended, and the audit channel told.
async fn watch_tags(provisioner: &Provisioner, ids: &[String]) {
    for id in ids {
        let request = match provisioner.ledger.get(id).await {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(request_id = %id, error = %e, "tag check: request unreadable");
                continue;
            }
        };
        let tags = match tag_watch::check(&provisioner.aws.ec2, &request).await {
            Ok(tags) => tags,
            Err(e) => {
                tracing::warn!(request_id = %id, error = %e, "could not read the bastion's tags at the reminder");
                continue;
            }
        };
        match tag_watch::record(&provisioner.ledger, &request, &tags, "reminder").await {
            Ok(true) => {
                if let Err(e) = provisioner.ledger.end_retagged(id).await {
                    tracing::error!(request_id = %id, error = %e, "ending a retagged bastion failed");
                }
                provisioner.notices.notify_one();
            }
            Ok(false) => {}
            Err(e) => tracing::error!(request_id = %id, error = %e, "recording a retagged bastion failed"),
        }
    }
}

/// 1 s, 2 s, 4 s … capped at 60 s (5 min for teardown, which retries forever).
fn backoff(attempts: i64, long: bool) -> Duration {
    let cap = if long { 300 } else { 60 };
    Duration::from_secs((1u64 << attempts.clamp(0, 10)).min(cap))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
