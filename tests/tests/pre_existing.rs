//! What the bot finds already there under its names: a role `fargate-connect-fc-…` someone
//! else made (another trust, a managed policy attached) is refused, never handed out; the
//! bastion security group found by name is refused once it has an inbound rule. And a role of
//! its own (an earlier attempt's) is reused as before.

use harness::moto::new_account;
use harness::seed::{aws_for, seed};
use serde_json::json;
use worker::aws::ec2::ensure_security_group;
use worker::aws::iam::{ensure_role, RoleSpec};
use worker::aws::IAM_PATH;

fn spec<'a>(request_id: &'a str, boundary: &'a str) -> RoleSpec<'a> {
    RoleSpec {
        request_id,
        requester: "U0ALICE",
        service: "web",
        cluster_arn: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
        task_arn: "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c",
        container: "app",
        permissions_boundary: Some(boundary),
        grants: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_our_name_made_otherwise_is_refused_and_our_own_is_reused() {
    let account = new_account();
    let aws = aws_for(&account);
    let seeded = seed(&aws).await;
    // Ours, from an earlier attempt: found and reused.
    let first = ensure_role(&aws.iam, &spec("fc-aaaaaaaa", &seeded.permissions_boundary_arn)).await.unwrap();
    let again = ensure_role(&aws.iam, &spec("fc-aaaaaaaa", &seeded.permissions_boundary_arn)).await.unwrap();
    assert_eq!(first, again);

    // Someone else's, trusting another account.
    let foreign_trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole"}]
    });
    aws.iam
        .create_role()
        .role_name("fargate-connect-fc-bbbbbbbb")
        .path(IAM_PATH)
        .assume_role_policy_document(foreign_trust.to_string())
        .send()
        .await
        .unwrap();
    let err = ensure_role(&aws.iam, &spec("fc-bbbbbbbb", &seeded.permissions_boundary_arn)).await.unwrap_err();
    assert!(err.to_string().contains("trusts other principals"), "{err}");
    assert!(!err.retryable, "{err:?}");

    // Ours in trust, but with a managed policy attached.
    aws.iam
        .create_role()
        .role_name("fargate-connect-fc-cccccccc")
        .path(IAM_PATH)
        .assume_role_policy_document(worker::aws::iam::trust_policy("aws"))
        .send()
        .await
        .unwrap();
    let admin = aws
        .iam
        .create_policy()
        .policy_name("everything")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    aws.iam
        .attach_role_policy()
        .role_name("fargate-connect-fc-cccccccc")
        .policy_arn(admin.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    let err = ensure_role(&aws.iam, &spec("fc-cccccccc", &seeded.permissions_boundary_arn)).await.unwrap_err();
    assert!(err.to_string().contains("managed policies attached"), "{err}");
    // Neither was changed: no inline policy of ours was written into them.
    for name in ["fargate-connect-fc-bbbbbbbb", "fargate-connect-fc-cccccccc"] {
        let inline = aws.iam.list_role_policies().role_name(name).send().await.unwrap();
        assert!(inline.policy_names().is_empty(), "{name}: {:?}", inline.policy_names());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bastion_group_found_by_name_is_refused_once_it_lets_traffic_in() {
    let account = new_account();
    let aws = aws_for(&account);
    let seeded = seed(&aws).await;
    let group = aws.ec2.describe_security_groups().group_ids(&seeded.bastion_security_group_id).send().await.unwrap();
    let vpc = group.security_groups()[0].vpc_id().unwrap().to_string();
    assert_eq!(ensure_security_group(&aws.ec2, &vpc).await.unwrap(), seeded.bastion_security_group_id);
    aws.ec2
        .authorize_security_group_ingress()
        .group_id(&seeded.bastion_security_group_id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let err = ensure_security_group(&aws.ec2, &vpc).await.unwrap_err();
    assert!(err.to_string().contains("inbound rule"), "{err}");
}
