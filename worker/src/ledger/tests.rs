//! The ledger's own tests: intake, transitions, jobs, the loops' indexes.

use super::intake::{LIVE_SQL, OPEN_REQUEST_ID_SQL, PERSON_SQL};
use super::jobs::{CLAIM_JOB_SQL, NEXT_JOB_SQL};
use super::outbox::{DUE_OUTBOX_SQL, NEXT_OUTBOX_SQL};
use super::requests::{EXPIRE_DUE_SQL, NEXT_EXPIRY_SQL};
use super::*;
use crate::events::LaunchInfo;
use serde_json::json;
use std::sync::atomic::Ordering;

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
        limits: crate::config::LimitSettings {
            live_bastions: 1_000_000,
            open_per_person: 1_000,
            per_person_per_hour: 1_000_000,
        },
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
        other => panic!("a second open request for the same service: {other:?}"),
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
            CreateOutcome::Refused(limit) => panic!("refused by {limit:?}"),
        }
    }
    assert_eq!((created, already), (201, 99));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(ledger.pool()).await.unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(ledger.pool()).await.unwrap();
    let audits: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(ledger.pool()).await.unwrap();
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
        (NEXT_JOB_SQL, "jobs_due"),
        (DUE_OUTBOX_SQL, "outbox_pending"),
        (NEXT_OUTBOX_SQL, "outbox_next"),
        (crate::workflow::LOOP_QUERIES[0].0, crate::workflow::LOOP_QUERIES[0].1),
        (crate::workflow::LOOP_QUERIES[1].0, crate::workflow::LOOP_QUERIES[1].1),
        (crate::workflow::LOOP_QUERIES[2].0, crate::workflow::LOOP_QUERIES[2].1),
        (OPEN_REQUEST_ID_SQL, "requests_recent_by_requester"),
        (LIVE_SQL, "requests_due"),
        (PERSON_SQL, "requests_recent_by_requester"),
        (crate::workflow::LEAVE_RATE_WINDOW_SQL, "requests_recent"),
        (crate::workflow::FORGET_RESPONSE_URLS_SQL, "requests_response_url_kept"),
        (super::requests::STUCK_TEARDOWNS_SQL, "requests_due"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(ledger.pool()).await.unwrap();
        let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(details.iter().any(|d| d.contains(index)), "{sql}\n{details:?}");
        for detail in &details {
            // A table read whole; a subquery's own rows (bounded by its LIMIT) are not one.
            let full_scan = detail.starts_with("SCAN ")
                && !detail.contains("INDEX")
                && !detail.starts_with("SCAN (subquery")
                && *detail != "SCAN live";
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
    let update =
        sqlx::query("UPDATE audit_events SET kind = 'x' WHERE request_id = ?").bind(&r.id).execute(ledger.pool()).await;
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
    let ready = ledger.mark_ready(&r.id, "eu-west-1", i64::MAX).await.unwrap().unwrap();
    let expires = ready.expires_at.unwrap();
    assert!(ledger.expire_due(expires - 1).await.unwrap().is_empty());
    assert_eq!(ledger.expire_due(expires).await.unwrap(), vec![r.id.clone()]);
    assert!(ledger.expire_due(expires + 1).await.unwrap().is_empty());
    assert_eq!(ledger.get(&r.id).await.unwrap().state(), RequestState::Ending);
}

async fn provisioning(ledger: &Ledger, user: &str) -> Request {
    let CreateOutcome::Created(r) = ledger.create_request(new_request(user)).await.unwrap() else { panic!() };
    r
}

#[tokio::test]
async fn a_job_asked_for_again_while_it_runs_runs_once_more() {
    let (ledger, _dir) = ledger().await;
    let r = provisioning(&ledger, "U1").await;
    assert!(ledger.transition(&r.id, RequestState::Requested, RequestState::Ending, "ended", json!({})).await.unwrap());
    ledger.ensure_teardown(&r.id).await.unwrap();
    let first = ledger.claim_job(Duration::from_secs(60), true).await.unwrap().unwrap();
    // Asked for again while the first run is under way (a launch finished after End).
    ledger.ensure_teardown(&r.id).await.unwrap();
    // Not claimable before the running one's lease ends, and the runner is not told otherwise
    // (it would wake every pass until then).
    let run_at: i64 =
        sqlx::query_scalar("SELECT run_at FROM jobs WHERE kind = 'teardown'").fetch_one(ledger.pool()).await.unwrap();
    assert!(run_at > now_ms() + 50_000, "due at {run_at}, inside the running one's lease");
    assert_eq!(ledger.complete_job(&first).await.unwrap(), Lease::Held);
    let again = ledger.claim_job(Duration::from_secs(60), true).await.unwrap().expect("the teardown runs once more");
    assert_eq!((again.id, again.attempts), (first.id, 1));
    assert_eq!(ledger.complete_job(&again).await.unwrap(), Lease::Held);
    assert_eq!(ledger.claim_job(Duration::ZERO, true).await.unwrap().map(|j| j.id), None);
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'teardown'").fetch_one(ledger.pool()).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_worker_whose_lease_ran_out_changes_nothing() {
    let (ledger, _dir) = ledger().await;
    let r = provisioning(&ledger, "U1").await;
    // A lease that is over at once: the next claim takes the job over.
    let stale = ledger.claim_job(Duration::ZERO, false).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let owner = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().unwrap();
    assert_eq!((owner.id, owner.request_id.as_str()), (stale.id, r.id.as_str()));
    assert_ne!(owner.lease_token, stale.lease_token);
    assert_eq!(ledger.renew_lease(&stale, Duration::from_secs(60)).await.unwrap(), Lease::Lost);
    assert_eq!(ledger.complete_job(&stale).await.unwrap(), Lease::Lost);
    assert_eq!(ledger.retry_job(&stale, Duration::ZERO, "x").await.unwrap(), Lease::Lost);
    assert_eq!(ledger.postpone_job(&stale, Duration::ZERO, "{}").await.unwrap(), Lease::Lost);
    // The owner's lease is untouched, and the job still there.
    assert!(ledger.claim_job(Duration::from_secs(60), false).await.unwrap().is_none());
    assert_eq!(ledger.renew_lease(&owner, Duration::from_secs(60)).await.unwrap(), Lease::Held);
    assert_eq!(ledger.complete_job(&owner).await.unwrap(), Lease::Held);
}

#[tokio::test]
async fn a_postponed_job_keeps_its_progress_and_its_attempts() {
    let (ledger, _dir) = ledger().await;
    provisioning(&ledger, "U1").await;
    let job = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().unwrap();
    assert_eq!((job.attempts, job.progress.as_deref()), (1, None));
    assert_eq!(ledger.postpone_job(&job, Duration::from_secs(30), r#"{"n":1}"#).await.unwrap(), Lease::Held);
    // Not due yet, and the runner knows when it will be.
    assert!(ledger.claim_job(Duration::from_secs(60), false).await.unwrap().is_none());
    let next = ledger.next_job_at().await.unwrap().unwrap();
    assert!(next > now_ms() + 25_000, "{next}");
    sqlx::query("UPDATE jobs SET run_at = 0").execute(ledger.pool()).await.unwrap();
    let again = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().unwrap();
    assert_eq!((again.attempts, again.progress.as_deref()), (1, Some(r#"{"n":1}"#)));
    // Asked for again while it waited: the pass that finishes the wait covers only the first
    // ask, so the job runs once more, from the start.
    let mut tx = ledger.write().await.unwrap();
    enqueue_job(&mut tx, &again.request_id, JobKind::Provision, now_ms()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ledger.postpone_job(&again, Duration::ZERO, r#"{"n":2}"#).await.unwrap(), Lease::Held);
    let last = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().unwrap();
    assert_eq!((last.generation, last.progress.as_deref()), (0, Some(r#"{"n":2}"#)));
    assert_eq!(ledger.complete_job(&last).await.unwrap(), Lease::Held);
    let fresh = ledger.claim_job(Duration::from_secs(60), false).await.unwrap().expect("runs once more");
    assert_eq!((fresh.generation, fresh.progress.as_deref()), (1, None));
}

#[tokio::test]
async fn limits_are_checked_where_the_request_is_written() {
    let (ledger, _dir) = ledger().await;
    let limits = crate::config::LimitSettings { live_bastions: 3, open_per_person: 2, per_person_per_hour: 3 };
    let ask = |user: &str, service: &str| NewRequest { service: service.into(), limits, ..new_request(user) };
    // Two open requests per person: the third service is refused, the same one is "already open".
    assert!(matches!(ledger.create_request(ask("U1", "web")).await.unwrap(), CreateOutcome::Created(_)));
    assert!(matches!(ledger.create_request(ask("U1", "api")).await.unwrap(), CreateOutcome::Created(_)));
    assert!(matches!(
        ledger.create_request(ask("U1", "jobs")).await.unwrap(),
        CreateOutcome::Refused(LimitReached::OpenPerPerson { limit: 2 })
    ));
    assert!(matches!(ledger.create_request(ask("U1", "web")).await.unwrap(), CreateOutcome::AlreadyOpen(_)));
    // Three live bastions for everyone.
    assert!(matches!(ledger.create_request(ask("U2", "web")).await.unwrap(), CreateOutcome::Created(_)));
    assert!(matches!(
        ledger.create_request(ask("U3", "web")).await.unwrap(),
        CreateOutcome::Refused(LimitReached::LiveBastions { limit: 3 })
    ));
    // One ends: room again, but U1's rolling hour still counts what ended.
    let first = ledger.open_requests(Some("U1")).await.unwrap().pop().unwrap();
    sqlx::query("UPDATE requests SET state = 'ended' WHERE id = ?")
        .bind(&first.id)
        .execute(ledger.pool())
        .await
        .unwrap();
    assert!(matches!(ledger.create_request(ask("U1", "jobs")).await.unwrap(), CreateOutcome::Created(_)));
    sqlx::query("UPDATE requests SET state = 'ended' WHERE requester_id = 'U1'").execute(ledger.pool()).await.unwrap();
    match ledger.create_request(ask("U1", "db")).await.unwrap() {
        CreateOutcome::Refused(LimitReached::PerPersonPerHour { limit: 3, retry_at }) => {
            assert!(retry_at > now_ms() + 3_500_000 && retry_at <= now_ms() + 3_600_000, "{retry_at}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing of the refused ones was written.
    let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(ledger.pool()).await.unwrap();
    assert_eq!(requests, 4);
    // An hour later (the times moved back), housekeeping takes U1's three closed requests out
    // of what the limits look at, and U1 may ask again. U2's open one stays in: a second
    // Enter is still told about it, and it still counts.
    sqlx::query("UPDATE requests SET created_at = created_at - 3600001").execute(ledger.pool()).await.unwrap();
    let aged = ledger.age_requests(0, now_ms() - super::RATE_WINDOW_MS).await.unwrap();
    assert_eq!(aged.left_rate_window, 3);
    assert!(matches!(ledger.create_request(ask("U1", "db")).await.unwrap(), CreateOutcome::Created(_)));
    assert!(matches!(ledger.create_request(ask("U2", "web")).await.unwrap(), CreateOutcome::AlreadyOpen(_)));
    let again = ledger.age_requests(0, now_ms() - super::RATE_WINDOW_MS).await.unwrap();
    assert_eq!(again.left_rate_window, 0, "open requests stay in the window");
}

#[tokio::test]
async fn a_private_answers_reply_url_is_forgotten_once_settled() {
    let (ledger, _dir) = ledger().await;
    for text in ["delivered", "failed", "pending"] {
        ledger.queue_ephemeral(None, "U1", "https://hooks.slack.com/actions/T1/1/secret", text, None).await.unwrap();
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id").fetch_all(ledger.pool()).await.unwrap();
    let settlements = [
        crate::workflow::Settlement::Delivered { id: ids[0], via_response_url: true, covers: None, posted: None },
        crate::workflow::Settlement::Failed { id: ids[1], error: "expired_url".into() },
    ];
    ledger.settle_outbox(&settlements).await.unwrap();
    let notices: Vec<String> =
        sqlx::query_scalar("SELECT notice FROM outbox ORDER BY id").fetch_all(ledger.pool()).await.unwrap();
    let notice = |i: usize| serde_json::from_str::<crate::events::Notice>(&notices[i]).unwrap();
    for (i, text) in [(0, "delivered"), (1, "failed")] {
        assert_eq!(notice(i), crate::events::Notice::Ephemeral { reply_url: String::new(), text: text.into() });
    }
    // Still to be delivered: kept.
    assert!(notices[2].contains("hooks.slack.com"), "{}", notices[2]);
}

#[tokio::test]
async fn response_urls_are_forgotten_after_slacks_thirty_minutes() {
    let (ledger, _dir) = ledger().await;
    let CreateOutcome::Created(old) = ledger.create_request(new_request("U1")).await.unwrap() else { panic!() };
    let CreateOutcome::Created(new) = ledger.create_request(new_request("U2")).await.unwrap() else { panic!() };
    sqlx::query("UPDATE requests SET created_at = created_at - 31 * 60 * 1000 WHERE id = ?")
        .bind(&old.id)
        .execute(ledger.pool())
        .await
        .unwrap();
    assert_eq!(ledger.age_requests(now_ms() - 30 * 60 * 1000, 0).await.unwrap().response_urls, 1);
    assert_eq!(ledger.get(&old.id).await.unwrap().response_url, "");
    assert_eq!(ledger.get(&new.id).await.unwrap().response_url, "http://127.0.0.1/x");
    assert_eq!(ledger.age_requests(now_ms() - 30 * 60 * 1000, 0).await.unwrap().response_urls, 0);
}

#[test]
fn the_time_box_counts_from_being_told_keeps_extensions_and_stays_within_the_maximum() {
    let untold = 15 * 60_000;
    let request = |expires_at: i64| Request {
        ttl_secs: 3600,
        max_ttl_secs: Some(4 * 3600),
        ready_at: Some(0),
        expires_at: Some(expires_at),
        ..Request::default()
    };
    // Not extended: the whole hour from being told.
    assert_eq!(request(untold).expiry_once_told(10_000, untold), 10_000 + 3_600_000);
    // Extended by 30 minutes before being told: kept.
    assert_eq!(request(untold + 1_800_000).expiry_once_told(10_000, untold), 10_000 + 5_400_000);
    // Extended by 3h45 before being told: no more than the service's 4h maximum.
    assert_eq!(request(untold + 13_500_000).expiry_once_told(10_000, untold), 10_000 + 4 * 3_600_000);
}

#[test]
fn the_url_picks_the_backend_and_messages_never_show_the_password() {
    use super::{redacted, Backend};
    assert_eq!(Backend::of("sqlite://ledger.db").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::of("sqlite::memory:").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
    assert_eq!(Backend::of("postgresql://u@h/db").unwrap(), Backend::Postgres);
    let refused = Backend::of("mysql://u@h/db").unwrap_err().to_string();
    assert!(refused.contains("sqlite: or postgres://") && refused.contains("`mysql:`"), "{refused}");
    assert_eq!(
        redacted("postgres://fc:s3cr%40t@db.example:5432/fc?sslmode=verify-full"),
        "postgres://fc:***@db.example:5432/fc?sslmode=verify-full"
    );
    assert_eq!(redacted("postgres://fc@db.example/fc"), "postgres://fc@db.example/fc");
    assert_eq!(redacted("sqlite:///var/lib/fc/ledger.db"), "sqlite:///var/lib/fc/ledger.db");
    // An `@` in the path or query is not a password's end.
    assert_eq!(redacted("postgres://fc:pw@h/db?application_name=a@b"), "postgres://fc:***@h/db?application_name=a@b");
    assert_eq!(redacted("postgres://fc:pw@h?application_name=a@b"), "postgres://fc:***@h?application_name=a@b");
    assert_eq!(
        redacted("postgres://fc@h/db?sslmode=require&password=pw&x=1"),
        "postgres://fc@h/db?sslmode=require&password=***&x=1"
    );
    assert_eq!(redacted("postgres://h/db?PASSWORD=pw#f"), "postgres://h/db?PASSWORD=***#f");
    assert_eq!(redacted("postgres://h/db?sslpassword=k&a=b"), "postgres://h/db?sslpassword=***&a=b");
}
