//! The credential perimeter, added to every bastion role (and, by the Terraform module, to the
//! permissions boundary the bot cannot rewrite): the role's instance credentials work only
//! from the bastion. Each rule is a `Deny` that exempts AWS services acting on the role's
//! behalf (`aws:ViaAWSService`) and applies only to instance credentials
//! (`ec2:SourceInstanceARN`, which AWS sets on every call made with them).
//!
//! - Through a VPC endpoint: from the VPC and the private address the credentials were
//!   delivered to (`aws:EC2InstanceSourceVPC` = `aws:SourceVpc`,
//!   `aws:EC2InstanceSourcePrivateIPv4` = `aws:VpcSourceIp`); a call through no endpoint
//!   carries neither `aws:SourceVpc` nor `aws:VpcSourceIp`, and IAM then applies neither.
//!   Off where the endpoints live in a shared hub VPC (`aws:SourceVpc` is the hub's).
//! - Only through the listed endpoints (`aws.allowed_vpc_endpoint_ids`, the hub's): a call
//!   through any other endpoint is refused.
//! - Through no endpoint (a NAT): only from the NAT's public addresses
//!   (`aws.bastion_egress_cidrs`), so credentials carried to a laptop are refused everywhere.
//! - `ecs:ExecuteCommand` only through an endpoint at all (`aws.exec_through_vpc_endpoint`,
//!   where an `ecs` endpoint serves the bastions' VPC).

use serde_json::json;

/// Which rules apply (from `[aws]` in the config).
#[derive(Debug, Clone, Default)]
pub struct Perimeter<'a> {
    pub in_vpc: bool,
    pub exec_through_vpc_endpoint: bool,
    pub egress_cidrs: &'a [String],
    pub vpc_endpoint_ids: &'a [String],
}

impl Perimeter<'_> {
    /// The `Deny` statements.
    pub fn statements(&self) -> Vec<serde_json::Value> {
        let instance_credentials = |mut condition: serde_json::Value| {
            condition["Null"]["ec2:SourceInstanceARN"] = json!("false");
            condition["BoolIfExists"]["aws:ViaAWSService"] = json!("false");
            condition
        };
        let deny = |sid: &str, action: &str, condition: serde_json::Value| json!({"Sid": sid, "Effect": "Deny", "Action": action, "Resource": "*", "Condition": condition});
        let mut statements = Vec::new();
        if self.in_vpc {
            statements.push(deny(
                "CredentialsOnlyInTheBastionsVpc",
                "*",
                instance_credentials(json!({"StringNotEquals": {"aws:ec2InstanceSourceVPC": "${aws:SourceVpc}"}})),
            ));
            statements.push(deny(
                "CredentialsOnlyFromTheBastionsAddress",
                "*",
                instance_credentials(
                    json!({"StringNotEquals": {"aws:ec2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}"}}),
                ),
            ));
        }
        if !self.vpc_endpoint_ids.is_empty() {
            statements.push(deny(
                "CredentialsOnlyThroughOurVpcEndpoints",
                "*",
                instance_credentials(json!({
                    "StringNotEquals": {"aws:SourceVpce": self.vpc_endpoint_ids},
                    "Null": {"aws:SourceVpce": "false"}
                })),
            ));
        }
        if !self.egress_cidrs.is_empty() {
            statements.push(deny(
                "CredentialsOnlyFromTheNatsAddresses",
                "*",
                instance_credentials(json!({
                    "NotIpAddress": {"aws:SourceIp": self.egress_cidrs},
                    "Null": {"aws:SourceVpc": "true"}
                })),
            ));
        }
        if self.exec_through_vpc_endpoint {
            statements.push(deny(
                "ExecOnlyThroughTheVpcEndpoint",
                "ecs:ExecuteCommand",
                json!({"Null": {"aws:SourceVpc": "true"}}),
            ));
        }
        statements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_perimeter_keeps_the_credentials_on_the_bastion() {
        let all = Perimeter { in_vpc: true, exec_through_vpc_endpoint: true, ..Default::default() };
        let statements = all.statements();
        let text = serde_json::Value::Array(statements.clone()).to_string();
        for needle in [
            r#""aws:ec2InstanceSourceVPC":"${aws:SourceVpc}""#,
            r#""aws:ec2InstanceSourcePrivateIPv4":"${aws:VpcSourceIp}""#,
            r#""ec2:SourceInstanceARN":"false""#,
            r#""aws:ViaAWSService":"false""#,
            r#""aws:SourceVpc":"true""#,
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(statements.iter().all(|s| s["Effect"] == "Deny"));
        // Through a NAT: no endpoint to require, the in-VPC checks stay.
        assert_eq!(Perimeter { in_vpc: true, ..Default::default() }.statements().len(), 2);
        // Endpoints in a hub VPC: only the exec rule.
        assert_eq!(Perimeter { exec_through_vpc_endpoint: true, ..Default::default() }.statements().len(), 1);
        // The NAT's addresses and the hub's endpoints, when given.
        let nat = ["203.0.113.7/32".to_string()];
        let hub = ["vpce-0hub".to_string()];
        let both = Perimeter { egress_cidrs: &nat, vpc_endpoint_ids: &hub, ..Default::default() }.statements();
        assert_eq!(both[0]["Condition"]["StringNotEquals"]["aws:SourceVpce"][0], "vpce-0hub");
        assert_eq!(both[1]["Condition"]["NotIpAddress"]["aws:SourceIp"][0], "203.0.113.7/32");
    }
}
