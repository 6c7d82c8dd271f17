//! End to end through HTTP, against moto, SQLite and the Slack stand-in: a signed
//! `/fargate connect web` becomes a ready link in Slack, a real spot instance in the emulator
//! shaped as ARCHITECTURE.md says, and, when the time box is over, nothing left behind.

use base64::Engine;
use harness::app::{TestApp, Transport, OPEN_POLICY};
use harness::seed::CLUSTER;
use std::time::Duration;
use worker::aws::tags;

const USER: &str = "U0ALICE";
const WAIT: Duration = Duration::from_secs(60);

fn request_id_in(text: &str) -> String {
    let start = text.find("fc-").expect("a request id in the reply");
    text[start..start + 11].to_string()
}

async fn connect_to_ready_link_to_expiry_end_to_end(transport: Transport) {
    let t = TestApp::start_over(transport, "default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", OPEN_POLICY, |_| {}).await;

    // 1. The signed slash command is acknowledged at once, ephemerally.
    let (status, reply) = t.command(USER, "connect web --for 3s").await;
    assert_eq!(status, 200);
    assert_eq!(reply["response_type"], "ephemeral");
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("Working on it"), "{text}");
    let id = request_id_in(text);

    // 2. The requester's card, a direct message, is updated in place to the link and the command.
    let ready = t.slack.wait_for_message("is ready", WAIT).await;
    assert_eq!(ready.path, "/api/chat.update", "the card is updated, not posted again");
    assert_eq!(ready.body["channel"], format!("D{USER}"));
    assert_eq!(ready.authorization.as_deref(), Some("Bearer xoxb-test-token"));
    let request = t.ledger.get(&id).await.unwrap();
    let instance_id = request.instance_id.clone().expect("instance recorded");
    let all = ready.all_text();
    assert!(
        all.contains(&format!(
            "https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/{instance_id}?region=eu-west-1"
        )),
        "{all}"
    );
    assert!(all.contains(&format!(
        "aws ssm start-session --region eu-west-1 --target {instance_id} --document-name AWS-StartInteractiveCommand --parameters command=\"connect\""
    )), "{all}");
    assert_eq!(request.expires_at.unwrap() - request.ready_at.unwrap(), 3000, "the time box starts when ready");
    assert_eq!(request.task_arn.as_deref(), Some(t.seeded.web_task_arn.as_str()), "the web task, not api's");

    // 3. In the emulator: exactly one instance for the request, shaped as designed.
    let described = t
        .aws
        .ec2
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name(format!("tag:{}", tags::REQUEST_ID)).values(&id).build())
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = described.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(instances.len(), 1, "exactly one instance for the request");
    let instance = instances[0];
    assert_eq!(instance.instance_id(), Some(instance_id.as_str()));
    assert_eq!(instance.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    assert_eq!(instance.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(instance.key_name(), None, "no key pair");
    let metadata = instance.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"), "IMDSv2 required");
    let tag =
        |key: &str| instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
    assert_eq!(tag(tags::MANAGED).as_deref(), Some("true"));
    assert_eq!(tag(tags::REQUESTER).as_deref(), Some(USER));
    assert_eq!(tag(tags::SERVICE).as_deref(), Some("web"));
    assert!(tag(tags::EXPIRES_AT).is_some());
    let shutdown = t
        .aws
        .ec2
        .describe_instance_attribute()
        .instance_id(&instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(shutdown.instance_initiated_shutdown_behavior().and_then(|v| v.value()), Some("terminate"));
    let user_data = t
        .aws
        .ec2
        .describe_instance_attribute()
        .instance_id(&instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let script = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(user_data.user_data().and_then(|v| v.value()).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(script.contains(&format!("CLUSTER='{CLUSTER}'")), "{script}");
    assert!(script.contains(&format!("TASK='{}'", t.seeded.web_task_arn)), "{script}");
    assert!(script.contains("CONTAINER='app'"), "{script}");
    assert!(script.contains("session-manager-plugin"), "{script}");
    // The bastion's own deadline is absolute and the same as the instance's expires-at tag.
    let hard_stop = t.ledger.get(&id).await.unwrap().hard_stop_at.expect("hard stop stored");
    assert!(
        script.contains(&format!(
            "fargate-connect-deadline --no-block {}",
            worker::aws::user_data::deadline_secs(hard_stop)
        )),
        "{script}"
    );
    assert!(script.contains("touch /var/lib/fargate-connect/ready"), "{script}");
    // The security group lets nothing in.
    let group_ids: Vec<String> =
        instance.security_groups().iter().filter_map(|g| g.group_id().map(str::to_string)).collect();
    assert!(!group_ids.is_empty());
    let groups = t.aws.ec2.describe_security_groups().set_group_ids(Some(group_ids)).send().await.unwrap();
    for group in groups.security_groups() {
        assert!(group.ip_permissions().is_empty(), "no ingress rules on {:?}", group.group_name());
    }
    // The role: under our path, trusted by EC2, allowed to exec into that task only.
    let role_name = request.role_name.clone().expect("role recorded");
    let role = t.aws.iam.get_role().role_name(&role_name).send().await.unwrap();
    assert_eq!(role.role().unwrap().path(), "/fargate-connect/");
    let policy =
        t.aws.iam.get_role_policy().role_name(&role_name).policy_name("ecs-exec-one-task").send().await.unwrap();
    let document = urlencoding_decode(policy.policy_document());
    assert!(document.contains(&t.seeded.web_task_arn), "{document}");
    assert!(!document.contains(&t.seeded.api_task_arn), "{document}");
    assert!(document.contains("ecs:ExecuteCommand"));
    let profile_arn = instance.iam_instance_profile().and_then(|p| p.arn()).unwrap();
    assert!(profile_arn.contains("/fargate-connect/"), "{profile_arn}");

    // 4. After the time box: the instance is terminated, the role and profile are gone.
    let ended = t.slack.wait_for_message("has ended", WAIT).await;
    assert!(ended.all_text().contains(&id));
    let state = t.aws.ec2.describe_instances().instance_ids(&instance_id).send().await.unwrap();
    let name = state.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string();
    assert!(name == "terminated" || name == "shutting-down", "instance is {name}");
    let role = t.aws.iam.get_role().role_name(&role_name).send().await;
    assert!(role.is_err(), "the role is deleted");
    let profile = t.aws.iam.get_instance_profile().instance_profile_name(&role_name).send().await;
    assert!(profile.is_err(), "the instance profile is deleted");

    // 5. The audit history shows each step, in order.
    let kinds: Vec<String> = t.ledger.audit_for(&id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "requested",
            "provisioning",
            "preflight_passed",
            "role_created",
            "instance_launched",
            "ready",
            "told_ready",
            "expired",
            "torn_down",
            "ended"
        ]
    );
    let request = t.ledger.get(&id).await.unwrap();
    assert_eq!(request.state().as_str(), "ended");
    // Three new messages reached the requester, each a direct message: the card, then "ready"
    // and "ended" (Slack notifies for those); every other change updated the card in place.
    let posted = t.slack.delivered_to("chat.postMessage");
    assert_eq!(posted.len(), 3, "the card and two notifications");
    assert!(posted.iter().all(|p| p.body["channel"] == USER), "direct messages to the requester");
    assert!(posted[0].all_text().contains("getting your bastion ready"), "{}", posted[0].all_text());
    assert!(posted[1].all_text().contains("is ready until"), "{}", posted[1].all_text());
    assert!(posted[2].all_text().contains("has ended: its time was up"), "{}", posted[2].all_text());
    let updates = t.slack.delivered_to("chat.update");
    assert!(!updates.is_empty());
    assert!(updates.iter().all(|u| u.body["ts"] == updates[0].body["ts"]), "always the same message");
    assert!(updates.last().unwrap().all_text().contains("has ended"));
    assert_eq!(t.slack.delivered().len(), 3 + updates.len(), "nothing else was sent");
    t.stop().await;
}

fn urlencoding_decode(s: &str) -> String {
    if s.contains('%') {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={s}"))
            .ok()
            .and_then(|v| v.into_iter().next().map(|(_, v)| v))
            .unwrap_or_else(|| s.to_string())
    } else {
        s.to_string()
    }
}

harness::over_both_transports!(connect_to_ready_link_to_expiry_end_to_end);
