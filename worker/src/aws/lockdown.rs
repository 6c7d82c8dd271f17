//! What keeps the person on a bastion to its container and nothing else: the users, the one
//! sudo rule, the metadata firewall, the deadline and the gate that holds the SSM agent back
//! until all of these are in place. [`Lockdown::script`] is the user data's first part, a
//! cloud-init boothook: it runs at every boot in cloud-init's first network stage, which
//! systemd orders before `network-online.target` and so before the SSM agent (`After=` it)
//! can serve a session. [`Lockdown::check`] is `fargate-connect-check`, which the agent's
//! drop-in runs before the agent starts and the bot's readiness probe runs before the link
//! goes out: a bastion whose lockdown is not whole is never handed to anyone.

/// The user `connect` runs as: the only one besides root that may reach the instance metadata
/// service, and so the role's credentials. The person's session user (`ssm-user`, or Session
/// Manager's Run As user) may run `connect` as it through one sudoers rule, and nothing else.
pub const CONNECT_USER: &str = "fargate-connect";

/// Where the real `connect` lives; `/usr/local/bin/connect` only hands over to it.
pub const CONNECT_PATH: &str = "/usr/local/libexec/fargate-connect/connect";

/// The lockdown check, run by root (the agent's `ExecStartPre=`, the readiness probe).
pub const CHECK_PATH: &str = "/usr/local/sbin/fargate-connect-check";

/// Written when the lockdown is complete; a later boot only verifies and reloads.
pub const LOCKED_MARKER: &str = "/var/lib/fargate-connect/locked";

/// The session user the SSM agent uses when Run As is off.
pub const SSM_USER: &str = "ssm-user";

/// Users a bastion must never give a session to: root, the AMI's own (`ec2-user` has sudo for
/// everything on AL2023) and the system's, the connect user (it holds the credentials). The
/// config refuses them as Run As users; the bastion itself also refuses any user that exists
/// before its lockdown made it.
pub const PRIVILEGED_USERS: &[&str] = &[
    "root",
    "ec2-user",
    "fargate-connect",
    "ssm-user",
    "admin",
    "centos",
    "rocky",
    "ubuntu",
    "debian",
    "fedora",
    "bin",
    "daemon",
    "adm",
    "lp",
    "sync",
    "shutdown",
    "halt",
    "mail",
    "operator",
    "games",
    "ftp",
    "nobody",
    "sshd",
    "dbus",
    "chrony",
    "rpc",
    "rpcuser",
    "tss",
    "polkitd",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "systemd-coredump",
    "systemd-oom",
    "ec2-instance-connect",
];

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
/// instance metadata service.
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

/// Its unit: loads the firewall at every later boot, before the network and the SSM agent.
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

/// The SSM agent's drop-in: it starts after the firewall and cloud-init's first network stage
/// (the lockdown), and only on a bastion that passes the check.
pub const AGENT_DROP_IN: &str = r#"[Unit]
Requires=fargate-connect-firewall.service
After=fargate-connect-firewall.service cloud-init.service

[Service]
ExecStartPre=/usr/local/sbin/fargate-connect-check
"#;

/// `/usr/local/sbin/fargate-connect-deadline [--no-block] EPOCH`: (re)writes the persistent
/// timer that powers the bastion off at EPOCH, and powers off at once when EPOCH is past.
/// `--no-block` at boot, where waiting for the timer's start (after `sysinit.target`) from
/// inside cloud-init's stage (before it) would wait forever.
pub const DEADLINE_HELPER: &str = r#"#!/bin/bash
# fargate-connect-deadline [--no-block] EPOCH: power this bastion off at EPOCH (UTC seconds),
# across reboots.
set -euo pipefail
block=()
if [ "${1:-}" = --no-block ]; then
  block=(--no-block)
  shift
fi
at="${1:-}"
case "$at" in
  '' | *[!0-9]*) echo "usage: fargate-connect-deadline [--no-block] EPOCH" >&2; exit 2 ;;
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
systemctl "${block[@]}" restart fargate-connect-deadline.timer
if [ "$(date -u +%s)" -ge "$at" ]; then
  systemctl "${block[@]}" poweroff
fi
"#;

/// The command that moves the bastion's deadline (after an extension).
pub fn move_deadline_command(deadline_epoch: i64) -> String {
    format!("/usr/local/sbin/fargate-connect-deadline {deadline_epoch}")
}

/// Single-quotes a value for bash.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A user name as the scripts write it: `ssm-user` bare, others quoted (validated plain
/// names already; quoted all the same).
fn quoted(user: &str) -> String {
    if user == SSM_USER {
        user.to_string()
    } else {
        shell_quote(user)
    }
}

/// The lockdown of one bastion: who its session users are and when it ends.
pub struct Lockdown<'a> {
    pub request_id: &'a str,
    pub service: &'a str,
    /// When the bastion powers itself off (and so terminates), UTC seconds.
    pub deadline_epoch: i64,
    /// Session Manager's Run As user, if the account uses one (validated: a plain name, not
    /// one of [`PRIVILEGED_USERS`]).
    pub run_as_user: Option<&'a str>,
}

impl Lockdown<'_> {
    /// The users sessions start as: `ssm-user`, and the Run As user if there is one.
    pub fn session_users(&self) -> Vec<&str> {
        let mut users = vec![SSM_USER];
        users.extend(self.run_as_user.filter(|u| *u != SSM_USER));
        users
    }

    /// The one sudoers rule per session user: `connect` as the connect user, nothing else.
    pub fn sudoers(&self) -> String {
        let mut out = String::from(
            "# fargate-connect: the session users may run connect as fargate-connect, and nothing else.\n",
        );
        for user in self.session_users() {
            // sudoers takes no shell quoting; the names are validated plain ones.
            out += &format!("{user} ALL=({CONNECT_USER}) NOPASSWD: {CONNECT_PATH}\n");
        }
        out
    }

    /// `fargate-connect-check`: exits 0 only on a bastion whose lockdown is whole. It looks as
    /// the person would: what `sudo -l` grants each session user, and whether each reaches
    /// the metadata service.
    pub fn check(&self) -> String {
        let users = self.session_users().into_iter().map(quoted).collect::<Vec<_>>().join(" ");
        format!(
            r#"#!/bin/bash
# fargate-connect-check: is this bastion locked down? Run as root before the SSM agent starts
# and by the readiness probe. Says what is wrong on stderr and exits 1.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
bad=0
problem() {{ echo "fargate-connect-check: $*" >&2; bad=1; }}
[ -f {locked} ] || problem "the lockdown has not finished"
nft list table inet fargate_connect 2>/dev/null | grep -q 'ip daddr 169.254.169.254 reject' \
  || problem "the metadata firewall is not loaded"
[ -f /etc/systemd/system/fargate-connect-deadline.timer ] || problem "the deadline timer is missing"
expected='({connect_user}) NOPASSWD: {connect_path}'
for user in {users}; do
  if ! id -u "$user" >/dev/null 2>&1; then
    problem "the session user $user is missing"
    continue
  fi
  rules="$(sudo -n -l -U "$user" 2>&1 | sed -n '/may run the following commands/,$p' | tail -n +2 | sed 's/^ *//' | grep -v '^$' || true)"
  [ "$rules" = "$expected" ] || problem "sudo grants $user more than connect: ${{rules:-nothing}}"
  if timeout 5 runuser -u "$user" -- /bin/bash -c 'exec 3<>/dev/tcp/169.254.169.254/80' 2>/dev/null; then
    problem "$user reaches the instance metadata service"
  fi
done
if id -u ec2-user >/dev/null 2>&1 && sudo -n -l -U ec2-user 2>&1 | grep -q 'may run the following commands'; then
  problem "ec2-user may use sudo"
fi
exit "$bad"
"#,
            locked = LOCKED_MARKER,
            connect_user = CONNECT_USER,
            connect_path = CONNECT_PATH,
        )
    }

    /// The user data's first part (a cloud-init boothook, every boot): see the module header.
    /// On a first boot it makes the users (refusing any that exist already), the sudo rule,
    /// the firewall, the deadline and the agent's gate; on a later boot it verifies. Any
    /// failure powers the bastion off, so it terminates before anyone is let in.
    pub fn script(&self) -> String {
        let mut new_users = format!(
            "  useradd --system --create-home --home-dir /var/lib/fargate-connect/home --shell /sbin/nologin {CONNECT_USER}\n"
        );
        for user in self.session_users() {
            new_users += &format!("  useradd --create-home --shell /bin/bash {}\n", quoted(user));
        }
        format!(
            r#"#cloud-boothook
#!/bin/bash
# fargate-connect bastion for request {request_id} ({service}): the lockdown. cloud-init runs
# this part at every boot before the network is online, so before the SSM agent can start;
# the agent's drop-in then refuses to start unless fargate-connect-check passes.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
abort() {{
  echo "fargate-connect lockdown failed: $1; powering off" >&2
  rm -f {locked}
  systemctl --no-block poweroff || true
  exit 1
}}
trap 'abort "line $LINENO"' ERR

# 0. Nobody may have had a session before the lockdown.
if pgrep -x amazon-ssm-agent >/dev/null || pgrep -f ssm-session-worker >/dev/null; then
  abort "the SSM agent ran before the lockdown"
fi
install -d -m 0755 /usr/local/sbin /var/lib/fargate-connect /etc/fargate-connect /usr/local/libexec/fargate-connect
first_boot=yes
if [ -f {locked} ]; then first_boot=no; fi
rm -f {locked}

# 1. The gate first, so that whatever fails below leaves it shut: the SSM agent starts only
#    after the firewall and this stage, and only where the check passes.
cat > {check_path} <<'CHECK'
{check}CHECK
chmod 0755 {check_path}
install -d -m 0755 /etc/systemd/system/amazon-ssm-agent.service.d
cat > /etc/systemd/system/amazon-ssm-agent.service.d/10-fargate-connect.conf <<'UNIT'
{agent_drop_in}UNIT
systemctl daemon-reload

# 2. The time box, kept by the bastion itself (it terminates on shutdown): a persistent timer
#    at an absolute deadline. Set once; an extension moves it, and a reboot keeps it.
cat > /usr/local/sbin/fargate-connect-deadline <<'DEADLINE'
{deadline_helper}DEADLINE
chmod 0755 /usr/local/sbin/fargate-connect-deadline
if [ ! -f /etc/systemd/system/fargate-connect-deadline.timer ]; then
  /usr/local/sbin/fargate-connect-deadline --no-block {deadline}
fi

# 3. The users, made here: a user the AMI already has (with its groups, keys and grants) is
#    never reused, so the bastion stops instead.
if [ "$first_boot" = yes ]; then
  for user in {connect_user} {users}; do
    if id -u "$user" >/dev/null 2>&1; then abort "the AMI already has the user $user"; fi
  done
{new_users}fi

# 4. sudo: each session user may run connect as {connect_user}, nothing else (the file the SSM
#    agent would write for ssm-user); no grant of cloud-init's for the AMI's user survives.
cat > /etc/sudoers.d/ssm-agent-users <<'SUDOERS'
{sudoers}SUDOERS
chmod 0440 /etc/sudoers.d/ssm-agent-users
visudo -cf /etc/sudoers.d/ssm-agent-users >/dev/null
rm -f /etc/sudoers.d/90-cloud-init-users

# 5. Only root and {connect_user} reach the instance metadata service: loaded now, and by its
#    unit at every later boot before the network.
cat > /etc/fargate-connect/imds.nft <<'NFT'
{firewall}NFT
nft -f /etc/fargate-connect/imds.nft
cat > /etc/systemd/system/fargate-connect-firewall.service <<'UNIT'
{firewall_unit}UNIT

systemctl daemon-reload
systemctl enable fargate-connect-firewall.service
touch {locked}
{check_path} || abort "the lockdown check failed"
"#,
            request_id = self.request_id,
            service = self.service,
            locked = LOCKED_MARKER,
            deadline_helper = DEADLINE_HELPER,
            deadline = self.deadline_epoch,
            connect_user = CONNECT_USER,
            users = self.session_users().into_iter().map(quoted).collect::<Vec<_>>().join(" "),
            sudoers = self.sudoers(),
            firewall = IMDS_FIREWALL,
            firewall_unit = IMDS_FIREWALL_UNIT,
            check_path = CHECK_PATH,
            check = self.check(),
            agent_drop_in = AGENT_DROP_IN,
        )
    }
}
