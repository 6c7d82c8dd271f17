//! The bastion's user data, in three MIME parts cloud-init runs at their own stages:
//! 1. a cloud-config that creates no default user (AL2023's `ec2-user` has sudo for all);
//! 2. the lockdown ([`crate::aws::lockdown`]), a boothook: users, the one sudo rule, the
//!    metadata firewall, the deadline and the SSM agent's gate, in place before the agent can
//!    serve anyone;
//! 3. the rest, a shell script in cloud-init's final stage: the Session Manager plugin for the
//!    architecture, `connect` prefilled with region, cluster, task and container, and last
//!    the ready marker the bot's readiness probe ([`READY_PROBE`]) looks for, with the check.
//!
//! The deadline is absolute (UTC seconds) and kept by a persistent systemd timer, so a reboot
//! neither resets nor loses it, and the same request renders the same user data on every
//! launch attempt (EC2 refuses a retried `ClientToken` whose parameters changed). An extension
//! moves it with the same helper, `fargate-connect-deadline EPOCH`, through Run Command.

pub use crate::aws::lockdown::{
    move_deadline_command, shell_quote, CONNECT_PATH, CONNECT_USER, CONNECT_WRAPPER, DEADLINE_HELPER, IMDS_FIREWALL,
    IMDS_FIREWALL_UNIT,
};
use crate::aws::lockdown::{Lockdown, CHECK_PATH};

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
    /// The plugin RPM's pinned SHA-256 per architecture (`linux_64bit`, `linux_arm64`); when
    /// set, the download is checked before it is installed.
    pub plugin_sha256: &'a std::collections::BTreeMap<String, String>,
}

/// Written by the user data once `connect` and the plugin are in place.
pub const READY_MARKER: &str = "/var/lib/fargate-connect/ready";

/// The readiness probe the bot runs through Run Command: succeeds only on a usable bastion.
/// It runs the lockdown check too (as the person would meet it: `sudo -l` of each session user,
/// the metadata service from each), and looks for the plugin and the CLI as the connect user
/// with `connect`'s own PATH; a bastion that fails it is never handed out.
pub const READY_PROBE: &str = "/usr/local/sbin/fargate-connect-check && test -f /var/lib/fargate-connect/ready && test -x /usr/local/bin/connect && test -x /usr/local/libexec/fargate-connect/connect && runuser -u fargate-connect -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c 'command -v session-manager-plugin && command -v aws'";

/// A deadline in UTC ms as the whole second at or after it, as the bastion takes it.
pub fn deadline_secs(ms: i64) -> i64 {
    (ms + 999).div_euclid(1000)
}

impl BastionScript<'_> {
    /// The lockdown this bastion gets (the user data's boothook).
    pub fn lockdown(&self) -> Lockdown<'_> {
        Lockdown {
            request_id: self.request_id,
            service: self.service,
            deadline_epoch: self.deadline_epoch,
            run_as_user: self.run_as_user,
        }
    }

    /// `/usr/local/libexec/fargate-connect/connect`: runs a command (default `/bin/sh`) in the
    /// container, or `--list`s the task's containers. If the prefilled task has stopped (a
    /// deployment, a crash), it finds the service's running task first.
    ///
    /// It runs as the connect user, who holds the credentials, on the person's terminal, so
    /// nothing in it may start another program the person can steer: it starts again with an
    /// environment of its own (its PATH, no pager or editor variables, no AWS_* of the
    /// person's), every `aws` call has `--no-cli-pager` and `--no-cli-auto-prompt` (the CLI's
    /// auto-prompt, turned on by `--cli-auto-prompt` anywhere in its arguments, would run any
    /// `aws` command the person types as the credentials' user) and what it prints goes
    /// through `cat`; the person's arguments reach only the container's command, as one
    /// `--command=…` token the CLI cannot read as options of its own.
    pub fn connect_script(&self) -> String {
        let q = shell_quote;
        format!(
            r#"#!/bin/bash
# connect: a shell in the ECS task this bastion was made for (prefilled by fargate-connect).
# Usage: connect [command...]   run a command in the container (default: /bin/sh)
#        connect --list         show the task's containers
if [ "${{FARGATE_CONNECT_CLEAN:-}}" != 1 ]; then
  term="${{TERM:-xterm}}"
  case "$term" in *[!A-Za-z0-9._+-]*) term=xterm ;; esac
  exec /usr/bin/env -i FARGATE_CONNECT_CLEAN=1 TERM="$term" LANG=C.UTF-8 AWS_PAGER= AWS_CLI_AUTO_PROMPT=off \
    HOME=/var/lib/fargate-connect/home PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash {connect_path} "$@"
fi
set -euo pipefail
REGION={region}
CLUSTER={cluster}
SERVICE={service}
TASK={task}
CONTAINER={container}

task_status() {{
  aws --no-cli-pager --no-cli-auto-prompt ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$1" \
    --query 'tasks[0].lastStatus' --output text 2>/dev/null | cat || true
}}

# The prefilled task may have been replaced: use the service's running task then.
resolve_task() {{
  local status found
  status="$(task_status "$TASK")"
  if [ "$status" = "RUNNING" ]; then
    return 0
  fi
  echo "connect: task ${{TASK##*/}} is ${{status:-gone}}; looking for the running task of $SERVICE" >&2
  found="$(aws --no-cli-pager --no-cli-auto-prompt ecs list-tasks --region "$REGION" --cluster "$CLUSTER" --service-name "$SERVICE" \
    --desired-status RUNNING --query 'taskArns[0]' --output text | cat)"
  if [ -z "$found" ] || [ "$found" = "None" ]; then
    echo "connect: $SERVICE has no running task" >&2
    exit 1
  fi
  TASK="$found"
}}

if [ "${{1:-}}" = "--list" ]; then
  resolve_task
  aws --no-cli-pager --no-cli-auto-prompt ecs describe-tasks --region "$REGION" --cluster "$CLUSTER" --tasks "$TASK" \
    --query 'tasks[0].containers[].[name,lastStatus]' --output text | cat
  exit 0
fi
resolve_task
if [ "$#" -gt 0 ]; then cmd="$*"; else cmd=/bin/sh; fi
exec aws --no-cli-pager --no-cli-auto-prompt ecs execute-command --region "$REGION" --cluster "$CLUSTER" --task "$TASK" \
  --container "$CONTAINER" --interactive "--command=$cmd"
"#,
            connect_path = CONNECT_PATH,
            region = q(self.region),
            cluster = q(self.cluster),
            service = q(self.service),
            task = q(self.task_arn),
            container = q(self.container),
        )
    }

    /// Installs the plugin (retried: the download is over the network). Pinned: downloaded,
    /// checked against this architecture's SHA-256, then installed from the file; a mismatch
    /// stops the script, so the bastion never becomes ready with another plugin.
    fn plugin_install(&self) -> String {
        let url = self.plugin_url.replace("{arch}", "${plugin_arch}");
        if self.plugin_sha256.is_empty() {
            return format!(
                r#"for attempt in 1 2 3 4 5; do
  if dnf install -y "{url}"; then
    break
  fi
  echo "plugin install attempt ${{attempt}} failed; retrying" >&2
  sleep $((attempt * 5))
done
"#
            );
        }
        let sums: String =
            self.plugin_sha256.iter().map(|(arch, sum)| format!("  {arch}) plugin_sha256={sum} ;;\n")).collect();
        format!(
            r#"case "$plugin_arch" in
{sums}  *) echo "no pinned plugin checksum for $plugin_arch" >&2; exit 1 ;;
esac
for attempt in 1 2 3 4 5; do
  if curl --fail --silent --show-error --location --proto '=https' -o /root/session-manager-plugin.rpm "{url}"; then
    break
  fi
  echo "plugin download attempt ${{attempt}} failed; retrying" >&2
  sleep $((attempt * 5))
done
echo "$plugin_sha256  /root/session-manager-plugin.rpm" | sha256sum --check --strict -
dnf install -y /root/session-manager-plugin.rpm
rm -f /root/session-manager-plugin.rpm
"#
        )
    }

    /// The one sudoers rule per session user: `connect` as the connect user, nothing else.
    pub fn sudoers(&self) -> String {
        self.lockdown().sudoers()
    }

    /// The user data's last part (cloud-init's final stage): plugin, `connect`, ready.
    pub fn setup_script(&self) -> String {
        format!(
            r#"#!/bin/bash
# fargate-connect bastion for request {request_id} ({service}): the lockdown (the boothook) is
# in place; this installs the plugin and connect, then marks the bastion ready.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{check}
# cloud-init grants the AMI's default user sudo after the lockdown ran; no such grant is kept.
rm -f /etc/sudoers.d/90-cloud-init-users

# 1. Session Manager plugin, for this machine's architecture.
case "$(uname -m)" in
  aarch64) plugin_arch=linux_arm64 ;;
  *) plugin_arch=linux_64bit ;;
esac
{plugin_install}
# 2. The prefilled connect command, and the wrapper that runs it as {user}.
install -d -m 0755 /usr/local/libexec/fargate-connect
cat > {connect_path} <<'CONNECT'
{connect}CONNECT
chmod 0755 {connect_path}
cat > /usr/local/bin/connect <<'WRAPPER'
{wrapper}WRAPPER
chmod 0755 /usr/local/bin/connect

# 3. Usable: the bot's readiness probe looks for this (and runs the check again).
{check}
touch {ready}
"#,
            request_id = self.request_id,
            service = self.service,
            check = CHECK_PATH,
            ready = READY_MARKER,
            plugin_install = self.plugin_install(),
            user = CONNECT_USER,
            connect_path = CONNECT_PATH,
            wrapper = CONNECT_WRAPPER,
            connect = self.connect_script(),
        )
    }

    /// The whole user data: a MIME multipart message cloud-init reads (see the module header).
    pub fn render(&self) -> String {
        let parts = [
            ("text/cloud-config", "no-default-user.cfg", NO_DEFAULT_USER.to_string()),
            ("text/cloud-boothook", "lockdown.sh", self.lockdown().script()),
            ("text/x-shellscript", "bastion.sh", self.setup_script()),
        ];
        // A boundary no part contains (the same for the same request, so a retried launch sends
        // the same bytes).
        let boundary = (0..)
            .map(|n| if n == 0 { BOUNDARY.to_string() } else { format!("{BOUNDARY}{n}==") })
            .find(|b| parts.iter().all(|(_, _, body)| !body.contains(b.as_str())))
            .expect("some boundary is in no part");
        let mut out = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n");
        for (kind, name, body) in parts {
            out += &format!(
                "\n--{boundary}\nContent-Type: {kind}; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
                 Content-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"{name}\"\n\n{body}"
            );
        }
        out + &format!("\n--{boundary}--\n")
    }
}

/// The MIME boundary, unless a part contains it.
const BOUNDARY: &str = "==fargate-connect-part==";

/// The first part: no default user. AL2023's cloud-init would otherwise create `ec2-user` with
/// `NOPASSWD: ALL` in `/etc/sudoers.d/90-cloud-init-users`.
const NO_DEFAULT_USER: &str =
    "#cloud-config\n# fargate-connect: no default user; nobody logs in but through Session Manager.\nusers: []\n";

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
            plugin_sha256: &Default::default(),
        }
        .render();
        // Three parts, in the order cloud-init runs them: no default user, the lockdown (a
        // boothook, before the network is online), the rest (a script in the final stage).
        assert!(script.starts_with("Content-Type: multipart/mixed; boundary=\"==fargate-connect-part==\""));
        let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("{needle} not in {script}"));
        assert!(at("Content-Type: text/cloud-config") < at("Content-Type: text/cloud-boothook"));
        assert!(at("Content-Type: text/cloud-boothook") < at("Content-Type: text/x-shellscript"));
        assert!(script.contains("\n\n#cloud-config\n") && script.contains("\nusers: []\n"));
        assert!(script.contains("\n\n#cloud-boothook\n#!/bin/bash\n"));
        assert!(script.ends_with("\n--==fargate-connect-part==--\n"));
        assert_eq!(script.matches("\n--==fargate-connect-part==\n").count(), 3);
        assert!(script.contains("CLUSTER='prod'"));
        assert!(script.contains("TASK='arn:aws:ecs:eu-west-1:1:task/prod/abc'"));
        // The gate, then the deadline, users, sudo and firewall, all before the plugin's download.
        let lockdown = at("Content-Type: text/cloud-boothook");
        assert!(lockdown < at("amazon-ssm-agent.service.d/10-fargate-connect.conf <<"));
        assert!(
            at("amazon-ssm-agent.service.d/10-fargate-connect.conf <<")
                < at("fargate-connect-deadline --no-block 1800000000")
        );
        assert!(
            at("fargate-connect-deadline --no-block 1800000000") < at("useradd --create-home --shell /bin/bash 'ops'")
        );
        assert!(at("useradd --create-home --shell /bin/bash 'ops'") < at("nft -f /etc/fargate-connect/imds.nft\n"));
        assert!(at("nft -f /etc/fargate-connect/imds.nft\n") < at("Content-Type: text/x-shellscript"));
        assert!(at("Content-Type: text/x-shellscript") < at("dnf install"));
        let ready = at("touch /var/lib/fargate-connect/ready");
        assert!(ready > at("chmod 0755 /usr/local/bin/connect"));
        assert!(READY_PROBE.contains(READY_MARKER) && READY_PROBE.starts_with(CHECK_PATH));
        assert!(script.contains("ip daddr 169.254.169.254 reject"));
        assert!(
            script.contains("ssm-user ALL=(fargate-connect) NOPASSWD: /usr/local/libexec/fargate-connect/connect\n")
        );
        assert!(script.contains("ops ALL=(fargate-connect) NOPASSWD: /usr/local/libexec/fargate-connect/connect\n"));
        assert!(!script.contains("NOPASSWD: ALL") && !script.contains("NOPASSWD:ALL"));
        assert!(script.contains(
            r#"dnf install -y "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/${plugin_arch}/session-manager-plugin.rpm""#
        ));
        // EC2 takes at most 16 KB of user data (before base64).
        assert!(script.len() < 16 * 1024, "{} bytes of user data", script.len());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
