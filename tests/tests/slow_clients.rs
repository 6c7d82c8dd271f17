//! The HTTP listener under clients that never finish: a bounded slow-loris load (clients that
//! trickle their headers one byte at a time, and more idle connections than the cap) on
//! loopback. Each is cut off after `server.header_timeout`; no more than
//! `server.max_connections` are open at once (the operators' listener, which the load cannot
//! reach, says so); meanwhile signed requests are answered and an expiry is torn down on time.

use harness::app::TestApp;
use harness::wait_for;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use worker::duration::HumanDuration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const CAP: usize = 32;

/// Sends a request line and then a header byte every 200 ms until the server hangs up;
/// returns how long the connection lasted, or None if it was never accepted within 30 s.
async fn trickle(addr: String) -> Option<Duration> {
    let mut stream = TcpStream::connect(&addr).await.ok()?;
    let began = Instant::now();
    stream.write_all(b"POST /slack/commands HTTP/1.1\r\nHost: loris\r\nX-Slow: ").await.ok()?;
    let mut buf = [0u8; 256];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while began.elapsed() < Duration::from_secs(30) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(began.elapsed()),
                Ok(_) => {} // a 408 or similar: the close follows
            },
            _ = tick.tick() => {
                if stream.write_all(b"x").await.is_err() {
                    return Some(began.elapsed());
                }
            }
        }
    }
    None
}

/// The Slack listener's open connections, as the operators' listener reports them.
async fn open_connections(t: &TestApp) -> usize {
    let text = reqwest::get(format!("{}/metrics", t.ops_url)).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("fargate_connect_http_connections{listener=\"slack\"}"))
        .unwrap_or_else(|| panic!("no connection gauge in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_and_idle_clients_are_cut_off_while_slack_is_answered_and_expiry_tears_down() {
    let t = TestApp::start_custom("default = \"4s\"\nmin = \"1s\"\nmax = \"1h\"", |config| {
        config.server.header_timeout = HumanDuration::from_secs(1);
        config.server.max_connections = CAP;
    })
    .await;
    let first = t.connect("U0ALICE", "connect web").await;
    t.wait_for_state(&first, RequestState::Ready, WAIT).await;

    let addr = t.url.trim_start_matches("http://").to_string();
    // Trickling clients (fewer than the cap, so the signed requests below find room at once).
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..CAP / 2 {
        tricklers.spawn(trickle(addr.clone()));
    }
    wait_for("the tricklers connected", WAIT, || async { (open_connections(&t).await >= CAP / 2).then_some(()) }).await;
    // Signed requests are answered meanwhile.
    for n in 0..5 {
        let began = Instant::now();
        let (status, reply) = t.command(&format!("U0BUSY{n}"), "connect web --for 30m").await;
        assert_eq!(status, 200, "{reply}");
        assert!(began.elapsed() < Duration::from_secs(2), "answered in {:?}", began.elapsed());
    }
    // Each trickler is cut off after the header timeout, though it kept sending.
    while let Some(lasted) = tricklers.join_next().await {
        let lasted = lasted.unwrap().expect("the server closed the trickling connection");
        assert!(lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(5), "lasted {lasted:?}");
    }

    // Three times the cap in idle connections: no more than the cap are served at once.
    let mut idle = Vec::new();
    for _ in 0..3 * CAP {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let most = AtomicUsize::new(0);
    wait_for("the cap reached", WAIT, || async {
        let open = open_connections(&t).await;
        most.fetch_max(open, Ordering::Relaxed);
        (open == CAP).then_some(())
    })
    .await;
    // They are cut off in turn (the header timeout also bounds an idle connection), and the
    // cap holds throughout.
    let drained = Instant::now();
    wait_for("the idle connections cut off", WAIT, || async {
        let open = open_connections(&t).await;
        most.fetch_max(open, Ordering::Relaxed);
        (open == 0).then_some(())
    })
    .await;
    let most = most.into_inner();
    assert!(most <= CAP, "{most} connections open at once, over the cap of {CAP}");
    assert!(drained.elapsed() < Duration::from_secs(15), "drained in {:?}", drained.elapsed());
    drop(idle);

    // The time box ended during all this, and the bastion went on time.
    t.wait_for_state(&first, RequestState::Ended, WAIT).await;
    let request = t.ledger.get(&first).await.unwrap();
    let late = request.ended_at.unwrap() - request.expires_at.unwrap();
    assert!(late < 10_000, "torn down {late} ms after its expiry");
    t.stop().await;
}
