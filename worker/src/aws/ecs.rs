//! ECS preflight, before any money is spent: the checks behind AWS's own
//! `amazon-ecs-exec-checker`, each reported as pass / warn / fail with its fix in one line.
//! Also picks the target: the service's RUNNING tasks by `group` (not trusting `serviceName`
//! filtering alone), the newest healthy one or the one named; the container named, else the
//! task's only essential non-sidecar container.

use super::exec_settings::{self, SettingsCache};
use super::iam::{allows_actions, RoleDocuments};
use super::AwsError;
use crate::config::AwsSettings;
use crate::events::{Check, Outcome};
use aws_sdk_ecs::types::{DesiredStatus, HealthStatus, Task, TaskDefinition};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The task and container a request will exec into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster_arn: String,
    pub task_arn: String,
    pub container: String,
}

/// What preflight found: every check, and the target when nothing failed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    pub target: Option<Target>,
}

impl Report {
    pub(crate) fn push(&mut self, name: &str, outcome: Outcome, detail: impl Into<String>, fix: Option<String>) {
        self.checks.push(Check { name: name.to_string(), outcome, detail: detail.into(), fix });
    }
    pub(crate) fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, Outcome::Pass, detail, None);
    }
    pub(crate) fn warn(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Outcome::Warn, detail, Some(fix.into()));
    }
    pub(crate) fn fail(&mut self, name: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Outcome::Fail, detail, Some(fix.into()));
    }
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.outcome == Outcome::Fail)
    }
    /// The first failure as one sentence with its fix, for the person.
    pub fn reason(&self) -> String {
        self.checks
            .iter()
            .find(|c| c.outcome == Outcome::Fail)
            .map(|c| match &c.fix {
                Some(fix) => format!("{} — {}", c.detail, fix),
                None => c.detail.clone(),
            })
            .unwrap_or_default()
    }
}

/// The four channel actions the ECS Exec agent needs from the task role.
pub const SSMMESSAGES_ACTIONS: [&str; 4] = [
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

/// Containers that are never the one a person means when they name only the service.
const SIDECARS: &[&str] = &[
    "envoy",
    "aws-otel-collector",
    "otel-collector",
    "xray",
    "xray-daemon",
    "aws-xray-daemon",
    "datadog-agent",
    "datadog",
    "fluent-bit",
    "fluentbit",
    "log_router",
    "log-router",
    "firelens",
    "cloudwatch-agent",
    "newrelic-infra",
    "appmesh-envoy",
];

pub fn is_sidecar(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SIDECARS.iter().any(|s| lower == *s || lower.ends_with(&format!("-{s}")) || lower.starts_with(&format!("{s}-")))
}

/// `1.4.0`, `1.3.0`, `LATEST` → whether ECS Exec is supported (Fargate 1.4.0 and later).
pub fn platform_supports_exec(version: Option<&str>) -> bool {
    let Some(version) = version else { return true };
    if version.eq_ignore_ascii_case("LATEST") {
        return true;
    }
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    parts >= vec![1, 4, 0]
}

pub struct Wanted<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub container: Option<&'a str>,
    /// A task id or ARN the person named.
    pub task: Option<&'a str>,
}

/// What preflight may remember between requests: task definitions (a revision never changes)
/// and task roles found to allow the ssmmessages actions (for `ROLE_TTL`; a failing role is
/// never remembered, so a fix is seen at once).
#[derive(Default)]
pub struct PreflightCache {
    definitions: Mutex<HashMap<String, TaskDefinition>>,
    good_roles: Mutex<HashMap<String, Instant>>,
    settings: SettingsCache,
}

/// How long a task role that passed is trusted without reading its policies again.
pub const ROLE_TTL: Duration = Duration::from_secs(600);
const CACHED_DEFINITIONS: usize = 512;

impl PreflightCache {
    async fn definition(&self, ecs: &aws_sdk_ecs::Client, arn: &str) -> Result<Option<TaskDefinition>, AwsError> {
        if let Some(found) = self.definitions.lock().expect("not poisoned").get(arn) {
            return Ok(Some(found.clone()));
        }
        let definition = ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTaskDefinition", e))?
            .task_definition()
            .cloned();
        if let Some(definition) = &definition {
            let mut definitions = self.definitions.lock().expect("not poisoned");
            if definitions.len() >= CACHED_DEFINITIONS {
                definitions.clear();
            }
            definitions.insert(arn.to_string(), definition.clone());
        }
        Ok(definition)
    }

    fn role_is_good(&self, role_arn: &str) -> bool {
        self.good_roles.lock().expect("not poisoned").get(role_arn).is_some_and(|at| at.elapsed() < ROLE_TTL)
    }

    fn remember_good_role(&self, role_arn: &str) {
        let mut roles = self.good_roles.lock().expect("not poisoned");
        roles.retain(|_, at| at.elapsed() < ROLE_TTL);
        roles.insert(role_arn.to_string(), Instant::now());
    }
}

/// The AWS clients and settings preflight reads with.
pub struct Clients<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub iam: &'a aws_sdk_iam::Client,
    pub ssm: &'a aws_sdk_ssm::Client,
    pub settings: &'a AwsSettings,
}

/// The RUNNING tasks of `service` (its deployment's `service:` group; up to 100), newest
/// first: a task that just replaced another is the one that stays.
async fn running_tasks(ecs: &aws_sdk_ecs::Client, cluster: &str, service: &str) -> Result<Vec<Task>, AwsError> {
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
        return Ok(Vec::new());
    }
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeTasks", e))?;
    let group = format!("service:{service}");
    let mut running: Vec<Task> = described
        .tasks()
        .iter()
        .filter(|t| t.group() == Some(group.as_str()) && t.last_status() == Some("RUNNING"))
        .cloned()
        .collect();
    running.sort_by_key(|t| std::cmp::Reverse(t.started_at().or(t.created_at()).map(|d| (d.secs(), d.subsec_nanos()))));
    Ok(running)
}

/// The containers of `service`'s newest running task that a person would open a shell in (no
/// known sidecar), for the request form's container field: the same reads preflight makes.
/// Empty when nothing runs.
pub async fn containers(ecs: &aws_sdk_ecs::Client, cluster: &str, service: &str) -> Result<Vec<String>, AwsError> {
    let running = running_tasks(ecs, cluster, service).await?;
    let names = running.first().map(|t| t.containers().iter().filter_map(|c| c.name()).collect::<Vec<_>>());
    Ok(names.unwrap_or_default().into_iter().filter(|n| !is_sidecar(n)).map(str::to_string).collect())
}

pub async fn preflight(clients: &Clients<'_>, cache: &PreflightCache, wanted: &Wanted<'_>) -> Result<Report, AwsError> {
    let (ecs, iam) = (clients.ecs, clients.iam);
    let (cluster, service) = (wanted.cluster, wanted.service);
    let mut report = Report::default();
    let described = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeServices", e))?;
    let found = described.services().iter().find(|s| s.service_name() == Some(service) && s.status() == Some("ACTIVE"));
    let Some(found) = found else {
        report.fail(
            "service",
            format!("service `{service}` was not found in cluster `{cluster}`"),
            "check the name with `aws ecs list-services --cluster` (names are case-sensitive)",
        );
        return Ok(report);
    };
    report.pass("service", format!("`{service}` is active in `{cluster}`"));
    let cluster_arn = found.cluster_arn().unwrap_or(cluster).to_string();
    if found.enable_execute_command() {
        report.pass("exec on service", "ECS Exec is enabled on the service");
    } else {
        report.fail(
            "exec on service",
            format!("ECS Exec is off for service `{service}`"),
            format!("aws ecs update-service --cluster {cluster} --service {service} --enable-execute-command --force-new-deployment"),
        );
    }
    if !found.enable_ecs_managed_tags() {
        report.warn(
            "managed tags",
            format!("`{service}` does not tag its tasks (ECS managed tags are off): should the task be replaced, `connect` cannot follow it to the new one"),
            format!("aws ecs update-service --cluster {cluster} --service {service} --enable-ecs-managed-tags --force-new-deployment"),
        );
    }
    let cluster_exec = cache.settings.cluster(ecs, &cluster_arn).await?;
    let preferences = cache.settings.preferences(clients.ssm).await?;
    exec_settings::check(&mut report, &cluster_exec, &preferences, clients.settings);

    let tasks = running_tasks(ecs, cluster, service).await?;
    let running: Vec<&Task> = tasks.iter().collect();
    let task = match wanted.task {
        Some(named) => {
            let found = running.iter().find(|t| {
                let arn = t.task_arn().unwrap_or_default();
                arn == named || arn.rsplit('/').next() == Some(named)
            });
            match found {
                Some(t) => Some(*t),
                None => {
                    report.fail(
                        "running task",
                        format!("task `{named}` is not a RUNNING task of `{service}`"),
                        format!("running now: {}", short_ids(&running)),
                    );
                    return Ok(report);
                }
            }
        }
        None => {
            running.iter().find(|t| t.health_status() != Some(&HealthStatus::Unhealthy)).or(running.first()).copied()
        }
    };
    let Some(task) = task else {
        report.fail(
            "running task",
            format!("service `{service}` has no RUNNING task in cluster `{cluster}`"),
            "check the service's events (`aws ecs describe-services`) for why its tasks stop",
        );
        return Ok(report);
    };
    let task_arn = task.task_arn().unwrap_or_default().to_string();
    let task_id = task_arn.rsplit('/').next().unwrap_or_default().to_string();
    report.pass("running task", format!("{} running; using `{task_id}`", running.len()));

    if task.enable_execute_command() {
        report.pass("exec on task", "ECS Exec is enabled on the task");
    } else if found.enable_execute_command() {
        report.fail(
            "exec on task",
            "ECS Exec is on for the service but not on its running task (it started before the change)",
            format!("aws ecs update-service --cluster {cluster} --service {service} --force-new-deployment"),
        );
    } else {
        report.fail("exec on task", "ECS Exec is off for the running task", "enable it on the service (above)");
    }

    if platform_supports_exec(task.platform_version()) {
        report.pass("platform version", format!("Fargate platform {}", task.platform_version().unwrap_or("LATEST")));
    } else {
        report.fail(
            "platform version",
            format!("Fargate platform {} is older than 1.4.0, which ECS Exec needs", task.platform_version().unwrap_or("?")),
            format!("aws ecs update-service --cluster {cluster} --service {service} --platform-version LATEST --force-new-deployment"),
        );
    }

    let definition = match task.task_definition_arn() {
        Some(arn) => cache.definition(ecs, arn).await?,
        None => None,
    };
    let container = choose_container(&mut report, task, definition.as_ref(), wanted.container, service);
    if let Some(name) = &container {
        let agent = task
            .containers()
            .iter()
            .find(|c| c.name() == Some(name.as_str()))
            .and_then(|c| {
                c.managed_agents().iter().find(|a| a.name().map(|n| n.as_str()) == Some("ExecuteCommandAgent"))
            })
            .and_then(|a| a.last_status())
            .unwrap_or("missing");
        if agent == "RUNNING" {
            report.pass("exec agent", format!("ExecuteCommandAgent of `{name}` is RUNNING"));
        } else {
            report.fail(
                "exec agent",
                format!("the ExecuteCommandAgent of container `{name}` is {agent}, not RUNNING"),
                "check the task role (below) and that the container image has a shell, then start a new task",
            );
        }
        if let Some(definition) = &definition {
            container_warnings(&mut report, definition, name);
        }
    }
    if let Some(definition) = &definition {
        check_task_role(&mut report, iam, cache, definition).await?;
    }

    if !report.failed() {
        if let Some(container) = container {
            report.target = Some(Target { cluster_arn, task_arn, container });
        }
    }
    Ok(report)
}

fn short_ids(tasks: &[&Task]) -> String {
    if tasks.is_empty() {
        return "none".into();
    }
    tasks.iter().filter_map(|t| t.task_arn()).map(|a| a.rsplit('/').next().unwrap_or(a)).collect::<Vec<_>>().join(", ")
}

fn choose_container(
    report: &mut Report,
    task: &Task,
    definition: Option<&TaskDefinition>,
    wanted: Option<&str>,
    service: &str,
) -> Option<String> {
    let names: Vec<String> = match definition {
        Some(d) => d.container_definitions().iter().filter_map(|c| c.name().map(str::to_string)).collect(),
        None => task.containers().iter().filter_map(|c| c.name().map(str::to_string)).collect(),
    };
    if let Some(wanted) = wanted {
        if names.iter().any(|n| n == wanted) {
            report.pass("container", format!("`{wanted}`"));
            return Some(wanted.to_string());
        }
        report.fail(
            "container",
            format!("container `{wanted}` is not in the task"),
            format!("the task has: {}", names.join(", ")),
        );
        return None;
    }
    let candidates: Vec<String> = match definition {
        Some(d) => d
            .container_definitions()
            .iter()
            .filter(|c| c.essential().unwrap_or(true))
            .filter(|c| c.firelens_configuration().is_none())
            .filter_map(|c| c.name())
            .filter(|n| !is_sidecar(n))
            .map(str::to_string)
            .collect(),
        None => names.clone(),
    };
    match (candidates.as_slice(), names.as_slice()) {
        ([only], _) | ([], [only]) => {
            report.pass("container", format!("`{only}` (the task's main container)"));
            Some(only.clone())
        }
        _ => {
            report.fail(
                "container",
                format!("the task has several containers: {}", names.join(", ")),
                format!("name one: `/fargate connect {service}/<container>`"),
            );
            None
        }
    }
}

fn container_warnings(report: &mut Report, definition: &TaskDefinition, name: &str) {
    let Some(container) = definition.container_definitions().iter().find(|c| c.name() == Some(name)) else {
        return;
    };
    if container.readonly_root_filesystem() == Some(true) {
        report.warn(
            "read-only root",
            format!("`{name}` has a read-only root filesystem; the exec agent may fail to start"),
            "mount writable volumes at /var/lib/amazon and /var/log/amazon, or set readonlyRootFilesystem=false",
        );
    }
    let env_keys: Vec<&str> = container.environment().iter().filter_map(|kv| kv.name()).collect();
    if env_keys.iter().any(|k| *k == "AWS_ACCESS_KEY_ID" || *k == "AWS_SECRET_ACCESS_KEY") {
        report.warn(
            "static AWS keys",
            format!(
                "`{name}` sets AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; they override the task role for the exec agent"
            ),
            "remove them from the container's environment and use the task role",
        );
    }
    if definition.pid_mode().map(|p| p.as_str()) == Some("task") {
        report.warn(
            "pidMode task",
            "the task uses pidMode: task; exec sessions can fail or see the agent's processes",
            "drop pidMode from the task definition unless you need it",
        );
    }
}

async fn check_task_role(
    report: &mut Report,
    iam: &aws_sdk_iam::Client,
    cache: &PreflightCache,
    definition: &TaskDefinition,
) -> Result<(), AwsError> {
    let Some(role_arn) = definition.task_role_arn() else {
        report.fail(
            "task role",
            "the task has no task role; the exec agent needs one",
            "give the task definition a taskRoleArn whose policy allows the four ssmmessages channel actions",
        );
        return Ok(());
    };
    let role_name = role_arn.rsplit('/').next().unwrap_or(role_arn);
    if cache.role_is_good(role_arn) {
        report.pass("task role", format!("`{role_name}` allows the ssmmessages channel actions"));
        return Ok(());
    }
    let documents = match RoleDocuments::fetch(iam, role_name).await {
        Ok(documents) => documents,
        Err(e) if e.code_is("AccessDenied") || e.code_is("AccessDeniedException") => {
            report.warn(
                "task role",
                format!("could not read the policies of `{role_name}` ({e})"),
                "allow the bot iam:GetRolePolicy, iam:ListRolePolicies, iam:ListAttachedRolePolicies, iam:GetPolicy and iam:GetPolicyVersion",
            );
            return Ok(());
        }
        Err(e) if e.code_is("NoSuchEntity") => {
            report.fail(
                "task role",
                format!("the task role `{role_name}` does not exist"),
                "fix the task definition's taskRoleArn",
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let missing: Vec<&str> = SSMMESSAGES_ACTIONS.iter().copied().filter(|a| !allows_actions(&documents.0, a)).collect();
    if missing.is_empty() {
        cache.remember_good_role(role_arn);
        report.pass("task role", format!("`{role_name}` allows the ssmmessages channel actions"));
    } else {
        report.fail(
            "task role",
            format!("the task role `{role_name}` does not allow {}", missing.join(", ")),
            "add an Allow for ssmmessages:CreateControlChannel, CreateDataChannel, OpenControlChannel and OpenDataChannel on *",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_and_platform_versions() {
        assert!(is_sidecar("envoy"));
        assert!(is_sidecar("datadog-agent"));
        assert!(is_sidecar("web-envoy"));
        assert!(!is_sidecar("app"));
        assert!(!is_sidecar("envoyproxy-admin-ui"));
        assert!(platform_supports_exec(Some("1.4.0")));
        assert!(platform_supports_exec(Some("LATEST")));
        assert!(platform_supports_exec(None));
        assert!(!platform_supports_exec(Some("1.3.0")));
    }
}
