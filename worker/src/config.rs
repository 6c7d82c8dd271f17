//! The worker's part of the deploy config: where bastions go, how long they live, and how the
//! loops pace themselves. The bot's `config` module reads the whole file and hands these over.

use crate::duration::HumanDuration;
use serde::Deserialize;
use std::time::Duration;

/// `[aws]`: where and how bastions are launched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; when absent, the SDK's own chain (`AWS_REGION`, profile) decides.
    #[serde(default)]
    pub region: Option<String>,
    /// ECS cluster used when a request names none.
    pub cluster: String,
    /// Subnets for bastions, tried in order; empty = the default VPC's subnets.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Instance types, tried in order when spot capacity is short.
    #[serde(default = "default_instance_types")]
    pub instance_types: Vec<String>,
    /// Security group for bastions (no ingress). Empty = find or create `fargate-connect-bastion`
    /// (no ingress rules) in the subnet's VPC.
    #[serde(default)]
    pub security_group_id: Option<String>,
    /// Permissions boundary attached to every per-request role (see deploy/).
    #[serde(default)]
    pub permissions_boundary_arn: Option<String>,
    /// `serve` refuses to start without a boundary unless this is `false` (the emulator
    /// sandbox): a per-request role with no boundary is bounded only by its inline policy.
    #[serde(default = "yes")]
    pub require_boundary: bool,
    /// ECS Exec with a bastion's credentials only through an `ecs` interface VPC endpoint, so
    /// credentials carried off the bastion are refused even on the public endpoint. Unset: where
    /// such an endpoint (private DNS on) serves the bastions' VPC, looked up per request;
    /// `true`: demanded (a request is refused while none is there); `false`: never (bastions
    /// reach ECS through a NAT; the in-VPC checks of the credential perimeter still apply).
    #[serde(default)]
    pub exec_through_vpc_endpoint: Option<bool>,
    /// The bastion role's in-VPC checks: calls through a VPC endpoint must come from the VPC
    /// and address its credentials were delivered to. `false` where the endpoints live in
    /// another VPC (a shared "hub"), where `aws:SourceVpc` is that VPC and would refuse all.
    #[serde(default = "yes")]
    pub credential_perimeter: bool,
    /// The public addresses (CIDR blocks) of the NAT the bastions reach AWS through: calls
    /// with a bastion's credentials through no VPC endpoint must come from them. Empty: no
    /// such rule (credentials carried off the bastion then work for what no other rule stops).
    #[serde(default)]
    pub bastion_egress_cidrs: Vec<String>,
    /// The VPC endpoints bastions may use (a hub VPC's): a call through any other is refused.
    #[serde(default)]
    pub allowed_vpc_endpoint_ids: Vec<String>,
    /// Public SSM parameter that names the bastion AMI; `{arch}` becomes `x86_64` or `arm64`
    /// to match each instance type.
    #[serde(default = "default_ami_parameter")]
    pub ami_parameter: String,
    /// Fall back to on-demand when no spot capacity is left in any type and subnet.
    #[serde(default)]
    pub on_demand_fallback: bool,
    /// Where bastions download the Session Manager plugin's RPM (`{arch}`: `linux_64bit` or
    /// `linux_arm64`). Empty = AWS's own download; needed in aws-cn, where AWS documents none.
    #[serde(default)]
    pub session_manager_plugin_url: Option<String>,
    /// SHA-256 (hex) of the plugin RPM for each architecture (`linux_64bit`, `linux_arm64`):
    /// set with a versioned `session_manager_plugin_url`, a bastion installs only that file.
    /// Empty = whatever the URL serves (AWS's `latest` changes under any pin); doctor warns.
    #[serde(default)]
    pub session_manager_plugin_sha256: std::collections::BTreeMap<String, String>,
    /// KMS keys bastions may use (the cluster's ECS Exec key, the Session Manager preferences'
    /// key). Preflight refuses a request that needs a key not listed here.
    #[serde(default)]
    pub kms_key_arns: Vec<String>,
    /// The S3 bucket of the Session Manager preferences' session logs, which bastions may write.
    #[serde(default)]
    pub session_log_bucket: Option<String>,
    /// The preferences' S3 key prefix (`s3KeyPrefix`): bastions may write only under it.
    #[serde(default)]
    pub session_log_prefix: Option<String>,
    /// The CloudWatch Logs group of the Session Manager preferences' session logs.
    #[serde(default)]
    pub session_log_group: Option<String>,
    /// The OS user Session Manager's Run As preference starts sessions as; bastions create it.
    #[serde(default)]
    pub session_run_as_user: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_instance_types() -> Vec<String> {
    vec!["t3.micro".into(), "t3a.micro".into()]
}

fn default_ami_parameter() -> String {
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}".into()
}

/// `[limits]`: what people can start, checked in the transaction that records a request, so
/// a connect → End loop cannot wear out IAM's quotas or throttle everyone's teardowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Bastions running or on their way, for everyone together (a request waiting for an
    /// approver counts: it holds its place).
    pub live_bastions: i64,
    /// Open requests of one person, all services together.
    pub open_per_person: i64,
    /// Requests one person may make in an hour (a rolling hour).
    pub per_person_per_hour: i64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { live_bastions: 100, open_per_person: 3, per_person_per_hour: 20 }
    }
}

/// `[time_box]`: how long a bastion lives once its link is ready.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeBoxSettings {
    #[serde(default = "default_ttl")]
    pub default: HumanDuration,
    #[serde(default = "min_ttl")]
    pub min: HumanDuration,
    #[serde(default = "max_ttl")]
    pub max: HumanDuration,
}

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(30 * 60)
}
fn min_ttl() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}
fn max_ttl() -> HumanDuration {
    HumanDuration::from_secs(4 * 3600)
}

impl Default for TimeBoxSettings {
    fn default() -> Self {
        Self { default: default_ttl(), min: min_ttl(), max: max_ttl() }
    }
}

/// A time box that is out of the configured bounds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeBoxError {
    #[error("{asked} is shorter than the minimum of {min}")]
    TooShort { asked: HumanDuration, min: HumanDuration },
    #[error("{asked} is longer than the maximum of {max}")]
    TooLong { asked: HumanDuration, max: HumanDuration },
}

impl TimeBoxSettings {
    /// The time box for a request: the one asked for, within bounds, or the default.
    pub fn choose(&self, asked: Option<HumanDuration>) -> Result<HumanDuration, TimeBoxError> {
        let Some(asked) = asked else { return Ok(self.default) };
        if asked < self.min {
            return Err(TimeBoxError::TooShort { asked, min: self.min });
        }
        if asked > self.max {
            return Err(TimeBoxError::TooLong { asked, max: self.max });
        }
        Ok(asked)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!("time_box.min ({}) is above time_box.max ({})", self.min, self.max));
        }
        if self.default < self.min || self.default > self.max {
            return Err(format!(
                "time_box.default ({}) is outside time_box.min..max ({}..{})",
                self.default, self.min, self.max
            ));
        }
        Ok(())
    }
}

/// `[worker]`: pacing of the loops. Defaults suit production; tests shorten them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// How often the loops look for due work when nothing woke them, in milliseconds.
    pub poll_interval_ms: u64,
    /// A job's lease; a worker that dies loses its jobs to the next one after this long.
    pub lease_ms: u64,
    /// How long a bastion may take to be running and online in SSM before the request fails.
    pub ready_timeout: HumanDuration,
    /// First delay between readiness checks, in milliseconds (doubles up to 10 s).
    pub ready_poll_ms: u64,
    /// The bastion shuts itself down this long after its time box, should the bot be gone.
    pub shutdown_grace: HumanDuration,
    /// Attempts for a job before it is given up (the request then fails and is torn down).
    pub max_attempts: u32,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How often the reaper looks for orphans (tagged resources of no open request).
    pub reaper_interval: HumanDuration,
    /// How long after its request ended (or, if unknown, after its creation) a resource must
    /// be before the reaper removes it.
    pub reaper_grace: HumanDuration,
    /// How long before its expiry a person is reminded (with an Extend button).
    pub reminder_before: HumanDuration,
    /// The time box starts when the person is told their bastion is ready; a bastion whose
    /// person cannot be told (Slack unreachable) is ended unused this long after it was ready
    /// (or at its time box, if that is shorter).
    pub untold_limit: HumanDuration,
    /// A teardown revokes the bastion role's credentials first, then ends sessions; it sweeps
    /// sessions again this long later, in milliseconds (IAM's changes take effect eventually, not at once, so
    /// a session may still open in between), then deletes the role.
    pub revoke_settle_ms: u64,
    /// A teardown not finished this long after its request began ending is raised in the
    /// audit channel (once; it goes on trying).
    pub teardown_alert_after: HumanDuration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            lease_ms: 60_000,
            ready_timeout: HumanDuration::from_secs(600),
            ready_poll_ms: 2000,
            shutdown_grace: HumanDuration::from_secs(300),
            max_attempts: 8,
            concurrency: 32,
            reaper_interval: HumanDuration::from_secs(300),
            reaper_grace: HumanDuration::from_secs(900),
            reminder_before: HumanDuration::from_secs(300),
            untold_limit: HumanDuration::from_secs(900),
            revoke_settle_ms: 10_000,
            teardown_alert_after: HumanDuration::from_secs(600),
        }
    }
}

impl WorkerSettings {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(1000))
    }
}

impl AwsSettings {
    /// What `serve` (and `doctor`) insist on before bastions are handed out for real.
    pub fn boundary_check(&self) -> Result<(), String> {
        match (&self.permissions_boundary_arn, self.require_boundary) {
            (Some(_), _) | (None, false) => Ok(()),
            (None, true) => {
                Err("aws.permissions_boundary_arn is not set: every per-request role would be bounded only \
                 by its own policy. Set it to deploy/terraform's permissions_boundary_arn output (or, for a \
                 sandbox, aws.require_boundary = false)"
                    .into())
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cluster.trim().is_empty() {
            return Err("aws.cluster must name the default ECS cluster".into());
        }
        if self.instance_types.is_empty() {
            return Err("aws.instance_types must list at least one instance type".into());
        }
        if let Some(url) = &self.session_manager_plugin_url {
            // It goes into the bastion's user data, inside double quotes: an https URL of
            // plain characters only.
            let plain = url.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/{}%+=?&".contains(c));
            if !url.starts_with("https://") || !plain {
                return Err(format!("aws.session_manager_plugin_url must be a plain https URL, not {url:?}"));
            }
        }
        for (arch, sum) in &self.session_manager_plugin_sha256 {
            let hex = sum.len() == 64 && sum.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
            if !matches!(arch.as_str(), "linux_64bit" | "linux_arm64") || !hex {
                return Err(format!(
                    "aws.session_manager_plugin_sha256 maps linux_64bit and linux_arm64 to 64 lowercase hex \
                     digits; {arch:?} = {sum:?} is neither"
                ));
            }
        }
        if let Some(user) = &self.session_run_as_user {
            // It goes into the bastion's user data: a plain Linux user name.
            let plain = !user.is_empty()
                && user.len() <= 32
                && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !plain {
                return Err(format!("aws.session_run_as_user must be a plain Linux user name, not {user:?}"));
            }
            // A session as root, the AMI's user (sudo for everything on AL2023), a system user or
            // the connect user (it holds the credentials) would undo the lockdown.
            if crate::aws::lockdown::PRIVILEGED_USERS.contains(&user.as_str()) {
                return Err(format!(
                    "aws.session_run_as_user = {user:?} is privileged on a bastion; choose a name of its own \
                     (e.g. \"fc-session\"), which bastions create, and set Session Manager's Run As user to it"
                ));
            }
        }
        if let Some(bad) = self.bastion_egress_cidrs.iter().find(|c| !is_cidr(c)) {
            return Err(format!("aws.bastion_egress_cidrs holds CIDR blocks (\"203.0.113.7/32\"), not {bad:?}"));
        }
        if let Some(bad) = self
            .allowed_vpc_endpoint_ids
            .iter()
            .find(|v| !v.starts_with("vpce-") || !v[5..].chars().all(|c| c.is_ascii_hexdigit()) || v.len() < 6)
        {
            return Err(format!("aws.allowed_vpc_endpoint_ids holds endpoint ids (\"vpce-0abc…\"), not {bad:?}"));
        }
        if let Some(key) = self.kms_key_arns.iter().find(|k| !k.starts_with("arn:") || !k.contains(":kms:")) {
            return Err(format!("aws.kms_key_arns must hold KMS key ARNs, not {key:?}"));
        }
        Ok(())
    }
}

/// `a.b.c.d/n` or an IPv6 block, as IAM's `IpAddress` takes them.
fn is_cidr(text: &str) -> bool {
    let Some((ip, bits)) = text.split_once('/') else { return false };
    match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(bits)) => bits <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(bits)) => bits <= 128,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(extra: &str) -> AwsSettings {
        toml::from_str(&format!("cluster = \"prod\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_boundary_is_required_unless_the_config_says_otherwise() {
        let err = aws("").boundary_check().unwrap_err();
        assert!(err.contains("aws.permissions_boundary_arn") && err.contains("require_boundary"), "{err}");
        assert!(aws("permissions_boundary_arn = \"arn:aws:iam::1:policy/b\"").boundary_check().is_ok());
        assert!(aws("require_boundary = false").boundary_check().is_ok());
    }

    #[test]
    fn values_that_reach_the_user_data_are_plain() {
        assert!(aws("session_manager_plugin_url = \"https://mirror.example.cn/{arch}/p.rpm\"").validate().is_ok());
        for bad in ["http://x/p.rpm", "https://x/$(reboot).rpm", "https://x/\\\"; rm -rf /\\\""] {
            let err = aws(&format!("session_manager_plugin_url = \"{bad}\"")).validate().unwrap_err();
            assert!(err.contains("plain https URL"), "{bad}: {err}");
        }
        assert!(aws("session_run_as_user = \"ops\"").validate().is_ok());
        assert!(aws("session_run_as_user = \"ops; reboot\"").validate().is_err());
        assert!(aws("bastion_egress_cidrs = [\"203.0.113.7/32\", \"2001:db8::/48\"]").validate().is_ok());
        assert!(aws("bastion_egress_cidrs = [\"203.0.113.7\"]").validate().is_err());
        assert!(aws("allowed_vpc_endpoint_ids = [\"vpce-0a1b2c3d\"]").validate().is_ok());
        assert!(aws("allowed_vpc_endpoint_ids = [\"vpc-0a1b2c3d\"]").validate().is_err());
        for privileged in ["root", "ec2-user", "fargate-connect", "ssm-user", "nobody"] {
            let err = aws(&format!("session_run_as_user = \"{privileged}\"")).validate().unwrap_err();
            assert!(err.contains("privileged"), "{err}");
        }
        assert!(aws("kms_key_arns = [\"alias/x\"]").validate().is_err());
    }
}
