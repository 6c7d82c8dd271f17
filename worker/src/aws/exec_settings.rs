//! The account's settings a bastion must meet before a session can carry: the cluster's ECS
//! Exec configuration (a KMS key: the caller of `ExecuteCommand` needs `kms:GenerateDataKey`
//! on it) and the Session Manager preferences (the `SSM-SessionManagerRunShell` document: a KMS
//! key, S3 or CloudWatch session logs, Run As). Preflight reads them (cached for a few minutes)
//! and says ✗ with the fix where a session would fail, and the per-request role is granted
//! what the operator listed in the config (`aws.kms_key_arns`, `aws.session_log_*`).

use super::ecs::Report;
use super::AwsError;
use crate::config::AwsSettings;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cluster's ECS Exec configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterExec {
    pub kms_key: Option<String>,
}

/// Session Manager's preferences for the account and region (none saved: all off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPreferences {
    pub kms_key: Option<String>,
    pub s3_bucket: Option<String>,
    /// The key prefix session logs are written under in that bucket.
    pub s3_prefix: Option<String>,
    pub log_group: Option<String>,
    pub run_as_user: Option<String>,
}

/// The preferences document Session Manager reads.
pub const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// How long both are trusted without reading them again.
pub const SETTINGS_TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct SettingsCache {
    clusters: Mutex<HashMap<String, (Instant, ClusterExec)>>,
    preferences: Mutex<Option<(Instant, SessionPreferences)>>,
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl SessionPreferences {
    /// From the document's content (JSON): its `inputs`.
    pub fn parse(content: &str) -> Self {
        let document: Value = serde_json::from_str(content).unwrap_or_default();
        let inputs = &document["inputs"];
        let run_as = matches!(&inputs["runAsEnabled"], Value::Bool(true)) || inputs["runAsEnabled"] == "true";
        Self {
            kms_key: text(&inputs["kmsKeyId"]),
            s3_bucket: text(&inputs["s3BucketName"]),
            s3_prefix: text(&inputs["s3KeyPrefix"]).map(|p| p.trim_matches('/').to_string()).filter(|p| !p.is_empty()),
            log_group: text(&inputs["cloudWatchLogGroupName"]),
            run_as_user: if run_as { text(&inputs["runAsDefaultUser"]) } else { None },
        }
    }
}

impl SettingsCache {
    pub async fn cluster(&self, ecs: &aws_sdk_ecs::Client, cluster: &str) -> Result<ClusterExec, AwsError> {
        if let Some((at, found)) = self.clusters.lock().expect("not poisoned").get(cluster) {
            if at.elapsed() < SETTINGS_TTL {
                return Ok(found.clone());
            }
        }
        let out = ecs
            .describe_clusters()
            .clusters(cluster)
            .include(aws_sdk_ecs::types::ClusterField::Configurations)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeClusters", e))?;
        let kms_key = out
            .clusters()
            .first()
            .and_then(|c| c.configuration())
            .and_then(|c| c.execute_command_configuration())
            .and_then(|c| c.kms_key_id())
            .map(str::to_string)
            .filter(|k| !k.is_empty());
        let found = ClusterExec { kms_key };
        self.clusters.lock().expect("not poisoned").insert(cluster.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    pub async fn preferences(&self, ssm: &aws_sdk_ssm::Client) -> Result<SessionPreferences, AwsError> {
        if let Some((at, found)) = self.preferences.lock().expect("not poisoned").as_ref() {
            if at.elapsed() < SETTINGS_TTL {
                return Ok(found.clone());
            }
        }
        let found = match ssm.get_document().name(PREFERENCES_DOCUMENT).send().await {
            Ok(out) => SessionPreferences::parse(out.content().unwrap_or_default()),
            Err(e) => {
                let e = AwsError::from_sdk("GetDocument", e);
                // Never saved in this account and region: Session Manager's defaults (all off).
                if !e.code_is("InvalidDocument") {
                    return Err(e);
                }
                SessionPreferences::default()
            }
        };
        *self.preferences.lock().expect("not poisoned") = Some((Instant::now(), found.clone()));
        Ok(found)
    }
}

/// Whether the configured keys cover `key` (a key ARN, or a key id: the settings may name
/// either).
fn granted(settings: &AwsSettings, key: &str) -> bool {
    settings.kms_key_arns.iter().any(|k| k == key || k.ends_with(&format!(":key/{key}")))
}

/// Checks what the settings ask of a session against what the config grants.
pub fn check(report: &mut Report, cluster: &ClusterExec, prefs: &SessionPreferences, settings: &AwsSettings) {
    let mut fine = true;
    for (what, key) in [("ECS Exec (cluster)", &cluster.kms_key), ("Session Manager", &prefs.kms_key)] {
        let Some(key) = key else { continue };
        fine = false;
        if granted(settings, key) {
            report.pass("session encryption", format!("{what} encrypts with {key}; bastions may use it"));
        } else {
            report.fail(
                "session encryption",
                format!("{what} encrypts sessions with KMS key {key}, which bastions may not use"),
                format!("add {key} to aws.kms_key_arns and to the module's session_kms_key_arns (the boundary)"),
            );
        }
    }
    for (what, target, configured, setting) in [
        ("S3 bucket", &prefs.s3_bucket, &settings.session_log_bucket, "session_log_bucket"),
        ("CloudWatch log group", &prefs.log_group, &settings.session_log_group, "session_log_group"),
    ] {
        let Some(target) = target else { continue };
        fine = false;
        // The bastion's grant is for the configured prefix only: it must be the preferences' one.
        let prefix_fits = setting != "session_log_bucket"
            || settings.session_log_prefix.is_none()
            || settings.session_log_prefix.as_deref().map(|p| p.trim_matches('/')) == prefs.s3_prefix.as_deref();
        if configured.as_deref() == Some(target.as_str()) && prefix_fits {
            report.pass("session logs", format!("sessions are logged to {what} {target}; bastions may write it"));
        } else if configured.as_deref() == Some(target.as_str()) {
            report.warn(
                "session logs",
                format!(
                    "Session Manager logs sessions under the prefix {:?} of {target}, but bastions may write only under {:?}: sessions go unlogged",
                    prefs.s3_prefix.as_deref().unwrap_or(""),
                    settings.session_log_prefix.as_deref().unwrap_or("")
                ),
                format!("set aws.session_log_prefix = \"{}\"", prefs.s3_prefix.as_deref().unwrap_or("")),
            );
        } else {
            report.warn(
                "session logs",
                format!("Session Manager logs sessions to {what} {target}, which bastions may not write: sessions go unlogged"),
                format!("set aws.{setting} = \"{target}\" and the module's {setting}"),
            );
        }
    }
    if let Some(user) = &prefs.run_as_user {
        fine = false;
        if crate::aws::lockdown::PRIVILEGED_USERS.contains(&user.as_str()) {
            report.fail(
                "run as",
                format!(
                    "Session Manager runs sessions as `{user}`, who is privileged on a bastion (the AMI's own \
                     user or root; `ec2-user` has sudo for everything on AL2023): bastions refuse it"
                ),
                "set the Session Manager preference's Run As user to a name of its own (e.g. `fc-session`) and \
                 aws.session_run_as_user to the same; requesters must carry no SSMSessionRunAs tag",
            );
        } else if settings.session_run_as_user.as_deref() == Some(user.as_str()) {
            report.pass("run as", format!("sessions run as `{user}`, whom bastions create"));
        } else {
            report.fail(
                "run as",
                format!("Session Manager runs sessions as `{user}`, a user bastions do not have"),
                format!("set aws.session_run_as_user = \"{user}\" (bastions then create that user)"),
            );
        }
    }
    if fine {
        report.pass("session settings", "no session encryption, logging or Run As to meet");
    }
}

/// The per-request role's statements for what the config grants, in the partition, region and
/// account of `cluster_arn`.
pub fn grant_statements(settings: &AwsSettings, cluster_arn: &str) -> Vec<Value> {
    let parts: Vec<&str> = cluster_arn.split(':').collect();
    let (partition, region, account) = match parts.as_slice() {
        ["arn", partition, "ecs", region, account, ..] => (*partition, *region, *account),
        _ => ("aws", "*", "*"),
    };
    let mut statements = Vec::new();
    if !settings.kms_key_arns.is_empty() {
        statements.push(json!({
            "Sid": "SessionKeys", "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": settings.kms_key_arns,
        }));
    }
    if let Some(bucket) = &settings.session_log_bucket {
        statements.push(json!({
            "Sid": "SessionLogObjects", "Effect": "Allow",
            "Action": "s3:PutObject", "Resource": match &settings.session_log_prefix {
                // Session Manager writes `PREFIX/SESSION-ID.log`: only under the prefix.
                Some(prefix) => format!("arn:{partition}:s3:::{bucket}/{}/*", prefix.trim_matches('/')),
                None => format!("arn:{partition}:s3:::{bucket}/*"),
            },
        }));
        statements.push(json!({
            "Sid": "SessionLogBucket", "Effect": "Allow",
            "Action": "s3:GetEncryptionConfiguration", "Resource": format!("arn:{partition}:s3:::{bucket}"),
        }));
    }
    if let Some(group) = &settings.session_log_group {
        statements.push(json!({
            "Sid": "SessionLogStreams", "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": format!("arn:{partition}:logs:{region}:{account}:log-group:{group}:*"),
        }));
        statements.push(json!({
            "Sid": "SessionLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*",
        }));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> AwsSettings {
        toml::from_str(&format!("cluster = \"prod\"\n{extra}")).unwrap()
    }

    #[test]
    fn preferences_are_read_from_the_documents_inputs() {
        let content = r#"{"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": {
            "s3BucketName": "audit-logs", "cloudWatchLogGroupName": "", "kmsKeyId": "alias/sessions",
            "runAsEnabled": true, "runAsDefaultUser": "ops"}}"#;
        let prefs = SessionPreferences::parse(content);
        assert_eq!(prefs.s3_bucket.as_deref(), Some("audit-logs"));
        assert_eq!(prefs.log_group, None);
        assert_eq!(prefs.kms_key.as_deref(), Some("alias/sessions"));
        assert_eq!(prefs.run_as_user.as_deref(), Some("ops"));
        assert_eq!(SessionPreferences::parse("{}"), SessionPreferences::default());
    }

    #[test]
    fn each_setting_is_failed_or_warned_until_the_config_grants_it() {
        let cluster = ClusterExec { kms_key: Some("arn:aws:kms:eu-west-1:1:key/abc".into()) };
        let prefs = SessionPreferences {
            kms_key: None,
            s3_bucket: Some("audit-logs".into()),
            s3_prefix: None,
            log_group: None,
            run_as_user: Some("ops".into()),
        };
        let mut report = Report::default();
        check(&mut report, &cluster, &prefs, &settings(""));
        let outcomes: Vec<_> = report.checks.iter().map(|c| (c.name.as_str(), c.outcome)).collect();
        use crate::events::Outcome::*;
        assert_eq!(outcomes, [("session encryption", Fail), ("session logs", Warn), ("run as", Fail)]);
        assert!(report.reason().contains("aws.kms_key_arns"), "{}", report.reason());

        let granted = settings(
            "kms_key_arns = [\"arn:aws:kms:eu-west-1:1:key/abc\"]\nsession_log_bucket = \"audit-logs\"\nsession_run_as_user = \"ops\"",
        );
        let mut report = Report::default();
        check(&mut report, &cluster, &prefs, &granted);
        assert!(report.checks.iter().all(|c| c.outcome == Pass), "{:?}", report.checks);
        let statements = grant_statements(&granted, "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/prod");
        assert_eq!(statements[1]["Resource"], "arn:aws-cn:s3:::audit-logs/*");
        // With the preferences' key prefix, the bastion writes under it only.
        let prefixed = settings("session_log_bucket = \"audit-logs\"\nsession_log_prefix = \"ssm/\"");
        let statements = grant_statements(&prefixed, "arn:aws:ecs:eu-west-1:123456789012:cluster/prod");
        assert_eq!(statements[0]["Resource"], "arn:aws:s3:::audit-logs/ssm/*");
        let prefs = SessionPreferences {
            s3_bucket: Some("audit-logs".into()),
            s3_prefix: Some("other".into()),
            ..Default::default()
        };
        let mut report = Report::default();
        check(&mut report, &ClusterExec::default(), &prefs, &prefixed);
        assert_eq!(report.checks[0].outcome, Warn, "{:?}", report.checks);
        let prefs = SessionPreferences { s3_prefix: Some("ssm".into()), ..prefs };
        let mut report = Report::default();
        check(&mut report, &ClusterExec::default(), &prefs, &prefixed);
        assert_eq!(report.checks[0].outcome, Pass, "{:?}", report.checks);
        let mut report = Report::default();
        check(&mut report, &ClusterExec::default(), &SessionPreferences::default(), &settings(""));
        assert_eq!(report.checks.len(), 1);
        assert_eq!(report.checks[0].outcome, Pass);
    }

    #[test]
    fn a_privileged_run_as_user_is_refused_not_copied() {
        use crate::events::Outcome::*;
        for user in ["ec2-user", "root", "ssm-user", "fargate-connect"] {
            let prefs = SessionPreferences { run_as_user: Some(user.into()), ..Default::default() };
            let mut report = Report::default();
            check(&mut report, &ClusterExec::default(), &prefs, &settings(""));
            let run_as = report.checks.iter().find(|c| c.name == "run as").unwrap();
            assert_eq!(run_as.outcome, Fail, "{user}");
            let advice = format!("{:?}", run_as);
            assert!(
                advice.contains("privileged") && !advice.contains(&format!("session_run_as_user = \"{user}\"")),
                "{advice}"
            );
        }
    }
}
