//! The bastion's user data: set its own deadline first (so nothing below can keep it alive),
//! install the Session Manager plugin for its architecture, write `/usr/local/bin/connect`,
//! prefilled with region, cluster, task and container, and last mark the bastion ready.
//!
//! The deadline is absolute (UTC seconds) and kept by a persistent systemd timer, so a reboot
//! neither resets nor loses it, and the same request renders the same user data on every
//! launch attempt (EC2 refuses a retried `ClientToken` whose parameters changed). An extension
//! moves it with the same helper, `fargate-connect-deadline EPOCH`, through Run Command.
//! The SSM agent registers in parallel with this script, so "online in SSM" is not "usable":
//! the bot's readiness probe ([`READY_PROBE`]) checks the marker this script writes last.

/// What the bastion needs to know, all of it public (no secrets ever go into user data).
pub struct BastionScript<'a> {
    pub request_id: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub cluster: &'a str,
    pub task_arn: &'a str,
    pub container: &'a str,
    /// When the bastion powers itself off (and so terminates), UTC seconds.
    pub deadline_epoch: i64,
    /// The Session Manager plugin's RPM; `{arch}` becomes `linux_64bit` or `linux_arm64`.
    pub plugin_url: &'a str,
    /// The OS user Session Manager's Run As preference starts sessions as (created here).
    pub run_as_user: Option<&'a str>,
}

/// Written by the user data once `connect` and the plugin are in place.
pub const READY_MARKER: &str = "/var/lib/fargate-connect/ready";

/// The readiness probe the bot runs through Run Command: succeeds only on a usable bastion.
pub const READY_PROBE: &str =
    "test -f /var/lib/fargate-connect/ready && test -x /usr/local/bin/connect && command -v session-manager-plugin";

/// A deadline in UTC ms as the whole second at or after it, as the bastion takes it.
pub fn deadline_secs(ms: i64) -> i64 {
    (ms + 999).div_euclid(1000)
}

/// The command that moves the bastion's deadline (after an extension).
pub fn move_deadline_command(deadline_epoch: i64) -> String {
    format!("/usr/local/sbin/fargate-connect-deadline {deadline_epoch}")
}

/// `/usr/local/sbin/fargate-connect-deadline EPOCH`: (re)writes the persistent timer that powers
/// the bastion off at EPOCH, and powers off at once when EPOCH is already past.
pub const DEADLINE_HELPER: &str = r#"#!/bin/bash
# fargate-connect-deadline EPOCH: power this bastion off at EPOCH (UTC seconds), across reboots.
set -euo pipefail
at="${1:-}"
case "$at" in
  '' | *[!0-9]*) echo "usage: fargate-connect-deadline EPOCH" >&2; exit 2 ;;
esac
units="${FARGATE_CONNECT_UNIT_DIR:-/etc/systemd/system}"
cat > "$units/fargate-connect-deadline.service" <<'UNIT'
[Unit]
Description=fargate-connect: the time box is over; power off (the instance terminates)

[Service]
Type=oneshot
ExecStart=/usr/bin/systemctl poweroff
UNIT
cat > "$units/fargate-connect-deadline.timer" <<UNIT
[Unit]
Description=fargate-connect: the time box of this bastion

[Timer]
OnCalendar=$(date -u -d "@$at" '+%Y-%m-%d %H:%M:%S') UTC
Persistent=true
AccuracySec=1s

[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable fargate-connect-deadline.timer
systemctl restart fargate-connect-deadline.timer
if [ "$(date -u +%s)" -ge "$at" ]; then
  systemctl poweroff
fi
"#;

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

# 1. The time box, enforced by the bastion itself (it terminates on shutdown): a persistent
#    timer at an absolute deadline, which a reboot does not reset.
install -d -m 0755 /usr/local/sbin
cat > /usr/local/sbin/fargate-connect-deadline <<'DEADLINE'
{deadline_helper}DEADLINE
chmod 0755 /usr/local/sbin/fargate-connect-deadline
/usr/local/sbin/fargate-connect-deadline {deadline}

# 2. Session Manager plugin, for this machine's architecture.
case "$(uname -m)" in
  aarch64) plugin_arch=linux_arm64 ;;
  *) plugin_arch=linux_64bit ;;
esac
for attempt in 1 2 3 4 5; do
  if dnf install -y "{plugin_url}"; then
    break
  fi
  echo "plugin install attempt ${{attempt}} failed; retrying" >&2
  sleep $((attempt * 5))
done

# 3. The prefilled connect command.
cat > /usr/local/bin/connect <<'CONNECT'
{connect}CONNECT
chmod 0755 /usr/local/bin/connect

{run_as}# 4. Usable: the bot's readiness probe looks for this (and for the plugin).
command -v session-manager-plugin >/dev/null
install -d -m 0755 /var/lib/fargate-connect
touch {ready}
"#,
            request_id = self.request_id,
            service = self.service,
            deadline_helper = DEADLINE_HELPER,
            deadline = self.deadline_epoch,
            ready = READY_MARKER,
            plugin_url = self.plugin_url.replace("{arch}", "${plugin_arch}"),
            run_as = match self.run_as_user {
                Some(user) => format!(
                    "# Session Manager's Run As user, whom sessions start as.\nid -u {u} >/dev/null 2>&1 || useradd --create-home {u}\n\n",
                    u = shell_quote(user)
                ),
                None => String::new(),
            },
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
            deadline_epoch: 1_800_000_000,
            plugin_url:
                "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/{arch}/session-manager-plugin.rpm",
            run_as_user: Some("ops"),
        }
        .render();
        assert!(script.starts_with("#!/bin/bash"));
        assert!(script.contains("CLUSTER='prod'"));
        assert!(script.contains("TASK='arn:aws:ecs:eu-west-1:1:task/prod/abc'"));
        let deadline = script.find("/usr/local/sbin/fargate-connect-deadline 1800000000").unwrap();
        assert!(deadline < script.find("dnf install").unwrap());
        let ready = script.find("touch /var/lib/fargate-connect/ready").unwrap();
        assert!(ready > script.find("chmod 0755 /usr/local/bin/connect").unwrap());
        assert!(READY_PROBE.contains(READY_MARKER));
        assert!(script.contains("id -u 'ops' >/dev/null 2>&1 || useradd --create-home 'ops'"));
        assert!(script.contains(
            r#"dnf install -y "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/${plugin_arch}/session-manager-plugin.rpm""#
        ));
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
