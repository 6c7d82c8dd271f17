//! `fargate-connect`: the command line. `serve` runs everything in one process; `migrate`
//! prepares the database. Errors end the process with one plain line.

use bot::config::{read_file_config, Config};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;
use worker::events::Outcome;

/// Time-boxed shells in ECS Fargate tasks, asked for in Slack.
#[derive(Parser)]
#[command(name = "fargate-connect", version, about, long_about = None)]
struct Cli {
    /// The TOML config file (see README: Configuration).
    #[arg(long, env = "FARGATE_CONNECT_CONFIG", default_value = "fargate-connect.toml", global = true)]
    config: PathBuf,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, env = "FARGATE_CONNECT_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the Slack endpoint, the worker loops (provision, expire, tear down) and the Slack
    /// notifier in one process, until SIGTERM or ctrl-c. Needs SLACK_SIGNING_SECRET and
    /// SLACK_BOT_TOKEN; AWS credentials and endpoint come from the SDK's usual chain.
    Serve,
    /// Create the database if missing and apply its migrations, then exit.
    Migrate,
    /// Check the setup: config, secrets, database and audit chain, the Slack token
    /// (auth.test), the AWS identity, the permissions the bot needs (a RunInstances dry run,
    /// read probes), the bastion network, and the ECS Exec preflight of every configured
    /// service (and of <service>). A table of ✓ / ! / ✗ with the fix; non-zero exit on ✗.
    Doctor {
        /// An ECS service to run the preflight checks against.
        service: Option<String>,
        /// The container to check (default: the task's main container).
        #[arg(long)]
        container: Option<String>,
        /// The cluster (default: aws.cluster from the config).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// The audit history: check its hash chain, or export it.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Walk the hash chain and name the first broken link; exits non-zero if there is one.
    Verify,
    /// Write the history of requests to stdout, newest first: who, what service, cluster, task
    /// and container, reason, approver, instance, when requested, ready and ended, how it ended.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: bot::audit_cli::Format,
        /// Only requests made in this last stretch of time, e.g. 7d or 12h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<worker::duration::HumanDuration>,
    },
}

fn parse_duration(s: &str) -> Result<worker::duration::HumanDuration, String> {
    worker::duration::HumanDuration::parse(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    bot::install_crypto_provider();
    if let Err(e) = run(cli).await {
        eprintln!("fargate-connect: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Migrate => {
            let (file, _) = read_file_config(&cli.config)?;
            worker::ledger::Ledger::open(&file.database.url).await?;
            println!("database {} is up to date", worker::ledger::redacted(&file.database.url));
            Ok(())
        }
        Cmd::Serve => serve(Config::load(&cli.config)?).await,
        Cmd::Doctor { service, container, cluster } => doctor(&cli.config, service, container, cluster).await,
        Cmd::Audit { action } => {
            let (file, _) = read_file_config(&cli.config)?;
            let ledger = worker::ledger::Ledger::open(&file.database.url).await?;
            match action {
                AuditCmd::Verify => {
                    let (report, intact) = bot::audit_cli::verify(&ledger).await?;
                    println!("{report}");
                    anyhow::ensure!(intact, "the audit history was changed outside the bot");
                }
                AuditCmd::Export { format, since } => {
                    let count = bot::audit_cli::export(&ledger, format, since, &mut std::io::stdout().lock()).await?;
                    eprintln!("{count} requests exported");
                }
            }
            Ok(())
        }
    }
}

/// How long `serve` waits for its parts to stop after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

async fn serve(config: Config) -> anyhow::Result<()> {
    config.aws.boundary_check().map_err(anyhow::Error::msg)?;
    let aws = worker::aws::Aws::from_env(config.aws.region.as_deref()).await?;
    let listeners = bot::app::Listeners::bind(&config.server, config.slack.mode).await?;
    let mut app = bot::app::spawn(config, aws, listeners).await?;
    match app.addr {
        Some(addr) => tracing::info!(%addr, ops = %app.ops_addr, "fargate-connect is serving Slack over HTTP"),
        None => tracing::info!(ops = %app.ops_addr, "fargate-connect is serving Slack over Socket Mode"),
    }
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            // Bounded (systemd's TimeoutStopSec is 30 s): whatever is still running then is
            // left as a crash would leave it; its job leases run out and the next start takes
            // the jobs up again.
            if tokio::time::timeout(SHUTDOWN_GRACE, app.shutdown()).await.is_err() {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish in time; stopping anyway");
            }
            Ok(())
        }
        part = app.any_exited() => Err(anyhow::anyhow!("the {part} stopped unexpectedly")),
    }
}

async fn doctor(
    path: &std::path::Path,
    service: Option<String>,
    container: Option<String>,
    cluster: Option<String>,
) -> anyhow::Result<()> {
    let (mut file, origin) = read_file_config(path)?;
    if let Some(cluster) = cluster {
        file.aws.cluster = cluster;
    }
    let setup = bot::doctor::Setup {
        file: &file,
        signing_secret: bot::config::secret_from_env("SLACK_SIGNING_SECRET").ok(),
        bot_token: bot::config::secret_from_env("SLACK_BOT_TOKEN").ok(),
        app_token: bot::config::secret_from_env("SLACK_APP_TOKEN").ok(),
    };
    let aws = worker::aws::Aws::from_env(file.aws.region.as_deref()).await?;
    let services: Vec<(String, Option<String>)> = service.into_iter().map(|s| (s, container.clone())).collect();
    let checks = bot::doctor::run(&setup, &aws, &services).await;
    println!("fargate-connect doctor ({origin})\n{}", bot::doctor::table(&checks));
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
