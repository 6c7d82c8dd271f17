//! IAM: one role and instance profile per request, under `/fargate-connect/` and the
//! configured permissions boundary, trusted by EC2 only, allowed to ECS-Exec into one task's
//! one container and nothing else. Every step is idempotent, so a retry or a restart simply
//! continues; teardown deletes whatever exists.

use super::{tags, AwsError, IAM_PATH};
use aws_sdk_iam::types::Tag;
use serde_json::json;

/// AWS's managed policy that lets the SSM agent register and carry sessions.
pub const SSM_CORE_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
const INLINE_POLICY: &str = "ecs-exec-one-task";

/// Role and instance profile name for a request (the same for both).
pub fn role_name(request_id: &str) -> String {
    format!("fargate-connect-{request_id}")
}

/// What the role is for.
pub struct RoleSpec<'a> {
    pub request_id: &'a str,
    pub requester: &'a str,
    pub service: &'a str,
    pub cluster_arn: &'a str,
    pub task_arn: &'a str,
    pub container: &'a str,
    pub permissions_boundary: Option<&'a str>,
}

pub fn trust_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// `ecs:ExecuteCommand` on that task (and its cluster, which ECS also authorises), for that
/// container only.
pub fn exec_policy(cluster_arn: &str, task_arn: &str, container: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ExecIntoOneContainerOfOneTask",
            "Effect": "Allow",
            "Action": "ecs:ExecuteCommand",
            "Resource": [cluster_arn, task_arn],
            "Condition": {"StringEquals": {"ecs:container-name": container}}
        }]
    })
    .to_string()
}

fn iam_tags(spec: &RoleSpec<'_>) -> Result<Vec<Tag>, AwsError> {
    [
        (tags::MANAGED, "true"),
        (tags::REQUEST_ID, spec.request_id),
        (tags::REQUESTER, spec.requester),
        (tags::SERVICE, spec.service),
    ]
    .into_iter()
    .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| AwsError::config(&e.to_string())))
    .collect()
}

/// Creates (or finds) the role and its instance profile; returns the profile's ARN.
pub async fn ensure_role(iam: &aws_sdk_iam::Client, spec: &RoleSpec<'_>) -> Result<String, AwsError> {
    let name = role_name(spec.request_id);
    let tags = iam_tags(spec)?;
    let created = iam
        .create_role()
        .role_name(&name)
        .path(IAM_PATH)
        .assume_role_policy_document(trust_policy())
        .description(format!("fargate-connect bastion for {} ({})", spec.request_id, spec.service))
        .max_session_duration(3600)
        .set_permissions_boundary(spec.permissions_boundary.map(str::to_string))
        .set_tags(Some(tags.clone()))
        .send()
        .await;
    if let Err(e) = created {
        let e = AwsError::from_sdk("CreateRole", e);
        if !e.code_is("EntityAlreadyExists") {
            return Err(e);
        }
    }
    iam.attach_role_policy()
        .role_name(&name)
        .policy_arn(SSM_CORE_POLICY)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("AttachRolePolicy", e))?;
    iam.put_role_policy()
        .role_name(&name)
        .policy_name(INLINE_POLICY)
        .policy_document(exec_policy(spec.cluster_arn, spec.task_arn, spec.container))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutRolePolicy", e))?;

    let profile = match iam
        .create_instance_profile()
        .instance_profile_name(&name)
        .path(IAM_PATH)
        .set_tags(Some(tags))
        .send()
        .await
    {
        Ok(out) => out.instance_profile().cloned(),
        Err(e) => {
            let e = AwsError::from_sdk("CreateInstanceProfile", e);
            if !e.code_is("EntityAlreadyExists") {
                return Err(e);
            }
            iam.get_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetInstanceProfile", e))?
                .instance_profile()
                .cloned()
        }
    };
    let profile = profile.ok_or_else(|| AwsError::config("IAM returned no instance profile"))?;
    if !profile.roles().iter().any(|r| r.role_name() == name) {
        let added = iam.add_role_to_instance_profile().instance_profile_name(&name).role_name(&name).send().await;
        if let Err(e) = added {
            let e = AwsError::from_sdk("AddRoleToInstanceProfile", e);
            if !e.code_is("LimitExceeded") {
                return Err(e);
            }
        }
    }
    Ok(profile.arn().to_string())
}

/// Deletes the request's instance profile and role, whatever part of them exists.
/// Returns true when something was deleted.
pub async fn delete_role(iam: &aws_sdk_iam::Client, request_id: &str) -> Result<bool, AwsError> {
    let name = role_name(request_id);
    let mut deleted = false;
    match iam.get_instance_profile().instance_profile_name(&name).send().await {
        Ok(out) => {
            if let Some(profile) = out.instance_profile() {
                for role in profile.roles() {
                    ignore_missing(
                        iam.remove_role_from_instance_profile()
                            .instance_profile_name(&name)
                            .role_name(role.role_name())
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| AwsError::from_sdk("RemoveRoleFromInstanceProfile", e)),
                    )?;
                }
            }
            deleted |= ignore_missing(
                iam.delete_instance_profile()
                    .instance_profile_name(&name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteInstanceProfile", e)),
            )?;
        }
        Err(e) => {
            ignore_missing(Err(AwsError::from_sdk("GetInstanceProfile", e)))?;
        }
    }
    let attached = match iam.list_attached_role_policies().role_name(&name).send().await {
        Ok(out) => out.attached_policies().to_vec(),
        Err(e) => {
            ignore_missing(Err(AwsError::from_sdk("ListAttachedRolePolicies", e)))?;
            return Ok(deleted);
        }
    };
    for policy in attached {
        if let Some(arn) = policy.policy_arn() {
            ignore_missing(
                iam.detach_role_policy()
                    .role_name(&name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DetachRolePolicy", e)),
            )?;
        }
    }
    let inline = iam
        .list_role_policies()
        .role_name(&name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListRolePolicies", e))?;
    for policy in inline.policy_names() {
        ignore_missing(
            iam.delete_role_policy()
                .role_name(&name)
                .policy_name(policy)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk("DeleteRolePolicy", e)),
        )?;
    }
    deleted |= ignore_missing(
        iam.delete_role().role_name(&name).send().await.map(|_| ()).map_err(|e| AwsError::from_sdk("DeleteRole", e)),
    )?;
    Ok(deleted)
}

/// `NoSuchEntity` means the thing is already gone: that is what teardown wants.
fn ignore_missing(result: Result<(), AwsError>) -> Result<bool, AwsError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.code_is("NoSuchEntity") => Ok(false),
        Err(e) => Err(e),
    }
}
