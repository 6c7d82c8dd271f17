//! The bastion's user data: set its own deadline first (so nothing below can keep it alive),
//! lock the instance's credentials away from the person (only root and the `connect` user reach
//! the metadata service; the session user may only run `connect`), install the Session Manager
//! plugin for its architecture, write `connect`, prefilled with region, cluster, task and
//! container, and last mark the bastion ready.
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
    /// The plugin RPM's pinned SHA-256 per architecture (`linux_64bit`, `linux_arm64`); when
    /// set, the download is checked before it is installed.
    pub plugin_sha256: &'a std::collections::BTreeMap<String, String>,
}

/// The user `connect` runs as: the only one besides root that may reach the instance metadata
/// service, and so the role's credentials. The person's session user (`ssm-user`, or Session
/// Manager's Run As user) may run `connect` as it through one sudoers rule, and nothing else.
pub const CONNECT_USER: &str = "fargate-connect";

/// Where the real `connect` lives; `/usr/local/bin/connect` only hands over to it.
pub const CONNECT_PATH: &str = "/usr/local/libexec/fargate-connect/connect";

/// `/usr/local/bin/connect`: runs the real one as the connect user.
pub const CONNECT_WRAPPER: &str = r#"#!/bin/bash
# connect: a shell in this bastion's ECS task. It runs as fargate-connect, the only user (with
# root) that may use this bastion's credentials; you never hold them.
if [ "$(id -un)" = fargate-connect ]; then
  exec /usr/local/libexec/fargate-connect/connect "$@"
fi
exec sudo -n -H -u fargate-connect -- /usr/local/libexec/fargate-connect/connect "$@"
"#;

/// The firewall (nftables) that keeps everyone but root and the connect user away from the
/// instance metadata service, loaded at every boot before the SSM agent starts.
pub const IMDS_FIREWALL: &str = r#"table inet fargate_connect
delete table inet fargate_connect
table inet fargate_connect {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr 169.254.169.254 meta skuid 0 accept
    ip daddr 169.254.169.254 meta skuid "fargate-connect" accept
    ip daddr 169.254.169.254 reject
    ip6 daddr fd00:ec2::254 meta skuid 0 accept
    ip6 daddr fd00:ec2::254 meta skuid "fargate-connect" accept
    ip6 daddr fd00:ec2::254 reject
  }
}
"#;

/// Its unit: before the SSM agent (and so before any session), at every boot.
pub const IMDS_FIREWALL_UNIT: &str = r#"[Unit]
Description=fargate-connect: only root and fargate-connect reach the instance metadata service
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target amazon-ssm-agent.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/fargate-connect/imds.nft

[Install]
WantedBy=multi-user.target
"#;

/// Written by the user data once `connect` and the plugin are in place.
pub const READY_MARKER: &str = "/var/lib/fargate-connect/ready";

/// The readiness probe the bot runs through Run Command: succeeds only on a usable bastion.
pub const READY_PROBE: &str = "test -f /var/lib/fargate-connect/ready && test -x /usr/local/bin/connect && test -x /usr/local/libexec/fargate-connect/connect && command -v session-manager-plugin";

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
        let mut users = vec!["ssm-user"];
        users.extend(self.run_as_user);
        users.iter().map(|u| format!("{u} ALL=({CONNECT_USER}) NOPASSWD: {CONNECT_PATH}\n")).collect()
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

# 2. The person never holds this bastion's credentials: only root and {user} reach the instance
#    metadata service (a firewall loaded at every boot, before the SSM agent); the session user
#    may run connect as {user} and nothing else (no general sudo, so neither the firewall nor
#    the deadline can be undone from a session).
install -d -m 0755 /var/lib/fargate-connect /etc/fargate-connect
id -u {user} >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/fargate-connect/home --shell /sbin/nologin {user}
command -v nft >/dev/null 2>&1 || dnf install -y nftables
cat > /etc/fargate-connect/imds.nft <<'NFT'
{firewall}NFT
cat > /etc/systemd/system/fargate-connect-firewall.service <<'UNIT'
{firewall_unit}UNIT
systemctl daemon-reload
systemctl enable --now fargate-connect-firewall.service
# The SSM agent gives ssm-user sudo for everything when it creates it for the first session;
# created here first (the agent then leaves it be), with this one rule instead.
id -u ssm-user >/dev/null 2>&1 || useradd --create-home ssm-user
{run_as}cat > /etc/sudoers.d/ssm-agent-users <<'SUDOERS'
# fargate-connect: the session user may run connect as {user}, and nothing else.
{sudoers}SUDOERS
chmod 0440 /etc/sudoers.d/ssm-agent-users
visudo -cf /etc/sudoers.d/ssm-agent-users

# 3. Session Manager plugin, for this machine's architecture.
case "$(uname -m)" in
  aarch64) plugin_arch=linux_arm64 ;;
  *) plugin_arch=linux_64bit ;;
esac
{plugin_install}
# 4. The prefilled connect command, and the wrapper that runs it as {user}.
install -d -m 0755 /usr/local/libexec/fargate-connect
cat > {connect_path} <<'CONNECT'
{connect}CONNECT
chmod 0755 {connect_path}
cat > /usr/local/bin/connect <<'WRAPPER'
{wrapper}WRAPPER
chmod 0755 /usr/local/bin/connect

# 5. Usable: the bot's readiness probe looks for this (and for the plugin).
command -v session-manager-plugin >/dev/null
install -d -m 0755 /var/lib/fargate-connect
touch {ready}
"#,
            request_id = self.request_id,
            service = self.service,
            deadline_helper = DEADLINE_HELPER,
            deadline = self.deadline_epoch,
            ready = READY_MARKER,
            plugin_install = self.plugin_install(),
            run_as = match self.run_as_user {
                Some(user) => format!(
                    "# Session Manager's Run As user, whom sessions start as.\nid -u {u} >/dev/null 2>&1 || useradd --create-home {u}\n",
                    u = shell_quote(user)
                ),
                None => String::new(),
            },
            sudoers = self.sudoers(),
            user = CONNECT_USER,
            firewall = IMDS_FIREWALL,
            firewall_unit = IMDS_FIREWALL_UNIT,
            connect_path = CONNECT_PATH,
            wrapper = CONNECT_WRAPPER,
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
            plugin_sha256: &Default::default(),
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
        // The credentials stay with root and the connect user; the session users get one rule.
        let firewall = script.find("systemctl enable --now fargate-connect-firewall.service").unwrap();
        assert!(firewall < script.find("dnf install -y \"https://").unwrap(), "locked before the plugin's download");
        assert!(script.contains("ip daddr 169.254.169.254 reject"));
        assert!(
            script.contains("ssm-user ALL=(fargate-connect) NOPASSWD: /usr/local/libexec/fargate-connect/connect\n")
        );
        assert!(script.contains("ops ALL=(fargate-connect) NOPASSWD: /usr/local/libexec/fargate-connect/connect\n"));
        assert!(!script.contains("NOPASSWD: ALL"));
        assert!(script.contains(
            r#"dnf install -y "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/${plugin_arch}/session-manager-plugin.rpm""#
        ));
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
