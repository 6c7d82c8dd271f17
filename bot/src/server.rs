//! The HTTP listeners. hyper is given a timer, so a client that trickles its request line and
//! headers, or sits idle between two requests, is cut off after `server.header_timeout`; a
//! request (its body included) must be done within `server.body_timeout`; no connection
//! lives past five minutes; at most `server.max_connections` are served
//! at once (the rest wait in the kernel's backlog, so file descriptors stay bounded whatever
//! the load). Two listeners: the one Slack reaches (`server.bind`), and the operators' one
//! (`server.ops_bind`, loopback by default) for `/metrics` and `/readyz`, which a flood of
//! the first cannot crowd out.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// Connections open right now on each listener (for `/metrics`).
#[derive(Debug, Default)]
pub struct Open {
    pub slack: AtomicI64,
    pub ops: AtomicI64,
}

impl Open {
    /// As Prometheus text.
    pub fn render(&self) -> String {
        let name = "fargate_connect_http_connections";
        format!(
            "# HELP {name} HTTP connections open, by listener.\n# TYPE {name} gauge\n\
             {name}{{listener=\"slack\"}} {}\n{name}{{listener=\"ops\"}} {}\n",
            self.slack.load(Ordering::Relaxed),
            self.ops.load(Ordering::Relaxed)
        )
    }
}

/// The longest a connection is kept, busy or not.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// How long shutdown waits for requests under way.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests under way
/// finish (within `DRAIN`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    open: Arc<Open>,
    shutdown: impl Future,
) {
    // One deadline for the whole request, its body included (a per-frame body timeout would
    // let a client trickle one byte per period for ever).
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset before accept:
                    // pause a moment instead of spinning, then go on.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let open = open.clone();
        fn gauge<'a>(open: &'a Open, name: &str) -> &'a AtomicI64 {
            if name == "ops" {
                &open.ops
            } else {
                &open.slack
            }
        }
        gauge(&open, name).fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // However busy a client keeps it, a connection ends after `MAX_CONNECTION_AGE`, so
            // a permit is never held for good.
            match tokio::time::timeout(MAX_CONNECTION_AGE, connection).await {
                Ok(Err(e)) => tracing::debug!(listener = name, error = %e, "connection ended with an error"),
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!(listener = name, "connection closed at its maximum age"),
            }
            gauge(&open, name).fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, "requests still under way after the drain time; closing them");
    }
}
