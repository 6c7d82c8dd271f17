//! Benchmark of the acknowledgement path: correctly signed, distinct `/fargate connect`
//! requests at a given concurrency against the real `fargate-connect serve` (a release build,
//! 127.0.0.1, a fresh database), for a bounded count and time. Reports requests/s,
//! p50/p90/p99/max latency, non-2xx, the server's peak RSS, the bytes it wrote per request and
//! the WAL file's largest size, the server's CPU time per request (the first server's, with
//! `--replicas`), and checks afterwards that the database holds exactly one
//! request per 2xx.
//!
//! AWS is never reached: `--aws down` points the SDK at a listener that accepts and never
//! answers, `--aws slow` at one that answers 503 after 10 s. The worker runs as in production,
//! so the acknowledgement is measured while provisioning is stuck.
//!
//! `--transport socket` measures the same over Socket Mode: the server opens its connections to
//! the Slack stand-in's WebSocket side (whose Web API then answers 503, as `http` mode's points
//! at nothing), and each request is a `slash_commands` envelope; the latency is from sending the
//! envelope to reading its acknowledgement.
//!
//! Run (see docs/PERFORMANCE.md):
//! `cargo build --release -p fargate-connect -p fargate-connect-tests --bin fargate-connect --bin bench_ack`
//! `target/release/bench_ack --concurrency 16 --requests 60000 --seconds 20 --aws down`

use harness::signed::{command_body, command_payload, now, SIGNING_SECRET};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    concurrency: usize,
    requests: u64,
    seconds: u64,
    aws: String,
    server: String,
    transport: String,
    /// `sqlite` (a file) or `postgres` (a database on the harness's server, fsync on).
    database: String,
    /// Servers on the one database (PostgreSQL, HTTP), the load spread over them.
    replicas: usize,
}

fn args() -> Args {
    let mut args = Args {
        concurrency: 16,
        requests: 50_000,
        seconds: 20,
        aws: "down".into(),
        transport: "http".into(),
        database: "sqlite".into(),
        replicas: 1,
        server: std::env::var("CARGO_TARGET_DIR")
            .map(|d| format!("{d}/release/fargate-connect"))
            .unwrap_or_else(|_| "target/release/fargate-connect".into()),
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency N"),
            "--requests" => args.requests = value.parse().expect("--requests N"),
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--aws" => args.aws = value,
            "--server" => args.server = value,
            "--transport" => args.transport = value,
            "--database" => args.database = value,
            "--replicas" => args.replicas = value.parse().expect("--replicas N"),
            other => panic!("unknown option {other}"),
        }
    }
    args
}

/// A stand-in for an AWS endpoint that never answers (`down`) or answers 503 after 10 s
/// (`slow`).
async fn fake_aws(mode: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let slow = mode == "slow";
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                if slow {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                } else {
                    // Hold the connection and never answer.
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes the server has written through write calls so far (`wchar` of `/proc/<pid>/io`): its
/// WAL frames, mostly, so per request it shows how many pages each commit touched.
fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find(|l| l.starts_with("wchar:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time the server has used so far (user + system, all its threads), in microseconds: the
/// machine's run-to-run swings move throughput far more than they move the CPU time a request
/// costs, so this is the steadier figure to compare two builds by.
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000 / per_second)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}

/// Every request is a new person's first (the limits still run on each, as in production):
/// high enough that none is refused and every acknowledgement records a request.
const LIMITS: &str = "[limits]\nlive_bastions = 100000000\nopen_per_person = 3\nper_person_per_hour = 20\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bot::install_crypto_provider();
    let args = args();
    let dir = harness::app::TempDir::new();
    let aws_port = fake_aws(&args.aws).await;
    let db = dir.0.join("ledger.db");
    let postgres = args.database == "postgres";
    anyhow::ensure!(postgres || args.database == "sqlite", "--database sqlite|postgres");
    anyhow::ensure!(args.replicas == 1 || postgres, "--replicas needs --database postgres");
    let db_url = if postgres {
        std::env::set_var("FARGATE_CONNECT_PG_FSYNC", "on");
        harness::postgres::new_database().await
    } else {
        format!("sqlite://{}", db.display())
    };
    let socket = args.transport == "socket";
    anyhow::ensure!(socket || args.transport == "http", "--transport http|socket");
    anyhow::ensure!(args.replicas == 1 || !socket, "--replicas is for --transport http");
    // Socket Mode's connections go to the Slack stand-in; over HTTP, Slack is a closed port.
    let slack = if socket { Some(harness::slack::SlackStandIn::start().await) } else { None };
    let slack_settings = match &slack {
        Some(slack) => format!("mode = \"socket\"\napi_base_url = \"{}\"", slack.api_base()),
        None => "api_base_url = \"http://127.0.0.1:9/api\"".to_string(),
    };
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for replica in 0..args.replicas {
        let (port, ops_port) = (free_port(), free_port());
        let config = dir.0.join(format!("bench-{replica}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\nops_bind = \"127.0.0.1:{ops_port}\"\n[database]\nurl = \"{db_url}\"\n[slack]\n{slack_settings}\n[aws]\nregion = \"eu-west-1\"\ncluster = \"prod\"\nsubnets = [\"subnet-1\"]\nsecurity_group_id = \"sg-1\"\nrequire_boundary = false\n{LIMITS}[policy]\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n",
            ),
        )?;
        let mut server = Command::new(&args.server);
        server
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("SLACK_BOT_TOKEN", "xoxb-bench")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{aws_port}"))
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("RUST_LOG", std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if socket {
            server.env("SLACK_APP_TOKEN", "xapp-1-bench");
        } else {
            server.env("SLACK_SIGNING_SECRET", SIGNING_SECRET);
        }
        servers.push(server.spawn()?);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let server = &servers[0];
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    if let Some(slack) = &slack {
        slack.socket.wait_for_links(2, Duration::from_secs(30)).await;
        // From here the Web API is down for the notifier, as in `http` mode.
        slack.set_down(true);
    } else {
        for base in &bases {
            let ready_by = Instant::now() + Duration::from_secs(30);
            while client.get(format!("{base}/healthz")).send().await.is_err() {
                anyhow::ensure!(Instant::now() < ready_by, "the server did not come up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    let written_before = written_bytes(server.id()).unwrap_or(0);
    let cpu_before = cpu_micros(server.id()).unwrap_or(0);
    // The WAL file's largest size during the run, sampled every 100 ms.
    let wal_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (wal, wal_max) = (dir.0.join("ledger.db-wal"), wal_max.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(meta) = std::fs::metadata(&wal) {
                    wal_max.fetch_max(meta.len(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let base = &bases[worker % bases.len()];
        let (client, next, url) = (client.clone(), next.clone(), format!("{base}/slack/commands"));
        let total = args.requests;
        let sockets = slack.as_ref().map(|s| s.socket.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut not_ok) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let user = format!("U{i:09}");
                if let Some(sockets) = &sockets {
                    let payload = command_payload("connect web", &user, "http://127.0.0.1:9/response", "");
                    let envelope = sockets.envelope("slash_commands", payload);
                    let sent = Instant::now();
                    let ack = sockets.deliver(&envelope).await;
                    latencies.push(sent.elapsed().as_micros() as u64);
                    if ack.is_some_and(|a| a["payload"]["text"].as_str().is_some_and(|t| t.contains("Working on it"))) {
                        ok += 1;
                    } else {
                        not_ok += 1;
                    }
                    continue;
                }
                let body = command_body("connect web", &user, "http://127.0.0.1:9/response");
                let ts = now().to_string();
                let signature = bot::signature::sign(SIGNING_SECRET.as_bytes(), &ts, body.as_bytes());
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", signature)
                    .body(body)
                    .send()
                    .await;
                let good = match response {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(sent.elapsed().as_micros() as u64);
                if good {
                    ok += 1;
                } else {
                    not_ok += 1;
                }
            }
            (latencies, ok, not_ok)
        }));
    }
    let mut latencies = Vec::new();
    let (mut ok, mut not_ok) = (0u64, 0u64);
    for worker in workers {
        let (l, o, n) = worker.await?;
        latencies.extend(l);
        ok += o;
        not_ok += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let rss = peak_rss_kib(server.id()).unwrap_or(0);
    let written = written_bytes(server.id()).unwrap_or(0).saturating_sub(written_before);
    let cpu = cpu_micros(server.id()).unwrap_or(0).saturating_sub(cpu_before);
    for mut server in servers {
        let _ = Command::new("kill").arg(server.id().to_string()).status();
        let _ = server.wait();
    }

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db_url).await?;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(&pool).await?;
    latencies.sort_unstable();
    println!(
        "{} | {} x{} | concurrency {} | aws {} | {} requests in {:.1} s | {:.0} req/s | p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms | non-2xx {} | stored {} (2xx {}) | server peak RSS {:.1} MiB | written {:.1} KiB per request | max WAL {} MiB | server CPU {:.0} µs per request",
        args.transport,
        args.database,
        args.replicas,
        args.concurrency,
        args.aws,
        ok + not_ok,
        elapsed,
        ok as f64 / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        not_ok,
        stored,
        ok,
        rss as f64 / 1024.0,
        written as f64 / 1024.0 / (ok + not_ok).max(1) as f64,
        wal_max.load(Ordering::Relaxed) >> 20,
        cpu as f64 / (ok + not_ok).max(1) as f64
    );
    anyhow::ensure!(stored as u64 == ok, "the database holds {stored} requests for {ok} acknowledgements");
    Ok(())
}
