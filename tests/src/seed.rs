//! Seeds one moto account the way a real team's account looks: an ECS cluster `prod` with a
//! service `web` (ECS Exec on, a RUNNING task with two containers) and a neighbour service
//! `api` whose task must never be picked for `web`.

use crate::moto::moto;
use aws_credential_types::Credentials;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, NetworkConfiguration,
    NetworkMode,
};
use worker::aws::Aws;

pub const REGION: &str = "eu-west-1";
pub const CLUSTER: &str = "prod";

/// The access key id the harness signs its own calls with (seeding, planting, inspecting):
/// never held to a policy.
pub const HARNESS_ACCESS_KEY: &str = "AKIDTEST";
/// The access key id the bot's clients sign with: the emulator holds calls signed with it to
/// the module's bot policy (`crate::iam`).
pub const BOT_ACCESS_KEY: &str = "AKIDFCBOT";

/// The harness's AWS clients for one moto account (every request carries `x-moto-account-id`).
pub fn aws_for(account: &str) -> Aws {
    aws_signed_by(account, HARNESS_ACCESS_KEY)
}

/// The bot's AWS clients for one moto account: as [`aws_for`], signed with [`BOT_ACCESS_KEY`].
pub fn bot_aws_for(account: &str) -> Aws {
    aws_signed_by(account, BOT_ACCESS_KEY)
}

fn aws_signed_by(account: &str, access_key: &str) -> Aws {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
            access_key, "secret", None, None, "static",
        )))
        .build();
    Aws::from_sdk_config(&sdk, &[("x-moto-account-id".to_string(), account.to_string())]).expect("clients")
}

/// What was seeded.
pub struct Seeded {
    pub web_task_arn: String,
    pub api_task_arn: String,
    pub subnet_id: String,
    pub task_role_arn: String,
    pub security_group_id: String,
    /// The bastions' group, as the Terraform module creates it: `fargate-connect-bastion` in
    /// the default VPC, no ingress, HTTPS out. The bot is configured with it (the module's
    /// policy lets the bot launch into this group only, and create none).
    pub bastion_security_group_id: String,
    /// The module's permissions boundary for per-request roles (the bot may create a role only
    /// with it): `arn:aws:iam::ACCOUNT:policy/fargate-connect/fargate-connect-bastion-boundary`.
    pub permissions_boundary_arn: String,
}

pub async fn seed(aws: &Aws) -> Seeded {
    let ecs = &aws.ecs;
    ecs.create_cluster().cluster_name(CLUSTER).send().await.expect("create cluster");
    let vpc = aws
        .ec2
        .describe_vpcs()
        .filters(aws_sdk_ec2::types::Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .expect("vpcs");
    let vpc_id = vpc.vpcs()[0].vpc_id().unwrap().to_string();
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc_id).build())
        .send()
        .await
        .expect("subnets");
    let subnet_id = subnets.subnets()[0].subnet_id().unwrap().to_string();
    let groups = aws
        .ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-id").values(&vpc_id).build())
        .send()
        .await
        .expect("groups");
    let default_sg = groups.security_groups()[0].group_id().unwrap().to_string();

    // The task role ECS Exec needs: the four ssmmessages channel actions.
    let role = aws
        .iam
        .create_role()
        .role_name("app-task-role")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("task role");
    let task_role_arn = role.role().unwrap().arn().to_string();
    aws.iam
        .put_role_policy()
        .role_name("app-task-role")
        .policy_name("ecs-exec")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssmmessages:CreateControlChannel","ssmmessages:CreateDataChannel","ssmmessages:OpenControlChannel","ssmmessages:OpenDataChannel"],"Resource":"*"}]}"#,
        )
        .send()
        .await
        .expect("task role policy");

    let bastion_security_group_id = seed_bastion_group(aws, &vpc_id).await;
    let permissions_boundary_arn = seed_boundary(aws).await;

    let mut seeded = Seeded {
        api_task_arn: String::new(),
        web_task_arn: String::new(),
        subnet_id,
        task_role_arn,
        security_group_id: default_sg,
        bastion_security_group_id,
        permissions_boundary_arn,
    };
    seeded.api_task_arn = seed_service(aws, &seeded, &ServiceSpec::healthy("api")).await.unwrap();
    seeded.web_task_arn = seed_service(aws, &seeded, &ServiceSpec::healthy("web")).await.unwrap();
    seeded
}

/// The bastions' security group as `deploy/terraform/network.tf` makes it: no ingress rule,
/// one egress rule (HTTPS anywhere) instead of the default allow-all.
async fn seed_bastion_group(aws: &Aws, vpc_id: &str) -> String {
    use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, Tag, TagSpecification};
    let group = aws
        .ec2
        .create_security_group()
        .group_name(worker::aws::ec2::BASTION_SECURITY_GROUP)
        .description("fargate-connect bastions: no ingress, HTTPS out")
        .vpc_id(vpc_id)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key(worker::aws::tags::MANAGED).value("true").build())
                .build(),
        )
        .send()
        .await
        .expect("bastion security group")
        .group_id()
        .expect("group id")
        .to_string();
    let everywhere = IpRange::builder().cidr_ip("0.0.0.0/0").build();
    aws.ec2
        .revoke_security_group_egress()
        .group_id(&group)
        .ip_permissions(IpPermission::builder().ip_protocol("-1").ip_ranges(everywhere.clone()).build())
        .send()
        .await
        .expect("drop the default egress rule");
    aws.ec2
        .authorize_security_group_egress()
        .group_id(&group)
        .ip_permissions(
            IpPermission::builder().ip_protocol("tcp").from_port(443).to_port(443).ip_ranges(everywhere).build(),
        )
        .send()
        .await
        .expect("HTTPS out");
    group
}

/// The permissions boundary the module creates for per-request roles (its document abridged:
/// the bot only names it).
async fn seed_boundary(aws: &Aws) -> String {
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EcsExecIntoTasks", "Effect": "Allow", "Action": ["ecs:ExecuteCommand", "ecs:ListTasks", "ecs:DescribeTasks"], "Resource": "*"},
            {"Sid": "SsmAgent", "Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*"], "Resource": "*"}
        ]
    });
    aws.iam
        .create_policy()
        .policy_name("fargate-connect-bastion-boundary")
        .path(worker::aws::IAM_PATH)
        .policy_document(document.to_string())
        .send()
        .await
        .expect("permissions boundary")
        .policy()
        .and_then(|p| p.arn())
        .expect("boundary ARN")
        .to_string()
}

/// A service to add to the seeded cluster, healthy or broken in one chosen way.
pub struct ServiceSpec<'a> {
    pub name: &'a str,
    pub exec_on_service: bool,
    pub exec_on_task: bool,
    pub run_task: bool,
    pub task_role: bool,
    /// Makes `app` one that ECS Exec warns about: read-only root, static AWS keys, pidMode task.
    pub risky_app: bool,
}

impl<'a> ServiceSpec<'a> {
    pub fn healthy(name: &'a str) -> Self {
        Self { name, exec_on_service: true, exec_on_task: true, run_task: true, task_role: true, risky_app: false }
    }
}

/// Registers the task definition (containers `app` and a non-essential `envoy`), creates the
/// service and, if asked, runs its task. Returns the task ARN.
pub async fn seed_service(aws: &Aws, seeded: &Seeded, spec: &ServiceSpec<'_>) -> Option<String> {
    let ecs = &aws.ecs;
    let service = spec.name;
    ecs.register_task_definition()
        .family(service)
        .set_task_role_arn(spec.task_role.then(|| seeded.task_role_arn.clone()))
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .set_pid_mode(spec.risky_app.then_some(aws_sdk_ecs::types::PidMode::Task))
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("nginx")
                .memory(256)
                .essential(true)
                .set_readonly_root_filesystem(spec.risky_app.then_some(true))
                .set_environment(spec.risky_app.then(|| {
                    vec![aws_sdk_ecs::types::KeyValuePair::builder()
                        .name("AWS_ACCESS_KEY_ID")
                        .value("AKIAEXAMPLE")
                        .build()]
                }))
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder().name("envoy").image("envoy").memory(128).essential(false).build(),
        )
        .send()
        .await
        .expect("register task definition");
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(&seeded.subnet_id)
                .security_groups(&seeded.security_group_id)
                .assign_public_ip(AssignPublicIp::Disabled)
                .build()
                .unwrap(),
        )
        .build();
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name(service)
        .task_definition(service)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .enable_execute_command(spec.exec_on_service)
        .network_configuration(network.clone())
        .send()
        .await
        .expect("create service");
    if !spec.run_task {
        return None;
    }
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition(service)
        .group(format!("service:{service}"))
        .launch_type(LaunchType::Fargate)
        .enable_execute_command(spec.exec_on_task)
        .network_configuration(network)
        .send()
        .await
        .expect("run task");
    Some(run.tasks()[0].task_arn().unwrap().to_string())
}
