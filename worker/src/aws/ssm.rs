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
    end_sessions_where(ssm, SessionFilterKey::TargetId, instance_id).await
}

async fn end_sessions_where(ssm: &aws_sdk_ssm::Client, key: SessionFilterKey, value: &str) -> Result<usize, AwsError> {
    let filter =
        SessionFilter::builder().key(key).value(value).build().map_err(|e| AwsError::config(&e.to_string()))?;
    let mut ended = 0;
    let mut pages = ssm.describe_sessions().state(SessionState::Active).filters(filter).into_paginator().send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("DescribeSessions", e))?;
        ids.extend(page.sessions().iter().filter_map(|s| s.session_id()).map(str::to_string));
    }
    for id in ids {
        match ssm.terminate_session().session_id(&id).send().await {
            Ok(_) => ended += 1,
            Err(e) => {
                let e = AwsError::from_sdk("TerminateSession", e);
                // Ended meanwhile (by its owner, or its target going away).
                if !e.code_is("DoesNotExistException") {
                    return Err(e);
                }
            }
        }
    }
    Ok(ended)
}

/// Runs a shell command on one instance through Run Command (`AWS-RunShellScript`).
/// Returns the command id; [`command_outcome`] reads how it went.
pub async fn run_command(
    ssm: &aws_sdk_ssm::Client,
    instance_id: &str,
    command: &str,
    comment: &str,
    timeout_secs: i32,
) -> Result<String, AwsError> {
    let out = ssm
        .send_command()
        .instance_ids(instance_id)
        .document_name("AWS-RunShellScript")
        .comment(comment.chars().take(100).collect::<String>())
        .parameters("commands", vec![command.to_string()])
        .timeout_seconds(timeout_secs.max(30))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SendCommand", e))?;
    out.command()
        .and_then(|c| c.command_id())
        .map(str::to_string)
        .ok_or_else(|| AwsError::config("SendCommand returned no command id"))
}

/// How a Run Command invocation on one instance stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Not finished, or not visible yet (`InvocationDoesNotExist` right after `SendCommand`).
    Pending,
    Succeeded,
    /// Finished without success: the status and what the command printed to stderr.
    Failed(String),
}

/// The outcome of `command_id` on `instance_id`.
pub async fn command_outcome(
    ssm: &aws_sdk_ssm::Client,
    command_id: &str,
    instance_id: &str,
) -> Result<CommandOutcome, AwsError> {
    let out = match ssm.get_command_invocation().command_id(command_id).instance_id(instance_id).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("GetCommandInvocation", e);
            // Run Command is eventually consistent: a new invocation is unknown for a moment.
            if e.code_is("InvocationDoesNotExist") {
                return Ok(CommandOutcome::Pending);
            }
            return Err(e);
        }
    };
    use aws_sdk_ssm::types::CommandInvocationStatus as S;
    Ok(match out.status() {
        Some(S::Success) => CommandOutcome::Succeeded,
        Some(S::Pending | S::InProgress | S::Delayed) | None => CommandOutcome::Pending,
        Some(other) => {
            let stderr = out.standard_error_content().unwrap_or_default().trim();
            let code = out.response_code();
            CommandOutcome::Failed(format!(
                "{} (exit {code}){}",
                other.as_str(),
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.chars().take(300).collect::<String>())
                }
            ))
        }
    })
}
