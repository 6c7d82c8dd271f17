//! ECS preflight: before any money is spent, find the service's RUNNING task (by its `group`,
//! not trusting `serviceName` filtering alone), check ECS Exec is on for the service and the
//! task, pick the container and check its ExecuteCommandAgent is RUNNING.

use super::AwsError;
use aws_sdk_ecs::types::DesiredStatus;

/// The task and container a request will exec into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster_arn: String,
    pub task_arn: String,
    pub container: String,
}

/// Why a request cannot proceed; each says the fix in one line.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("service `{service}` was not found in cluster `{cluster}`")]
    ServiceNotFound { service: String, cluster: String },
    #[error("ECS Exec is off for service `{service}`: run `aws ecs update-service --cluster {cluster} --service {service} --enable-execute-command --force-new-deployment`")]
    ExecDisabledOnService { service: String, cluster: String },
    #[error("service `{service}` has no RUNNING task in cluster `{cluster}`")]
    NoRunningTask { service: String, cluster: String },
    #[error("ECS Exec is on for the service but not on its running task (it started before the change): force a new deployment of `{service}`")]
    ExecDisabledOnTask { service: String },
    #[error("container `{wanted}` is not in the task; it has: {available}")]
    ContainerNotFound { wanted: String, available: String },
    #[error("the ExecuteCommandAgent of container `{container}` is {status}, not RUNNING: check the task role allows the ssmmessages actions, then restart the task")]
    AgentNotRunning { container: String, status: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl PreflightError {
    /// AWS trouble may pass; everything else is the person's or the service's to fix.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PreflightError::Aws(e) if e.retryable)
    }
}

pub async fn preflight(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
    container: Option<&str>,
) -> Result<Target, PreflightError> {
    let described = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeServices", e))?;
    let found = described.services().iter().find(|s| s.service_name() == Some(service) && s.status() == Some("ACTIVE"));
    let Some(found) = found else {
        return Err(PreflightError::ServiceNotFound { service: service.into(), cluster: cluster.into() });
    };
    if !found.enable_execute_command() {
        return Err(PreflightError::ExecDisabledOnService { service: service.into(), cluster: cluster.into() });
    }
    let cluster_arn = found.cluster_arn().unwrap_or(cluster).to_string();

    let listed = ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Running)
        .max_results(100)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ListTasks", e))?;
    let arns = listed.task_arns().to_vec();
    if arns.is_empty() {
        return Err(PreflightError::NoRunningTask { service: service.into(), cluster: cluster.into() });
    }
    let tasks = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeTasks", e))?;
    let group = format!("service:{service}");
    let mut running: Vec<_> = tasks
        .tasks()
        .iter()
        .filter(|t| t.group() == Some(group.as_str()) && t.last_status() == Some("RUNNING"))
        .collect();
    // Newest first: a task that just replaced another is the one that stays.
    running.sort_by_key(|t| std::cmp::Reverse(t.started_at().or(t.created_at()).map(|d| (d.secs(), d.subsec_nanos()))));
    let Some(task) = running.first() else {
        return Err(PreflightError::NoRunningTask { service: service.into(), cluster: cluster.into() });
    };
    if !task.enable_execute_command() {
        return Err(PreflightError::ExecDisabledOnTask { service: service.into() });
    }
    let containers = task.containers();
    let chosen = match container {
        Some(wanted) => {
            containers.iter().find(|c| c.name() == Some(wanted)).ok_or_else(|| PreflightError::ContainerNotFound {
                wanted: wanted.into(),
                available: containers.iter().filter_map(|c| c.name()).collect::<Vec<_>>().join(", "),
            })?
        }
        None => containers
            .first()
            .ok_or_else(|| PreflightError::ContainerNotFound { wanted: "(any)".into(), available: "none".into() })?,
    };
    let name = chosen.name().unwrap_or_default().to_string();
    let agent = chosen.managed_agents().iter().find(|a| a.name().map(|n| n.as_str()) == Some("ExecuteCommandAgent"));
    let status = agent.and_then(|a| a.last_status()).unwrap_or("missing");
    if status != "RUNNING" {
        return Err(PreflightError::AgentNotRunning { container: name, status: status.into() });
    }
    Ok(Target { cluster_arn, task_arn: task.task_arn().unwrap_or_default().to_string(), container: name })
}
