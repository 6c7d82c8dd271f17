//! The Terraform in `deploy/terraform` run for real against the emulator: `fmt` clean, `init`
//! from the offline provider mirror, `validate`, `plan`, `apply` of the example root (the module
//! plus the bot's instance), the resources checked in the emulator with their policy documents,
//! a second `plan` with no changes, and `destroy`.
//!
//! Needs `terraform` (PATH or `FARGATE_CONNECT_TERRAFORM`) and a provider mirror holding
//! hashicorp/aws 5.x (`FARGATE_CONNECT_TF_PLUGINS`, default `/opt/tf-plugins`). Without them the
//! test is ignored with that reason (`tests/build.rs`); with FARGATE_CONNECT_REQUIRE_TOOLS set
//! (CI) it fails instead, naming what is missing.

use harness::app::TempDir;
use harness::moto::{moto, new_account, repo_root};
use harness::seed::aws_for;
use std::path::{Path, PathBuf};
use std::process::Command;

const REGION: &str = "eu-west-1";

fn terraform_binary() -> String {
    std::env::var("FARGATE_CONNECT_TERRAFORM").unwrap_or_else(|_| "terraform".into())
}

fn plugin_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("FARGATE_CONNECT_TF_PLUGINS").unwrap_or_else(|_| "/opt/tf-plugins".into()));
    assert!(
        dir.join("registry.terraform.io/hashicorp/aws").is_dir(),
        "no hashicorp/aws provider under {} (set FARGATE_CONNECT_TF_PLUGINS to an offline provider mirror)",
        dir.display()
    );
    dir
}

/// Runs `terraform <args>` in `dir`; returns (exit code, stdout + stderr).
fn terraform(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(terraform_binary())
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {} ({e}); install Terraform or set FARGATE_CONNECT_TERRAFORM", terraform_binary())
        });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, text) = terraform(dir, args);
    assert_eq!(code, 0, "terraform {args:?} failed:\n{text}");
    text
}

/// `deploy/iam/bot-policy.json` is the bot's policy as the module renders it, with the
/// account, region, partition and bastion security group as `${…}` placeholders: the emulator's
/// front enforces it on the bot in every test (`harness::iam`). It must stay the module's:
/// `FARGATE_CONNECT_BLESS=1` rewrites it from the module.
async fn assert_policy_template(policy: &serde_json::Value, account: &str, aws: &worker::aws::Aws) {
    let groups = aws
        .ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values("fargate-connect-bastion").build())
        .send()
        .await
        .unwrap();
    let group = groups.security_groups()[0].group_id().unwrap().to_string();
    let text = serde_json::to_string_pretty(policy)
        .unwrap()
        .replace(&group, "${bastion_security_group}")
        .replace(account, "${account}")
        .replace(REGION, "${region}")
        .replace("arn:aws:", "arn:${partition}:")
        + "\n";
    let path = repo_root().join("deploy/iam/bot-policy.json");
    if std::env::var_os("FARGATE_CONNECT_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        kept, text,
        "deploy/iam/bot-policy.json is not the module's policy: FARGATE_CONNECT_BLESS=1 rewrites it"
    );
}

/// The provider pointed at the emulator: every endpoint there, the account named by an
/// `ACCT<id>` access key (Terraform cannot send the account header).
fn emulator_provider(region: &str, account: &str) -> String {
    let endpoint = &moto().endpoint;
    format!(
        r#"provider "aws" {{
  region                      = "{region}"
  access_key                  = "ACCT{account}"
  secret_key                  = "emulator"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {{
    ec2 = "{endpoint}"
    iam = "{endpoint}"
    sts = "{endpoint}"
    ssm = "{endpoint}"
    ecs = "{endpoint}"
    rds = "{endpoint}"
    secretsmanager = "{endpoint}"
    logs = "{endpoint}"
    events = "{endpoint}"
    elbv2 = "{endpoint}"
  }}
}}
"#
    )
}

/// Runs the IAM lint (`deploy/iam/lint.py`, parliament from the emulator's venv) on `inputs`.
fn lint_iam(inputs: &[&Path]) {
    let python = harness::moto::ensure_venv();
    let out = Command::new(&python)
        .arg(repo_root().join("deploy/iam/lint.py"))
        .args(inputs)
        .output()
        .expect("the IAM lint runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the IAM lint failed:\n{text}");
}

/// The actions of the README's "What the bot needs in AWS" (the `service:Action` names in it)
/// are exactly those of the bot's policy.
fn assert_readme_lists_the_bot_policy(policy: &serde_json::Value) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme.split("## What the bot needs in AWS").nth(1).expect("README: What the bot needs in AWS");
    let section = section.split("\n#").next().unwrap();
    // `service:Action` (condition keys such as `ecs:cluster` start lower-case).
    let is_action = |w: &&str| {
        w.split_once(':').is_some_and(|(service, action)| {
            !service.is_empty()
                && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && action.starts_with(|c: char| c.is_ascii_uppercase())
                && action.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    let mut listed: Vec<String> = section.split('`').skip(1).step_by(2).filter(is_action).map(str::to_string).collect();
    listed.sort();
    listed.dedup();
    let mut granted: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        })
        .collect();
    granted.sort();
    granted.dedup();
    assert_eq!(listed, granted, "README's \"What the bot needs in AWS\" and the module's bot policy differ");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_name() == ".terraform" || entry.file_name().to_string_lossy().starts_with("terraform.tfstate") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn decode(document: &str) -> serde_json::Value {
    let text = if document.contains('%') {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={document}")).unwrap()[0].1.clone()
    } else {
        document.to_string()
    };
    serde_json::from_str(&text).unwrap()
}

fn statement<'a>(policy: &'a serde_json::Value, sid: &str) -> &'a serde_json::Value {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_terraform,
    ignore = "SKIPPED: terraform or its hashicorp/aws mirror not found (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)"
)]
async fn the_module_and_example_apply_replan_clean_and_destroy_against_the_emulator() {
    let plugins = plugin_dir();
    let repo = repo_root();
    let module = repo.join("deploy/terraform");
    let (code, text) = terraform(&module, &["fmt", "-check", "-recursive", "-diff"]);
    assert_eq!(code, 0, "deploy/terraform is not `terraform fmt` clean:\n{text}");

    // Its own account in the emulator; Terraform names it with an ACCT<id> access key (the
    // emulator's front maps that to the account, as tests do with a header).
    let account = new_account();
    let aws = aws_for(&account);
    bot::install_crypto_provider();
    let vpcs = aws
        .ec2
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .unwrap();
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let subnets: Vec<String> = subnets.subnets().iter().map(|s| s.subnet_id().unwrap().to_string()).collect();
    let tables = aws
        .ec2
        .describe_route_tables()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let route_table = tables.route_tables()[0].route_table_id().unwrap().to_string();

    // A copy of deploy/ (the example refers to the module and the systemd unit by relative
    // path), with the provider pointed at the emulator by an override file.
    let work = TempDir::new();
    copy_dir(&module, &work.0.join("deploy/terraform"));
    copy_dir(&repo.join("deploy/systemd"), &work.0.join("deploy/systemd"));
    let root = work.0.join("deploy/terraform/examples/ec2");
    std::fs::write(root.join("emulator_override.tf"), emulator_provider(REGION, &account)).unwrap();
    std::fs::write(
        root.join("test.tfvars"),
        format!(
            r#"region               = "{REGION}"
vpc_id               = "{vpc}"
bot_subnet_id        = "{}"
bastion_subnet_ids   = ["{}"]
default_cluster      = "prod"
release_url          = "https://releases.example.com/fargate-connect"
release_sha256       = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
create_vpc_endpoints = true
endpoint_subnet_ids  = ["{}"]
endpoint_route_table_ids = ["{route_table}"]
ingress_cidrs        = ["10.0.0.0/16"]
"#,
            subnets[0], subnets[1], subnets[1]
        ),
    )
    .unwrap();

    let plugin_arg = format!("-plugin-dir={}", plugins.display());
    ok(&root, &["init", "-input=false", "-no-color", &plugin_arg]);
    ok(&root, &["validate", "-no-color"]);
    let plan = ok(&root, &["plan", "-input=false", "-no-color", "-var-file=test.tfvars", "-out=tfplan"]);
    assert!(plan.contains("Plan: 22 to add, 0 to change, 0 to destroy"), "{plan}");
    ok(&root, &["apply", "-input=false", "-no-color", "tfplan"]);

    // In the emulator: the bot's role, least privilege.
    let role = aws.iam.get_role().role_name("fargate-connect-bot").send().await.unwrap();
    let role = role.role().unwrap();
    // Not under the path it administers: it can neither pass nor rewrite its own role.
    assert_eq!(role.path(), "/fargate-connect-bot/");
    let trust = decode(role.assume_role_policy_document().unwrap());
    assert_eq!(trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
    let inline = aws
        .iam
        .get_role_policy()
        .role_name("fargate-connect-bot")
        .policy_name("fargate-connect-bot")
        .send()
        .await
        .unwrap();
    let policy = decode(inline.policy_document());
    assert_policy_template(&policy, &account, &aws).await;
    let boundary_arn = format!("arn:aws:iam::{account}:policy/fargate-connect/fargate-connect-bastion-boundary");
    let create = statement(&policy, "CreateBastionRolesWithTheBoundary");
    assert_eq!(create["Condition"]["StringEquals"]["iam:PermissionsBoundary"], boundary_arn.as_str());
    assert_eq!(
        create["Resource"],
        format!("arn:aws:iam::{account}:role/fargate-connect/fargate-connect-fc-*").as_str()
    );
    let launch = statement(&policy, "LaunchTaggedBastions");
    assert_eq!(launch["Condition"]["Null"]["aws:RequestTag/fargate-connect:request-id"], "false");
    let terminate = statement(&policy, "TerminateOnlyBastions");
    assert_eq!(terminate["Condition"]["Null"]["ec2:ResourceTag/fargate-connect:request-id"], "false");
    let tag = statement(&policy, "TagOnlyAtLaunch");
    assert_eq!(tag["Condition"]["StringEquals"]["ec2:CreateAction"], "RunInstances");
    let pass = statement(&policy, "PassBastionRolesToEc2Only");
    assert_eq!(pass["Condition"]["StringEquals"]["iam:PassedToService"], "ec2.amazonaws.com");
    // No statement grants everything, and no write action is on "*" but tagging at launch.
    for s in policy["Statement"].as_array().unwrap() {
        let actions: Vec<String> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
            other => panic!("unexpected Action {other}"),
        };
        assert!(actions.iter().all(|a| !a.ends_with(":*") && a != "*"), "a wildcard action in {s}");
    }

    // The boundary: ECS Exec and the SSM agent, nothing else.
    let boundary = aws.iam.get_policy().policy_arn(&boundary_arn).send().await.unwrap();
    let version = boundary.policy().unwrap().default_version_id().unwrap().to_string();
    let document = aws.iam.get_policy_version().policy_arn(&boundary_arn).version_id(version).send().await.unwrap();
    let boundary_doc = decode(document.policy_version().unwrap().document().unwrap());
    let exec = statement(&boundary_doc, "EcsExecIntoTasks");
    assert_eq!(exec["Action"], "ecs:ExecuteCommand", "{exec}");
    let list = statement(&boundary_doc, "ListTasksInTheClusters");
    assert_eq!(list["Resource"], "*", "ListTasks is authorised on * narrowed by ecs:cluster: {list}");
    assert!(list["Condition"]["ArnLike"]["ecs:cluster"].to_string().contains(":cluster/*"), "{list}");
    assert!(!boundary_doc.to_string().contains("iam:"), "the boundary grants no IAM: {boundary_doc}");

    // The bastions' security group: no ingress at all, HTTPS out.
    let groups = aws
        .ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values("fargate-connect-bastion").build())
        .send()
        .await
        .unwrap();
    let group = &groups.security_groups()[0];
    assert!(group.ip_permissions().is_empty(), "no inbound rule: {:?}", group.ip_permissions());
    let egress = group.ip_permissions_egress();
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!((egress[0].from_port(), egress[0].to_port()), (Some(443), Some(443)));

    // The bot's instance: IMDSv2 only, no key pair, the bot's role, no public address asked.
    let instances = aws
        .ec2
        .describe_instances()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values("fargate-connect-bot").build())
        .send()
        .await
        .unwrap();
    let instance = &instances.reservations()[0].instances()[0];
    let metadata = instance.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    assert!(instance.key_name().is_none(), "no key pair");
    let profile = instance.iam_instance_profile().and_then(|p| p.arn()).unwrap();
    assert!(profile.ends_with(":instance-profile/fargate-connect-bot/fargate-connect-bot"), "{profile}");

    // The SSM interface endpoints, and S3's gateway on the bastions' route table.
    let endpoints = aws.ec2.describe_vpc_endpoints().send().await.unwrap();
    let mut services: Vec<String> =
        endpoints.vpc_endpoints().iter().map(|e| e.service_name().unwrap().to_string()).collect();
    services.sort();
    assert_eq!(
        services,
        [
            "com.amazonaws.eu-west-1.ec2messages",
            "com.amazonaws.eu-west-1.ecs",
            "com.amazonaws.eu-west-1.s3",
            "com.amazonaws.eu-west-1.ssm",
            "com.amazonaws.eu-west-1.ssmmessages"
        ]
    );

    // Private DNS sends the whole VPC to those endpoints: they admit HTTPS from the VPC's CIDR,
    // not only from the bastions (the bot's own secrets fetch goes there too).
    let vpc_cidr =
        aws.ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap().vpcs()[0].cidr_block().unwrap().to_string();
    let endpoint_groups = aws
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder().name("group-name").values("fargate-connect-ssm-endpoints").build(),
        )
        .send()
        .await
        .unwrap();
    let ingress = format!("{:?}", endpoint_groups.security_groups()[0].ip_permissions());
    assert!(ingress.contains(&vpc_cidr), "the endpoints do not admit the VPC ({vpc_cidr}): {ingress}");

    // The ledger lives on its own encrypted volume, attached to the bot's instance.
    let volumes = aws
        .ec2
        .describe_volumes()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values("fargate-connect-ledger").build())
        .send()
        .await
        .unwrap();
    let ledger = &volumes.volumes()[0];
    assert_eq!(ledger.encrypted(), Some(true));
    assert!(
        ledger.attachments().iter().any(|a| a.instance_id() == instance.instance_id()),
        "the ledger volume is not attached to the bot: {:?}",
        ledger.attachments()
    );

    // Every IAM document of the module and the example passes the IAM lint (parliament), with
    // only the reviewed exceptions of deploy/iam/parliament-exceptions.yml.
    let state = ok(&root, &["show", "-json", "-no-color"]);
    let state_file = work.0.join("state.json");
    std::fs::write(&state_file, &state).unwrap();
    lint_iam(&[&state_file]);
    // The README's list of what the bot may do is the module's, action for action.
    assert_readme_lists_the_bot_policy(&policy);
    // The tag guard denies writing or removing fargate-connect:* tags to anyone but the bot.
    let state_json: serde_json::Value = serde_json::from_str(&state).unwrap();
    let guard = state_json["values"]["root_module"]["child_modules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["resources"].as_array().unwrap())
        .find(|r| r["address"] == "module.fargate_connect.data.aws_iam_policy_document.tag_guard")
        .expect("the tag guard in the state")["values"]["json"]
        .as_str()
        .unwrap()
        .to_string();
    assert_tag_guard(&guard, &format!("arn:aws:iam::{account}:role/fargate-connect-bot/fargate-connect-bot"));
    // The boundary carries the credential perimeter (endpoints made here: exec only through one).
    let boundary_doc = aws.iam.get_policy().policy_arn(&boundary_arn).send().await.unwrap();
    let version = boundary_doc.policy().unwrap().default_version_id().unwrap().to_string();
    let version = aws.iam.get_policy_version().policy_arn(&boundary_arn).version_id(version).send().await.unwrap();
    let boundary = decode(version.policy_version().unwrap().document().unwrap());
    assert_boundary_perimeter(&boundary.to_string(), &account);

    // Re-plan: nothing to change.
    let (code, text) =
        terraform(&root, &["plan", "-input=false", "-no-color", "-detailed-exitcode", "-var-file=test.tfvars"]);
    assert_eq!(code, 0, "a second plan wants changes:\n{text}");

    // Destroy: nothing left.
    ok(&root, &["destroy", "-auto-approve", "-input=false", "-no-color", "-var-file=test.tfvars"]);
    assert!(aws.iam.get_role().role_name("fargate-connect-bot").send().await.is_err(), "the bot role is gone");
    assert!(aws.iam.get_policy().policy_arn(&boundary_arn).send().await.is_err(), "the boundary is gone");
    let state = aws.ec2.describe_instances().instance_ids(instance.instance_id().unwrap()).send().await.unwrap();
    let name = state.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string();
    assert!(name == "terminated" || name == "shutting-down", "the bot's instance is {name}");
}

/// The module's boundary, evaluated in the request contexts of the bastion's calls: its
/// credentials work on the bastion through its VPC's endpoint, not from another VPC or address,
/// and ECS Exec not through a NAT.
fn assert_boundary_perimeter(boundary: &str, account: &str) {
    let task = format!("arn:aws:ecs:{REGION}:{account}:task/prod/0f1e2d3c");
    let instance = serde_json::json!({
        "ec2:SourceInstanceARN": [format!("arn:aws:ec2:{REGION}:{account}:instance/i-0bastion")],
        "aws:ec2InstanceSourceVPC": ["vpc-0bastion"],
        "aws:ec2InstanceSourcePrivateIPv4": ["10.0.1.5"],
    });
    let with = |extra: serde_json::Value| {
        let mut c = instance.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let case = |name: &str, context: serde_json::Value, want: &str| serde_json::json!({"name": name, "action": "ecs:ExecuteCommand", "resource": task, "context": context, "want": want});
    let cases = serde_json::json!({"cases": [
        case("on the bastion, through its endpoint", with(serde_json::json!({"aws:SourceVpc": ["vpc-0bastion"], "aws:VpcSourceIp": ["10.0.1.5"]})), "allow"),
        case("from another VPC", with(serde_json::json!({"aws:SourceVpc": ["vpc-0other"], "aws:VpcSourceIp": ["10.0.1.5"]})), "explicit-deny"),
        case("from another address", with(serde_json::json!({"aws:SourceVpc": ["vpc-0bastion"], "aws:VpcSourceIp": ["10.0.1.6"]})), "explicit-deny"),
        case("through no endpoint", with(serde_json::json!({"aws:SourceIp": ["198.51.100.9"]})), "explicit-deny"),
    ]});
    harness::iam::assert_outcomes(boundary, &cases);
}

/// The module's tag guard, evaluated by the emulator's evaluator (`deploy/iam/evaluate.py`).
fn assert_tag_guard(guard: &str, bot_role: &str) {
    let instance = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0bastion";
    let role = "arn:aws:iam::123456789012:role/fargate-connect/fargate-connect-fc-abc";
    let person = "arn:aws:iam::123456789012:role/people";
    let case = |name: &str, action: &str, resource: &str, who: &str, keys: &[&str], want: &str| {
        serde_json::json!({"name": name, "action": action, "resource": resource, "want": want,
            "context": {"aws:PrincipalArn": [who], "aws:TagKeys": keys}})
    };
    let cases = serde_json::json!({"cases": [
        case("a person tags an instance as someone's bastion", "ec2:CreateTags", instance, person, &["fargate-connect:requester"], "explicit-deny"),
        case("a person removes the managed tag", "ec2:DeleteTags", instance, person, &["fargate-connect:managed"], "explicit-deny"),
        case("a person retags a bastion's role", "iam:TagRole", role, person, &["Owner", "fargate-connect:requester"], "explicit-deny"),
        // "implicit-deny": the guard does not stand in the way (it only denies).
        case("a person's own tags", "ec2:CreateTags", instance, person, &["Name"], "implicit-deny"),
        case("the bot tags at launch", "ec2:CreateTags", instance, bot_role, &["fargate-connect:requester"], "implicit-deny"),
    ]});
    harness::iam::assert_outcomes(guard, &cases);
}

/// Plans the module alone in `region` against the emulator, with `variables` (HCL), and returns
/// `terraform show -json` of the plan.
async fn plan_module(region: &str, variables: &str) -> serde_json::Value {
    module_alone(region, variables, Mode::Plan).await
}

/// Applies the module alone likewise and returns `terraform show -json` of the state.
async fn apply_module(region: &str, variables: &str) -> serde_json::Value {
    module_alone(region, variables, Mode::Apply).await
}

/// Plans the module alone likewise, which must fail; returns what Terraform said.
async fn refused_plan(region: &str, variables: &str) -> String {
    module_alone(region, variables, Mode::Refused).await.as_str().unwrap().to_string()
}

#[derive(PartialEq, Eq)]
enum Mode {
    Plan,
    Apply,
    Refused,
}

async fn module_alone(region: &str, variables: &str, mode: Mode) -> serde_json::Value {
    let plugins = plugin_dir();
    // A fresh account: moto makes its default VPC on first use, in any region.
    let account = new_account();
    let work = TempDir::new();
    copy_dir(&repo_root().join("deploy/terraform"), &work.0.join("module"));
    let root = work.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("main.tf"),
        format!(
            r#"terraform {{
  required_providers {{
    aws = {{ source = "hashicorp/aws" }}
  }}
}}
{provider}
data "aws_vpc" "default" {{
  default = true
}}
module "fargate_connect" {{
  source = "../module"
  vpc_id = data.aws_vpc.default.id
{variables}
}}
"#,
            provider = emulator_provider(region, &account),
        ),
    )
    .unwrap();
    let plugin_arg = format!("-plugin-dir={}", plugins.display());
    ok(&root, &["init", "-input=false", "-no-color", &plugin_arg]);
    if mode == Mode::Refused {
        let (code, text) = terraform(&root, &["plan", "-input=false", "-no-color"]);
        assert_ne!(code, 0, "the plan should have been refused:\n{text}");
        return serde_json::Value::String(text);
    }
    ok(&root, &["plan", "-input=false", "-no-color", "-out=tfplan"]);
    if mode == Mode::Apply {
        // Applied: every document is known (a plan leaves those naming new ARNs unknown).
        ok(&root, &["apply", "-input=false", "-no-color", "tfplan"]);
        return serde_json::from_str(&ok(&root, &["show", "-json", "-no-color"])).unwrap();
    }
    let shown = ok(&root, &["show", "-json", "-no-color", "tfplan"]);
    std::fs::write(root.join("plan.json"), &shown).unwrap();
    // The documents a plan can render pass the IAM lint too.
    let out = Command::new(harness::moto::ensure_venv())
        .arg(repo_root().join("deploy/iam/lint.py"))
        .arg("--allow-unknown")
        .arg(root.join("plan.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the IAM lint failed on the plan:\n{}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_str(&shown).unwrap()
}

/// Every value of the plan (planned resources and data sources read while planning) at
/// `address`.
fn planned<'a>(plan: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    fn find<'a>(module: &'a serde_json::Value, address: &str) -> Option<&'a serde_json::Value> {
        let here = module["resources"].as_array().into_iter().flatten().find(|r| r["address"] == address);
        here.map(|r| &r["values"])
            .or_else(|| module["child_modules"].as_array().into_iter().flatten().find_map(|child| find(child, address)))
    }
    find(&plan["prior_state"]["values"]["root_module"], address)
        .or_else(|| find(&plan["planned_values"]["root_module"], address))
        .unwrap_or_else(|| panic!("{address} is not in the plan"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_terraform,
    ignore = "SKIPPED: terraform or its hashicorp/aws mirror not found (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)"
)]
async fn named_clusters_give_their_own_task_and_service_arns() {
    let plan = plan_module(
        REGION,
        r#"  ecs_cluster_arns = ["arn:aws:ecs:eu-west-1:123456789012:cluster/prod", "arn:aws:ecs:eu-west-1:123456789012:cluster/staging"]"#,
    )
    .await;
    let boundary = decode(
        planned(&plan, "module.fargate_connect.data.aws_iam_policy_document.boundary")["json"].as_str().unwrap(),
    );
    let exec = statement(&boundary, "EcsExecIntoTasks");
    let resources = exec["Resource"].to_string();
    for arn in [
        "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
        "arn:aws:ecs:eu-west-1:123456789012:task/prod/*",
        "arn:aws:ecs:eu-west-1:123456789012:task/staging/*",
    ] {
        assert!(resources.contains(arn), "{arn} not in {resources}");
    }
    assert!(!resources.contains("task/prod\""), "a task ARN without /*: {resources}");
    let list = statement(&boundary, "ListTasksInTheClusters");
    assert_eq!(list["Resource"], "*");
    assert!(list["Condition"]["ArnLike"]["ecs:cluster"].to_string().contains("cluster/staging"), "{list}");
}

/// How many clusters the module's IAM documents hold. IAM counts a policy's characters
/// without white space: at most 6,144 for a managed policy (the boundary), 10,240 for a role's
/// inline policies together (the bot's). Each cluster costs both a fixed number of characters
/// (its ARN in several statements); the README states the number of clusters with 100-character
/// ARNs that fit, with every optional rule on, and this holds it to that: one cluster and twenty
/// are applied, the cost per cluster measured, and the stated number must fit and one more must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_terraform,
    ignore = "SKIPPED: terraform or its hashicorp/aws mirror not found (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)"
)]
async fn the_readme_says_how_many_clusters_fit_iams_policy_size_limits() {
    // 100-character cluster ARNs.
    let arn = |n: usize| {
        format!("\"arn:aws:ecs:eu-west-1:123456789012:cluster/{}-{n:02}\"", "platform-production-eu-west".repeat(2))
    };
    let variables = |count: usize| {
        format!(
            r#"  ecs_cluster_arns         = [{}]
  exec_only_through_vpc_endpoint = true
  bastion_egress_cidrs     = ["203.0.113.7/32", "203.0.113.8/32", "198.51.100.0/28"]
  allowed_vpc_endpoint_ids = ["vpce-0a1b2c3d4e5f60718", "vpce-0a1b2c3d4e5f60719"]
  session_kms_key_arns     = ["arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"]
  session_log_bucket       = "audit-sessions-123456789012-eu-west-1"
  session_log_group        = "/aws/ssm/sessions/production""#,
            (0..count).map(arn).collect::<Vec<_>>().join(", ")
        )
    };
    let (vars_one, vars_twenty) = (variables(1), variables(20));
    let (one, twenty) = tokio::join!(apply_module(REGION, &vars_one), apply_module(REGION, &vars_twenty));
    let size = |state: &serde_json::Value, address: &str| -> i64 {
        let modules = state["values"]["root_module"]["child_modules"].as_array().unwrap();
        let found = modules.iter().flat_map(|m| m["resources"].as_array().unwrap()).find(|r| r["address"] == address);
        let json = found.unwrap_or_else(|| panic!("{address} not in the state"))["values"]["json"].as_str().unwrap();
        json.chars().filter(|c| !c.is_whitespace()).count() as i64
    };
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for (address, limit, what) in [
        ("module.fargate_connect.data.aws_iam_policy_document.boundary", 6144, "the boundary"),
        ("module.fargate_connect.data.aws_iam_policy_document.bot", 10240, "the bot's policy"),
    ] {
        let (base, twenty) = (size(&one, address), size(&twenty, address));
        let per = (twenty - base) / 19;
        let fits = (limit - base) / per + 1;
        println!("{what}: {base} characters with one cluster, {per} more per cluster: {fits} fit in {limit}");
        let stated = format!("{what} holds {fits} ");
        assert!(readme.contains(&stated), "README should say \"{stated}clusters…\" (measured)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_terraform,
    ignore = "SKIPPED: terraform or its hashicorp/aws mirror not found (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)"
)]
async fn in_aws_cn_every_arn_and_endpoint_is_the_china_partitions() {
    // Endpoints without a way to S3 for the plugin's download: refused at plan, not warned.
    let refused = refused_plan("cn-north-1", "  create_vpc_endpoints = true\n  endpoint_subnet_ids  = []").await;
    let said = refused.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(said.contains("no S3 gateway endpoint is made"), "{refused}");
    let plan = plan_module(
        "cn-north-1",
        "  create_vpc_endpoints = true\n  endpoint_subnet_ids  = []\n  s3_reachable_without_endpoint = true",
    )
    .await;
    let boundary = decode(
        planned(&plan, "module.fargate_connect.data.aws_iam_policy_document.boundary")["json"].as_str().unwrap(),
    );
    let text = boundary.to_string();
    assert!(text.contains("arn:aws-cn:ecs:cn-north-1:"), "{text}");
    assert!(!text.contains("arn:aws:"), "a commercial ARN in aws-cn: {text}");
    let mut services = Vec::new();
    for key in ["ssm", "ssmmessages", "ec2messages", "ecs"] {
        let address = format!("module.fargate_connect.aws_vpc_endpoint.interface[\"{key}\"]");
        services.push(planned(&plan, &address)["service_name"].as_str().unwrap().to_string());
    }
    assert!(services.iter().all(|s| s.starts_with("cn.com.amazonaws.cn-north-1.")), "{services:?}");
}

/// An ACM certificate in the emulator's account (requested, not yet issued: the emulator's ALB
/// takes it; AWS's needs an issued one), through boto3 from the emulator's venv.
fn emulator_certificate(account: &str, domain: &str) -> String {
    let python = harness::moto::ensure_venv();
    let script = format!(
        "import boto3\n\
         acm = boto3.client('acm', region_name='{REGION}', endpoint_url='{}', \
         aws_access_key_id='ACCT{account}', aws_secret_access_key='emulator')\n\
         print(acm.request_certificate(DomainName='{domain}', ValidationMethod='DNS')['CertificateArn'])",
        moto().endpoint
    );
    let out = Command::new(python).args(["-c", &script]).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The ECS example in HTTP mode: an internet-facing ALB (TLS 1.2+ with the operator's
/// certificate, malformed headers dropped) forwarding to the tasks' one port, which only the
/// ALB's group may reach; the tasks serve Slack's requests there with the signing secret.
async fn check_http_mode(aws: &worker::aws::Aws, state: &serde_json::Value, tasks_sg: &str, certificate: &str) {
    let alb = &in_state(state, "aws_lb.slack[0]")["values"];
    assert_eq!((alb["internal"].as_bool(), alb["load_balancer_type"].as_str()), (Some(false), Some("application")));
    assert_eq!(alb["drop_invalid_header_fields"], true);
    let listener = &in_state(state, "aws_lb_listener.https[0]")["values"];
    assert_eq!((listener["port"].as_i64(), listener["protocol"].as_str()), (Some(443), Some("HTTPS")));
    assert_eq!(listener["certificate_arn"], certificate);
    assert_eq!(listener["ssl_policy"], "ELBSecurityPolicy-TLS13-1-2-2021-06");
    let group = &in_state(state, "aws_lb_target_group.bot[0]")["values"];
    assert_eq!((group["target_type"].as_str(), group["port"].as_i64()), (Some("ip"), Some(8080)));
    assert_eq!(group["health_check"][0]["path"], "/healthz");

    // The tasks' group lets in the ALB's group on 8080, and nothing else.
    let alb_sg = alb["security_groups"][0].as_str().unwrap();
    let groups = aws.ec2.describe_security_groups().group_ids(tasks_sg).send().await.unwrap();
    let ingress = groups.security_groups()[0].ip_permissions();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!((ingress[0].from_port(), ingress[0].to_port()), (Some(8080), Some(8080)));
    assert_eq!(ingress[0].user_id_group_pairs()[0].group_id(), Some(alb_sg));
    assert!(ingress[0].ip_ranges().is_empty(), "no address range reaches the tasks directly");

    let services = aws.ecs.describe_services().cluster("fargate-connect-bot").services("fargate-connect-bot").send();
    let services = services.await.unwrap();
    let balancers = services.services()[0].load_balancers();
    assert_eq!(balancers.len(), 1);
    assert_eq!((balancers[0].container_name(), balancers[0].container_port()), (Some("bot"), Some(8080)));

    let definition = aws.ecs.describe_task_definition().task_definition("fargate-connect-bot").send().await.unwrap();
    let container = &definition.task_definition().unwrap().container_definitions()[0];
    assert_eq!(container.port_mappings()[0].container_port(), Some(8080));
    let names: Vec<&str> = container.secrets().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["PGPASSWORD", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]);
    let toml = container.environment().iter().find(|e| e.name() == Some("FARGATE_CONNECT_CONFIG_TOML"));
    let toml = toml.and_then(|e| e.value()).expect("the config is in the environment");
    let file = bot::config::parse_file(toml, "$FARGATE_CONNECT_CONFIG_TOML").expect("the written config parses");
    assert_eq!(file.slack.mode, bot::config::SlackMode::Http);
    assert_eq!(file.server.bind.to_string(), "0.0.0.0:8080");
    assert!(file.server.ops_bind.ip().is_loopback(), "the operators' listener stays on loopback");
    let secrets = bot::config::SlackSecrets {
        signing_secret: Some(bot::config::Secret::new("s")),
        bot_token: bot::config::Secret::new("xoxb-1"),
        app_token: None,
    };
    let config = bot::config::Config::from_secrets(file, secrets);
    assert!(config.is_ok(), "{:?}", config.err());
}

/// The resource at `address` in `terraform show -json` of applied state.
fn in_state<'a>(state: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    state["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} is not in the state"))
}

#[cfg_attr(
    fc_skip_terraform,
    ignore = "SKIPPED: terraform or its hashicorp/aws mirror not found (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ecs_example_applies_replans_clean_and_destroys_against_the_emulator() {
    let plugins = plugin_dir();
    let repo = repo_root();
    let account = new_account();
    let aws = aws_for(&account);
    bot::install_crypto_provider();
    let vpc_filter = aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build();
    let vpcs = aws.ec2.describe_vpcs().filters(vpc_filter).send().await.unwrap();
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
    let subnet_filter = aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc).build();
    let subnets = aws.ec2.describe_subnets().filters(subnet_filter).send().await.unwrap();
    let subnets: Vec<(String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| (s.subnet_id().unwrap().to_string(), s.availability_zone().unwrap().to_string()))
        .collect();
    assert_ne!(subnets[0].1, subnets[1].1, "two zones");

    let work = TempDir::new();
    copy_dir(&repo.join("deploy/terraform"), &work.0.join("deploy/terraform"));
    let root = work.0.join("deploy/terraform/examples/ecs");
    std::fs::write(root.join("emulator_override.tf"), emulator_provider(REGION, &account)).unwrap();
    std::fs::write(
        root.join("test.tfvars"),
        format!(
            r#"region                 = "{REGION}"
vpc_id                 = "{vpc}"
private_subnet_ids     = ["{}", "{}"]
bastion_subnet_ids     = ["{}"]
default_cluster        = "prod"
image                  = "{account}.dkr.ecr.{REGION}.amazonaws.com/fargate-connect:1.0.0"
db_deletion_protection = false
db_final_snapshot      = false
policy_toml            = "[policy]\nadmins = [\"S0PLATFORM\"]\n\n[[policy.services]]\nname = \"web\"\nallow = [\"S0DEVELOPERS\"]"
"#,
            subnets[0].0, subnets[1].0, subnets[0].0
        ),
    )
    .unwrap();

    let plugin_arg = format!("-plugin-dir={}", plugins.display());
    ok(&root, &["init", "-input=false", "-no-color", &plugin_arg]);
    ok(&root, &["validate", "-no-color"]);
    ok(&root, &["plan", "-input=false", "-no-color", "-var-file=test.tfvars", "-out=tfplan"]);
    ok(&root, &["apply", "-input=false", "-no-color", "tfplan"]);
    let state: serde_json::Value = serde_json::from_str(&ok(&root, &["show", "-json", "-no-color"])).unwrap();

    // Two bot tasks, Fargate, private subnets in two zones, no public address.
    let services = aws.ecs.describe_services().cluster("fargate-connect-bot").services("fargate-connect-bot").send();
    let services = services.await.unwrap();
    let service = &services.services()[0];
    assert_eq!(service.desired_count(), 2);
    assert_eq!(service.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let network = service.network_configuration().unwrap().awsvpc_configuration().unwrap();
    assert_eq!(network.subnets().len(), 2);
    assert_eq!(network.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));

    // The bot's security group lets nothing in (Socket Mode: no load balancer, no listener).
    let sg = network.security_groups()[0].clone();
    let groups = aws.ec2.describe_security_groups().group_ids(&sg).send().await.unwrap();
    assert!(groups.security_groups()[0].ip_permissions().is_empty(), "an inbound rule on the bot's tasks");

    // The task: the module's role, the config wholly from the environment, the secrets from
    // Secrets Manager, logs to CloudWatch, a read-only root, not root.
    let definition = aws.ecs.describe_task_definition().task_definition("fargate-connect-bot").send().await.unwrap();
    let definition = definition.task_definition().unwrap();
    assert!(definition.task_role_arn().unwrap().ends_with(":role/fargate-connect-bot/fargate-connect-bot"));
    let container = &definition.container_definitions()[0];
    assert!(container.port_mappings().is_empty(), "the bot's task listens for nothing");
    assert_eq!(container.readonly_root_filesystem(), Some(true));
    assert_eq!(container.user(), Some("10001:10001"));
    assert_eq!(container.log_configuration().unwrap().log_driver().as_str(), "awslogs");
    let toml = container
        .environment()
        .iter()
        .find(|e| e.name() == Some("FARGATE_CONNECT_CONFIG_TOML"))
        .and_then(|e| e.value())
        .expect("the config is in the environment");
    let file = bot::config::parse_file(toml, "$FARGATE_CONNECT_CONFIG_TOML").expect("the written config parses");
    assert_eq!(file.slack.mode, bot::config::SlackMode::Socket);
    // No endpoints made here: the bot does not demand one for ECS Exec (else every connect is
    // refused), and neither does the boundary.
    assert_eq!(file.aws.exec_through_vpc_endpoint, Some(false), "{toml}");
    assert!(file.database.url.starts_with("postgres://fargate_connect@"), "{}", file.database.url);
    assert!(file.database.url.contains("sslmode=verify-full"), "{}", file.database.url);
    assert!(!toml.contains("xoxb-") && !toml.contains("xapp-"), "no token in the config: {toml}");
    let url = &file.database.url;
    assert_eq!(&worker::ledger::redacted(url), url, "no password in the config's database URL");
    let secrets: Vec<(&str, &str)> = container.secrets().iter().map(|s| (s.name(), s.value_from())).collect();
    let names: Vec<&str> = secrets.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["PGPASSWORD", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"]);
    assert!(secrets.iter().all(|(_, from)| from.contains(":secretsmanager:")), "{secrets:?}");
    assert!(secrets[0].1.ends_with(":password::"), "the password key of RDS's secret: {}", secrets[0].1);
    // The whole config with the secrets as the task gets them validates.
    let config = bot::config::Config::from_secrets(
        file,
        bot::config::SlackSecrets {
            signing_secret: None,
            bot_token: bot::config::Secret::new("xoxb-1"),
            app_token: Some(bot::config::Secret::new("xapp-1")),
        },
    );
    assert!(config.is_ok(), "{:?}", config.err());

    // The ledger: PostgreSQL, Multi-AZ, encrypted, private, reachable from the bot only.
    let db = &in_state(&state, "aws_db_instance.ledger")["values"];
    assert_eq!(db["engine"], "postgres");
    assert_eq!(db["multi_az"], true);
    assert_eq!(db["storage_encrypted"], true);
    assert_eq!(db["publicly_accessible"], false);
    assert_eq!(db["manage_master_user_password"], true);
    let db_sg = db["vpc_security_group_ids"][0].as_str().unwrap().to_string();
    let db_groups = aws.ec2.describe_security_groups().group_ids(&db_sg).send().await.unwrap();
    let ingress = db_groups.security_groups()[0].ip_permissions();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!((ingress[0].from_port(), ingress[0].to_port()), (Some(5432), Some(5432)));
    assert_eq!(ingress[0].user_id_group_pairs()[0].group_id(), Some(sg.as_str()), "PostgreSQL from the bot only");

    // Each rotation of RDS's secret rolls the service onto the new password: the rule matches
    // that secret's RotationSucceeded, its target is the Automation document, which forces a
    // new deployment of this service and nothing else.
    let rule = &in_state(&state, "aws_cloudwatch_event_rule.db_password_rotated")["values"];
    let pattern: serde_json::Value = serde_json::from_str(rule["event_pattern"].as_str().unwrap()).unwrap();
    assert_eq!(pattern["detail"]["eventName"], serde_json::json!(["RotationSucceeded"]));
    let secret = db["master_user_secret"][0]["secret_arn"].as_str().unwrap();
    assert_eq!(pattern["detail"]["additionalEventData"]["SecretId"], serde_json::json!([secret]));
    let target = &in_state(&state, "aws_cloudwatch_event_target.redeploy")["values"];
    assert!(target["arn"].as_str().unwrap().ends_with(":automation-definition/fargate-connect-bot-redeploy:$DEFAULT"));
    // The document takes no parameters: an empty input, not the event EventBridge would pass.
    assert_eq!(target["input"], "{}");
    let document = &in_state(&state, "aws_ssm_document.redeploy")["values"];
    assert_eq!(document["document_type"], "Automation");
    let content: serde_json::Value = serde_yaml::from_str(document["content"].as_str().unwrap()).unwrap();
    let step = &content["mainSteps"][0];
    assert_eq!(
        (step["action"].as_str(), step["inputs"]["Api"].as_str()),
        (Some("aws:executeAwsApi"), Some("UpdateService"))
    );
    assert_eq!(step["inputs"]["forceNewDeployment"], true);
    assert_eq!(step["inputs"]["service"], "fargate-connect-bot");
    // What the step asks for is a call ECS takes: run it as the document would.
    let redeploy = aws.ecs.update_service().cluster(step["inputs"]["cluster"].as_str().unwrap());
    let redeploy = redeploy.service("fargate-connect-bot").force_new_deployment(true).send().await;
    assert!(redeploy.is_ok(), "{redeploy:?}");

    // The IAM documents pass the lint.
    let state_file = work.0.join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    lint_iam(&[&state_file]);

    let (code, text) =
        terraform(&root, &["plan", "-input=false", "-no-color", "-detailed-exitcode", "-var-file=test.tfvars"]);
    assert_eq!(code, 0, "a second plan wants changes:\n{text}");

    // HTTP mode, switched to in place: Slack posts to an ALB with the operator's certificate.
    let certificate = emulator_certificate(&account, "fargate-connect.example.com");
    std::fs::write(
        root.join("http.tfvars"),
        format!(
            "slack_mode = \"http\"\npublic_subnet_ids = [\"{}\", \"{}\"]\ncertificate_arn = \"{certificate}\"\n",
            subnets[0].0, subnets[1].0
        ),
    )
    .unwrap();
    let vars = ["-var-file=test.tfvars", "-var-file=http.tfvars"];
    ok(&root, &[&["apply", "-auto-approve", "-input=false", "-no-color"][..], &vars].concat());
    let state: serde_json::Value = serde_json::from_str(&ok(&root, &["show", "-json", "-no-color"])).unwrap();
    check_http_mode(&aws, &state, &sg, &certificate).await;
    std::fs::write(&state_file, state.to_string()).unwrap();
    lint_iam(&[&state_file]);
    let (code, text) =
        terraform(&root, &[&["plan", "-input=false", "-no-color", "-detailed-exitcode"][..], &vars].concat());
    assert_eq!(code, 0, "a second plan in HTTP mode wants changes:\n{text}");

    ok(&root, &[&["destroy", "-auto-approve", "-input=false", "-no-color"][..], &vars].concat());
    let left = aws.ecs.describe_services().cluster("fargate-connect-bot").services("fargate-connect-bot").send().await;
    let active = left.ok().map(|l| l.services().iter().filter(|s| s.status() == Some("ACTIVE")).count()).unwrap_or(0);
    assert_eq!(active, 0, "the bot's service is gone");
}
