//! The local sandbox: the AWS emulator with a seeded demo cluster (`prod`, services `web` and
//! `api`), the real bot against it, and a stand-in for Slack you drive from this terminal.
//! Type `/fargate connect web --for 2m` and watch the replies arrive, then `instances` to see
//! the bastion in the emulator appear and, when its time is up, go.
//!
//! Run: `cargo run -p fargate-connect-tests --bin sandbox` (see README).

use harness::app::test_config;
use harness::seed::{aws_for, seed};
use harness::signed::{command_body, now, post_signed, SIGNING_SECRET};
use harness::slack::SlackStandIn;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const USER: &str = "U0SANDBOX";
const ACCOUNT: &str = "123456789012";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bot::install_crypto_provider();
    // Bastions take a few seconds to register with SSM, as they would in AWS.
    if std::env::var_os("MOTO_FRONT_SSM_DELAY").is_none() {
        std::env::set_var("MOTO_FRONT_SSM_DELAY", "5");
    }
    println!("Starting the AWS emulator (the first run installs it into a venv; give it a minute)…");
    let endpoint = harness::moto::moto().endpoint.clone();
    let aws = aws_for(ACCOUNT);
    let seeded = seed(&aws).await;
    let slack = SlackStandIn::start().await;

    let dir = std::path::Path::new(".sandbox");
    std::fs::create_dir_all(dir)?;
    let db = dir.join(format!("ledger-{}.db", now()));
    let db_url = format!("sqlite://{}", db.display());
    let mut config = test_config(&db_url, &slack.api_base(), "default = \"2m\"\nmin = \"30s\"\nmax = \"2h\"");
    config.worker.poll_interval_ms = 500;
    config.worker.ready_poll_ms = 1000;
    let port: u16 = std::env::var("SANDBOX_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = bot::app::spawn(config, aws.clone(), listener).await?;
    let bot_url = format!("http://{}", app.addr);

    println!(
        "\nfargate-connect sandbox\n  bot:         {bot_url} (POST /slack/commands)\n  emulator:    {endpoint} (account {ACCOUNT}, region eu-west-1)\n  Slack:       {} (stand-in)\n  ledger:      {}\n  seeded:      cluster prod, services web ({}) and api\n",
        slack.base,
        db.display(),
        seeded.web_task_arn
    );
    println!("Type a slash command as user {USER}, e.g. `/fargate connect web --for 1m`, `/fargate help`.");
    println!("Other commands: `instances` (bastions in the emulator), `audit <request id>`, `quit`.\n");

    // Print what the bot tells Slack as it arrives.
    let printer = {
        let slack_calls = std::sync::Arc::new(slack);
        let calls = slack_calls.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let delivered = calls.delivered();
                for call in delivered.iter().skip(seen) {
                    println!("\n[slack ← bot via {}]\n{}\n", call.path, call.all_text().trim());
                }
                seen = delivered.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        slack_calls
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0;
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "quit" || line == "exit" {
            break;
        }
        if line == "instances" {
            let out = aws.ec2.describe_instances().send().await?;
            let mut any = false;
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                any = true;
                let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap_or("-");
                println!(
                    "  {} {:<13} {:<10} {} request={} expires={}",
                    i.instance_id().unwrap_or("?"),
                    i.state().and_then(|s| s.name()).map(|s| s.as_str()).unwrap_or("?"),
                    i.instance_type().map(|t| t.as_str()).unwrap_or("?"),
                    i.instance_lifecycle().map(|l| l.as_str()).unwrap_or("on-demand"),
                    tag("fargate-connect:request-id"),
                    tag("fargate-connect:expires-at"),
                );
            }
            if !any {
                println!("  (no instances)");
            }
            continue;
        }
        if let Some(id) = line.strip_prefix("audit ") {
            for event in app.ledger.audit_for(id.trim()).await? {
                println!("  #{} {} {:<18} {} {}", event.seq, event.at, event.kind, event.actor, event.detail);
            }
            continue;
        }
        let text = line.strip_prefix("/fargate").unwrap_or(line).trim();
        let body = command_body(text, USER, &printer.response_url(n));
        n += 1;
        let response =
            post_signed(&format!("{bot_url}/slack/commands"), &body, SIGNING_SECRET, &now().to_string()).await;
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap_or_default();
        println!("[ephemeral reply, HTTP {status}]\n{}\n", json["text"].as_str().unwrap_or(""));
    }
    app.shutdown().await;
    Ok(())
}
