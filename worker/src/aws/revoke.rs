//! Ending a bastion's access, before its parts are deleted: the role's credentials are
//! revoked first (an inline `Deny *` on every token issued before now, AWS's own "revoke
//! active sessions" policy, and the role's grants removed), so nothing new can be opened with
//! them while the rest runs; then the Session Manager sessions are swept, by target (the
//! bastion) and by owner (the role, whatever its ARN's spelling: ECS Exec sessions into the
//! task are the role's, their target is the task). IAM's changes take effect eventually, so
//! the teardown sweeps once more after a pause before it deletes the role.

use super::iam::{existing_parts, role_name, INLINE_POLICY, REVOKE_POLICY};
use super::AwsError;
use aws_sdk_ssm::types::SessionState;
use serde_json::json;

/// The revocation document: denies everything to tokens issued before `now_rfc3339`.
pub fn revoke_document(now_rfc3339: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "RevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": now_rfc3339}}
        }]
    })
    .to_string()
}

/// Revokes the request's role: puts the revocation policy, then removes the grants. Returns
/// false when there is no role (never made, or already deleted). The role is looked up by its
/// path first, as `iam::existing_parts` says why: a call naming a role that does not exist is
/// refused (AccessDenied), not answered NoSuchEntity.
pub async fn revoke(iam: &aws_sdk_iam::Client, request_id: &str, now_rfc3339: &str) -> Result<bool, AwsError> {
    if !existing_parts(iam, request_id).await?.role {
        return Ok(false);
    }
    let name = role_name(request_id);
    let put = iam
        .put_role_policy()
        .role_name(&name)
        .policy_name(REVOKE_POLICY)
        .policy_document(revoke_document(now_rfc3339))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutRolePolicy", e));
    match put {
        Ok(_) => {}
        Err(e) if e.code_is("NoSuchEntity") => return Ok(false),
        Err(e) => return Err(e),
    }
    match iam.delete_role_policy().role_name(&name).policy_name(INLINE_POLICY).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::from_sdk("DeleteRolePolicy", e);
            if e.code_is("NoSuchEntity") {
                Ok(true)
            } else {
                Err(e)
            }
        }
    }
}

/// The role an owner ARN names, however it is spelt: the assumed-role session ARN
/// (`arn:aws:sts::1:assumed-role/ROLE/SESSION`), the role's own ARN with or without its path
/// (`arn:aws:iam::1:role/fargate-connect/ROLE`), in any partition.
pub fn owner_role(owner: &str) -> Option<&str> {
    let resource = owner.splitn(6, ':').nth(5)?;
    if let Some(rest) = resource.strip_prefix("assumed-role/") {
        return rest.split('/').next().filter(|r| !r.is_empty());
    }
    resource.strip_prefix("role/").and_then(|rest| rest.rsplit('/').next()).filter(|r| !r.is_empty())
}

/// Whether a session is the request's to end: on its bastion, or opened with its role.
pub fn is_ours(request_id: &str, instance_id: Option<&str>, target: &str, owner: &str) -> bool {
    instance_id.is_some_and(|i| i == target) || owner_role(owner) == Some(role_name(request_id).as_str())
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    pub ended: usize,
    /// What failed, if anything (the teardown goes on: a failing sweep must not keep the role).
    pub error: Option<String>,
}

/// Ends every active session that is the request's ([`is_ours`]): one listing of the account's
/// active sessions, matched here rather than by Session Manager's exact-match filters.
pub async fn sweep_sessions(ssm: &aws_sdk_ssm::Client, request_id: &str, instance_id: Option<&str>) -> Sweep {
    let mut sweep = Sweep::default();
    let mut pages = ssm.describe_sessions().state(SessionState::Active).into_paginator().send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => ids.extend(
                page.sessions()
                    .iter()
                    .filter(|s| is_ours(request_id, instance_id, s.target().unwrap_or(""), s.owner().unwrap_or("")))
                    .filter_map(|s| s.session_id())
                    .map(str::to_string),
            ),
            Err(e) => {
                sweep.error = Some(AwsError::from_sdk("DescribeSessions", e).to_string());
                break;
            }
        }
    }
    for id in ids {
        match ssm.terminate_session().session_id(&id).send().await {
            Ok(_) => sweep.ended += 1,
            Err(e) => {
                let e = AwsError::from_sdk("TerminateSession", e);
                // Ended meanwhile (by its owner, or its target going away).
                if !e.code_is("DoesNotExistException") {
                    sweep.error = Some(e.to_string());
                }
            }
        }
    }
    sweep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_matched_by_its_role_however_the_arn_is_spelt() {
        for owner in [
            "arn:aws:sts::123456789012:assumed-role/fargate-connect-fc-abc/i-0123",
            "arn:aws-cn:sts::123456789012:assumed-role/fargate-connect-fc-abc/i-0123",
            "arn:aws:iam::123456789012:role/fargate-connect/fargate-connect-fc-abc",
            "arn:aws:iam::123456789012:role/fargate-connect-fc-abc",
        ] {
            assert_eq!(owner_role(owner), Some("fargate-connect-fc-abc"), "{owner}");
            assert!(is_ours("fc-abc", None, "ecs:prod_t_t-1", owner), "{owner}");
        }
        // Another request's role, a longer name with ours as its prefix, a user, nonsense.
        for owner in [
            "arn:aws:sts::1:assumed-role/fargate-connect-fc-abd/i-0123",
            "arn:aws:sts::1:assumed-role/fargate-connect-fc-abcd/i-0123",
            "arn:aws:iam::1:user/fargate-connect-fc-abc",
            "fargate-connect-fc-abc",
            "",
        ] {
            assert!(!is_ours("fc-abc", Some("i-0bastion"), "ecs:prod_t_t-1", owner), "{owner}");
        }
        assert!(is_ours("fc-abc", Some("i-0bastion"), "i-0bastion", "arn:aws:iam::1:user/carol"));
        assert!(!is_ours("fc-abc", None, "i-0bastion", "arn:aws:iam::1:user/carol"));
    }

    #[test]
    fn the_revocation_denies_every_token_issued_before_it() {
        let doc: serde_json::Value = serde_json::from_str(&revoke_document("2026-12-08T03:30:00Z")).unwrap();
        let statement = &doc["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(statement["Action"], "*");
        assert_eq!(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"], "2026-12-08T03:30:00Z");
    }
}
