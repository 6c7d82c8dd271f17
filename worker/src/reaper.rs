//! The reaper: on a schedule, anything tagged as ours (instances) or under our IAM path (roles,
//! instance profiles) whose request is over, or unknown to this ledger, and older than a grace,
//! is torn down and audited as `reaped`. It covers what a crash, a bug or a hand-made mess left
//! behind. Resources of open requests are never touched.
//!
//! Note: "unknown to this ledger" includes another fargate-connect with its own database in
//! the same account and region; run one per account (or give each its own IAM path).

use crate::aws::{ec2, iam, tags, AwsError, IAM_PATH};
use crate::ids::RequestId;
use crate::ledger::{now_ms, LedgerError};
use crate::provision::Provisioner;
use aws_sdk_ec2::types::Filter;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub instances: Vec<String>,
    pub roles: Vec<String>,
    /// Orphans that could not be removed this pass (e.g. AccessDenied on an instance someone
    /// tagged `managed` by hand without a request id): the pass goes on past them, and the
    /// next pass tries again.
    pub failed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Whether the resource of `request_id`, created at `created_ms`, is an orphan now.
async fn is_orphan(
    provisioner: &Provisioner,
    request_id: Option<&str>,
    created_ms: i64,
    grace: Duration,
) -> Result<bool, LedgerError> {
    let now = now_ms();
    let grace_ms = grace.as_millis() as i64;
    let Some(id) = request_id else { return Ok(now - created_ms >= grace_ms) };
    match provisioner.ledger.get(id).await {
        Ok(request) if request.state().is_final() => {
            let over_since = request.ended_at.unwrap_or(request.updated_at);
            Ok(now - over_since >= grace_ms)
        }
        Ok(_) => Ok(false),
        Err(LedgerError::NotFound(_)) => Ok(now - created_ms >= grace_ms),
        Err(e) => Err(e),
    }
}

fn ms(date: Option<&aws_smithy_types::DateTime>) -> i64 {
    date.map(|d| d.secs() * 1000 + i64::from(d.subsec_nanos() / 1_000_000)).unwrap_or(0)
}

/// One pass of the reaper. Public so tests (and operators) can run it on demand.
pub async fn reap(provisioner: &Provisioner, grace: Duration) -> Result<Reaped, ReapError> {
    let aws = &provisioner.aws;
    let mut reaped = Reaped::default();

    let mut pages = aws
        .ec2
        .describe_instances()
        .filters(Filter::builder().name(format!("tag:{}", tags::MANAGED)).values("true").build())
        .filters(ec2::live_states())
        .into_paginator()
        .send();
    let mut instances = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("DescribeInstances", e))?;
        instances.extend(page.reservations().iter().flat_map(|r| r.instances()).cloned());
    }
    for instance in &instances {
        let Some(instance_id) = instance.instance_id() else { continue };
        let request_id = instance
            .tags()
            .iter()
            .find(|t| t.key() == Some(tags::REQUEST_ID))
            .and_then(|t| t.value())
            .map(str::to_string);
        if !is_orphan(provisioner, request_id.as_deref(), ms(instance.launch_time()), grace).await? {
            continue;
        }
        if let Err(e) = aws.ec2.terminate_instances().instance_ids(instance_id).send().await {
            let e = AwsError::from_sdk("TerminateInstances", e);
            if e.code_is(ec2::INSTANCE_NOT_FOUND) {
                continue; // gone meanwhile
            }
            tracing::error!(instance_id, request_id, error = %e, "could not reap an orphaned instance");
            reaped.failed.push(instance_id.to_string());
            continue;
        }
        if let Some(request) = &request_id {
            let _ = crate::aws::ssm::end_sessions(&aws.ssm, instance_id).await;
            tracing::warn!(request_id = request, instance_id, "reaped an orphaned bastion");
        }
        provisioner.ledger.record_reaped(request_id.as_deref(), json!({"instance_id": instance_id})).await?;
        reaped.instances.push(instance_id.to_string());
    }

    // Roles and instance profiles share the request's name; either may be left alone.
    let mut names: Vec<(String, i64)> = Vec::new();
    // Both listings are paginated (IAM answers at most 100 per page by default).
    let mut roles = aws.iam.list_roles().path_prefix(IAM_PATH).into_paginator().items().send();
    while let Some(role) = roles.next().await {
        let role = role.map_err(|e| AwsError::from_sdk("ListRoles", e))?;
        // Filter by path here too: a role elsewhere with a name like ours is not ours.
        if role.path().starts_with(IAM_PATH) {
            names.push((role.role_name().to_string(), ms(Some(role.create_date()))));
        }
    }
    let roles_found: std::collections::HashSet<String> = names.iter().map(|(n, _)| n.clone()).collect();
    let mut profiles = aws.iam.list_instance_profiles().path_prefix(IAM_PATH).into_paginator().items().send();
    let mut found_profiles = Vec::new();
    while let Some(profile) = profiles.next().await {
        found_profiles.push(profile.map_err(|e| AwsError::from_sdk("ListInstanceProfiles", e))?);
    }
    for profile in found_profiles.iter().filter(|p| p.path().starts_with(IAM_PATH)) {
        if !names.iter().any(|(n, _)| n == profile.instance_profile_name()) {
            names.push((profile.instance_profile_name().to_string(), ms(Some(profile.create_date()))));
        }
    }
    let profiles_found: std::collections::HashSet<String> = found_profiles
        .iter()
        .filter(|p| p.path().starts_with(IAM_PATH))
        .map(|p| p.instance_profile_name().to_string())
        .collect();
    for (name, created) in names {
        // Only names we make: fargate-connect-<request id>.
        let Some(request_id) = name.strip_prefix("fargate-connect-").and_then(|id| RequestId::parse(id).ok()) else {
            continue;
        };
        if !is_orphan(provisioner, Some(request_id.as_str()), created, grace).await? {
            continue;
        }
        // Only the parts listed above exist: naming a missing one would be refused (iam.rs).
        let parts = iam::Parts { role: roles_found.contains(&name), profile: profiles_found.contains(&name) };
        match iam::delete_parts(&aws.iam, request_id.as_str(), parts).await {
            Ok(true) => {
                tracing::warn!(request_id = request_id.as_str(), role = name, "reaped an orphaned role");
                provisioner.ledger.record_reaped(Some(request_id.as_str()), json!({"role": name})).await?;
                reaped.roles.push(name);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(role = name, error = %e, "could not reap an orphaned role");
                reaped.failed.push(name);
            }
        }
    }
    // The shared bastion security group stays: it belongs to no request.
    Ok(reaped)
}
