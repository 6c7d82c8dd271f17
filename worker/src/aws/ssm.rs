//! SSM: the public AMI parameter, whether a bastion is registered and online, and ending its
//! Session Manager sessions at teardown.

use super::AwsError;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus, SessionFilter, SessionFilterKey, SessionState};

/// The AMI id behind a public parameter such as
/// `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`.
pub async fn ami_from_parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<String, AwsError> {
    let out = ssm.get_parameter().name(name).send().await.map_err(|e| AwsError::from_sdk("GetParameter", e))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::to_string)
        .ok_or_else(|| AwsError::config("the AMI parameter has no value"))
}

/// True once the instance's SSM agent has registered and pings.
pub async fn is_online(ssm: &aws_sdk_ssm::Client, instance_id: &str) -> Result<bool, AwsError> {
    let filter = InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(instance_id)
        .build()
        .map_err(|e| AwsError::config(&e.to_string()))?;
    let out = ssm
        .describe_instance_information()
        .filters(filter)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstanceInformation", e))?;
    Ok(out
        .instance_information_list()
        .iter()
        .any(|i| i.instance_id() == Some(instance_id) && i.ping_status() == Some(&PingStatus::Online)))
}

/// Ends every active Session Manager session on the instance. Returns how many were ended.
pub async fn end_sessions(ssm: &aws_sdk_ssm::Client, instance_id: &str) -> Result<usize, AwsError> {
    let filter = SessionFilter::builder()
        .key(SessionFilterKey::TargetId)
        .value(instance_id)
        .build()
        .map_err(|e| AwsError::config(&e.to_string()))?;
    let out = ssm
        .describe_sessions()
        .state(SessionState::Active)
        .filters(filter)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeSessions", e))?;
    let mut ended = 0;
    for session in out.sessions() {
        if let Some(id) = session.session_id() {
            ssm.terminate_session()
                .session_id(id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("TerminateSession", e))?;
            ended += 1;
        }
    }
    Ok(ended)
}

/// Re-schedules the bastion's own shutdown `minutes` from now (after an extension), through
/// Run Command. `shutdown -h +N` replaces any shutdown already scheduled. Returns the command id.
pub async fn schedule_shutdown(
    ssm: &aws_sdk_ssm::Client,
    instance_id: &str,
    minutes: u64,
    request_id: &str,
) -> Result<String, AwsError> {
    let command =
        format!("shutdown -h +{} \"fargate-connect: time box of request {request_id} is over\"", minutes.max(1));
    let out = ssm
        .send_command()
        .instance_ids(instance_id)
        .document_name("AWS-RunShellScript")
        .comment(format!("fargate-connect {request_id}: extend"))
        .parameters("commands", vec![command])
        .timeout_seconds(60)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SendCommand", e))?;
    Ok(out.command().and_then(|c| c.command_id()).unwrap_or_default().to_string())
}
