//! AWS partitions (`aws`, `aws-cn`, `aws-us-gov`): the same API, other hosts. The partition is
//! read from an ARN the bot already holds (the cluster's or the task's), never assumed, so the
//! console link and the Session Manager plugin's download follow the account's partition.

/// One AWS partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    China,
    GovCloud,
}

/// Where AWS publishes the Session Manager plugin for Linux (`{arch}`: `linux_64bit` or
/// `linux_arm64`), per the Systems Manager guide ("Install the Session Manager plugin on Amazon
/// Linux 2 and RHEL"). AWS documents no copy inside the China partition: there the operator
/// names a mirror (`aws.session_manager_plugin_url`).
const GLOBAL_PLUGIN_URL: &str =
    "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/{arch}/session-manager-plugin.rpm";

impl Partition {
    /// The partition an ARN names (`arn:PARTITION:…`), if it is an ARN of a known one.
    pub fn of_arn(arn: &str) -> Option<Self> {
        match arn.split(':').nth(1)? {
            "aws" if arn.starts_with("arn:") => Some(Partition::Aws),
            "aws-cn" if arn.starts_with("arn:") => Some(Partition::China),
            "aws-us-gov" if arn.starts_with("arn:") => Some(Partition::GovCloud),
            _ => None,
        }
    }

    /// The partition of a region name (`cn-north-1`, `us-gov-west-1`, …).
    pub fn of_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Partition::China
        } else if region.starts_with("us-gov-") {
            Partition::GovCloud
        } else {
            Partition::Aws
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::China => "aws-cn",
            Partition::GovCloud => "aws-us-gov",
        }
    }

    /// The Session Manager console page of an instance.
    pub fn console_url(self, region: &str, instance_id: &str) -> String {
        let host = match self {
            Partition::Aws => format!("{region}.console.aws.amazon.com"),
            Partition::China => "console.amazonaws.cn".to_string(),
            Partition::GovCloud => "console.amazonaws-us-gov.com".to_string(),
        };
        format!("https://{host}/systems-manager/session-manager/{instance_id}?region={region}")
    }

    /// AWS's own download of the plugin, where one is reachable from this partition.
    pub fn plugin_url(self) -> Option<&'static str> {
        match self {
            Partition::Aws | Partition::GovCloud => Some(GLOBAL_PLUGIN_URL),
            Partition::China => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_comes_from_the_arn_and_decides_the_hosts() {
        let cn = Partition::of_arn("arn:aws-cn:ecs:cn-north-1:123456789012:cluster/prod").unwrap();
        assert_eq!(cn, Partition::China);
        assert_eq!(
            cn.console_url("cn-north-1", "i-0abc"),
            "https://console.amazonaws.cn/systems-manager/session-manager/i-0abc?region=cn-north-1"
        );
        assert_eq!(cn.plugin_url(), None);
        let gov = Partition::of_arn("arn:aws-us-gov:ecs:us-gov-west-1:1:cluster/prod").unwrap();
        assert!(gov.console_url("us-gov-west-1", "i-1").starts_with("https://console.amazonaws-us-gov.com/"));
        let aws = Partition::of_arn("arn:aws:ecs:eu-west-1:1:task/prod/abc").unwrap();
        assert!(aws.console_url("eu-west-1", "i-1").starts_with("https://eu-west-1.console.aws.amazon.com/"));
        assert_eq!(Partition::of_arn("prod"), None);
        assert_eq!(Partition::of_arn("arn:aws-xx:ecs:r:1:cluster/p"), None);
        assert_eq!(Partition::of_region("cn-northwest-1"), Partition::China);
        assert_eq!(Partition::of_region("us-gov-east-1"), Partition::GovCloud);
        assert_eq!(Partition::of_region("eu-west-1"), Partition::Aws);
    }
}
