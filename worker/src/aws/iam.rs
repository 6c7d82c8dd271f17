//! IAM: one role and instance profile per request, under `/fargate-connect/` and the
//! configured permissions boundary, trusted by EC2 only, allowed to ECS-Exec into one task's
//! one container and nothing else. Every step is idempotent, so a retry or a restart simply
//! continues; teardown deletes whatever exists.

use super::{tags, AwsError, IAM_PATH};
use aws_sdk_iam::types::Tag;
use serde_json::json;

/// The role's one inline policy (the SSM agent, and ECS Exec into one task). No managed policy:
/// `AmazonSSMManagedInstanceCore` also allows `ssm:GetParameter(s)` on `*`, every Parameter
/// Store secret of the account (the bot's own Slack secrets included).
pub const INLINE_POLICY: &str = "ecs-exec-one-task";

/// The inline policy a teardown puts first: it revokes every credential the role issued
/// before it (`revoke`).
pub const REVOKE_POLICY: &str = "revoked";

/// What the SSM agent needs to register, carry Session Manager sessions (`ssmmessages`) and
/// run the bot's Run Command probes (`ec2messages`); the Systems Manager guide's minimal
/// instance permissions, without the State Manager and Parameter Store reads of the managed
/// policy.
pub const SSM_AGENT_ACTIONS: &[&str] = &[
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
];

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
    /// Further statements the account's session settings need (KMS keys, session log
    /// targets), from `exec_settings::grant_statements`.
    pub grants: Vec<serde_json::Value>,
}

/// EC2 may assume the role, and nothing else. In the China regions (`aws-cn`) EC2's service
/// principal is also spelt `ec2.amazonaws.com.cn`: both are trusted there.
pub fn trust_policy(partition: &str) -> String {
    let service = if partition == "aws-cn" {
        json!(["ec2.amazonaws.com", "ec2.amazonaws.com.cn"])
    } else {
        json!("ec2.amazonaws.com")
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// The partition of an ARN (`aws` when it names none).
fn partition_of(arn: &str) -> &str {
    arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws")
}

/// `ecs:ExecuteCommand` on that task (and its cluster, which ECS also authorises), for that
/// container only; plus what `connect` needs to find the service's replacement task should the
/// first one stop: listing tasks (authorised on `*`, narrowed by `ecs:cluster`), describing that
/// task or one of that service (not every task of the cluster), and exec into a task of that service (by ECS's managed
/// `aws:ecs:serviceName` tag, present when the service enables ECS managed tags), that
/// container only; plus the SSM agent's own actions.
pub fn exec_policy(
    cluster_arn: &str,
    task_arn: &str,
    container: &str,
    service: &str,
    grants: &[serde_json::Value],
) -> String {
    let tasks_in_cluster = cluster_arn.replacen(":cluster/", ":task/", 1) + "/*";
    let mut policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ExecIntoOneContainerOfOneTask",
                "Effect": "Allow",
                "Action": "ecs:ExecuteCommand",
                "Resource": [cluster_arn, task_arn],
                "Condition": {"StringEquals": {"ecs:container-name": container}}
            },
            {
                "Sid": "ExecIntoAReplacementTaskOfTheSameService",
                "Effect": "Allow",
                "Action": "ecs:ExecuteCommand",
                // ECS authorises ExecuteCommand on the cluster and on the task (both required).
                "Resource": [cluster_arn, &tasks_in_cluster],
                "Condition": {"StringEquals": {
                    "ecs:container-name": container,
                    "aws:ResourceTag/aws:ecs:serviceName": service
                }}
            },
            {
                "Sid": "FindTheServicesTasks",
                "Effect": "Allow",
                "Action": "ecs:ListTasks",
                "Resource": "*",
                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}
            },
            {
                "Sid": "DescribeTheTask",
                "Effect": "Allow",
                "Action": "ecs:DescribeTasks",
                "Resource": task_arn
            },
            {
                "Sid": "DescribeAReplacementTaskOfTheSameService",
                "Effect": "Allow",
                "Action": "ecs:DescribeTasks",
                "Resource": tasks_in_cluster,
                "Condition": {
                    "ArnEquals": {"ecs:cluster": cluster_arn},
                    "StringEquals": {"aws:ResourceTag/aws:ecs:serviceName": service}
                }
            },
            {
                "Sid": "SsmAgent",
                "Effect": "Allow",
                "Action": SSM_AGENT_ACTIONS,
                "Resource": "*"
            }
        ]
    });
    if let Some(statements) = policy["Statement"].as_array_mut() {
        statements.extend(grants.iter().cloned());
    }
    policy.to_string()
}

/// The policy documents of a role: its inline policies and the default versions of its
/// attached managed policies, parsed.
pub struct RoleDocuments(pub Vec<serde_json::Value>);

/// A policy document as IAM returns it (URL-encoded, or plain JSON), parsed.
pub fn parse_document(text: &str) -> Option<serde_json::Value> {
    let decoded = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        urlencoding::decode(text).ok()?.into_owned()
    };
    serde_json::from_str(&decoded).ok()
}

impl RoleDocuments {
    pub async fn fetch(iam: &aws_sdk_iam::Client, role_name: &str) -> Result<Self, AwsError> {
        let mut documents = Vec::new();
        let inline = iam
            .list_role_policies()
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListRolePolicies", e))?;
        for name in inline.policy_names() {
            let policy = iam
                .get_role_policy()
                .role_name(role_name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetRolePolicy", e))?;
            documents.extend(parse_document(policy.policy_document()));
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListAttachedRolePolicies", e))?;
        for policy in attached.attached_policies() {
            let Some(arn) = policy.policy_arn() else { continue };
            let meta = iam.get_policy().policy_arn(arn).send().await.map_err(|e| AwsError::from_sdk("GetPolicy", e))?;
            let Some(version) = meta.policy().and_then(|p| p.default_version_id()) else { continue };
            let version = iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("GetPolicyVersion", e))?;
            if let Some(text) = version.policy_version().and_then(|v| v.document()) {
                documents.extend(parse_document(text));
            }
        }
        Ok(Self(documents))
    }
}

/// Whether `action` is allowed by some statement and denied by none (actions and wildcards
/// only: the ssmmessages actions are granted on `*`).
pub fn allows_actions(documents: &[serde_json::Value], action: &str) -> bool {
    let mut allowed = false;
    for document in documents {
        let statements = match &document["Statement"] {
            serde_json::Value::Array(items) => items.clone(),
            single @ serde_json::Value::Object(_) => vec![single.clone()],
            _ => continue,
        };
        for statement in statements {
            let actions: Vec<&str> = match &statement["Action"] {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).collect(),
                _ => continue,
            };
            if !actions.iter().any(|pattern| wildcard_match(pattern, action)) {
                continue;
            }
            match statement["Effect"].as_str() {
                Some("Deny") => return false,
                Some("Allow") => allowed = true,
                _ => {}
            }
        }
    }
    allowed
}

/// IAM action matching: case-insensitive, `*` for any run, `?` for one character.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
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
        .assume_role_policy_document(trust_policy(partition_of(spec.cluster_arn)))
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
        // Made by an earlier attempt of this job, or by someone else: use it only if it is as
        // this bot makes them.
        check_existing_role(iam, &name, partition_of(spec.cluster_arn)).await?;
    }
    iam.put_role_policy()
        .role_name(&name)
        .policy_name(INLINE_POLICY)
        .policy_document(exec_policy(spec.cluster_arn, spec.task_arn, spec.container, spec.service, &spec.grants))
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

/// A role with our name that already exists must be one this bot made: trusted by EC2 alone,
/// with no managed policy attached and no inline policy but ours. Anything else is refused (a
/// role someone prepared with wider grants or another trust would be handed to the person).
/// Read through ListRoles (which the bot may call on its path) and the two policy lists.
async fn check_existing_role(iam: &aws_sdk_iam::Client, name: &str, partition: &str) -> Result<(), AwsError> {
    let refuse = |why: &str| {
        AwsError::config(&format!(
            "an IAM role named {name} already exists and {why}; this bot did not make it so. Find out who \
             made it and delete it before asking again"
        ))
    };
    let mut roles = iam.list_roles().path_prefix(IAM_PATH).into_paginator().items().send();
    let mut trust = None;
    while let Some(role) = roles.next().await {
        let role = role.map_err(|e| AwsError::from_sdk("ListRoles", e))?;
        if role.role_name() == name {
            trust = role.assume_role_policy_document().and_then(parse_document);
        }
    }
    let Some(trust) = trust else {
        // Not listed yet (IAM is eventually consistent): the job's next attempt looks again.
        return Err(AwsError {
            action: "ListRoles",
            code: None,
            message: format!(
                "a role named {name} exists but is not listed under {IAM_PATH}: someone else's on another path, \
                 or IAM does not list it yet (tried again)"
            ),
            retryable: true,
        });
    };
    let ours: serde_json::Value = serde_json::from_str(&trust_policy(partition)).expect("our trust policy is JSON");
    if trust != ours {
        return Err(refuse("trusts other principals than EC2"));
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListAttachedRolePolicies", e))?;
    if !attached.attached_policies().is_empty() {
        return Err(refuse("has managed policies attached"));
    }
    let inline =
        iam.list_role_policies().role_name(name).send().await.map_err(|e| AwsError::from_sdk("ListRolePolicies", e))?;
    if inline.policy_names().iter().any(|p| p != INLINE_POLICY) {
        return Err(refuse("has inline policies other than ours"));
    }
    Ok(())
}

/// Which of a request's role and instance profile exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub role: bool,
    pub profile: bool,
}

/// Looks the request's role and instance profile up by listing the path (authorised on `*`).
/// Never by name: IAM authorises a call that names an entity which does not exist against an
/// ARN without its path (`role/NAME`), which the module's path-scoped statements refuse, so a
/// teardown that "just tries" gets AccessDenied, not NoSuchEntity, for a part never created.
pub async fn existing_parts(iam: &aws_sdk_iam::Client, request_id: &str) -> Result<Parts, AwsError> {
    let name = role_name(request_id);
    let mut parts = Parts { role: false, profile: false };
    let mut roles = iam.list_roles().path_prefix(IAM_PATH).into_paginator().items().send();
    while let Some(role) = roles.next().await {
        parts.role |= role.map_err(|e| AwsError::from_sdk("ListRoles", e))?.role_name() == name;
    }
    let mut profiles = iam.list_instance_profiles().path_prefix(IAM_PATH).into_paginator().items().send();
    while let Some(profile) = profiles.next().await {
        parts.profile |=
            profile.map_err(|e| AwsError::from_sdk("ListInstanceProfiles", e))?.instance_profile_name() == name;
    }
    Ok(parts)
}

/// Deletes the request's instance profile and role, whatever part of them exists (looked up
/// first). Returns true when something was deleted.
pub async fn delete_role(iam: &aws_sdk_iam::Client, request_id: &str) -> Result<bool, AwsError> {
    let parts = existing_parts(iam, request_id).await?;
    delete_parts(iam, request_id, parts).await
}

/// Deletes the parts of the request's role and profile that `parts` says exist.
///
/// The fast path undoes exactly what `ensure_role` did (4 calls); should the role carry
/// anything else (a policy attached by hand, or the managed policy earlier versions attached),
/// IAM refuses with `DeleteConflict` and the thorough path lists and removes everything.
pub async fn delete_parts(iam: &aws_sdk_iam::Client, request_id: &str, parts: Parts) -> Result<bool, AwsError> {
    let name = role_name(request_id);
    let mut deleted = false;
    if parts.profile {
        if parts.role {
            ignore_missing(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(&name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("RemoveRoleFromInstanceProfile", e)),
            )?;
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
    if !parts.role {
        return Ok(deleted);
    }
    for policy in [INLINE_POLICY, REVOKE_POLICY] {
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
    match iam.delete_role().role_name(&name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::from_sdk("DeleteRole", e);
            if e.code_is("NoSuchEntity") {
                Ok(deleted)
            } else if e.code_is("DeleteConflict") {
                deleted |= delete_role_thoroughly(iam, request_id).await?;
                Ok(deleted)
            } else {
                Err(e)
            }
        }
    }
}

/// Lists and removes every policy of the role (its profile is gone by now), then deletes it.
async fn delete_role_thoroughly(iam: &aws_sdk_iam::Client, request_id: &str) -> Result<bool, AwsError> {
    let name = role_name(request_id);
    let mut deleted = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_matching_follows_iam_wildcards_and_denies() {
        let allow_all = json!({"Statement": {"Effect": "Allow", "Action": "ssmmessages:*", "Resource": "*"}});
        assert!(allows_actions(std::slice::from_ref(&allow_all), "ssmmessages:OpenDataChannel"));
        let create_only =
            json!({"Statement": [{"Effect": "Allow", "Action": ["ssmmessages:Create*"], "Resource": "*"}]});
        assert!(allows_actions(std::slice::from_ref(&create_only), "ssmmessages:CreateDataChannel"));
        assert!(!allows_actions(std::slice::from_ref(&create_only), "ssmmessages:OpenDataChannel"));
        let deny = json!({"Statement": [{"Effect": "Deny", "Action": "ssmmessages:OpenDataChannel", "Resource": "*"}]});
        assert!(!allows_actions(&[allow_all, deny], "ssmmessages:OpenDataChannel"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("SSMMessages:open?ataChannel", "ssmmessages:OpenDataChannel"));
        assert_eq!(parse_document("%7B%22Statement%22%3A%5B%5D%7D").unwrap(), json!({"Statement": []}));
    }

    #[test]
    fn the_exec_policy_names_one_task_and_one_container() {
        let policy: serde_json::Value = serde_json::from_str(&exec_policy(
            "arn:aws:ecs:eu-west-1:1:cluster/prod",
            "arn:aws:ecs:eu-west-1:1:task/prod/abc",
            "app",
            "web",
            &[],
        ))
        .unwrap();
        let first = &policy["Statement"][0];
        assert_eq!(first["Resource"][1], "arn:aws:ecs:eu-west-1:1:task/prod/abc");
        assert_eq!(first["Condition"]["StringEquals"]["ecs:container-name"], "app");
        assert_eq!(policy["Statement"][1]["Resource"][1], "arn:aws:ecs:eu-west-1:1:task/prod/*");
        assert_eq!(policy["Statement"][1]["Condition"]["StringEquals"]["aws:ResourceTag/aws:ecs:serviceName"], "web");
        // ListTasks is authorised on "*" narrowed by the cluster; nothing reads parameters.
        assert_eq!(policy["Statement"][2]["Resource"], "*");
        assert_eq!(
            policy["Statement"][2]["Condition"]["ArnEquals"]["ecs:cluster"],
            "arn:aws:ecs:eu-west-1:1:cluster/prod"
        );
        assert!(!policy.to_string().contains("ssm:GetParameter"), "{policy}");
    }

    #[test]
    fn ec2_is_trusted_by_both_its_names_in_the_china_regions() {
        let commercial: serde_json::Value = serde_json::from_str(&trust_policy("aws")).unwrap();
        assert_eq!(commercial["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
        let china: serde_json::Value =
            serde_json::from_str(&trust_policy(partition_of("arn:aws-cn:ecs:cn-north-1:1:cluster/p"))).unwrap();
        assert_eq!(
            china["Statement"][0]["Principal"]["Service"],
            serde_json::json!(["ec2.amazonaws.com", "ec2.amazonaws.com.cn"])
        );
        assert_eq!(partition_of("arn:aws-us-gov:ecs:us-gov-west-1:1:cluster/p"), "aws-us-gov");
    }
}
