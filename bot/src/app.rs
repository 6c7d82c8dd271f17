//! The whole process: Slack's ingress (an HTTP listener, or Socket Mode's outbound
//! connections), the operators' listener, worker loops and Slack notifier, sharing one ledger
//! and one shutdown signal. `spawn` takes the listeners so tests bind port 0 themselves.

use crate::config::{Config, SlackMode};
use crate::gate::AppState;
use crate::notifier::Notifier;
use crate::replay::ReplayGuard;
use crate::routes::{ops_router, router};
use crate::server::{self, Open};
use crate::slack::{GroupDirectory, SlackApi};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use worker::aws::Aws;
use worker::ledger::Ledger;
use worker::provision::Provisioner;
use worker::runner::Runner;

/// A running process, for `main` and for tests.
pub struct RunningApp {
    /// Where Slack's requests arrive over HTTP; `None` in Socket Mode.
    pub addr: Option<SocketAddr>,
    /// The operators' listener (`/metrics`, `/readyz`).
    pub ops_addr: SocketAddr,
    pub ledger: Ledger,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The two listeners, bound by the caller.
pub struct Listeners {
    /// Where Slack's requests arrive (`server.bind`); none in Socket Mode.
    pub slack: Option<TcpListener>,
    /// `/metrics` and `/readyz` (`server.ops_bind`).
    pub ops: TcpListener,
}

impl Listeners {
    /// Binds `server.ops_bind`, and `server.bind` unless Slack comes over Socket Mode.
    pub async fn bind(settings: &crate::config::ServerSettings, mode: SlackMode) -> anyhow::Result<Self> {
        use anyhow::Context;
        let slack = match mode {
            SlackMode::Http => Some(
                TcpListener::bind(settings.bind)
                    .await
                    .with_context(|| format!("cannot listen on {}", settings.bind))?,
            ),
            SlackMode::Socket => None,
        };
        let ops = TcpListener::bind(settings.ops_bind)
            .await
            .with_context(|| format!("cannot listen on {} (server.ops_bind)", settings.ops_bind))?;
        Ok(Self { slack, ops })
    }

    /// Both on loopback, on ports the system picks (tests, the sandbox).
    pub async fn loopback() -> std::io::Result<Self> {
        Ok(Self { slack: Some(TcpListener::bind("127.0.0.1:0").await?), ops: TcpListener::bind("127.0.0.1:0").await? })
    }

    /// The operators' listener only, on loopback (Socket Mode in tests).
    pub async fn ops_only() -> std::io::Result<Self> {
        Ok(Self { slack: None, ops: TcpListener::bind("127.0.0.1:0").await? })
    }
}

/// Opens the ledger and starts the parts on `listeners`.
pub async fn spawn(config: Config, aws: Aws, listeners: Listeners) -> anyhow::Result<RunningApp> {
    let ledger = Ledger::open(&config.database.url).await?;
    // Socket Mode serves no HTTP for Slack, even when a listener was bound.
    let slack_listener = match config.slack.mode {
        SlackMode::Http => Some(listeners.slack.ok_or_else(|| anyhow::anyhow!("HTTP mode needs server.bind"))?),
        SlackMode::Socket => None,
    };
    let addr = slack_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let ops_addr = listeners.ops.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let wake_worker = Arc::new(Notify::new());
    let wake_notifier = Arc::new(Notify::new());

    let api = SlackApi::new(&config.slack.api_base_url, config.bot_token.clone())
        .with_reply_hosts(&config.slack.response_url_hosts);
    let groups = GroupDirectory::new(api.clone(), config.policy.group_cache_ttl.as_duration());
    let region = aws.region.clone();
    let policy = Arc::new(config.policy.clone());
    let (home, home_queue) = crate::home::channel();
    let state = AppState::new(crate::gate::Shared {
        ledger: ledger.clone(),
        signing_secret: config.signing_secret.clone(),
        time_box: config.time_box,
        limits: config.limits,
        policy: policy.clone(),
        groups,
        wake_worker: wake_worker.clone(),
        wake_notifier: wake_notifier.clone(),
        replays: Arc::new(ReplayGuard::new(crate::signature::MAX_SKEW_SECS)),
        slack: Arc::new(api.clone()),
        home: home.clone(),
        aws: aws.clone(),
        socket_links: (config.slack.mode == SlackMode::Socket).then(Default::default),
    });
    let open = Arc::new(Open::default());
    let limits = config.server.limits();
    let ingress = match (slack_listener, &config.app_token) {
        (Some(listener), _) => (
            "http server",
            tokio::spawn(server::serve(
                "slack",
                listener,
                router(state.clone()),
                limits,
                open.clone(),
                stopped(stop_rx.clone()),
            )),
        ),
        (None, Some(app_token)) => {
            let (state, settings, token, stop) =
                (state.clone(), config.slack.clone(), app_token.clone(), stopped(stop_rx.clone()));
            let links = state.socket_links.clone().unwrap_or_default();
            let task = tokio::spawn(async move {
                if let Err(e) = crate::socket::run(state, &settings, &token, links, stop).await {
                    tracing::error!(error = %e, "Socket Mode could not start");
                }
            });
            ("socket mode", task)
        }
        (None, None) => anyhow::bail!("Socket Mode needs SLACK_APP_TOKEN"),
    };
    // The operators' listener: few connections, and never crowded out by the Slack one.
    let ops_limits = server::Limits { max_connections: 64, ..limits };
    let ops = tokio::spawn(server::serve(
        "ops",
        listeners.ops,
        ops_router(state.clone(), open.clone()),
        ops_limits,
        open,
        stopped(stop_rx.clone()),
    ));
    let provisioner = Arc::new(
        Provisioner::new(ledger.clone(), aws, config.aws.clone(), config.worker.clone())
            .with_notices(wake_notifier.clone()),
    );
    let runner = Runner::new(provisioner, wake_worker);
    let worker = tokio::spawn(runner.run(stopped(stop_rx.clone())));
    let home_task = tokio::spawn(crate::home::run(state, home_queue, stopped(stop_rx.clone())));
    let timing = (config.worker.untold_limit.as_duration(), config.worker.poll_interval());
    let notifier = Notifier::new(ledger.clone(), api, &region, policy, home, timing, wake_notifier);
    let notifier = tokio::spawn(notifier.run(stopped(stop_rx)));
    Ok(RunningApp {
        addr,
        ops_addr,
        ledger,
        stop,
        tasks: vec![
            ingress,
            ("operators' http server", ops),
            ("worker", worker),
            ("notifier", notifier),
            ("app home", home_task),
        ],
    })
}

impl RunningApp {
    /// Resolves when any part stops by itself (which it should not), naming it.
    pub async fn any_exited(&mut self) -> &'static str {
        let futures = self.tasks.iter_mut().map(|(name, handle)| {
            let name = *name;
            Box::pin(async move {
                let _ = handle.await;
                name
            })
        });
        let (name, _, _) = futures_select_all(futures).await;
        name
    }

    /// Signals every part to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (name, handle) in self.tasks {
            if let Err(e) = handle.await {
                if !e.is_cancelled() {
                    tracing::error!(part = name, error = %e, "stopped abnormally");
                }
            }
        }
        self.ledger.pool().close().await;
    }

    /// Stops at once, like a crash: nothing is handed back or flushed.
    pub fn abort(self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }
}

async fn futures_select_all<F: std::future::Future + Unpin>(
    futures: impl IntoIterator<Item = F>,
) -> (F::Output, usize, ()) {
    let mut futures: Vec<F> = futures.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((out, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
