//! Test harness for fargate-connect's integration tests, all against real parts: the moto
//! server (started here from a venv this harness creates), the real SQLite ledger and a real PostgreSQL server, a recording
//! stand-in for Slack's Web API and its Socket Mode, and requests signed exactly as Slack signs
//! them. The bot's AWS calls are held to the Terraform module's bot policy (`iam`).

pub mod app;
pub mod bastion_box;
pub mod iam;
pub mod moto;
pub mod postgres;
pub mod sandbox_ui;
pub mod seed;
pub mod signed;
pub mod slack;
pub mod socket;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it yields `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// Declares each of the async test functions named (each takes a `harness::app::Transport`)
/// as three tests, `<name>::over_http` and `<name>::over_socket_mode`: the same flow with Slack's
/// requests signed over HTTP, then as envelopes over Socket Mode (both on SQLite), and
/// `<name>::over_http_on_postgres`, over HTTP on a PostgreSQL ledger.
#[macro_export]
macro_rules! over_both_transports {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_http() {
                super::$name($crate::app::Transport::Http).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_socket_mode() {
                super::$name($crate::app::Transport::Socket).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(fc_skip_postgres, ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)")]
            async fn over_http_on_postgres() {
                $crate::app::on_postgres(super::$name($crate::app::Transport::Http)).await
            }
        }
    )+};
}

/// Declares each of the async test functions named as two tests, `<name>::on_sqlite` and
/// `<name>::on_postgres`: the same test on either ledger.
#[macro_export]
macro_rules! on_both_ledgers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(fc_skip_postgres, ignore = "SKIPPED: PostgreSQL's server not found (apt-get install postgresql, or FARGATE_CONNECT_PG_BIN)")]
            async fn on_postgres() {
                $crate::app::on_postgres(super::$name()).await
            }
        }
    )+};
}
