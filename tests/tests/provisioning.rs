//! Provisioning done right, against moto with failures injected by the layer in front of it:
//! each preflight outcome reaches the person and launches nothing; spot capacity falls back
//! across types and to on-demand where allowed; throttling is retried; a worker stopped
//! abruptly after each step resumes without launching twice or leaving anything behind; a
//! bastion that never comes online fails and is torn down.

use harness::app::{test_db, Db, TestApp};
use harness::moto::{
    inject_delay, inject_fault_matching, inject_fault_with_message, no_capacity_for, set_agent_status, set_consistency,
    set_ssm_online,
};
use harness::seed::{seed_service, ServiceSpec};
use std::time::Duration;
use worker::aws::{tags, IAM_PATH};

const USER: &str = "U0CAROL";
const WAIT: Duration = Duration::from_secs(60);

/// The request's instances that are not terminated.
async fn live_instances(t: &TestApp, id: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    t.instances_of(id)
        .await
        .into_iter()
        .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() != "terminated"))
        .collect()
}

async fn our_roles(t: &TestApp) -> Vec<String> {
    let roles = t.aws.iam.list_roles().path_prefix(IAM_PATH).send().await.unwrap();
    let profiles = t.aws.iam.list_instance_profiles().path_prefix(IAM_PATH).send().await.unwrap();
    roles
        .roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .chain(profiles.instance_profiles().iter().map(|p| format!("profile:{}", p.instance_profile_name())))
        .collect()
}

/// Asserts the request failed with `needle` in the person's message and spent nothing.
async fn assert_refused(t: &TestApp, text: &str, needle: &str) {
    let id = t.connect(USER, text).await;
    let failed = t.slack.wait_for_all(&[&id, "failed"], WAIT).await;
    let all = failed.all_text();
    assert!(all.contains("failed"), "{all}");
    assert!(all.contains(needle), "expected {needle:?} in: {all}");
    assert!(all.contains('✗'), "the checks are listed: {all}");
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    assert_eq!(t.calls_of("RunInstances").await, 0, "nothing launched for {text}");
    assert_eq!(t.calls_of("CreateRole").await, 0, "no role for {text}");
}

async fn each_preflight_outcome_reaches_the_person_and_launches_nothing() {
    let t = TestApp::start().await;
    let s = &t.seeded;
    let aws = &t.aws;
    seed_service(
        aws,
        s,
        &ServiceSpec { exec_on_service: false, exec_on_task: false, ..ServiceSpec::healthy("legacy") },
    )
    .await;
    seed_service(aws, s, &ServiceSpec { exec_on_task: false, ..ServiceSpec::healthy("stale") }).await;
    seed_service(aws, s, &ServiceSpec { run_task: false, ..ServiceSpec::healthy("idle") }).await;
    seed_service(aws, s, &ServiceSpec { task_role: false, ..ServiceSpec::healthy("norole") }).await;
    let agentless = seed_service(aws, s, &ServiceSpec::healthy("agentless")).await.unwrap();
    set_agent_status(&t.account, &agentless, "STOPPED").await;

    assert_refused(&t, "connect billing", "service `billing` was not found in cluster `prod`").await;
    assert_refused(&t, "connect legacy", "--enable-execute-command --force-new-deployment").await;
    assert_refused(&t, "connect stale", "not on its running task").await;
    assert_refused(&t, "connect idle", "has no RUNNING task").await;
    assert_refused(&t, "connect web/shell", "container `shell` is not in the task — the task has: app, envoy").await;
    assert_refused(&t, "connect web --task 0000dead", "task `0000dead` is not a RUNNING task of `web`").await;
    assert_refused(&t, "connect agentless", "ExecuteCommandAgent of container `app` is STOPPED").await;
    assert_refused(&t, "connect norole", "the task has no task role").await;
    t.stop().await;
}

async fn spot_capacity_falls_back_to_the_next_type_and_throttling_is_retried() {
    let t = TestApp::start().await;
    no_capacity_for(&t.account, "InstanceType=t3.micro").await;
    inject_fault_matching(&t.account, "DescribeServices", "", "ThrottlingException", 400, 4).await;
    let id = t.connect(USER, "connect web --for 2s").await;
    let ready = t.slack.wait_for_message("is ready", WAIT).await;
    assert!(ready.all_text().contains("t3a.micro spot"), "{}", ready.all_text());
    let instances = live_instances(&t, &id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].instance_type().unwrap().as_str(), "t3a.micro");
    // Throttled four times, then answered: retried, not failed.
    assert!(t.calls_of("DescribeServices").await >= 5);
    // Each full placement was asked once (the SDK's own retries would ask each five times,
    // seconds apart): one refusal per subnet of the default VPC.
    let subnets = t
        .aws
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("default-for-az").values("true").build())
        .send()
        .await
        .unwrap()
        .subnets()
        .len();
    let refused = harness::moto::calls_detailed(&t.account)
        .await
        .into_iter()
        .filter(|c| c["action"] == "RunInstances" && c["status"] == 500)
        .count();
    assert_eq!(refused, subnets, "each t3.micro placement asked once");
    let request = t.ledger.get(&id).await.unwrap();
    let launch: serde_json::Value = serde_json::from_str(request.launch.as_deref().unwrap()).unwrap();
    assert_eq!(launch["spot"], true);
    assert!(launch["estimated_cost_usd"].as_f64().is_some(), "{launch}");
    t.slack.wait_for_message("has ended", WAIT).await;
    t.stop().await;
}

async fn warnings_reach_the_card_and_a_not_yet_visible_profile_is_retried() {
    let t = TestApp::start().await;
    seed_service(&t.aws, &t.seeded, &ServiceSpec { risky_app: true, ..ServiceSpec::healthy("risky") }).await;
    // EC2's answer in the seconds before a new instance profile is visible to it.
    inject_fault_with_message(
        &t.account,
        "RunInstances",
        "InvalidParameterValue",
        "Value (fargate-connect-x) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        2,
    )
    .await;
    let id = t.connect(USER, "connect risky").await;
    let ready = t.slack.wait_for_message("is ready", WAIT).await;
    let text = ready.all_text();
    assert!(text.contains("Preflight warnings"), "{text}");
    assert!(text.contains("read-only root filesystem"), "{text}");
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
    assert!(text.contains("pidMode"), "{text}");
    assert_eq!(t.launches().await, 1, "one launch");
    assert!(t.calls_of("RunInstances").await >= 3, "two refusals at least, then the launch");
    assert_eq!(live_instances(&t, &id).await.len(), 1);
    t.slack.wait_for_message("has ended", WAIT).await;
    t.stop().await;
}

async fn no_spot_capacity_anywhere_uses_on_demand_where_allowed_and_fails_clearly_where_not() {
    let allowed = TestApp::start_custom("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", |c| {
        c.aws.on_demand_fallback = true;
    })
    .await;
    no_capacity_for(&allowed.account, "MarketType=spot").await;
    let id = allowed.connect(USER, "connect web").await;
    let ready = allowed.slack.wait_for_message("is ready", WAIT).await;
    assert!(ready.all_text().contains("t3.micro on-demand"), "{}", ready.all_text());
    let instances = live_instances(&allowed, &id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].instance_lifecycle(), None, "on-demand");
    allowed.slack.wait_for_message("has ended", WAIT).await;
    allowed.stop().await;

    let refused = TestApp::start().await;
    no_capacity_for(&refused.account, "MarketType=spot").await;
    let id = refused.connect(USER, "connect web").await;
    let failed = refused.slack.wait_for_message("failed", WAIT).await;
    assert!(failed.all_text().contains("no spot capacity for t3.micro, t3a.micro"), "{}", failed.all_text());
    refused.wait_for_audit(&id, "torn_down", WAIT).await;
    assert!(live_instances(&refused, &id).await.is_empty());
    assert!(our_roles(&refused).await.is_empty(), "the role made before launching is gone");
    refused.stop().await;
}

/// Stops the worker abruptly while `step` holds it and checks the request still ends ready
/// with exactly one instance ever launched and one "ready" message, then leaves nothing
/// behind. On SQLite the process is restarted; on PostgreSQL a second replica is running
/// when the first is killed, and it finishes the request once the dead one's lease runs out.
async fn crash_and_resume(hold: impl AsyncFnOnce(&TestApp), after: &str, release: impl AsyncFnOnce(&TestApp)) {
    let mut t =
        TestApp::start_custom("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", |c| c.worker.lease_ms = 1000).await;
    hold(&t).await;
    let id = t.connect(USER, "connect web").await;
    t.wait_for_audit(&id, after, WAIT).await;
    if test_db() == Db::Postgres {
        t.start_replica().await;
        t.kill_and_fail_over().await;
        release(&t).await;
    } else {
        t.crash();
        release(&t).await;
        t.restart().await;
    }
    // The card's update may say "is ready" a moment before the direct message is posted:
    // wait for the message itself, and count them once the request has ended.
    let ready_messages =
        || t.slack.delivered_to("chat.postMessage").iter().filter(|m| m.all_text().contains("is ready")).count();
    harness::wait_for("the \"is ready\" direct message", WAIT, || async { (ready_messages() > 0).then_some(()) }).await;
    assert_eq!(t.launches().await, 1, "exactly one instance ever launched (crash after {after})");
    assert_eq!(live_instances(&t, &id).await.len(), 1);
    t.slack.wait_for_message("has ended", WAIT).await;
    assert_eq!(ready_messages(), 1, "one \"ready\" message, not two");
    assert!(live_instances(&t, &id).await.is_empty());
    assert!(our_roles(&t).await.is_empty(), "no role or profile left over");
    assert_eq!(t.ledger.get(&id).await.unwrap().state().as_str(), "ended");
    t.stop().await;
}

async fn a_worker_stopped_after_the_role_resumes_without_duplicates() {
    crash_and_resume(
        async |t: &TestApp| inject_delay(&t.account, "DescribeSubnets", "", 3.0, 1).await,
        "role_created",
        async |_: &TestApp| {},
    )
    .await;
}

async fn a_worker_stopped_after_launching_resumes_without_duplicates() {
    crash_and_resume(
        async |t: &TestApp| inject_delay(&t.account, "DescribeInstances", "InstanceId.1", 3.0, 1).await,
        "instance_launched",
        async |_: &TestApp| {},
    )
    .await;
}

async fn a_worker_stopped_before_ready_resumes_without_duplicates() {
    crash_and_resume(
        async |t: &TestApp| set_ssm_online(&t.account, false).await,
        "instance_launched",
        async |t: &TestApp| set_ssm_online(&t.account, true).await,
    )
    .await;
}

async fn a_bastion_that_never_comes_online_fails_and_is_torn_down() {
    let t = TestApp::start_custom("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", |c| {
        c.worker.ready_timeout = worker::duration::HumanDuration::parse("2s").unwrap();
    })
    .await;
    // EC2 shows the instance at once here, so the 2 s go to waiting for SSM alone.
    set_consistency(&t.account, serde_json::json!({"instance_not_found_secs": 0})).await;
    set_ssm_online(&t.account, false).await;
    let id = t.connect(USER, "connect web").await;
    let failed = t.slack.wait_for_message("failed", WAIT).await;
    assert!(failed.all_text().contains("was not online in Session Manager within 2s"), "{}", failed.all_text());
    t.wait_for_audit(&id, "torn_down", WAIT).await;
    assert!(live_instances(&t, &id).await.is_empty());
    assert!(our_roles(&t).await.is_empty());
    t.stop().await;
}

async fn plant_role(t: &TestApp, name: &str, path: &str) {
    t.aws
        .iam
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(worker::aws::iam::trust_policy("aws"))
        .send()
        .await
        .unwrap();
    t.aws.iam.create_instance_profile().instance_profile_name(name).path(path).send().await.unwrap();
    t.aws.iam.add_role_to_instance_profile().instance_profile_name(name).role_name(name).send().await.unwrap();
}

async fn the_reaper_removes_planted_orphans_and_nothing_else() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    // A live request: its bastion and role must survive.
    let live = t.connect(USER, "connect web").await;
    t.slack.wait_for_message("is ready", WAIT).await;
    let live_instance = t.ledger.get(&live).await.unwrap().instance_id.unwrap();
    // A request that failed: anything still tagged with it is an orphan.
    let failed = t.connect("U0DAVE", "connect billing").await;
    t.wait_for_audit(&failed, "torn_down", WAIT).await;

    let orphan_unknown = t.plant_instance(&[(tags::MANAGED, "true"), (tags::REQUEST_ID, "fc-zzzzzzzz")]).await;
    let orphan_of_failed = t.plant_instance(&[(tags::MANAGED, "true"), (tags::REQUEST_ID, &failed)]).await;
    let not_ours = t.plant_instance(&[("team", "payments")]).await;
    plant_role(&t, "fargate-connect-fc-yyyyyyyy", IAM_PATH).await;
    plant_role(&t, "fargate-connect-fc-xxxxxxxy", "/other/").await;
    plant_role(&t, "hand-made-helper", IAM_PATH).await;

    // The reaper is the bot's: its calls are held to the bot's policy.
    let provisioner = worker::provision::Provisioner::new(
        t.ledger.clone(),
        t.bot_aws.clone(),
        t.config.aws.clone(),
        t.config.worker.clone(),
    );
    // EC2 lists new instances only once its view has caught up (eventual consistency).
    for id in [&orphan_unknown, &orphan_of_failed, &not_ours] {
        harness::wait_for("the planted instance to be visible", WAIT, || async {
            t.aws.ec2.describe_instances().instance_ids(id.as_str()).send().await.ok().map(|_| ())
        })
        .await;
    }
    let reaped = worker::reaper::reap(&provisioner, Duration::ZERO).await.unwrap();
    let mut instances = reaped.instances.clone();
    instances.sort();
    let mut expected = vec![orphan_unknown.clone(), orphan_of_failed.clone()];
    expected.sort();
    assert_eq!(instances, expected);
    assert_eq!(reaped.roles, vec!["fargate-connect-fc-yyyyyyyy".to_string()]);

    for gone in [&orphan_unknown, &orphan_of_failed] {
        let state = t.instance_state(gone).await.unwrap();
        assert!(state == "terminated" || state == "shutting-down", "{gone} is {state}");
    }
    assert_eq!(t.instance_state(&not_ours).await.unwrap(), "running");
    assert_eq!(t.instance_state(&live_instance).await.unwrap(), "running");
    let roles = our_roles(&t).await;
    assert!(roles.contains(&format!("fargate-connect-{live}")), "{roles:?}");
    assert!(roles.contains(&"hand-made-helper".to_string()), "{roles:?}");
    assert!(!roles.iter().any(|r| r.contains("fc-yyyyyyyy")), "{roles:?}");
    assert!(t.aws.iam.get_role().role_name("fargate-connect-fc-xxxxxxxy").send().await.is_ok());
    // Audited as reaped.
    assert!(t.audit_kinds(&failed).await.contains(&"reaped".to_string()));
    assert!(t.audit_kinds("fc-zzzzzzzz").await.contains(&"reaped".to_string()));
    // A second pass finds nothing more.
    assert_eq!(worker::reaper::reap(&provisioner, Duration::ZERO).await.unwrap(), Default::default());
    t.stop().await;
}

/// AWS calls per connect and per teardown, counted at the emulator, once the per-process
/// caches (subnets, security group, AMIs, task definition, a task role that passed, spot
/// price) are warm. Readiness polls (DescribeInstances by id, DescribeInstanceInformation,
/// GetCommandInvocation of the readiness probe) are bounded separately by the backoff.
async fn a_connect_costs_ten_aws_calls_plus_the_probe_and_polls_and_a_teardown_fifteen() {
    let t = TestApp::start().await;
    let first = t.connect(USER, "connect web").await;
    t.slack.wait_for_message(&format!("{first} for web in prod: has ended"), WAIT).await;

    let before = t.bot_calls().await.len();
    let id = t.connect("U0FRANK", "connect web").await;
    t.slack.wait_for_message(&format!("{id} for web in prod: is ready"), WAIT).await;
    let at_ready = t.bot_calls().await.len();
    t.slack.wait_for_message(&format!("{id} for web in prod: has ended"), WAIT).await;
    let calls = t.bot_calls().await;
    // Readiness polls: the instance's state, SSM registration, the probe's result.
    let is_poll =
        |action: &str| matches!(action, "DescribeInstances" | "DescribeInstanceInformation" | "GetCommandInvocation");
    let mut connect: Vec<&str> =
        calls[before..at_ready].iter().map(|(_, a)| a.as_str()).filter(|a| !is_poll(a)).collect();
    // A new instance profile is refused by RunInstances until it propagates, and a probe that
    // finds cloud-init still at work is sent again: each is one step, however often it is tried.
    connect.dedup();
    assert_eq!(
        connect,
        [
            "DescribeServices",
            "ListTasks",
            "DescribeTasks",
            // Does an ecs endpoint serve the bastions' VPC (the exec-through-an-endpoint rule)?
            "DescribeVpcEndpoints",
            "CreateRole",
            "PutRolePolicy",
            "CreateInstanceProfile",
            "AddRoleToInstanceProfile",
            "RunInstances",
            "SendCommand",
        ]
    );
    let polls = calls[before..at_ready].iter().filter(|(_, a)| is_poll(a)).count();
    assert!(polls >= 2, "at least one state and one SSM check: {polls}");
    let teardown: Vec<&str> = calls[at_ready..].iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        teardown,
        [
            // Revoke: the role found by its path, every credential it issued denied, its grants gone.
            "ListRoles",
            "ListInstanceProfiles",
            "PutRolePolicy",
            "DeleteRolePolicy",
            // Whose the bastion is, as its tags say now.
            "DescribeInstances",
            "TerminateInstances",
            // The sweep, and worker.revoke_settle_ms later the second one.
            "DescribeSessions",
            "DescribeSessions",
            "ListRoles",
            "ListInstanceProfiles",
            "RemoveRoleFromInstanceProfile",
            "DeleteInstanceProfile",
            "DeleteRolePolicy",
            "DeleteRolePolicy",
            "DeleteRole",
        ]
    );
    assert!(our_roles(&t).await.is_empty());
    t.stop().await;
}

harness::on_both_ledgers!(
    each_preflight_outcome_reaches_the_person_and_launches_nothing,
    spot_capacity_falls_back_to_the_next_type_and_throttling_is_retried,
    warnings_reach_the_card_and_a_not_yet_visible_profile_is_retried,
    no_spot_capacity_anywhere_uses_on_demand_where_allowed_and_fails_clearly_where_not,
    a_worker_stopped_after_the_role_resumes_without_duplicates,
    a_worker_stopped_after_launching_resumes_without_duplicates,
    a_worker_stopped_before_ready_resumes_without_duplicates,
    a_bastion_that_never_comes_online_fails_and_is_torn_down,
    the_reaper_removes_planted_orphans_and_nothing_else,
    a_connect_costs_ten_aws_calls_plus_the_probe_and_polls_and_a_teardown_fifteen,
);
