//! `fargate-connect doctor`: is this deployment able to work? Config, secrets, database (and
//! its audit chain), the Slack token (`auth.test`), the AWS identity (STS), the permissions the
//! bot needs (a throwaway per-request role and a RunInstances dry run with it, read probes
//! elsewhere), the bastion
//! network (the security group must have no inbound rule), and each configured service's ECS
//! Exec preflight. Every line is ✓ / ! / ✗ with the fix.

use crate::config::{Config, FileConfig, Secret, SlackMode, SlackSecrets};
use crate::slack::SlackApi;
use worker::audit::Verdict;
use worker::aws::ecs::{self, Wanted};
use worker::aws::iam::{self, RoleSpec};
use worker::aws::{ec2, Aws, AwsError};
use worker::events::{Check, Outcome};
use worker::ledger::Ledger;

fn check(name: &str, outcome: Outcome, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check { name: name.to_string(), outcome, detail: detail.into(), fix: fix.map(str::to_string) }
}

fn aws_fail(name: &str, e: &AwsError, fix: &str) -> Check {
    let fix = if e.code_is("AccessDenied") || e.code_is("UnauthorizedOperation") || e.code_is("AccessDeniedException") {
        "the bot's IAM policy lacks this: apply deploy/terraform (or compare your policy with it)"
    } else {
        fix
    };
    check(name, Outcome::Fail, e.to_string(), Some(fix))
}

/// What `doctor` was given: the parsed file and whichever secrets were found.
pub struct Setup<'a> {
    pub file: &'a FileConfig,
    pub signing_secret: Option<Secret>,
    pub bot_token: Option<Secret>,
    pub app_token: Option<Secret>,
}

/// Runs every check; `services` are checked with the preflight in addition to the policy's.
pub async fn run(setup: &Setup<'_>, aws: &Aws, services: &[(String, Option<String>)]) -> Vec<Check> {
    let mut out = Vec::new();
    let file = setup.file;

    // Config and secrets.
    let socket = file.slack.mode == SlackMode::Socket;
    let config = match &setup.bot_token {
        Some(bot_token) => {
            let secrets = SlackSecrets {
                signing_secret: setup.signing_secret.clone(),
                bot_token: bot_token.clone(),
                app_token: setup.app_token.clone(),
            };
            match Config::from_secrets(file.clone(), secrets) {
                Ok(config) => {
                    out.push(check("config", Outcome::Pass, "valid", None));
                    Some(config)
                }
                Err(e) => {
                    out.push(check("config", Outcome::Fail, e.to_string(), Some("fix the setting named")));
                    None
                }
            }
        }
        None => None,
    };
    // The secrets this mode needs: Socket Mode has no signing secret, HTTP no app token.
    let (mode_secret, mode_value) =
        if socket { ("SLACK_APP_TOKEN", &setup.app_token) } else { ("SLACK_SIGNING_SECRET", &setup.signing_secret) };
    for (name, value) in [(mode_secret, mode_value), ("SLACK_BOT_TOKEN", &setup.bot_token)] {
        out.push(match value {
            Some(_) => check(name, Outcome::Pass, "set", None),
            None => check(name, Outcome::Fail, "not set", Some("export it, or NAME_FILE naming a file that holds it")),
        });
    }

    // Database and its audit chain.
    match Ledger::open(&file.database.url).await {
        Ok(ledger) => {
            out.push(check("database", Outcome::Pass, worker::ledger::redacted(&file.database.url), None));
            out.push(match ledger.verify_audit().await {
                Ok(Verdict::Intact { events, .. }) => {
                    check("audit chain", Outcome::Pass, format!("intact ({events} events)"), None)
                }
                Ok(Verdict::Broken { seq, why }) => check(
                    "audit chain",
                    Outcome::Fail,
                    format!("broken at event {seq}: {why}"),
                    Some("the database was edited outside the bot; keep a copy and investigate"),
                ),
                Err(e) => check("audit chain", Outcome::Fail, e.to_string(), None),
            });
        }
        Err(e) => out.push(check(
            "database",
            Outcome::Fail,
            e.to_string(),
            Some("check database.url and that its folder is writable"),
        )),
    }

    // Socket Mode: the app-level token may open connections (the URL it returns is not used).
    if let (true, Some(token)) = (socket, &setup.app_token) {
        let api = SlackApi::new(&file.slack.api_base_url, token.clone());
        out.push(match api.call("apps.connections.open", &serde_json::json!({})).await {
            Ok(_) => check("slack socket mode", Outcome::Pass, "the app token opens connections", None),
            Err(e) => check(
                "slack socket mode",
                Outcome::Fail,
                e.to_string(),
                Some("use an app-level token (xapp-…) with connections:write, and turn Socket Mode on (deploy/slack/manifest.socket.yml)"),
            ),
        });
    }

    // Slack: the token works, and for which workspace.
    if let Some(token) = &setup.bot_token {
        let api = SlackApi::new(&file.slack.api_base_url, token.clone());
        out.push(match api.call("auth.test", &serde_json::json!({})).await {
            Ok(answer) => check(
                "slack token",
                Outcome::Pass,
                format!(
                    "workspace {} as {}",
                    answer["team"].as_str().unwrap_or("?"),
                    answer["user"].as_str().unwrap_or("?")
                ),
                None,
            ),
            Err(e) => check(
                "slack token",
                Outcome::Fail,
                e.to_string(),
                Some("use the Bot User OAuth Token (xoxb-…) of the app installed from deploy/slack/manifest.yml"),
            ),
        });
    }

    // AWS: who we are, then what we may do.
    out.push(match aws.sts.get_caller_identity().send().await {
        Ok(me) => check("aws identity", Outcome::Pass, format!("{} in {}", me.arn().unwrap_or("?"), aws.region), None),
        Err(e) => aws_fail(
            "aws identity",
            &AwsError::from_sdk("GetCallerIdentity", e),
            "no usable AWS credentials: an instance role, AWS_PROFILE or AWS_ACCESS_KEY_ID",
        ),
    });
    out.extend(permissions(file, aws).await);

    // ECS Exec preflight for each configured service (and those asked for).
    let mut wanted: Vec<(String, String, Option<String>)> = Vec::new();
    if let Some(config) = &config {
        for rule in config.policy.services.iter().filter(|r| r.name != "*") {
            wanted.push((rule.cluster.clone(), rule.name.clone(), None));
        }
        if config.policy.services.is_empty() {
            out.push(check(
                "policy",
                Outcome::Warn,
                "no [[policy.services]]: nobody may connect to anything",
                Some("add an entry per service (see README: Policy)"),
            ));
        }
    }
    for (service, container) in services {
        wanted.push((file.aws.cluster.clone(), service.clone(), container.clone()));
    }
    let cache = ecs::PreflightCache::default();
    for (cluster, service, container) in wanted {
        let target = Wanted { cluster: &cluster, service: &service, container: container.as_deref(), task: None };
        let clients = ecs::Clients { ecs: &aws.ecs, iam: &aws.iam, ssm: &aws.ssm, settings: &file.aws };
        match ecs::preflight(&clients, &cache, &target).await {
            Ok(report) => {
                for mut c in report.checks {
                    c.name = format!("{service}: {}", c.name);
                    out.push(c);
                }
            }
            Err(e) => out.push(aws_fail(&format!("{service}: preflight"), &e, "check the cluster and service names")),
        }
    }
    out
}

/// The permissions the bot needs, probed: a RunInstances dry run (it checks the bot may launch
/// a tagged bastion with the configured subnet, group and AMI), and read calls elsewhere.
async fn permissions(file: &FileConfig, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    let settings = &file.aws;
    let mut cluster_arn = None;
    out.push(match aws.ecs.describe_clusters().clusters(&settings.cluster).send().await {
        Ok(found) if found.clusters().iter().any(|c| c.status() == Some("ACTIVE")) => {
            cluster_arn = found.clusters().iter().find_map(|c| c.cluster_arn()).map(str::to_string);
            check("ecs cluster", Outcome::Pass, format!("{} is active", settings.cluster), None)
        }
        Ok(_) => check(
            "ecs cluster",
            Outcome::Fail,
            format!("{} not found", settings.cluster),
            Some("set aws.cluster to an existing cluster"),
        ),
        Err(e) => aws_fail("ecs cluster", &AwsError::from_sdk("DescribeClusters", e), "check aws.region"),
    });

    let instance_type = settings.instance_types.first().cloned().unwrap_or_default();
    let arch = ec2::architecture(&aws.ec2, &instance_type).await.unwrap_or_else(|_| "x86_64".into());
    let parameter = settings.ami_parameter.replace("{arch}", &arch);
    let ami = match worker::aws::ssm::ami_from_parameter(&aws.ssm, &parameter).await {
        Ok(ami) => {
            out.push(check("bastion ami", Outcome::Pass, format!("{ami} from {parameter}"), None));
            Some(ami)
        }
        Err(e) => {
            out.push(aws_fail("bastion ami", &e, "check aws.ami_parameter (a public SSM parameter)"));
            None
        }
    };

    let subnets = ec2::subnets(&aws.ec2, &settings.subnets).await;
    let subnet = match &subnets {
        Ok(list) if !list.is_empty() => {
            let names: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
            out.push(check("bastion subnets", Outcome::Pass, names.join(", "), None));
            list.first().cloned()
        }
        Ok(_) => {
            out.push(check("bastion subnets", Outcome::Fail, "none found", Some("set aws.subnets")));
            None
        }
        Err(e) => {
            out.push(aws_fail("bastion subnets", e, "set aws.subnets to subnets of this region"));
            None
        }
    };

    if let Ok(list) = &subnets {
        match settings.exec_through_vpc_endpoint {
            Some(true) => out.extend(ecs_endpoint_check(aws, list).await),
            Some(false) => {}
            None => {
                // Unset: say which way requests will go.
                let mut found = Vec::new();
                for vpc in vpcs_of(list) {
                    found.push(matches!(ec2::ecs_endpoint_serves(&aws.ec2, &vpc, &aws.region).await, Ok(true)));
                }
                let detail = if !found.is_empty() && found.iter().all(|f| *f) {
                    "an ecs endpoint serves the bastions' VPC: ECS Exec only through it"
                } else {
                    "no ecs endpoint serves the bastions' VPC: ECS Exec goes through the NAT (aws.bastion_egress_cidrs \
                     keeps the credentials there)"
                };
                out.push(check("ecs endpoint", Outcome::Pass, detail, None));
            }
        }
    }

    let group = match &settings.security_group_id {
        Some(id) => match aws.ec2.describe_security_groups().group_ids(id).send().await {
            Ok(found) => match found.security_groups().first() {
                Some(g) if g.ip_permissions().is_empty() => {
                    out.push(check("bastion security group", Outcome::Pass, format!("{id}: no inbound rule"), None));
                    Some(id.clone())
                }
                Some(g) => {
                    out.push(check(
                        "bastion security group",
                        Outcome::Fail,
                        format!("{id} has {} inbound rule(s)", g.ip_permissions().len()),
                        Some("bastions need no inbound rule (Session Manager connects outward): remove them"),
                    ));
                    Some(id.clone())
                }
                None => {
                    out.push(check("bastion security group", Outcome::Fail, format!("{id} not found"), None));
                    None
                }
            },
            Err(e) => {
                out.push(aws_fail("bastion security group", &AwsError::from_sdk("DescribeSecurityGroups", e), ""));
                None
            }
        },
        None => {
            out.push(check(
                "bastion security group",
                Outcome::Warn,
                "not configured: the bot finds or creates `fargate-connect-bastion` (needs ec2:CreateSecurityGroup)",
                Some("set aws.security_group_id (deploy/terraform creates one)"),
            ));
            None
        }
    };

    let group = match (group, &subnet) {
        (Some(group), _) => Some(group),
        // Not configured: the group the bot would find (doctor creates nothing lasting).
        (None, Some(subnet)) => ec2::find_security_group(&aws.ec2, &subnet.vpc_id).await.ok().flatten(),
        (None, None) => None,
    };
    match (ami, subnet, group) {
        (Some(ami), Some(subnet), Some(group)) => {
            out.push(dry_run(settings, aws, cluster_arn.as_deref(), &instance_type, ami, subnet, group).await)
        }
        _ => out.push(check(
            "launch (dry run)",
            Outcome::Warn,
            "skipped: no AMI, subnet or bastion security group to try with",
            Some("fix the checks above"),
        )),
    }

    if let Some(boundary) = &settings.permissions_boundary_arn {
        out.push(match aws.iam.get_policy().policy_arn(boundary).send().await {
            Ok(_) => check("permissions boundary", Outcome::Pass, boundary.clone(), None),
            Err(e) => aws_fail(
                "permissions boundary",
                &AwsError::from_sdk("GetPolicy", e),
                "set aws.permissions_boundary_arn to the module's output",
            ),
        });
    } else {
        out.push(check(
            "permissions boundary",
            if settings.require_boundary { Outcome::Fail } else { Outcome::Warn },
            "none: per-request roles carry no boundary (serve refuses to start so)",
            Some("set aws.permissions_boundary_arn (deploy/terraform creates one)"),
        ));
    }
    out.push(if settings.session_manager_plugin_sha256.is_empty() {
        check(
            "session manager plugin",
            Outcome::Warn,
            "not pinned: bastions install whatever the download URL serves",
            Some("set aws.session_manager_plugin_url to a versioned RPM and aws.session_manager_plugin_sha256 to its checksums"),
        )
    } else {
        let arches: Vec<&str> = settings.session_manager_plugin_sha256.keys().map(String::as_str).collect();
        check("session manager plugin", Outcome::Pass, format!("pinned by SHA-256 for {}", arches.join(", ")), None)
    });
    out.push(match aws.iam.list_roles().path_prefix(worker::aws::IAM_PATH).max_items(1).send().await {
        Ok(_) => check("iam (reaper)", Outcome::Pass, "may list roles under /fargate-connect/", None),
        Err(e) => aws_fail("iam (reaper)", &AwsError::from_sdk("ListRoles", e), ""),
    });
    out.push(match aws.ssm.describe_instance_information().max_results(5).send().await {
        Ok(_) => check("ssm (readiness)", Outcome::Pass, "may read instance information", None),
        Err(e) => aws_fail("ssm (readiness)", &AwsError::from_sdk("DescribeInstanceInformation", e), ""),
    });
    out
}

/// The request id doctor's throwaway role and dry run use (a valid id, so the reaper removes
/// the role should doctor be killed before it deletes it).
const DOCTOR_REQUEST: &str = "fc-d0ct0r00";

/// The launch a request makes, as a dry run: a per-request role and instance profile are
/// created (under the boundary, as for a request), `RunInstances` is asked with everything a
/// spot launch sends (so `iam:PassRole`, the tags on every resource and the spot options are
/// all checked), and the role is deleted again.
async fn dry_run(
    settings: &worker::config::AwsSettings,
    aws: &Aws,
    cluster_arn: Option<&str>,
    instance_type: &str,
    ami: String,
    subnet: ec2::Subnet,
    group: String,
) -> Check {
    const NAME: &str = "launch (dry run)";
    let Some(cluster_arn) = cluster_arn else {
        return check(NAME, Outcome::Warn, "skipped: the cluster was not found", Some("fix aws.cluster"));
    };
    let task_arn = format!("{}/doctor", cluster_arn.replacen(":cluster/", ":task/", 1));
    let role = RoleSpec {
        request_id: DOCTOR_REQUEST,
        requester: "doctor",
        service: "doctor",
        cluster_arn,
        task_arn: &task_arn,
        container: "doctor",
        permissions_boundary: settings.permissions_boundary_arn.as_deref(),
        grants: worker::aws::exec_settings::grant_statements(settings, cluster_arn),
    };
    let profile = match iam::ensure_role(&aws.iam, &role).await {
        Ok(profile) => profile,
        Err(e) => return aws_fail(NAME, &e, "the bot may not create a per-request role: apply deploy/terraform"),
    };
    let amis = [(instance_type.to_string(), ami)];
    let types = [instance_type.to_string()];
    let placements = [(subnet, group)];
    let spec = ec2::LaunchSpec {
        request_id: DOCTOR_REQUEST,
        requester: "doctor",
        service: "doctor",
        expires_at: "1970-01-01T00:00:00Z",
        amis: &amis,
        instance_profile_arn: &profile,
        user_data: "#!/bin/bash\ntrue\n",
        instance_types: &types,
        placements: &placements,
        on_demand_fallback: false,
    };
    let result = ec2::dry_run_launch(&aws.ec2, &spec).await;
    let cleanup = iam::delete_role(&aws.iam, DOCTOR_REQUEST).await;
    let mut outcome = match result {
        Ok(true) => check(
            NAME,
            Outcome::Pass,
            format!("may create a bounded role and launch a tagged spot {instance_type} with it"),
            None,
        ),
        Ok(false) => check(NAME, Outcome::Warn, "AWS ignored the dry run", None),
        Err(e) => aws_fail(NAME, &e, "check the instance type, subnet and group"),
    };
    if let Err(e) = cleanup {
        outcome.detail.push_str(&format!(" (its throwaway role was not deleted: {e}; the reaper removes it)"));
    }
    outcome
}

/// The checks as a table: `✓ name  detail` with `fix:` under failures and warnings.
/// The VPCs of the bastion subnets, once each.
fn vpcs_of(subnets: &[ec2::Subnet]) -> Vec<String> {
    let mut vpcs: Vec<String> = subnets.iter().map(|s| s.vpc_id.clone()).collect();
    vpcs.sort();
    vpcs.dedup();
    vpcs
}

/// `aws.exec_through_vpc_endpoint = true` needs an `ecs` endpoint in every bastion VPC, or
/// every connect is refused.
async fn ecs_endpoint_check(aws: &Aws, subnets: &[ec2::Subnet]) -> Vec<Check> {
    let mut out = Vec::new();
    for vpc in vpcs_of(subnets) {
        match ec2::ecs_endpoint_serves(&aws.ec2, &vpc, &aws.region).await {
            Ok(true) => out.push(check("ecs endpoint", Outcome::Pass, format!("{vpc}: ECS Exec goes through it"), None)),
            Ok(false) => out.push(check(
                "ecs endpoint",
                Outcome::Fail,
                format!("aws.exec_through_vpc_endpoint is true, but no ecs endpoint with private DNS serves {vpc}: every connect would be refused"),
                Some("make it (the module's create_vpc_endpoints), or unset aws.exec_through_vpc_endpoint"),
            )),
            Err(e) => out.push(aws_fail("ecs endpoint", &e, "allow ec2:DescribeVpcEndpoints (the module's bot policy has it)")),
        }
    }
    out
}

pub fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).min(40);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!("  {} {:<width$}  {}\n", c.outcome.symbol(), c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("    {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}
