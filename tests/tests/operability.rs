//! What operators look at: `GET /metrics` (Prometheus text) and `GET /readyz`, through HTTP
//! against a running bot.

use harness::app::TestApp;
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_time_to_ready_live_bastions_and_aws_errors() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let http = reqwest::Client::new();
    let scrape = || async {
        let response = http.get(format!("{}/metrics", t.ops_url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        response.text().await.unwrap()
    };
    // Counters are process-wide (other tests in this binary add to them): compare before/after.
    let before = scrape().await;
    let ready_before = value(&before, "fargate_connect_time_to_ready_seconds_count");
    assert_eq!(value(&before, "fargate_connect_live_bastions"), 0.0);

    // No spot capacity for the first type shows up as an AWS error by action and code (the
    // launch falls back to the next type). Errors the SDK retried away are not counted.
    harness::moto::no_capacity_for(&t.account, "InstanceType=t3.micro").await;
    let id = t.connect("U0OPS", "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let after = scrape().await;
    assert!(value(&after, "fargate_connect_requests_total{outcome=\"created\"}") >= 1.0);
    assert!(value(&after, "fargate_connect_requests_total{outcome=\"ready\"}") >= 1.0);
    assert_eq!(value(&after, "fargate_connect_time_to_ready_seconds_count"), ready_before + 1.0);
    assert!(value(&after, "fargate_connect_time_to_ready_seconds_bucket{le=\"+Inf\"}") >= 1.0);
    assert_eq!(value(&after, "fargate_connect_live_bastions"), 1.0);
    assert!(
        value(
            &after,
            "fargate_connect_aws_errors_total{action=\"RunInstances\",code=\"InsufficientInstanceCapacity\"}"
        ) >= 1.0
    );
    let ready = http.get(format!("{}/readyz", t.ops_url)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_slack_aws_permissions_network_and_each_services_preflight() {
    bot::install_crypto_provider();
    let account = harness::moto::new_account();
    let aws = harness::seed::aws_for(&account);
    let seeded = harness::seed::seed(&aws).await;
    let slack = harness::slack::SlackStandIn::start().await;
    let dir = harness::app::TempDir::new();
    // A bastion group someone opened to SSH: doctor must flag it.
    let vpc = aws.ec2.describe_vpcs().send().await.unwrap().vpcs()[0].vpc_id().unwrap().to_string();
    let group = aws
        .ec2
        .create_security_group()
        .group_name("bastions")
        .description("b")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    aws.ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    // Doctor runs as the bot, held to the module's policy with this group as the bastions'.
    let bot_aws = harness::seed::bot_aws_for(&account);
    harness::iam::enforce_bot_policy(&account, &group).await;
    let text = format!(
        r#"[database]
url = "sqlite://{}/doctor.db"
[slack]
api_base_url = "{}"
[aws]
region = "eu-west-1"
cluster = "prod"
security_group_id = "{group}"
permissions_boundary_arn = "{boundary}"
[policy]
[[policy.services]]
name = "web"
allow = ["*"]
[[policy.services]]
name = "billing"
allow = ["*"]
"#,
        dir.0.display(),
        slack.api_base(),
        boundary = seeded.permissions_boundary_arn,
    );
    let file = bot::config::parse_file(&text, "doctor.toml").unwrap();
    let setup = bot::doctor::Setup {
        file: &file,
        signing_secret: Some(bot::config::Secret::new("s")),
        bot_token: Some(bot::config::Secret::new("xoxb-doctor")),
        app_token: None,
    };
    let checks = bot::doctor::run(&setup, &bot_aws, &[]).await;
    let table = bot::doctor::table(&checks);
    let outcome = |name: &str| {
        checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name} in\n{table}")).outcome
    };
    use worker::events::Outcome::{Fail, Pass};
    for name in ["config", "database", "audit chain", "slack token", "aws identity", "ecs cluster", "bastion ami"] {
        assert_eq!(outcome(name), Pass, "{name}\n{table}");
    }
    assert!(table.contains("workspace acme as fargate"), "{table}");
    assert!(table.contains(&format!("arn:aws:sts::{account}:")) || table.contains(&account), "{table}");
    assert_eq!(outcome("launch (dry run)"), Pass, "{table}");
    assert_eq!(outcome("bastion security group"), Fail, "{table}");
    assert!(table.contains("1 inbound rule(s)") && table.contains("remove them"), "{table}");
    assert_eq!(outcome("permissions boundary"), Pass, "{table}");
    // No ecs endpoint and none demanded: said, not failed. Demanded: every connect would be refused.
    assert_eq!(outcome("ecs endpoint"), Pass, "{table}");
    assert!(table.contains("no ecs endpoint serves"), "{table}");
    let demanding = text.replacen("[aws]\n", "[aws]\nexec_through_vpc_endpoint = true\n", 1);
    assert_ne!(demanding, text);
    let demanding = bot::config::parse_file(&demanding, "doctor.toml").unwrap();
    let checks_demanding = bot::doctor::run(&bot::doctor::Setup { file: &demanding, ..setup }, &bot_aws, &[]).await;
    let endpoint = checks_demanding.iter().find(|c| c.name == "ecs endpoint").expect("an ecs endpoint check");
    assert_eq!(endpoint.outcome, Fail, "{endpoint:?}");
    assert!(endpoint.fix.as_deref().unwrap_or("").contains("create_vpc_endpoints"), "{endpoint:?}");
    // Each configured service's preflight: web passes, billing does not exist.
    assert!(checks.iter().any(|c| c.name.starts_with("web: ") && c.outcome == Pass), "{table}");
    assert!(checks.iter().filter(|c| c.name.starts_with("web: ")).all(|c| c.outcome != Fail), "{table}");
    assert!(checks.iter().any(|c| c.name.starts_with("billing: ") && c.outcome == Fail), "{table}");
    assert!(slack.calls().iter().any(|c| c.path == "/api/auth.test"));

    // A correct deployment (the SSH rule gone, and only services that exist): nothing fails.
    aws.ec2
        .revoke_security_group_ingress()
        .group_id(&group)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    let correct = text.replace("[[policy.services]]\nname = \"billing\"\nallow = [\"*\"]\n", "");
    assert_ne!(correct, text, "billing is dropped");
    // In Socket Mode (which has no signing secret): the app token opens connections.
    let correct = correct.replacen("[slack]\n", "[slack]\nmode = \"socket\"\n", 1);
    let file = bot::config::parse_file(&correct, "doctor.toml").unwrap();
    let setup = bot::doctor::Setup {
        file: &file,
        signing_secret: None,
        bot_token: Some(bot::config::Secret::new("xoxb-doctor")),
        app_token: Some(bot::config::Secret::new("xapp-doctor")),
    };
    let checks = bot::doctor::run(&setup, &bot_aws, &[]).await;
    let table = bot::doctor::table(&checks);
    let failed: Vec<&str> = checks.iter().filter(|c| c.outcome == Fail).map(|c| c.name.as_str()).collect();
    assert!(failed.is_empty(), "doctor fails a correct deployment on {failed:?}:\n{table}");
    assert_eq!(outcome_in(&checks, "bastion security group"), Pass, "{table}");
    assert_eq!(outcome_in(&checks, "slack socket mode"), Pass, "{table}");
    assert_eq!(outcome_in(&checks, "SLACK_APP_TOKEN"), Pass, "{table}");
    let opened = slack.connections_opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].authorization.as_deref(), Some("Bearer xapp-doctor"), "opened with the app token");
    harness::iam::assert_nothing_denied(&account).await;
}

fn outcome_in(checks: &[worker::events::Check], name: &str) -> worker::events::Outcome {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}")).outcome
}

/// The systemd unit in deploy/ is one systemd accepts (`systemd-analyze verify`, with the binary
/// swapped for /bin/true), sandboxed, and hands the secrets over as credentials, never as
/// environment values.
#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit =
        std::fs::read_to_string(harness::moto::repo_root().join("deploy/systemd/fargate-connect.service")).unwrap();
    for directive in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "LoadCredential=slack-signing-secret:",
        "SLACK_BOT_TOKEN_FILE=%d/slack-bot-token",
        "LimitNOFILE=8192",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    assert!(!unit.contains("Environment=SLACK_BOT_TOKEN="), "a secret in the environment");
    let dir = harness::app::TempDir::new();
    let path = dir.0.join("fargate-connect.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/fargate-connect", "/bin/true")).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed for this test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("Unknown"), "systemd-analyze verify:\n{text}");
}
