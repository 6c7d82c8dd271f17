//! The IAM documents the bot writes at run time, and the one the README gives people, pass the
//! IAM lint (`deploy/iam/lint.py`: parliament, with only the reviewed exceptions of
//! `deploy/iam/parliament-exceptions.yml`): each per-request role's trust policy and inline
//! policy (for a commercial and an aws-cn cluster), and the README's policy for humans. The
//! Terraform module's documents are linted by the Terraform test, from the applied state.

use harness::app::TempDir;
use harness::moto::{ensure_venv, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use worker::aws::iam::{exec_policy, trust_policy};

fn lint(files: &[PathBuf]) -> String {
    let out = Command::new(ensure_venv())
        .arg(repo_root().join("deploy/iam/lint.py"))
        .args(files)
        .output()
        .expect("the IAM lint runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the IAM lint failed:\n{text}");
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The first ```json block after `heading` in the README.
fn readme_json_after(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let block = section.split("```json\n").nth(1).expect("a json block").split("```").next().unwrap();
    block.to_string()
}

#[test]
fn the_per_request_policies_and_the_readmes_policy_pass_the_iam_lint() {
    let dir = TempDir::new();
    let files = vec![
        write(&dir.0, "bastion-trust.json", &trust_policy("aws")),
        write(&dir.0, "bastion-trust-aws-cn.json", &trust_policy("aws-cn")),
        write(
            &dir.0,
            "bastion-inline.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &[],
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-with-the-credential-perimeter.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &worker::aws::perimeter::Perimeter {
                    in_vpc: true,
                    exec_through_vpc_endpoint: true,
                    egress_cidrs: &["203.0.113.7/32".to_string()],
                    vpc_endpoint_ids: &["vpce-0a1b2c3d".to_string()],
                }
                .statements(),
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-aws-cn.json",
            &exec_policy(
                "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/prod",
                "arn:aws-cn:ecs:cn-north-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &[],
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-with-session-settings.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &worker::aws::exec_settings::grant_statements(
                    &serde_json::from_value(serde_json::json!({
                        "cluster": "prod",
                        "kms_key_arns": ["arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"],
                        "session_log_bucket": "audit-sessions",
                        "session_log_group": "/ssm/sessions",
                    }))
                    .unwrap(),
                    "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                ),
            ),
        ),
        write(&dir.0, "readme-people.json", &readme_json_after("### Letting only the requester use their bastion")),
    ];
    let report = lint(&files);
    println!("{report}");
    assert!(report.contains("7 document(s), 0 failure(s)"), "{report}");
    assert!(report.contains("bastion-trust.json [trust policy]"), "{report}");
}

#[test]
fn the_lint_fails_on_a_document_that_grants_too_much() {
    // The lint can fail: a per-request policy that reads every parameter is a finding.
    let dir = TempDir::new();
    let broad = r#"{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "*"},
        {"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "arn:aws:ecs:eu-west-1:1:cluster/prod"}]}"#;
    let file = write(&dir.0, "broad.json", broad);
    let out = Command::new(ensure_venv()).arg(repo_root().join("deploy/iam/lint.py")).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("RESOURCE_MISMATCH") || text.contains("RESOURCE_STAR"), "{text}");
}

/// The README's policy for people, evaluated as IAM would for one person (Carol, tagged
/// `slack-user-id=U0CAROL`, signed in through a role) by the emulator's evaluator
/// (`deploy/iam/evaluate.py`): the console link (the default shell document) and the card's
/// `connect` command (`AWS-StartInteractiveCommand`) on her bastion are allowed; the
/// port-forwarding and SSH documents, someone else's bastion, an instance she tagged herself,
/// someone else's sessions and anything else are not.
#[test]
fn the_readmes_policy_allows_the_link_and_connect_on_ones_own_bastion_and_nothing_else() {
    let policy = readme_json_after("### Letting only the requester use their bastion");
    let instance = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0bastion";
    let doc = |name: &str| format!("arn:aws:ssm:eu-west-1::document/{name}");
    let tags = |requester: &str, managed: Option<&str>| {
        let mut context = serde_json::json!({
            "ssm:resourceTag/fargate-connect:requester": [requester],
            "ssm:SessionDocumentAccessCheck": ["true"],
        });
        if let Some(managed) = managed {
            context["ssm:resourceTag/fargate-connect:managed"] = serde_json::json!([managed]);
        }
        context
    };
    let check = serde_json::json!({"ssm:SessionDocumentAccessCheck": ["true"]});
    let own_session = serde_json::json!({"ssm:resourceTag/aws:ssmmessages:session-id": ["AROAEXAMPLE:carol"]});
    let other_session = serde_json::json!({"ssm:resourceTag/aws:ssmmessages:session-id": ["AROAOTHER:dave"]});
    let cases = serde_json::json!({
        "variables": {"${aws:PrincipalTag/slack-user-id}": "U0CAROL", "${aws:userid}": "AROAEXAMPLE:carol"},
        "cases": [
            {"name": "own bastion", "action": "ssm:StartSession", "resource": instance, "context": tags("U0CAROL", Some("true")), "want": "allow"},
            {"name": "the console link's document", "action": "ssm:StartSession", "resource": "arn:aws:ssm:eu-west-1:123456789012:document/SSM-SessionManagerRunShell", "context": check, "want": "allow"},
            {"name": "connect's document", "action": "ssm:StartSession", "resource": doc("AWS-StartInteractiveCommand"), "context": check, "want": "allow"},
            {"name": "port forwarding", "action": "ssm:StartSession", "resource": doc("AWS-StartPortForwardingSession"), "context": check, "want": "implicit-deny"},
            {"name": "port forwarding to a remote host", "action": "ssm:StartSession", "resource": doc("AWS-StartPortForwardingSessionToRemoteHost"), "context": check, "want": "implicit-deny"},
            {"name": "SSH", "action": "ssm:StartSession", "resource": doc("AWS-StartSSHSession"), "context": check, "want": "implicit-deny"},
            {"name": "a document of the account's own", "action": "ssm:StartSession", "resource": "arn:aws:ssm:eu-west-1:123456789012:document/MyPortForward", "context": check, "want": "implicit-deny"},
            {"name": "someone else's bastion", "action": "ssm:StartSession", "resource": instance, "context": tags("U0MALLORY", Some("true")), "want": "implicit-deny"},
            {"name": "an instance she tagged herself", "action": "ssm:StartSession", "resource": instance, "context": tags("U0CAROL", None), "want": "implicit-deny"},
            {"name": "managed false", "action": "ssm:StartSession", "resource": instance, "context": tags("U0CAROL", Some("false")), "want": "implicit-deny"},
            {"name": "end her session", "action": "ssm:TerminateSession", "resource": "arn:aws:ssm:eu-west-1:123456789012:session/carol-0abc", "context": own_session, "want": "allow"},
            {"name": "end someone else's", "action": "ssm:TerminateSession", "resource": "arn:aws:ssm:eu-west-1:123456789012:session/dave-0abc", "context": other_session, "want": "implicit-deny"},
            {"name": "her data channel", "action": "ssmmessages:OpenDataChannel", "resource": "arn:aws:ssm:eu-west-1:123456789012:session/AROAEXAMPLE:carol-0abc", "want": "allow"},
            {"name": "someone else's data channel", "action": "ssmmessages:OpenDataChannel", "resource": "arn:aws:ssm:eu-west-1:123456789012:session/AROAOTHER:dave-0abc", "want": "implicit-deny"},
            {"name": "the console's reads", "action": "ssm:DescribeSessions", "resource": "*", "want": "allow"},
            {"name": "a session as another user (a Run As tag of her own)", "action": "ssm:StartSession", "resource": instance, "context": {
                "ssm:resourceTag/fargate-connect:requester": ["U0CAROL"], "ssm:resourceTag/fargate-connect:managed": ["true"],
                "ssm:SessionDocumentAccessCheck": ["true"], "aws:PrincipalTag/SSMSessionRunAs": ["fargate-connect"]}, "want": "implicit-deny"},
            {"name": "Run Command", "action": "ssm:SendCommand", "resource": instance, "context": tags("U0CAROL", Some("true")), "want": "implicit-deny"},
            {"name": "retag an instance", "action": "ec2:CreateTags", "resource": instance, "want": "implicit-deny"},
        ]
    });
    harness::iam::assert_outcomes(&policy, &cases);
}

/// The per-request role's policy, evaluated: exec and describe for its task (or a replacement
/// task of its service, by ECS's managed tag), that container only; not another service's task.
#[test]
fn the_per_request_policy_reaches_its_task_or_its_services_replacement_and_nothing_else() {
    let cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/prod";
    let task = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c";
    let other = "arn:aws:ecs:eu-west-1:123456789012:task/prod/9a8b7c6d";
    let policy = exec_policy(cluster, task, "app", "web", &[]);
    let ctx = |service: Option<&str>, container: Option<&str>| {
        let mut c = serde_json::json!({"ecs:cluster": [cluster]});
        if let Some(s) = service {
            c["aws:ResourceTag/aws:ecs:serviceName"] = serde_json::json!([s]);
        }
        if let Some(n) = container {
            c["ecs:container-name"] = serde_json::json!([n]);
        }
        c
    };
    let case = |name: &str, action: &str, resource: &str, context: serde_json::Value, want: &str| serde_json::json!({"name": name, "action": action, "resource": resource, "context": context, "want": want});
    let cases = serde_json::json!({"cases": [
        case("exec into its task", "ecs:ExecuteCommand", task, ctx(None, Some("app")), "allow"),
        case("exec into the cluster", "ecs:ExecuteCommand", cluster, ctx(None, Some("app")), "allow"),
        case("exec into another container", "ecs:ExecuteCommand", task, ctx(None, Some("envoy")), "implicit-deny"),
        case("exec into a replacement", "ecs:ExecuteCommand", other, ctx(Some("web"), Some("app")), "allow"),
        case("exec into another service's task", "ecs:ExecuteCommand", other, ctx(Some("api"), Some("app")), "implicit-deny"),
        case("describe its task", "ecs:DescribeTasks", task, ctx(None, None), "allow"),
        case("describe a replacement", "ecs:DescribeTasks", other, ctx(Some("web"), None), "allow"),
        case("describe another service's task", "ecs:DescribeTasks", other, ctx(Some("api"), None), "implicit-deny"),
        case("describe an untagged task", "ecs:DescribeTasks", other, ctx(None, None), "implicit-deny"),
        case("list the cluster's tasks", "ecs:ListTasks", "*", ctx(None, None), "allow"),
        case("read a parameter", "ssm:GetParameter", "arn:aws:ssm:eu-west-1:123456789012:parameter/slack", serde_json::json!({}), "implicit-deny"),
    ]});
    harness::iam::assert_outcomes(&policy, &cases);
}

/// The credential perimeter, evaluated in each deployment shape's request context: on the
/// bastion (through its VPC's endpoint, or through the NAT) the role works; the same
/// credentials from another VPC, through another endpoint, or from a laptop do not.
#[test]
fn the_perimeter_refuses_the_credentials_off_the_bastion_in_each_deployment_shape() {
    let cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/prod";
    let task = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c";
    let nat = ["203.0.113.7/32".to_string()];
    let endpoints = ["vpce-0a1b2c3d".to_string()];
    let perimeter = worker::aws::perimeter::Perimeter {
        in_vpc: true,
        exec_through_vpc_endpoint: true,
        egress_cidrs: &nat,
        vpc_endpoint_ids: &endpoints,
    };
    let policy = exec_policy(cluster, task, "app", "web", &perimeter.statements());
    // What AWS puts in the context of a call made with the bastion's instance credentials.
    let instance = serde_json::json!({
        "ec2:SourceInstanceARN": ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0bastion"],
        "aws:ec2InstanceSourceVPC": ["vpc-0bastion"],
        "aws:ec2InstanceSourcePrivateIPv4": ["10.0.1.5"],
        "ecs:container-name": ["app"],
        "ecs:cluster": [cluster],
    });
    let with = |extra: serde_json::Value| {
        let mut c = instance.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let via_endpoint = |vpc: &str, ip: &str, vpce: &str| {
        with(serde_json::json!({"aws:SourceVpc": [vpc], "aws:VpcSourceIp": [ip], "aws:SourceVpce": [vpce]}))
    };
    let via_nat = |ip: &str| with(serde_json::json!({"aws:SourceIp": [ip]}));
    let case = |name: &str, action: &str, resource: &str, context: serde_json::Value, want: &str| serde_json::json!({"name": name, "action": action, "resource": resource, "context": context, "want": want});
    let agent = "ssm:UpdateInstanceInformation";
    let cases = serde_json::json!({"cases": [
        case("exec from the bastion through its endpoint", "ecs:ExecuteCommand", task, via_endpoint("vpc-0bastion", "10.0.1.5", "vpce-0a1b2c3d"), "allow"),
        case("exec from another VPC", "ecs:ExecuteCommand", task, via_endpoint("vpc-0other", "10.9.0.1", "vpce-0a1b2c3d"), "explicit-deny"),
        case("exec from another address in its VPC", "ecs:ExecuteCommand", task, via_endpoint("vpc-0bastion", "10.0.1.99", "vpce-0a1b2c3d"), "explicit-deny"),
        case("exec through someone else's endpoint", "ecs:ExecuteCommand", task, via_endpoint("vpc-0bastion", "10.0.1.5", "vpce-0ffff"), "explicit-deny"),
        case("exec through the NAT", "ecs:ExecuteCommand", task, via_nat("203.0.113.7"), "explicit-deny"),
        case("the agent through the NAT", agent, "*", via_nat("203.0.113.7"), "allow"),
        case("the agent's credentials on a laptop", agent, "*", via_nat("198.51.100.9"), "explicit-deny"),
        case("an AWS service on the role's behalf", agent, "*", with(serde_json::json!({"aws:SourceIp": ["198.51.100.9"], "aws:ViaAWSService": ["true"]})), "allow"),
    ]});
    harness::iam::assert_outcomes(&policy, &cases);
}
