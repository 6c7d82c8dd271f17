//! The bastion's user data: schedule its own shutdown first (so nothing below can keep it
//! alive), install the Session Manager plugin for its architecture, and write
//! `/usr/local/bin/connect`, prefilled with region, cluster, task and container.

/// What the bastion needs to know, all of it public (no secrets ever go into user data).
pub struct BastionScript<'a> {
    pub request_id: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub cluster: &'a str,
    pub task_arn: &'a str,
    pub container: &'a str,
    /// Minutes from boot until the bastion powers itself off (and so terminates).
    pub shutdown_after_minutes: u64,
}

/// Single-quotes a value for bash.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl BastionScript<'_> {
    /// `/usr/local/bin/connect`: runs a command (default `/bin/sh`) in the container, or
    /// `--list`s the task's containers. If the prefilled task has stopped (a deployment, a
    /// crash), it finds the service's running task first.
    pub fn connect_script(&self) -> String {
        let q = shell_quote;
        format!(
            r#"#!/bin/bash
# connect: a shell in the ECS task this bastion was made for (prefilled by fargate-connect).
# Usage: connect [command...]   run a command in the container (default: /bin/sh)
#        connect --list         show the task's containers
set -euo pipefail
REGION={region}
CLUSTER={cluster}
SERVICE={service}
TASK={task}
CONTAINER={container}

task_status() {{
  aws ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$1" \
    --query 'tasks[0].lastStatus' --output text 2>/dev/null || true
}}

# The prefilled task may have been replaced: use the service's running task then.
resolve_task() {{
  local status found
  status="$(task_status "$TASK")"
  if [ "$status" = "RUNNING" ]; then
    return 0
  fi
  echo "connect: task ${{TASK##*/}} is ${{status:-gone}}; looking for the running task of $SERVICE" >&2
  found="$(aws ecs list-tasks --region "$REGION" --cluster "$CLUSTER" --service-name "$SERVICE" \
    --desired-status RUNNING --query 'taskArns[0]' --output text)"
  if [ -z "$found" ] || [ "$found" = "None" ]; then
    echo "connect: $SERVICE has no running task" >&2
    exit 1
  fi
  TASK="$found"
}}

if [ "${{1:-}}" = "--list" ]; then
  resolve_task
  aws ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$TASK" \
    --query 'tasks[0].containers[].[name,lastStatus]' --output text
  exit 0
fi
resolve_task
if [ "$#" -gt 0 ]; then cmd="$*"; else cmd=/bin/sh; fi
exec aws ecs execute-command --region "$REGION" --cluster "$CLUSTER" --task "$TASK" \
  --container "$CONTAINER" --interactive --command "$cmd"
"#,
            region = q(self.region),
            cluster = q(self.cluster),
            service = q(self.service),
            task = q(self.task_arn),
            container = q(self.container),
        )
    }

    /// The whole user data script.
    pub fn render(&self) -> String {
        format!(
            r#"#!/bin/bash
# fargate-connect bastion for request {request_id} ({service}).
set -euo pipefail

# 1. The time box, enforced by the bastion itself: it terminates on shutdown.
shutdown -h +{minutes} "fargate-connect: time box of request {request_id} is over"

# 2. Session Manager plugin, for this machine's architecture.
case "$(uname -m)" in
  aarch64) plugin_arch=linux_arm64 ;;
  *) plugin_arch=linux_64bit ;;
esac
for attempt in 1 2 3 4 5; do
  if dnf install -y "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/${{plugin_arch}}/session-manager-plugin.rpm"; then
    break
  fi
  echo "plugin install attempt ${{attempt}} failed; retrying" >&2
  sleep $((attempt * 5))
done

# 3. The prefilled connect command.
cat > /usr/local/bin/connect <<'CONNECT'
{connect}CONNECT
chmod 0755 /usr/local/bin/connect
"#,
            request_id = self.request_id,
            service = self.service,
            minutes = self.shutdown_after_minutes.max(1),
            connect = self.connect_script(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_target_quoted_and_the_shutdown_first() {
        let script = BastionScript {
            request_id: "fc-abc",
            service: "web",
            region: "eu-west-1",
            cluster: "prod",
            task_arn: "arn:aws:ecs:eu-west-1:1:task/prod/abc",
            container: "app",
            shutdown_after_minutes: 45,
        }
        .render();
        assert!(script.starts_with("#!/bin/bash"));
        assert!(script.contains("CLUSTER='prod'"));
        assert!(script.contains("TASK='arn:aws:ecs:eu-west-1:1:task/prod/abc'"));
        let shutdown = script.find("shutdown -h +45").unwrap();
        assert!(shutdown < script.find("dnf install").unwrap());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
