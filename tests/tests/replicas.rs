//! Several replicas on one PostgreSQL ledger: two `Ledger`s (what two bot processes hold) on
//! one database of the harness's real server, doing at once what replicas do at once. Each
//! job and each outbox row goes to one of them, one click decides once, the reaper runs on
//! one at a time, a dead replica's job is taken over after its lease (and the dead one's late
//! writes change nothing), and the audit history stays one verifiable chain.

use harness::postgres::new_database;
use std::collections::HashSet;
use std::time::Duration;
use worker::audit::Verdict;
use worker::config::LimitSettings;
use worker::ledger::{ApprovalNeeded, CreateOutcome, Lease, Ledger, NewRequest, REAPER_LOCK};
use worker::workflow::Decided;

async fn two_replicas() -> (Ledger, Ledger) {
    let url = new_database().await;
    let a = Ledger::open(&url).await.expect("replica a opens the ledger");
    let b = Ledger::open(&url).await.expect("replica b opens the ledger (migrations already run)");
    (a, b)
}

fn new_request(user: &str, approval: bool) -> NewRequest {
    NewRequest {
        requester_id: user.into(),
        requester_name: user.to_lowercase(),
        team_id: "T1".into(),
        channel_id: "C1".into(),
        service: "web".into(),
        cluster: "prod".into(),
        container: None,
        task: None,
        ttl_secs: 60,
        response_url: "https://hooks.slack.com/commands/T1/1/x".into(),
        max_ttl_secs: 3600,
        reason: Some("INC-1".into()),
        break_glass: false,
        approval: approval
            .then(|| ApprovalNeeded { channel: "CAPPROVE".into(), decide_by_ms: worker::ledger::now_ms() + 600_000 }),
        limits: LimitSettings { live_bastions: 1_000_000, open_per_person: 1_000, per_person_per_hour: 1_000_000 },
    }
}

async fn create(ledger: &Ledger, user: &str, approval: bool) -> String {
    match ledger.create_request(new_request(user, approval)).await.expect("create") {
        CreateOutcome::Created(r) => r.id,
        other => panic!("not created: {other:?}"),
    }
}

fn assert_intact(verdict: Verdict, at_least: u64) {
    match verdict {
        Verdict::Intact { events, .. } => assert!(events >= at_least, "{events} events, expected at least {at_least}"),
        Verdict::Broken { seq, why } => panic!("the audit chain broke at {seq}: {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn both_replicas_writing_at_once_keep_one_audit_chain() {
    let (a, b) = two_replicas().await;
    let write = |ledger: Ledger, side: &'static str| async move {
        let mut ids = Vec::new();
        for i in 0..40 {
            let id = create(&ledger, &format!("U{side}{i}"), false).await;
            ledger.record_step(&id, "step", serde_json::json!({ "by": side })).await.unwrap();
            ids.push(id);
        }
        ids
    };
    let (from_a, from_b) = tokio::join!(tokio::spawn(write(a.clone(), "A")), tokio::spawn(write(b.clone(), "B")));
    let ids: HashSet<String> = from_a.unwrap().into_iter().chain(from_b.unwrap()).collect();
    assert_eq!(ids.len(), 80, "every request got an id of its own");
    // 80 `requested` + 80 steps, written by two processes interleaved.
    assert_intact(a.verify_audit().await.unwrap(), 160);
    assert_intact(b.verify_audit().await.unwrap(), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn each_job_is_claimed_by_one_replica() {
    let (a, b) = two_replicas().await;
    for i in 0..30 {
        create(&a, &format!("U{i}"), false).await;
    }
    let claim_all = |ledger: Ledger| async move {
        let mut claimed = Vec::new();
        while let Some(job) = ledger.claim_job(Duration::from_secs(60), false).await.unwrap() {
            claimed.push(job.id);
        }
        claimed
    };
    let (x, y) = tokio::join!(tokio::spawn(claim_all(a.clone())), tokio::spawn(claim_all(b.clone())));
    let (x, y) = (x.unwrap(), y.unwrap());
    let all: HashSet<i64> = x.iter().chain(&y).copied().collect();
    assert_eq!(x.len() + y.len(), 30, "a: {x:?}\nb: {y:?}");
    assert_eq!(all.len(), 30, "a job was claimed twice: a {x:?}, b {y:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn a_dead_replicas_job_is_taken_over_after_its_lease_and_its_late_writes_change_nothing() {
    let (a, b) = two_replicas().await;
    let id = create(&a, "U1", false).await;
    let lease = Duration::from_millis(300);
    let dead = a.claim_job(lease, false).await.unwrap().expect("a claims the provision job");
    assert_eq!(dead.request_id, id);
    assert!(b.claim_job(lease, false).await.unwrap().is_none(), "b cannot claim it while a's lease runs");
    let taken = harness::wait_for("b to take the job over", Duration::from_secs(10), || async {
        b.claim_job(lease, false).await.unwrap()
    })
    .await;
    assert_eq!(taken.id, dead.id);
    // The dead replica comes back with its old lease: nothing it writes takes effect.
    assert!(matches!(a.renew_lease(&dead, lease).await.unwrap(), Lease::Lost));
    assert!(matches!(a.complete_job(&dead).await.unwrap(), Lease::Lost));
    assert!(matches!(b.complete_job(&taken).await.unwrap(), Lease::Held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn each_outbox_row_is_delivered_by_one_replica_in_order_per_request() {
    let (a, b) = two_replicas().await;
    // Each request queues two rows (its card, then the approval card): only the first is due
    // until it is settled, so each request's rows go out in order.
    for i in 0..20 {
        create(&a, &format!("U{i}"), true).await;
    }
    let (x, y) = tokio::join!(a.due_outbox(64), b.due_outbox(64));
    let (x, y) = (x.unwrap(), y.unwrap());
    let ids: HashSet<i64> = x.iter().chain(&y).map(|r| r.id).collect();
    assert_eq!(x.len() + y.len(), 20, "one row per request, each to one replica");
    assert_eq!(ids.len(), 20);
    let requests: HashSet<_> = x.iter().chain(&y).map(|r| r.request_id.clone()).collect();
    assert_eq!(requests.len(), 20, "only the first row of each request is handed out");
    assert!(x.iter().chain(&y).all(|r| r.notice().unwrap() == worker::events::Notice::Card));
    // Claimed rows are nobody else's until settled or released.
    assert!(b.due_outbox(64).await.unwrap().is_empty());
    a.release_outbox(&x.iter().map(|r| r.id).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(b.due_outbox(64).await.unwrap().len(), x.len(), "released rows are due again at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn the_same_click_on_both_replicas_decides_once() {
    let (a, b) = two_replicas().await;
    for i in 0..10 {
        let id = create(&a, &format!("U{i}"), true).await;
        let (x, y) = tokio::join!(a.decide(&id, "UAPPROVER", true), b.decide(&id, "UAPPROVER", true));
        let now = [x.unwrap(), y.unwrap()].into_iter().filter(|d| matches!(d, Decided::Now(_))).count();
        assert_eq!(now, 1, "exactly one of the two clicks decides {id}");
        let decisions = a.audit_for(&id).await.unwrap().iter().filter(|e| e.kind == "approved").count();
        assert_eq!(decisions, 1);
    }
    assert_intact(b.verify_audit().await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn the_reaper_lock_is_held_by_one_replica_at_a_time() {
    let (a, b) = two_replicas().await;
    let held = a.exclusive(REAPER_LOCK).await.unwrap().expect("a takes the reaper's lock");
    assert!(b.exclusive(REAPER_LOCK).await.unwrap().is_none(), "b must skip its round while a reaps");
    drop(held);
    harness::wait_for("b to take the lock once a gave it up", Duration::from_secs(10), || async {
        b.exclusive(REAPER_LOCK).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn a_notifier_pass_out_of_time_gives_back_the_rows_it_did_not_reach() {
    // A pass must end inside its claim, or another replica could claim the same rows again
    // and post them twice: once out of time, it takes no more rows and releases the rest.
    let (a, b) = two_replicas().await;
    for i in 0..6 {
        let mut request = new_request(&format!("U{i}"), true);
        request.response_url = "https://127.0.0.1/response/1".into();
        match a.create_request(request).await.expect("create") {
            CreateOutcome::Created(_) => {}
            other => panic!("not created: {other:?}"),
        }
    }
    let slack = harness::slack::SlackStandIn::start().await;
    let notifier = |budget: Duration| {
        let api = bot::slack::SlackApi::new(&slack.api_base(), bot::config::Secret::new("xoxb-test"))
            .with_reply_hosts(&["127.0.0.1".to_string()]);
        let policy = bot::policy::Policy::from_settings(
            bot::policy::PolicySettings::default(),
            "prod",
            worker::duration::HumanDuration::from_secs(3600),
        )
        .unwrap();
        bot::notifier::Notifier::new(
            a.clone(),
            api,
            "eu-west-1",
            std::sync::Arc::new(policy),
            bot::home::channel().0,
            (Duration::from_secs(600), Duration::from_secs(1)),
            std::sync::Arc::default(),
        )
        .with_pass_at_most(budget)
    };
    // Out of time from the start: the first row is still taken (a pass always moves), the
    // other five are due again at once, for any replica.
    notifier(Duration::ZERO).deliver_due().await.expect("a pass");
    let due = b.due_outbox(64).await.unwrap();
    let cards = |rows: &[worker::ledger::OutboxRow]| {
        rows.iter().filter(|r| r.notice().unwrap() == worker::events::Notice::Card).count()
    };
    // Each request's first row is its card, then its approval card: one request's card went
    // out (its approval card is due now), the other five cards were given back.
    assert_eq!(cards(&due), 5, "the rows the pass did not reach are released");
    assert_eq!(due.len(), 6);
    // With time, a pass takes every due row: no card is left for another replica.
    b.release_outbox(&due.iter().map(|r| r.id).collect::<Vec<_>>()).await.unwrap();
    notifier(Duration::from_secs(30)).deliver_due().await.expect("a pass");
    assert_eq!(cards(&b.due_outbox(64).await.unwrap()), 0, "every card was taken and settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_postgres,
    ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)"
)]
async fn a_writer_stuck_in_the_writers_place_holds_the_others_back_for_a_bounded_time() {
    // A replica frozen inside a write transaction (here: a connection that took the writer's
    // lock and went quiet) must not stop every other replica's writes for good.
    let (a, _b) = two_replicas().await;
    let mut stuck = a.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
        .bind(worker::ledger::WRITER_LOCK)
        .execute(&mut *stuck)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(60), a.create_request(new_request("U1", false)))
        .await
        .expect("the write gave up within a minute");
    let waited = started.elapsed();
    assert!(refused.is_err(), "the write gives up rather than wait on: {refused:?}");
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(20), "gave up after {waited:?}");
    drop(stuck);
    create(&a, "U1", false).await;
}
