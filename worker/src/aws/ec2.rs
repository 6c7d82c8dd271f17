//! EC2: the bastion itself. Spot first with IMDSv2 required, no key pair, a no-ingress
//! security group and terminate-on-shutdown; on spot capacity errors the next instance type
//! and subnet, then on-demand where allowed. Looked up by tag before launching, so a retry or
//! a restart never launches twice.

use super::{tags, AwsError};
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::operation::run_instances::RunInstancesOutput;
use aws_sdk_ec2::types::{
    CreditSpecificationRequest, Filter, HttpTokensState, IamInstanceProfileSpecification, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType,
    MarketType, ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification,
};
use base64::Engine;
use std::time::Duration;

pub const BASTION_SECURITY_GROUP: &str = "fargate-connect-bastion";

/// Errors that mean "no capacity here", so the next type/subnet (or on-demand) is worth a try.
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "Unsupported",
    "InsufficientFreeAddressesInSubnet",
];

#[derive(Debug, Clone)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
}

/// The bastion as found or launched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bastion {
    pub instance_id: String,
    pub instance_type: String,
    pub state: String,
    pub spot: bool,
    pub subnet_id: String,
    pub availability_zone: String,
}

pub struct LaunchSpec<'a> {
    pub request_id: &'a str,
    pub requester: &'a str,
    pub service: &'a str,
    pub expires_at: &'a str,
    /// The AMI for each instance type (they differ by architecture).
    pub amis: &'a [(String, String)],
    pub instance_profile_arn: &'a str,
    pub user_data: &'a str,
    pub instance_types: &'a [String],
    /// Subnets with the security group to use in each.
    pub placements: &'a [(Subnet, String)],
    pub on_demand_fallback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no capacity for any configured instance type and subnet (last: {0})")]
    NoCapacity(AwsError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Subnets to use: the configured ones, or the default VPC's.
pub async fn subnets(ec2: &aws_sdk_ec2::Client, configured: &[String]) -> Result<Vec<Subnet>, AwsError> {
    let mut request = ec2.describe_subnets();
    if configured.is_empty() {
        let vpcs = ec2
            .describe_vpcs()
            .filters(Filter::builder().name("isDefault").values("true").build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeVpcs", e))?;
        let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
            AwsError::config("aws.subnets is empty and this region has no default VPC: list subnets in the config")
        })?;
        request = request.filters(Filter::builder().name("vpc-id").values(vpc).build());
    } else {
        request = request.set_subnet_ids(Some(configured.to_vec()));
    }
    let out = request.send().await.map_err(|e| AwsError::from_sdk("DescribeSubnets", e))?;
    let mut found: Vec<Subnet> = out
        .subnets()
        .iter()
        .filter_map(|s| {
            Some(Subnet {
                id: s.subnet_id()?.to_string(),
                vpc_id: s.vpc_id()?.to_string(),
                availability_zone: s.availability_zone().unwrap_or_default().to_string(),
            })
        })
        .collect();
    if !configured.is_empty() {
        // Keep the configured order: it is the order to try them in.
        found.sort_by_key(|s| configured.iter().position(|c| c == &s.id));
    } else {
        found.sort_by(|a, b| a.id.cmp(&b.id));
    }
    if found.is_empty() {
        return Err(AwsError::config("no subnets found for bastions"));
    }
    Ok(found)
}

/// The bastion security group in `vpc_id`, found by name.
pub async fn find_security_group(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<Option<String>, AwsError> {
    let existing = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(BASTION_SECURITY_GROUP).build())
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", e))?;
    Ok(existing.security_groups().first().and_then(|g| g.group_id()).map(str::to_string))
}

/// The bastion security group in `vpc_id`: found by name, or created with no ingress rules.
/// One found by name is used only if it has no inbound rule (a group someone else made, or
/// opened since, would let traffic in to a bastion that takes none).
pub async fn ensure_security_group(ec2: &aws_sdk_ec2::Client, vpc_id: &str) -> Result<String, AwsError> {
    if let Some(id) = find_security_group(ec2, vpc_id).await? {
        let groups = ec2
            .describe_security_groups()
            .group_ids(&id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", e))?;
        let inbound = groups.security_groups().first().map(|g| g.ip_permissions().len()).unwrap_or_default();
        if inbound > 0 {
            return Err(AwsError::config(&format!(
                "the security group {BASTION_SECURITY_GROUP} ({id}) in {vpc_id} has {inbound} inbound rule(s); \
                 bastions take no inbound traffic. Remove the rules, or set aws.security_group_id to a group \
                 without any"
            )));
        }
        return Ok(id);
    }
    let created = ec2
        .create_security_group()
        .group_name(BASTION_SECURITY_GROUP)
        .description("fargate-connect bastions: no inbound traffic, HTTPS out for SSM")
        .vpc_id(vpc_id)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key(tags::MANAGED).value("true").build())
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.group_id().unwrap_or_default().to_string()),
        Err(e) => {
            let e = AwsError::from_sdk("CreateSecurityGroup", e);
            if e.code_is("InvalidGroup.Duplicate") {
                // Another worker created it a moment ago.
                return Box::pin(ensure_security_group(ec2, vpc_id)).await;
            }
            Err(e)
        }
    }
}

/// The request's live (not terminated) instance, if one exists.
pub async fn find_by_request(ec2: &aws_sdk_ec2::Client, request_id: &str) -> Result<Option<Bastion>, AwsError> {
    Ok(instances_by_request(ec2, request_id).await?.into_iter().next())
}

/// Instances that are not (being) terminated: what may still cost money or hold access.
pub fn live_states() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build()
}

async fn instances_by_request(ec2: &aws_sdk_ec2::Client, request_id: &str) -> Result<Vec<Bastion>, AwsError> {
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name(format!("tag:{}", tags::REQUEST_ID)).values(request_id).build())
        .filters(live_states())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstances", e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Bastion {
            instance_id: i.instance_id().unwrap_or_default().to_string(),
            instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
            spot: i.instance_lifecycle().map(|l| l.as_str() == "spot").unwrap_or(false),
            subnet_id: i.subnet_id().unwrap_or_default().to_string(),
            availability_zone: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_string(),
        })
        .collect())
}

/// The instance's state name (`pending`, `running`, …), or `None` while EC2 does not know the
/// id. EC2 is eventually consistent ("Eventual consistency in the Amazon EC2 API"): right after
/// `RunInstances`, `DescribeInstances` may answer `InvalidInstanceID.NotFound` or an empty
/// list for the new id, so neither means the instance is gone.
pub async fn instance_state(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<Option<String>, AwsError> {
    let out = match ec2.describe_instances().instance_ids(instance_id).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("DescribeInstances", e);
            return if e.code_is(INSTANCE_NOT_FOUND) { Ok(None) } else { Err(e) };
        }
    };
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.instance_id() == Some(instance_id))
        .find_map(|i| i.state().and_then(|s| s.name()))
        .map(|name| name.as_str().to_string()))
}

/// The instance's `fargate-connect:requester` and `fargate-connect:managed` tags as EC2 has them
/// now, or None when EC2 does not know the instance.
pub async fn bastion_tags(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> Result<Option<(Option<String>, Option<String>)>, AwsError> {
    let out = match ec2.describe_instances().instance_ids(instance_id).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("DescribeInstances", e);
            return if e.code_is(INSTANCE_NOT_FOUND) { Ok(None) } else { Err(e) };
        }
    };
    let instance = out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(instance_id));
    Ok(instance.map(|i| {
        let tag =
            |key: &str| i.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
        (tag(super::tags::REQUESTER), tag(super::tags::MANAGED))
    }))
}

/// Whether an `ecs` interface endpoint with private DNS serves `vpc_id` (so the AWS CLI on a
/// bastion there reaches ECS through it): available or being made, in the region's service name
/// (`com.amazonaws.REGION.ecs`, `cn.com.amazonaws.REGION.ecs` in China).
pub async fn ecs_endpoint_serves(ec2: &aws_sdk_ec2::Client, vpc_id: &str, region: &str) -> Result<bool, AwsError> {
    let prefix = if region.starts_with("cn-") { "cn.com.amazonaws" } else { "com.amazonaws" };
    let filters = [
        Filter::builder().name("vpc-id").values(vpc_id).build(),
        Filter::builder().name("service-name").values(format!("{prefix}.{region}.ecs")).build(),
    ];
    let mut pages = ec2.describe_vpc_endpoints().set_filters(Some(filters.to_vec())).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("DescribeVpcEndpoints", e))?;
        let serves = page.vpc_endpoints().iter().any(|e| {
            let state = e.state().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default();
            e.private_dns_enabled() == Some(true) && matches!(state.as_str(), "available" | "pending")
        });
        if serves {
            return Ok(true);
        }
    }
    Ok(false)
}

/// EC2's answer for an instance id it does not know (yet, or any more).
pub const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// How long after a launch EC2 may still not know the new instance id. AWS documents no
/// bound ("a few seconds", "up to several minutes" under load); five minutes is generous.
pub const EC2_CONSISTENCY_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Launches the bastion, falling back across types, subnets and (where allowed) on-demand.
pub async fn launch(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec<'_>) -> Result<Bastion, LaunchError> {
    let mut last: Option<AwsError> = None;
    let markets: &[bool] = if spec.on_demand_fallback { &[true, false] } else { &[true] };
    for &spot in markets {
        for instance_type in spec.instance_types {
            for (subnet, group) in spec.placements {
                match run_one(ec2, spec, instance_type, subnet, group, spot).await {
                    Ok(bastion) => return Ok(bastion),
                    Err(e) if e.code.as_deref().is_some_and(|c| CAPACITY_CODES.contains(&c)) => {
                        tracing::info!(request_id = spec.request_id, instance_type, subnet = subnet.id, spot, error = %e, "no capacity; trying the next placement");
                        last = Some(e);
                    }
                    Err(e) => return Err(LaunchError::Aws(e)),
                }
            }
        }
    }
    Err(LaunchError::NoCapacity(last.unwrap_or_else(|| AwsError::config("no placements configured"))))
}

async fn run_one(
    ec2: &aws_sdk_ec2::Client,
    spec: &LaunchSpec<'_>,
    instance_type: &str,
    subnet: &Subnet,
    group: &str,
    spot: bool,
) -> Result<Bastion, AwsError> {
    let request = run_request(ec2, spec, instance_type, subnet, group, spot)?;
    let out = send_when_profile_visible(request).await?;
    let instance = out.instances().first().ok_or_else(|| AwsError::config("RunInstances returned no instance"))?;
    Ok(Bastion {
        instance_id: instance.instance_id().unwrap_or_default().to_string(),
        instance_type: instance_type.to_string(),
        state: instance.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
        spot,
        subnet_id: subnet.id.clone(),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or(&subnet.availability_zone)
            .to_string(),
    })
}

/// The whole `RunInstances` call for one placement: what `launch` sends and what `doctor`'s
/// dry run sends, so the dry run checks exactly the permissions a launch needs.
fn run_request(
    ec2: &aws_sdk_ec2::Client,
    spec: &LaunchSpec<'_>,
    instance_type: &str,
    subnet: &Subnet,
    group: &str,
    spot: bool,
) -> Result<RunInstancesFluentBuilder, AwsError> {
    let tag_list = vec![
        Tag::builder().key(tags::MANAGED).value("true").build(),
        Tag::builder().key(tags::REQUEST_ID).value(spec.request_id).build(),
        Tag::builder().key(tags::REQUESTER).value(spec.requester).build(),
        Tag::builder().key(tags::SERVICE).value(spec.service).build(),
        Tag::builder().key(tags::EXPIRES_AT).value(spec.expires_at).build(),
        Tag::builder().key("Name").value(format!("fargate-connect {} {}", spec.service, spec.request_id)).build(),
    ];
    let user_data = base64::engine::general_purpose::STANDARD.encode(spec.user_data);
    // The client token makes a retried call return the same instance (AWS honours it within
    // the token's window; the lookup by tag covers the rest).
    let token = format!("{}-{}-{}-{}", spec.request_id, instance_type, subnet.id, if spot { "spot" } else { "od" });
    let ami = spec
        .amis
        .iter()
        .find(|(t, _)| t == instance_type)
        .map(|(_, ami)| ami.as_str())
        .ok_or_else(|| AwsError::config("no AMI resolved for the instance type"))?;
    let mut request = ec2
        .run_instances()
        .image_id(ami)
        .instance_type(InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet.id)
        .security_group_ids(group)
        .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(spec.instance_profile_arn).build())
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_put_response_hop_limit(1)
                .build(),
        )
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .user_data(user_data)
        .client_token(token.chars().take(64).collect::<String>())
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tag_list.clone())).build(),
        )
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tag_list.clone())).build(),
        );
    if spot {
        // The module's policy requires our tag on every resource RunInstances creates
        // (`aws:RequestTag` is checked per resource type), the spot request included.
        request = request.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SpotInstancesRequest)
                .set_tags(Some(tag_list))
                .build(),
        );
    }
    if is_burstable(instance_type) {
        // T instances launch in `unlimited` credit mode by default (spot included), which bills
        // surplus credits; a short-lived bastion never needs them.
        request = request.credit_specification(CreditSpecificationRequest::builder().cpu_credits("standard").build());
    }
    if spot {
        request = request.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        );
    }
    Ok(request)
}

/// Sends `RunInstances`; while EC2 does not see a new instance profile yet (IAM is eventually
/// consistent; AWS documents propagation taking up to a couple of minutes), tries again, for
/// at most [`PROFILE_PROPAGATION`]; after that the error is retryable (the job tries later).
///
/// The SDK's own retries are off for this call: EC2 answers a full spot pool with a 500
/// (`InsufficientInstanceCapacity`), which the SDK would retry with backoff (seconds per
/// placement) before `launch` may try the next type or subnet. Other transient failures
/// (throttling, 5xx) are retried here, a few times, quickly; the client token keeps a retry
/// from launching twice.
async fn send_when_profile_visible(request: RunInstancesFluentBuilder) -> Result<RunInstancesOutput, AwsError> {
    let mut delay = Duration::from_millis(500);
    let give_up = tokio::time::Instant::now() + PROFILE_PROPAGATION;
    let mut transient = Duration::from_millis(100);
    loop {
        let once = aws_sdk_ec2::config::Builder::default()
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(1));
        match request.clone().customize().config_override(once).send().await {
            Ok(out) => return Ok(out),
            Err(e) => {
                let e = AwsError::from_sdk("RunInstances", e);
                let capacity = e.code.as_deref().is_some_and(|c| CAPACITY_CODES.contains(&c));
                if e.retryable && !capacity && transient <= Duration::from_millis(1600) {
                    tokio::time::sleep(transient).await;
                    transient *= 2;
                    continue;
                }
                let profile_not_ready =
                    e.code_is("InvalidParameterValue") && e.message.to_ascii_lowercase().contains("instance profile");
                if profile_not_ready && tokio::time::Instant::now() + delay < give_up {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
                return Err(if profile_not_ready { AwsError { retryable: true, ..e } } else { e });
            }
        }
    }
}

/// How long `RunInstances` keeps trying a new instance profile that EC2 does not see yet.
pub const PROFILE_PROPAGATION: Duration = Duration::from_secs(150);

/// T2/T3/T3a/T4g: burstable types, which take a CPU credit mode.
pub fn is_burstable(instance_type: &str) -> bool {
    ["t2.", "t3.", "t3a.", "t4g."].iter().any(|family| instance_type.starts_with(family))
}

/// Terminates the request's instance: the one the ledger knows, or (when it knows none, e.g.
/// a launch whose answer was lost) whatever carries the request's tag. Returns the ids.
/// `launched_at` (UTC ms) is when the known instance was launched: within
/// [`EC2_CONSISTENCY_WINDOW_MS`] of it, "not found" means "not visible yet", and the error is
/// returned as retryable instead of taken as "gone".
pub async fn terminate_request(
    ec2: &aws_sdk_ec2::Client,
    request_id: &str,
    known: Option<&str>,
    launched_at: Option<i64>,
) -> Result<Vec<String>, AwsError> {
    let ids: Vec<String> = match known {
        Some(known) => vec![known.to_string()],
        None => instances_by_request(ec2, request_id).await?.into_iter().map(|b| b.instance_id).collect(),
    };
    if ids.is_empty() {
        return Ok(ids);
    }
    match ec2.terminate_instances().set_instance_ids(Some(ids.clone())).send().await {
        Ok(_) => Ok(ids),
        Err(e) => {
            let e = AwsError::from_sdk("TerminateInstances", e);
            let recent = launched_at.is_some_and(|at| crate::ledger::now_ms() - at < EC2_CONSISTENCY_WINDOW_MS);
            match (e.code_is(INSTANCE_NOT_FOUND), recent) {
                (true, true) => Err(AwsError { retryable: true, ..e }),
                (true, false) => Ok(Vec::new()),
                _ => Err(e),
            }
        }
    }
}

/// The CPU architecture of an instance type, as AMI parameters name it: `x86_64` or `arm64`.
pub async fn architecture(ec2: &aws_sdk_ec2::Client, instance_type: &str) -> Result<String, AwsError> {
    let out = ec2
        .describe_instance_types()
        .instance_types(InstanceType::from(instance_type))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstanceTypes", e))?;
    let archs: Vec<String> = out
        .instance_types()
        .iter()
        .filter_map(|t| t.processor_info())
        .flat_map(|p| p.supported_architectures())
        .map(|a| a.as_str().to_string())
        .collect();
    if archs.is_empty() {
        return Err(AwsError {
            action: "DescribeInstanceTypes",
            code: Some("InvalidInstanceType".into()),
            message: format!("unknown instance type {instance_type}"),
            retryable: false,
        });
    }
    Ok(if archs.iter().any(|a| a == "x86_64") { "x86_64".into() } else { "arm64".into() })
}

/// The latest spot price (USD per hour) for the type in the zone, if EC2 reports one.
pub async fn spot_price(ec2: &aws_sdk_ec2::Client, instance_type: &str, zone: &str) -> Result<Option<f64>, AwsError> {
    let out = ec2
        .describe_spot_price_history()
        .instance_types(InstanceType::from(instance_type))
        .product_descriptions("Linux/UNIX")
        .availability_zone(zone)
        .start_time(aws_smithy_types::DateTime::from(std::time::SystemTime::now()))
        .max_results(10)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeSpotPriceHistory", e))?;
    Ok(out.spot_price_history().iter().filter_map(|p| p.spot_price()?.parse::<f64>().ok()).next())
}

/// Approximate on-demand list prices (USD per hour, Linux, us-east-1) of the usual bastion
/// types; a rough guide for the card, not a bill.
pub fn on_demand_price(instance_type: &str) -> Option<f64> {
    Some(match instance_type {
        "t3.nano" => 0.0052,
        "t3.micro" => 0.0104,
        "t3.small" => 0.0208,
        "t3a.nano" => 0.0047,
        "t3a.micro" => 0.0094,
        "t3a.small" => 0.0188,
        "t4g.nano" => 0.0042,
        "t4g.micro" => 0.0084,
        "t4g.small" => 0.0168,
        "m5.large" => 0.096,
        "m6i.large" => 0.096,
        "m7g.medium" => 0.0408,
        "c6g.medium" => 0.034,
        "c7g.medium" => 0.0363,
        _ => return None,
    })
}

/// Asks EC2 whether the bastion launch `spec` describes would be allowed (`DryRun`), without
/// launching: the same call `launch` makes (tags on instance, volumes and spot request, the
/// instance profile and so `iam:PassRole`, spot options, credit mode), for the first type and
/// placement. `Ok(true)` when AWS answers `DryRunOperation`. For `doctor`.
pub async fn dry_run_launch(ec2: &aws_sdk_ec2::Client, spec: &LaunchSpec<'_>) -> Result<bool, AwsError> {
    let (Some(instance_type), Some((subnet, group))) = (spec.instance_types.first(), spec.placements.first()) else {
        return Err(AwsError::config("no instance type or subnet to try"));
    };
    let request = run_request(ec2, spec, instance_type, subnet, group, true)?.dry_run(true);
    match send_when_profile_visible(request).await {
        Ok(_) => Ok(false),
        Err(e) if e.code_is("DryRunOperation") => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burstable_types_are_the_t_families() {
        for t in ["t3.micro", "t3a.micro", "t4g.nano", "t2.micro"] {
            assert!(is_burstable(t), "{t}");
        }
        for t in ["m5.large", "c7g.medium", "m6i.large"] {
            assert!(!is_burstable(t), "{t}");
        }
    }
}
