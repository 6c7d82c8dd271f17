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
    pub fn render(&self) -> String {
        let q = shell_quote;
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
#!/bin/bash
# connect: a shell in the ECS task this bastion was made for (prefilled by fargate-connect).
# Usage: connect [command...]   (default: /bin/sh)
set -euo pipefail
REGION={region}
CLUSTER={cluster}
TASK={task}
CONTAINER={container}
if [ "$#" -gt 0 ]; then cmd="$*"; else cmd=/bin/sh; fi
exec aws ecs execute-command --region "$REGION" --cluster "$CLUSTER" --task "$TASK" \
  --container "$CONTAINER" --interactive --command "$cmd"
CONNECT
chmod 0755 /usr/local/bin/connect
"#,
            request_id = self.request_id,
            service = self.service,
            minutes = self.shutdown_after_minutes.max(1),
            region = q(self.region),
            cluster = q(self.cluster),
            task = q(self.task_arn),
            container = q(self.container),
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
