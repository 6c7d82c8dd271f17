//! The local sandbox: the AWS emulator with a seeded demo cluster (`prod`, services `web` and
//! `api`), the real bot against it, and a stand-in for Slack you drive from this terminal.
//! Type `/fargate connect web --for 2m` and watch the card arrive and update, then `instances`
//! to see the bastion in the emulator appear and, when its time is up, go. `api` needs
//! approval: ask for it, then `as U0LEAD` and `approve <request>`; `extend` and `end` press the
//! card's buttons.
//!
//! The same is in a browser: the page printed at start (http://127.0.0.1:8080 unless taken)
//! shows the cards as they update, with their buttons, and the bastions in the emulator.
//!
//! Run: `cargo run -p fargate-connect-tests --bin sandbox` (see README).

use harness::app::test_config_with;
use harness::seed::{aws_for, seed};
use harness::signed::{command_body, now, post_signed, SIGNING_SECRET};
use harness::slack::SlackStandIn;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const USER: &str = "U0SANDBOX";
const POLICY: &str = harness::sandbox_ui::DEMO_POLICY;
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
    let time_box = "default = \"2m\"\nmin = \"30s\"\nmax = \"2h\"";
    let mut config = test_config_with(&db_url, &slack.api_base(), time_box, POLICY);
    config.worker.reminder_before = worker::duration::HumanDuration::from_secs(30);
    config.worker.poll_interval_ms = 500;
    config.worker.ready_poll_ms = 1000;
    let port: u16 = std::env::var("SANDBOX_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listeners = bot::app::Listeners {
        slack: Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await?),
        ops: tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
    };
    let app = bot::app::spawn(config, aws.clone(), listeners).await?;
    let bot_url = format!("http://{}", app.addr.expect("the sandbox serves Slack over HTTP"));
    let ui_port: u16 = std::env::var("SANDBOX_UI_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let ui_listener = match tokio::net::TcpListener::bind(("127.0.0.1", ui_port)).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
    };
    let ui_url = format!("http://{}", ui_listener.local_addr()?);
    harness::sandbox_ui::Ui::new(bot_url.clone(), slack.base.clone(), slack.reader(), aws.clone()).serve(ui_listener);

    println!(
        "\nfargate-connect sandbox\n  open:        {ui_url}  (the Slack stand-in: send /fargate as any user, press the buttons)\n  bot:         {bot_url} (POST /slack/commands)\n  emulator:    {endpoint} (account {ACCOUNT}, region eu-west-1)\n  Slack:       {} (stand-in)\n  ledger:      {}\n  seeded:      cluster prod, services web ({}) and api\n",
        slack.base,
        db.display(),
        seeded.web_task_arn
    );
    println!("Type a slash command as user {USER}, e.g. `/fargate connect web --for 1m`, `/fargate help`.");
    println!("Buttons: `approve <id>`, `deny <id>`, `extend <id>`, `end <id>`. `as <user id>` switches user");
    println!("(U0LEAD approves `api`; U0ADMIN is an admin). Also `instances`, `audit <id>`, `quit`.\n");

    // Print what the bot tells Slack as it arrives.
    let printer = {
        let slack_calls = std::sync::Arc::new(slack);
        let calls = slack_calls.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let delivered = calls.delivered();
                for call in delivered.iter().skip(seen) {
                    let what = match (call.path.as_str(), call.body["channel"].as_str()) {
                        ("/api/chat.update", Some(channel)) => format!("card in {channel} updated"),
                        ("/api/chat.postMessage", Some(channel)) => format!("message to {channel}"),
                        ("/api/usergroups.users.list", _) => continue,
                        (path, _) => format!("reply via {path}"),
                    };
                    let buttons: Vec<String> = call.body["blocks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|b| b["type"] == "actions")
                        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
                        .map(|e| format!("[{}]", e["text"]["text"].as_str().unwrap_or("?")))
                        .collect();
                    println!("\n[slack ← bot: {what}]\n{}\n{}\n", call.all_text().trim(), buttons.join(" "));
                }
                seen = delivered.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        slack_calls
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0;
    let mut user = USER.to_string();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(who) = line.strip_prefix("as ") {
            user = who.trim().to_string();
            println!("  you are now {user}");
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["approve" | "deny" | "extend" | "end", id] = words.as_slice() {
            let body = harness::signed::click_body(&user, words[0], id, &printer.response_url(n));
            n += 1;
            let url = format!("{bot_url}/slack/interactions");
            let response = post_signed(&url, &body, SIGNING_SECRET, &now().to_string()).await;
            println!("[{} pressed {} on {id}: HTTP {}]", user, words[0], response.status());
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
        let body = command_body(text, &user, &printer.response_url(n));
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
