//! Benchmarks against the emulator (moto behind the front layer), with the bot's production
//! pacing (1 s loop poll, 2 s first readiness backoff — the first check is immediate):
//!
//! 1. Command to link: `--connects N` signed `/fargate connect web` one after another; for each,
//!    the time from the POST to the ready message reaching the Slack stand-in, the time spent
//!    inside AWS calls (timed at the emulator), and the rest: the bot's own overhead. Also the
//!    AWS calls per connect and per teardown, counted at the emulator.
//! 2. Expiry precision: `--expiring M` ready requests given the same expiry; how late after it
//!    each one's TerminateInstances reaches the emulator.
//!
//! Run (see docs/PERFORMANCE.md):
//! `cargo run --release -p fargate-connect-tests --bin bench_connect -- --connects 50 --expiring 200`

use harness::app::TestApp;
use std::time::{Duration, Instant};
use worker::ledger::now_ms;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        values.len(),
        pct(&values, 50.0),
        pct(&values, 90.0),
        pct(&values, 99.0),
        pct(&values, 100.0)
    );
}

fn is_poll(action: &str) -> bool {
    matches!(action, "DescribeInstances" | "DescribeInstanceInformation" | "GetCommandInvocation")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let connects = arg("--connects", 50);
    let expiring = arg("--expiring", 200);
    let t = TestApp::start_custom("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"", |c| {
        c.worker = Default::default();
    })
    .await;
    // The bot's own time is the measure: the emulator's eventual-consistency windows (a new
    // instance unknown for 1 s, cloud-init 1.5 s…) would only add their own waits to it.
    let no_waits = serde_json::json!({
        "instance_not_found_secs": 0, "profile_propagation_secs": 0, "invocation_lag_secs": 0,
        "command_run_secs": 0, "cloud_init_secs": 0,
    });
    harness::moto::set_consistency(&t.account, no_waits).await;

    // 1. Command to link, one at a time.
    let (mut totals, mut overheads, mut aws_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut calls_per_connect = Vec::new();
    let mut polls_per_connect = Vec::new();
    for i in 0..connects {
        let seen = harness::moto::calls_detailed(&t.account).await.len();
        let started = Instant::now();
        let start_s = now_ms() as f64 / 1000.0;
        let id = t.connect(&format!("U{i:05}"), "connect web").await;
        let ready = t.slack.wait_for_message(&format!("{id} for web in prod: is ready"), Duration::from_secs(60)).await;
        let total = ready.at.duration_since(started).as_secs_f64() * 1000.0;
        let calls = harness::moto::calls_detailed(&t.account).await;
        let window: Vec<_> = calls[seen..].iter().filter(|c| c["at"].as_f64().unwrap_or(0.0) >= start_s).collect();
        let aws: f64 = window.iter().map(|c| c["took"].as_f64().unwrap_or(0.0)).sum::<f64>() * 1000.0;
        calls_per_connect.push(window.iter().filter(|c| !is_poll(c["action"].as_str().unwrap_or(""))).count());
        polls_per_connect.push(window.iter().filter(|c| is_poll(c["action"].as_str().unwrap_or(""))).count());
        totals.push(total);
        aws_times.push(aws);
        overheads.push(total - aws);
    }
    // The first connect also fills the per-process caches; report it apart.
    println!(
        "AWS calls per connect: first {} (+{} polls), then {:?} (+{:?} polls)",
        calls_per_connect[0],
        polls_per_connect[0],
        calls_per_connect[1..].iter().collect::<std::collections::BTreeSet<_>>(),
        polls_per_connect[1..].iter().collect::<std::collections::BTreeSet<_>>()
    );
    summary("command → ready message", totals);
    summary("  of which inside AWS calls", aws_times);
    summary("  bot's own overhead", overheads);

    // 2. Expiry precision: everything live expires at the same moment.
    for i in 0..expiring.saturating_sub(connects) {
        t.connect(&format!("U9{i:05}"), "connect web").await;
    }
    let live = expiring.max(connects) as i64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE state = 'ready'")
            .fetch_one(t.ledger.pool())
            .await
            .unwrap();
        if ready == live {
            break;
        }
        assert!(Instant::now() < deadline, "only {ready} of {live} became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = harness::moto::calls_detailed(&t.account).await.len();
    let expiry_ms = now_ms() + 3000;
    sqlx::query("UPDATE requests SET expires_at = ? WHERE state = 'ready'")
        .bind(expiry_ms)
        .execute(t.ledger.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE state IN ('ready', 'ending')")
            .fetch_one(t.ledger.pool())
            .await
            .unwrap();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} requests still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = harness::moto::calls_detailed(&t.account).await;
    let lateness: Vec<f64> = calls[seen..]
        .iter()
        .filter(|c| c["action"] == "TerminateInstances")
        .flat_map(|c| {
            let late = c["at"].as_f64().unwrap_or(0.0) * 1000.0 - expiry_ms as f64;
            vec![late; c["instances"].as_array().map(|a| a.len()).unwrap_or(0)]
        })
        .collect();
    let teardown_calls = calls[seen..].len() as f64 / live as f64;
    println!("{live} requests expiring together: {teardown_calls:.1} AWS calls per teardown");
    summary("terminate call after expiry", lateness);
    t.stop().await;
}
