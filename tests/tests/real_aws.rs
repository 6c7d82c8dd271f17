//! AWS as a real account behaves, not as moto does: the front layer makes EC2, IAM and Run
//! Command eventually consistent (on by default in every test), and answers server errors the
//! way each service does. Each test here holds one thing the bot must get right there:
//! a new instance id unknown to EC2 for a while, at launch and at End; a launch whose answer
//! was lost is retried with the very same request (same ClientToken, same parameters); 5xx
//! answers of IAM, SSM and ECS are retried, not fatal; the link comes only when the bastion is
//! usable; an extension that the bastion does not confirm is reported; the reaper goes on past
//! an orphan it may not remove; the account's session settings (Session Manager's KMS key and
//! Run As) are checked before anything is spent, and met once the config grants them.

use harness::app::TestApp;
use harness::moto::{fail_commands, inject_fault, inject_fault_matching, lose_answers, set_consistency, usable_at};
use serde_json::json;
use std::time::Duration;
use worker::aws::tags;
use worker::state::RequestState;

const USER: &str = "U0CAROL";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_unknown_to_ec2_for_a_while_is_waited_for_at_launch_and_at_end() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    // EC2 answers InvalidInstanceID.NotFound for each new instance for 4 s.
    set_consistency(&t.account, json!({"instance_not_found_secs": 4})).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;

    // The next one is ended while EC2 still does not know it: End must not take "not found"
    // for "gone".
    let second = t.connect("U0FRANK", "connect web").await;
    t.wait_for_audit(&second, "instance_launched", WAIT).await;
    let instance = t.ledger.get(&second).await.unwrap().instance_id.unwrap();
    let reply = t.reply("U0FRANK", &format!("end {second}")).await;
    assert!(reply.contains("End"), "{reply}");
    t.wait_for_audit(&second, "torn_down", WAIT).await;
    assert_eq!(t.instance_state(&instance).await.as_deref(), Some("terminated"), "the instance really went");
    let detail = t.ledger.audit_for(&second).await.unwrap();
    let torn = detail.iter().find(|e| e.kind == "torn_down").unwrap();
    assert!(torn.detail.contains(&instance), "{}", torn.detail);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_answer_was_lost_is_retried_with_the_same_request_and_launches_once() {
    let t = TestApp::start().await;
    // The launch happens, but the bot never hears of it (three times: every attempt the SDK
    // makes), and EC2's lookup by tag does not show it for a while, so the job's next attempt
    // launches again with the same ClientToken. EC2 refuses a repeated token whose parameters
    // differ (IdempotentParameterMismatch); the same request gets the first instance back.
    set_consistency(&t.account, json!({"instance_not_found_secs": 12})).await;
    lose_answers(&t.account, "RunInstances", "ServiceUnavailable", 503, 3).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_audit(&id, "instance_launched", WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    assert_eq!(request.state(), RequestState::Provisioning, "{:?}", t.audit_kinds(&id).await);
    let calls = harness::moto::calls_detailed(&t.account).await;
    let launches: Vec<i64> = calls
        .iter()
        .filter(|c| c["action"] == "RunInstances")
        .map(|c| c["status"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(&launches[..3], [503, 503, 503], "{launches:?}");
    assert!(launches[3..].contains(&200), "the job's retry got the first instance back: {launches:?}");
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    assert_eq!(t.instances_of(&id).await.len(), 1, "one instance, however often it was asked for");
    t.stop().await;
}

/// Six server errors in a row from `action` (more than the SDK's own attempts) are retried by
/// the job, and the request still becomes ready.
async fn survives_server_errors(action: &str, code: &str) {
    let t = TestApp::start().await;
    inject_fault(&t.account, action, code, 500, 6).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    assert!(t.calls_of(action).await >= 7, "{action} was tried past the errors");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_service_failures_are_retried() {
    survives_server_errors("CreateRole", "ServiceFailure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_internal_server_errors_are_retried() {
    survives_server_errors("DescribeInstanceInformation", "InternalServerError").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_server_exceptions_are_retried() {
    survives_server_errors("DescribeServices", "ServerException").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried() {
    let t = TestApp::start().await;
    inject_fault(&t.account, "CreateRole", "MalformedPolicyDocument", 400, 1).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Failed, WAIT).await;
    assert_eq!(t.calls_of("CreateRole").await, 1, "a 400 is not worth another try");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_comes_only_once_the_bastion_is_usable() {
    let t = TestApp::start().await;
    // The SSM agent registers long before cloud-init has installed the plugin and `connect`.
    set_consistency(&t.account, json!({"cloud_init_secs": 4})).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    let instance = request.instance_id.clone().unwrap();
    let usable = usable_at(&t.account).await[&instance];
    let ready_at = request.ready_at.unwrap() as f64 / 1000.0;
    assert!(ready_at >= usable, "ready at {ready_at} but usable only at {usable}");
    // The probe ran more than once: the first ones found cloud-init still at work.
    assert!(t.calls_of("SendCommand").await >= 2, "probed until usable");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_the_bastion_does_not_confirm_is_reported_not_claimed() {
    let t = TestApp::start_custom("default = \"15m\"\nmin = \"1m\"\nmax = \"1h\"", |c| {
        c.worker.max_attempts = 2;
    })
    .await;
    let id = t.connect(USER, "connect web --for 20m").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    fail_commands(&t.account, "fargate-connect-deadline", "systemctl: Failed to connect to bus", 100).await;
    let reply = t.reply(USER, &format!("extend {id} 5m")).await;
    assert!(reply.contains("Extended"), "{reply}");
    t.wait_for_audit(&id, "reschedule_failed", WAIT).await;
    let kinds = t.audit_kinds(&id).await;
    assert!(!kinds.contains(&"shutdown_rescheduled".to_string()), "{kinds:?}");
    let failed = t.ledger.audit_for(&id).await.unwrap().into_iter().find(|e| e.kind == "reschedule_failed").unwrap();
    assert!(failed.detail.contains("Failed to connect to bus"), "{}", failed.detail);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_goes_on_past_an_orphan_it_may_not_remove() {
    let t = TestApp::start().await;
    set_consistency(&t.account, json!({"instance_not_found_secs": 0})).await;
    let mut planted = Vec::new();
    for request in ["fc-zzzzzzzz", "fc-zzzzzzzy"] {
        planted.push(t.plant_instance(&[(tags::MANAGED, "true"), (tags::REQUEST_ID, request)]).await);
    }
    // The first is refused, as IAM refuses what the policy does not allow.
    inject_fault_matching(&t.account, "TerminateInstances", &planted[0], "UnauthorizedOperation", 403, 1).await;
    let provisioner = worker::provision::Provisioner::new(
        t.ledger.clone(),
        t.aws.clone(),
        t.config.aws.clone(),
        t.config.worker.clone(),
    );
    let reaped = worker::reaper::reap(&provisioner, Duration::ZERO).await.unwrap();
    assert_eq!(reaped.failed, vec![planted[0].clone()]);
    assert_eq!(reaped.instances, vec![planted[1].clone()]);
    // The next pass takes the one left.
    let reaped = worker::reaper::reap(&provisioner, Duration::ZERO).await.unwrap();
    assert_eq!(reaped.instances, vec![planted[0].clone()]);
    t.stop().await;
}

/// Saves Session Manager preferences in the test's account, as the console does.
async fn save_preferences(t: &TestApp, preferences: &serde_json::Value) {
    t.aws
        .ssm
        .create_document()
        .name("SSM-SessionManagerRunShell")
        .document_type(aws_sdk_ssm::types::DocumentType::Session)
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .content(preferences.to_string())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_session_settings_are_checked_before_anything_is_spent() {
    // Session Manager's preferences say: run sessions as `ops`, encrypt them with a KMS key.
    let preferences = json!({
        "schemaVersion": "1.0",
        "description": "Session Manager preferences",
        "sessionType": "Standard_Stream",
        "inputs": {"kmsKeyId": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "runAsEnabled": true, "runAsDefaultUser": "ops",
                   "s3BucketName": "", "cloudWatchLogGroupName": ""}
    });
    let t = TestApp::start().await;
    save_preferences(&t, &preferences).await;
    let id = t.connect(USER, "connect web").await;
    let failed = t.slack.wait_for_all(&[&id, "failed"], WAIT).await.all_text();
    assert!(
        failed.contains("KMS key 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0") && failed.contains("aws.kms_key_arns"),
        "{failed}"
    );
    assert!(failed.contains("runs sessions as `ops`"), "{failed}");
    assert_eq!(t.launches().await, 0, "nothing spent");
    assert_eq!(t.calls_of("CreateRole").await, 0);
    t.stop().await;

    // Granted in the config: the role may use the key, and the bastion creates the user.
    let t = TestApp::start_custom("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", |c| {
        c.aws.kms_key_arns = vec!["arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()];
        c.aws.session_run_as_user = Some("ops".into());
    })
    .await;
    save_preferences(&t, &preferences).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let role = worker::aws::iam::role_name(&id);
    let inline = t.aws.iam.get_role_policy().role_name(&role).policy_name("ecs-exec-one-task").send().await.unwrap();
    let document = worker::aws::iam::parse_document(inline.policy_document()).unwrap().to_string();
    assert!(
        document.contains("kms:GenerateDataKey") && document.contains("key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        "{document}"
    );
    let instance = t.ledger.get(&id).await.unwrap().instance_id.unwrap();
    let user_data = t
        .aws
        .ec2
        .describe_instance_attribute()
        .instance_id(&instance)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let script = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            user_data.user_data().and_then(|v| v.value()).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(script.contains("useradd --create-home --shell /bin/bash 'ops'"), "{script}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_profile_that_takes_over_half_a_minute_to_propagate_is_waited_for() {
    // IAM documents propagation taking up to a couple of minutes; the bot used to give up
    // after ~31 s and fail the request.
    let t = TestApp::start().await;
    set_consistency(&t.account, json!({"profile_propagation_secs": 35})).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, Duration::from_secs(120)).await;
    assert_eq!(t.launches().await, 1);
    assert!(t.calls_of("RunInstances").await > 1, "refused while the profile propagated");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_also_ends_the_exec_sessions_the_bastions_role_opened() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    let instance = request.instance_id.clone().unwrap();
    let task_id = request.task_id().unwrap().to_string();
    let role = format!("arn:aws:sts::{}:assumed-role/fargate-connect-{id}/{instance}", t.account);
    // The person's session on the bastion, the ECS Exec session the bastion's role opened into
    // the task (its target is the task, not the bastion), and someone else's session.
    let on_bastion = harness::moto::plant_session(&t.account, &instance, "arn:aws:iam::1:user/carol").await;
    let exec = harness::moto::plant_session(&t.account, &format!("ecs:prod_{task_id}_{task_id}-1"), &role).await;
    let other = harness::moto::plant_session(&t.account, "i-0someoneelse", "arn:aws:iam::1:user/dave").await;

    let reply = t.reply(USER, &format!("end {id}")).await;
    assert!(reply.contains("End"), "{reply}");
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    let status = |sessions: &[serde_json::Value], id: &str| {
        sessions.iter().find(|s| s["SessionId"] == id).unwrap()["Status"].as_str().unwrap().to_string()
    };
    let sessions = harness::moto::sessions(&t.account).await;
    assert_eq!(status(&sessions, &on_bastion), "Terminated");
    assert_eq!(status(&sessions, &exec), "Terminated", "the exec session into the task outlived End");
    assert_eq!(status(&sessions, &other), "Connected", "someone else's session is not ours to end");
    let torn = t.ledger.audit_for(&id).await.unwrap().into_iter().find(|e| e.kind == "torn_down").unwrap();
    assert!(torn.detail.contains("\"sessions_ended\":2"), "{}", torn.detail);
    t.stop().await;
}

/// ECS Exec only through a VPC endpoint where one serves the bastions' VPC: on the module's
/// defaults (no endpoint) the role gets no such rule and a connect works; demanded
/// (`aws.exec_through_vpc_endpoint = true`) with none there, the request is refused with the
/// fix before anything is spent; with the endpoint made, the role carries the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_exec_goes_through_a_vpc_endpoint_only_where_one_serves_the_bastions() {
    let exec_rule = |t: &TestApp, id: String| {
        let iam = t.aws.iam.clone();
        async move {
            let policy = iam
                .get_role_policy()
                .role_name(format!("fargate-connect-{id}"))
                .policy_name("ecs-exec-one-task")
                .send()
                .await
                .unwrap();
            let document = worker::aws::iam::parse_document(policy.policy_document()).expect("a policy document");
            document.to_string().contains("ExecOnlyThroughTheVpcEndpoint")
        }
    };
    // Unset, no endpoint: no rule, and the request goes through.
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    assert!(!exec_rule(&t, id.clone()).await, "no endpoint serves the VPC: no rule that would refuse every exec");
    t.stop().await;

    // Demanded, no endpoint: refused with the fix, nothing launched.
    let t = TestApp::start_custom("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"", |c| {
        c.aws.exec_through_vpc_endpoint = Some(true);
    })
    .await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Failed, WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    assert!(request.instance_id.is_none(), "nothing launched");
    let audit = t.ledger.audit_for(&id).await.unwrap();
    let failed = audit.iter().find(|e| e.kind == "failed").unwrap();
    assert!(
        failed.detail.contains("no ecs interface endpoint") && failed.detail.contains("create_vpc_endpoints"),
        "{}",
        failed.detail
    );
    // The endpoint made: the next request goes through, its role carrying the rule.
    let vpc = t
        .aws
        .ec2
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    t.aws
        .ec2
        .create_vpc_endpoint()
        .vpc_id(&vpc)
        .service_name("com.amazonaws.eu-west-1.ecs")
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .private_dns_enabled(true)
        .send()
        .await
        .unwrap();
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    assert!(exec_rule(&t, id.clone()).await, "the endpoint serves the VPC: exec only through it");
    t.stop().await;
}

/// A teardown AWS keeps refusing is raised in the audit channel once, with the last error,
/// and still finishes when AWS lets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teardown_that_does_not_finish_is_raised_in_the_audit_channel_once() {
    let policy = "[policy]\naudit_channel = \"C0AUDIT\"\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n";
    let t = TestApp::start_full("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"", policy, |c| {
        c.worker.teardown_alert_after = worker::duration::HumanDuration::from_secs(2);
    })
    .await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    // Three refusals: the job retries after 1 s, 2 s, 4 s, so it is still failing at 2 s.
    inject_fault(&t.account, "DeleteRole", "AccessDenied", 403, 3).await;
    let reply = t.reply(USER, &format!("end {id}")).await;
    assert!(reply.contains("End"), "{reply}");
    let alert = t.slack.wait_for_in("C0AUDIT", "teardown not finished", WAIT).await;
    assert!(alert.all_text().contains("AccessDenied"), "{}", alert.all_text());
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    let kinds = t.audit_kinds(&id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "teardown_stuck").count(), 1, "{kinds:?}");
    t.stop().await;
}

/// Someone with `ec2:CreateTags` retags a live bastion for another person (whose Session
/// Manager policy trusts the requester tag): at the reminder the bot reads the tags again,
/// ends the request and tells the audit channel; the teardown reads them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_retagged_for_someone_else_is_ended_at_the_reminder_and_the_audit_channel_told() {
    let policy = "[policy]\naudit_channel = \"C0AUDIT\"\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n";
    let t = TestApp::start_full("default = \"40s\"\nmin = \"1s\"\nmax = \"2h\"", policy, |c| {
        c.worker.reminder_before = worker::duration::HumanDuration::from_secs(35);
    })
    .await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let instance = t.ledger.get(&id).await.unwrap().instance_id.unwrap();
    t.aws
        .ec2
        .create_tags()
        .resources(&instance)
        .tags(aws_sdk_ec2::types::Tag::builder().key(tags::REQUESTER).value("U0MALLORY").build())
        .send()
        .await
        .unwrap();
    t.wait_for_audit(&id, "requester_tag_changed", WAIT).await;
    let alert = t.slack.wait_for_in("C0AUDIT", "bastion retagged", WAIT).await;
    assert!(alert.all_text().contains("requester U0MALLORY"), "{}", alert.all_text());
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    assert_eq!(request.state(), RequestState::Ended);
    assert!(request.expires_at.unwrap() > worker::ledger::now_ms(), "ended before its time, at the reminder");
    assert_eq!(request.end_reason.as_deref(), Some("retagged"));
    t.slack.wait_for_message("changed the bastion's tags", WAIT).await;
    t.stop().await;
}

/// The attacker's race: a session opened after the teardown's first sweep (a start-session
/// loop on the bastion, or an ECS Exec with the role's credentials while IAM's revocation
/// propagates) is ended by the second sweep before the role is deleted; the credentials are
/// revoked before anything else happens, and the owner is matched however it is spelt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_while_the_teardown_runs_is_ended_after_the_revocation() {
    let t = TestApp::start_custom("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"", |c| {
        c.worker.revoke_settle_ms = 5_000;
    })
    .await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    let instance = request.instance_id.clone().unwrap();
    let task_id = request.task_id().unwrap().to_string();
    let reply = t.reply(USER, &format!("end {id}")).await;
    assert!(reply.contains("End"), "{reply}");
    // The first pass is done when the job waits with its progress.
    harness::wait_for("the teardown's first pass", WAIT, || async {
        let progress: Option<String> =
            sqlx::query_scalar("SELECT progress FROM jobs WHERE request_id = ? AND kind = 'teardown'")
                .bind(&id)
                .fetch_optional(t.ledger.pool())
                .await
                .unwrap()
                .flatten();
        progress.filter(|p| p.contains("\"revoked\":true")).map(|_| ())
    })
    .await;
    // Sessions opened in the gap: one on the bastion, one ECS Exec with the role, its owner
    // spelt as the role's ARN (with its path) rather than the assumed-role session's.
    let on_bastion = harness::moto::plant_session(&t.account, &instance, "arn:aws:iam::1:user/mallory").await;
    let role_arn = format!("arn:aws:iam::{}:role/fargate-connect/fargate-connect-{id}", t.account);
    let exec = harness::moto::plant_session(&t.account, &format!("ecs:prod_{task_id}_{task_id}-1"), &role_arn).await;
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    let sessions = harness::moto::sessions(&t.account).await;
    let status =
        |id: &str| sessions.iter().find(|s| s["SessionId"] == id).unwrap()["Status"].as_str().unwrap().to_string();
    assert_eq!(status(&on_bastion), "Terminated", "a session started during the teardown survived it");
    assert_eq!(status(&exec), "Terminated", "an exec session started during the teardown survived it");
    let torn = t.ledger.audit_for(&id).await.unwrap().into_iter().find(|e| e.kind == "torn_down").unwrap();
    assert!(torn.detail.contains("\"sessions_ended_late\":2"), "{}", torn.detail);
    // The order: revoke, terminate, sweep; sweep again, then delete.
    let calls = harness::moto::calls(&t.account).await;
    let at = |action: &str| calls.iter().rposition(|(_, a)| a == action).unwrap_or_else(|| panic!("no {action}"));
    let revoke = calls.iter().rposition(|(_, a)| a == "PutRolePolicy").unwrap();
    let terminate = at("TerminateInstances");
    assert!(revoke < terminate, "the credentials are revoked before anything else");
    let sweeps: Vec<usize> =
        calls.iter().enumerate().filter(|(i, (_, a))| a == "DescribeSessions" && *i > revoke).map(|(i, _)| i).collect();
    assert!(sweeps.len() >= 2, "two sweeps: {calls:?}");
    assert!(sweeps[0] > terminate && *sweeps.last().unwrap() < at("DeleteRole"), "{calls:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_is_torn_down_on_time_while_every_provisioning_slot_waits_for_readiness() {
    let t = TestApp::start_custom("default = \"15s\"\nmin = \"1s\"\nmax = \"1h\"", |c| {
        c.worker.concurrency = 4;
    })
    .await;
    let first = t.connect(USER, "connect web").await;
    t.wait_for_state(&first, RequestState::Ready, WAIT).await;
    // From now on no bastion comes online: every provision holds its slot in the readiness
    // wait (up to worker.ready_timeout, 30 s here), three times as many as there are slots.
    harness::moto::set_ssm_online(&t.account, false).await;
    for n in 0..12 {
        t.connect(&format!("U0STUCK{n:02}"), "connect web").await;
    }
    harness::wait_for("every provisioning slot to be taken", WAIT, || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE state = 'provisioning' AND instance_id IS NOT NULL",
        )
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
        (waiting >= 4).then_some(())
    })
    .await;
    // The first request's time box ends meanwhile: its teardown must not queue behind them.
    let expires_at = t.wait_until_told(&first).await.expires_at.unwrap();
    t.wait_for_audit(&first, "torn_down", WAIT).await;
    let torn = t.ledger.audit_for(&first).await.unwrap().into_iter().find(|e| e.kind == "torn_down").unwrap();
    let late_ms = torn.at - expires_at;
    assert!(late_ms < 5_000, "torn down {late_ms} ms after its expiry, behind the provisioning");
    t.stop().await;
}
