//! Test harness for fargate-connect's integration tests, all against real parts: the moto
//! server (started here from a venv this harness creates), the real SQLite ledger, a recording
//! stand-in for Slack's Web API, and requests signed exactly as Slack signs them. The bot's AWS
//! calls are held to the Terraform module's bot policy (`iam`).

pub mod app;
pub mod iam;
pub mod moto;
pub mod sandbox_ui;
pub mod seed;
pub mod signed;
pub mod slack;

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
