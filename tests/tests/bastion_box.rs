//! The bastion, run for real and attacked from a session (`harness::bastion_box`): the user
//! data the bot renders boots in a box with the real cloud-init, useradd, sudo, nft and unit
//! files; the person's session is opened as the SSM agent opens it, on a pseudo-terminal, as
//! `ssm-user` and as a Run As user, and tries to get more than the container: root, the
//! metadata service (so the role's credentials), a shell through `connect`'s pager, the
//! deadline or the firewall. One box is booted for the attacks that only look, others for
//! those that change it; they boot in parallel.

#![cfg_attr(fc_skip_bastion_box, allow(dead_code, unused_imports))]

use harness::bastion_box::{BastionBox, Boot, EARLY_ATTACK};
use std::sync::OnceLock;
use worker::aws::user_data::{BastionScript, READY_PROBE};

const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c";
const DEADLINE: i64 = 1_893_456_000; // 2030-01-01 00:00:00 UTC
static NO_PINS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

fn user_data(run_as: Option<&'static str>) -> String {
    BastionScript {
        request_id: "fc-boxboxbo",
        service: "web",
        region: "eu-west-1",
        cluster: "prod",
        task_arn: TASK,
        container: "app",
        deadline_epoch: DEADLINE,
        plugin_url:
            "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/{arch}/session-manager-plugin.rpm",
        run_as_user: run_as,
        plugin_sha256: &NO_PINS,
    }
    .render()
}

fn ecs() -> serde_json::Value {
    serde_json::json!({"tasks": {TASK: {"lastStatus": "RUNNING", "containers": [
        {"name": "app", "lastStatus": "RUNNING"}, {"name": "envoy", "lastStatus": "RUNNING"}]}}})
}

/// The box the looking attacks share: booted once, with a Run As user.
fn booted() -> &'static (BastionBox, Boot) {
    static BOX: OnceLock<(BastionBox, Boot)> = OnceLock::new();
    BOX.get_or_init(|| {
        let bastion = BastionBox::up(&user_data(Some("ops")), &ecs());
        let boot = bastion.boot(EARLY_ATTACK);
        (bastion, boot)
    })
}

fn all_stages_passed(boot: &Boot) {
    for (name, code, text) in &boot.stages {
        assert_eq!(*code, 0, "{name} failed:\n{text}");
    }
}

/// Runs `script` as `user` inside the box (not through a session: for checks, not attacks).
fn as_user(bastion: &BastionBox, user: &str, script: &str) -> (i32, String) {
    bastion.sh(&format!("runuser -u {user} -- /bin/bash -c {}", worker::aws::user_data::shell_quote(script)))
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn a_session_at_the_earliest_moment_finds_the_lockdown_in_place() {
    let (bastion, boot) = booted();
    all_stages_passed(boot);
    assert!(boot.agent_started, "the agent starts once the lockdown is in place");
    let early = &boot.earliest_session;
    assert!(early.contains("ssm-user"), "the session ran as ssm-user:\n{early}");
    assert!(early.contains("ROOT-2-REFUSED") && !early.contains("ROOT-2-GOT"), "root at boot:\n{early}");
    assert!(early.contains("IMDS-4-CLOSED") && !early.contains("IMDS-4-OPEN"), "metadata at boot:\n{early}");
    assert!(!early.contains("(ALL)"), "sudo at boot:\n{early}");
    // The agent never made ssm-user itself (nor its sudo-for-all file): the lockdown had.
    let sudoers = bastion.read("/etc/sudoers.d/ssm-agent-users").unwrap();
    assert!(!sudoers.contains("NOPASSWD:ALL") && !sudoers.contains("NOPASSWD: ALL"), "{sudoers}");
    // And the bastion went on to be ready, passing the probe the bot runs.
    let (code, text) = bastion.sh(READY_PROBE);
    assert_eq!(code, 0, "the readiness probe on a good bastion:\n{text}");
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn the_metadata_service_is_closed_to_the_session_users_and_open_to_connect() {
    let (bastion, boot) = booted();
    all_stages_passed(boot);
    let attempts = r#"
curl -s -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token && echo CURL-OPEN
bash -c 'exec 3<>/dev/tcp/169.254.169.254/80' 2>/dev/null && echo TCP-OPEN
python3 -c 'import socket; socket.create_connection(("169.254.169.254", 80), 2); print("PY-OPEN")' 2>/dev/null
python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP); print("RAW-OPEN")' 2>/dev/null
python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print("PACKET-OPEN")' 2>/dev/null
BOX_AWS_LOG=/tmp/aws-$(id -un).log aws ecs describe-tasks --region eu-west-1 --cluster prod --tasks x >/dev/null 2>&1 && echo CLI-OPEN
true"#;
    for user in ["ssm-user", "ops"] {
        let (_, text) = as_user(bastion, user, attempts);
        assert!(!text.contains("-OPEN"), "{user} reached the metadata service or a raw socket:\n{text}");
    }
    // Controls: the same attempts reach it as root and as the connect user, so the service is up.
    let (_, text) = as_user(bastion, "fargate-connect", "curl -s -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token && echo CURL-OPEN");
    assert!(text.contains("CURL-OPEN"), "the connect user must reach it:\n{text}");
    let (_, text) = bastion.sh("bash -c 'exec 3<>/dev/tcp/169.254.169.254/80' && echo TCP-OPEN");
    assert!(text.contains("TCP-OPEN"), "root must reach it:\n{text}");
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn sudo_gives_the_session_users_connect_and_nothing_else() {
    let (bastion, boot) = booted();
    all_stages_passed(boot);
    let rule = "(fargate-connect) NOPASSWD: /usr/local/libexec/fargate-connect/connect";
    for user in ["ssm-user", "ops"] {
        let (_, listed) = as_user(bastion, user, "sudo -n -l");
        let rules: Vec<&str> = listed
            .lines()
            .skip_while(|l| !l.contains("may run the following commands"))
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(rules, [rule], "{user}: {listed}");
        let attempts = r#"
sudo -n true && echo ROOT-GOT
sudo -n -u root id && echo ROOT-GOT
sudo -n -u fargate-connect /bin/sh -c id && echo CONNECT-USER-GOT
sudo -n -u fargate-connect -s && echo CONNECT-USER-GOT
sudo -n -u fargate-connect -i && echo CONNECT-USER-GOT
sudo -n -e /etc/sudoers && echo SUDOEDIT-GOT
sudo -n -u fargate-connect /usr/local/bin/../libexec/fargate-connect/../../../../bin/sh && echo CONNECT-USER-GOT
sudo -n -u fargate-connect AWS_PAGER=sh /usr/local/libexec/fargate-connect/connect --list && echo SETENV-GOT
true"#;
        let (_, text) = as_user(bastion, user, attempts);
        assert!(!text.contains("-GOT"), "{user} got more than connect from sudo:\n{text}");
    }
    // No grant for the AMI's default user, nor the user itself.
    assert!(bastion.read("/etc/sudoers.d/90-cloud-init-users").is_none());
    let (code, _) = bastion.sh("id -u ec2-user");
    assert_ne!(code, 0, "no default user is made");
}

/// Everything `connect` can be made to show, with the pager's and an editor's escapes typed
/// into it, on a terminal two rows high (so a pager would page), with the person's own
/// pager settings in the environment and in ~/.aws/config.
const PAGER_ATTACK: &str = "mkdir -p ~/.aws\n\
printf '[default]\\ncli_pager = sh -c \"id -un > /tmp/escape-config\"\\n' > ~/.aws/config\n\
connect --list\n\
!id -un > /tmp/escape-bang\n\
\n\
|$id -un > /tmp/escape-pipe\n\
\n\
v\n\
:!id -un > /tmp/escape-editor\n\
q\n\
AWS_PAGER='sh -c \"id -un > /tmp/escape-env\"' PAGER=sh LESSOPEN='|id -un > /tmp/escape-lessopen' connect --list\n\
connect --endpoint-url http://127.0.0.1:1 --region us-east-1 --no-verify-ssl ls /\n\
connect --cli-auto-prompt\n\
configure export-credentials --format env\n\
connect --list --cli-auto-prompt\n\
configure export-credentials --format env\n\
connect\n\
!id -un > /tmp/escape-exec\n\
exit\n\
exit\n";

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn no_form_of_connect_opens_a_pager_or_a_shell_on_the_bastion() {
    let (bastion, boot) = booted();
    all_stages_passed(boot);
    for run_as in [None, Some("ops")] {
        bastion.sh("rm -f /tmp/escape-*; : > /run/box/aws.log; : > /run/box/plugin.log");
        let transcript = bastion.session(run_as, 2, PAGER_ATTACK);
        // Whatever was typed ran as the session user or in the container, never as the user
        // who holds the credentials.
        let (_, escapes) =
            bastion.sh("for f in /tmp/escape-*; do [ -e \"$f\" ] && echo \"$f: $(cat \"$f\")\"; done; true");
        assert!(!escapes.contains("fargate-connect"), "{run_as:?} escaped connect:\n{escapes}\n{transcript}");
        // The CLI's auto-prompt would have run what was typed as the credentials' user.
        assert!(!transcript.contains("ASIABOXBOXBOXBOXBOX1"), "{run_as:?} read the credentials:\n{transcript}");
        // connect did its work: listed the containers, and opened the container's shell.
        assert!(transcript.contains("envoy"), "the containers were listed:\n{transcript}");
        let calls = bastion.read("/run/box/aws.log").unwrap_or_default();
        assert!(calls.lines().count() >= 4, "{calls}");
        for call in calls.lines() {
            let call: serde_json::Value = serde_json::from_str(call).unwrap();
            assert_eq!(call["user"], "fargate-connect", "{call}");
            let args: Vec<&str> = call["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            assert!(args.contains(&"--no-cli-pager"), "{args:?}");
            // The person's arguments reach only the container's command.
            assert_eq!(args.iter().filter(|a| **a == "--region").count(), 1, "{args:?}");
            assert!(!args.contains(&"--endpoint-url") && !args.contains(&"--no-verify-ssl"), "{args:?}");
        }
        let sessions = bastion.read("/run/box/plugin.log").unwrap_or_default();
        let commands: Vec<String> = sessions
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["command"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            commands,
            [
                "--endpoint-url http://127.0.0.1:1 --region us-east-1 --no-verify-ssl ls /",
                "--cli-auto-prompt",
                "/bin/sh"
            ],
            "{transcript}"
        );
        assert!(sessions.contains(&format!("ecs:{TASK}_app")), "{sessions}");
    }
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn the_deadline_and_the_firewall_cannot_be_stopped_edited_or_outlived_from_a_session() {
    let (bastion, boot) = booted();
    all_stages_passed(boot);
    let timer = bastion.read("/etc/systemd/system/fargate-connect-deadline.timer").unwrap();
    assert!(timer.contains("OnCalendar=2030-01-01 00:00:00 UTC") && timer.contains("Persistent=true"), "{timer}");
    let (code, enabled) =
        bastion.sh("ls /etc/systemd/system/timers.target.wants/ /etc/systemd/system/multi-user.target.wants/");
    assert_eq!(code, 0);
    assert!(enabled.contains("fargate-connect-deadline.timer"), "the deadline survives a reboot: {enabled}");
    assert!(enabled.contains("fargate-connect-firewall.service"), "so does the firewall: {enabled}");
    let before = bastion.sh("sha256sum /etc/systemd/system/fargate-connect-* /etc/fargate-connect/imds.nft /usr/local/sbin/fargate-connect-*; nft list ruleset").1;
    let attempts = r#"
nft flush ruleset 2>/dev/null && echo NFT-GOT
nft delete table inet fargate_connect 2>/dev/null && echo NFT-GOT
systemctl stop fargate-connect-deadline.timer 2>/dev/null && echo SYSTEMCTL-GOT
systemctl disable fargate-connect-firewall.service 2>/dev/null && echo SYSTEMCTL-GOT
sudo -n systemctl stop fargate-connect-deadline.timer 2>/dev/null && echo SYSTEMCTL-GOT
echo '[Timer]' >> /etc/systemd/system/fargate-connect-deadline.timer 2>/dev/null && echo EDIT-GOT
rm -f /etc/systemd/system/fargate-connect-deadline.timer 2>/dev/null && echo EDIT-GOT
echo 'flush ruleset' > /etc/fargate-connect/imds.nft 2>/dev/null && echo EDIT-GOT
mkdir -p /etc/systemd/system/fargate-connect-firewall.service.d 2>/dev/null && echo EDIT-GOT
echo x > /usr/local/sbin/fargate-connect-deadline 2>/dev/null && echo EDIT-GOT
/usr/local/sbin/fargate-connect-deadline 4102444800 2>/dev/null && echo DEADLINE-GOT
true"#;
    for user in ["ssm-user", "ops"] {
        let (_, text) = as_user(bastion, user, attempts);
        assert!(!text.contains("-GOT"), "{user} changed the lockdown:\n{text}");
    }
    let after = bastion.sh("sha256sum /etc/systemd/system/fargate-connect-* /etc/fargate-connect/imds.nft /usr/local/sbin/fargate-connect-*; nft list ruleset").1;
    assert_eq!(before, after, "nothing of the lockdown changed");
    // The units are well-formed to systemd itself.
    let verify = bastion.read("/run/box/systemd-analyze.log").unwrap_or_default();
    assert!(!verify.to_lowercase().contains("fargate-connect"), "systemd-analyze verify:\n{verify}");
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn a_bastion_whose_ami_has_the_session_user_already_powers_off_before_any_session() {
    // The AMI already has the Run As user (with whatever groups, keys and grants it brought).
    let bastion = BastionBox::up(&user_data(Some("ops")), &ecs());
    let (code, text) =
        bastion.sh("useradd --create-home ops && echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/50-ops");
    assert_eq!(code, 0, "{text}");
    let boot = bastion.boot(EARLY_ATTACK);
    let (_, _, network) = boot.stage("cloud-init network");
    assert!(network.contains("the AMI already has the user ops"), "{network}");
    assert!(bastion.read("/run/box/poweroff").is_some(), "it powers off (and so terminates)");
    assert!(!boot.agent_started, "the agent never serves a session:\n{:?}", boot.stage("ssm agent"));
    assert!(bastion.read("/var/lib/fargate-connect/ready").is_none());
    let (code, _) = bastion.sh(READY_PROBE);
    assert_ne!(code, 0, "the readiness probe fails too");
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn the_readiness_probe_fails_on_a_bastion_whose_lockdown_broke() {
    let bastion = BastionBox::up(&user_data(None), &ecs());
    let boot = bastion.boot("exit\n");
    all_stages_passed(&boot);
    let (code, text) = bastion.sh(READY_PROBE);
    assert_eq!(code, 0, "{text}");
    for (breakage, says) in [
        (
            "echo 'ssm-user ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/zz-broken",
            "sudo grants ssm-user more than connect",
        ),
        ("nft delete table inet fargate_connect", "the metadata firewall is not loaded"),
        ("rm /etc/systemd/system/fargate-connect-deadline.timer", "the deadline timer is missing"),
        (
            "useradd ec2-user && echo 'ec2-user ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-init-users",
            "ec2-user may use sudo",
        ),
    ] {
        let (code, text) = bastion.sh(&format!("{breakage} && {READY_PROBE}"));
        assert_ne!(code, 0, "the probe passed with: {breakage}");
        assert!(text.contains(says), "{breakage}: {text}");
    }
    // The session user from the IMDS side: the firewall back, but letting everyone through.
    let (code, text) = bastion.sh(&format!(
        "sed -i 's/ip daddr 169.254.169.254 reject/ip daddr 169.254.169.254 accept\\n    ip daddr 169.254.169.254 reject/' /etc/fargate-connect/imds.nft && nft -f /etc/fargate-connect/imds.nft && {READY_PROBE}"
    ));
    assert_ne!(code, 0);
    assert!(text.contains("ssm-user reaches the instance metadata service"), "{text}");
}

#[test]
#[cfg_attr(fc_skip_bastion_box, ignore = "SKIPPED: the bastion box needs root and cloud-init, sudo, nftables")]
fn connect_runs_in_the_prefilled_task_or_finds_its_replacement() {
    const NEW_TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/prod/9a8b7c6d";
    let bastion = BastionBox::up(&user_data(None), &ecs());
    let boot = bastion.boot("exit\n");
    all_stages_passed(&boot);
    let plugin_sessions = || {
        let log = bastion.read("/run/box/plugin.log").unwrap_or_default();
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    // The prefilled task: a command, then the shell.
    let transcript = bastion.session(None, 24, "connect ls -la /app\nconnect --list\nexit\n");
    assert!(transcript.contains("app\tRUNNING") && transcript.contains("envoy\tRUNNING"), "{transcript}");
    let sessions = plugin_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["target"], format!("ecs:{TASK}_app"));
    assert_eq!(sessions[0]["command"], "ls -la /app");
    // The prefilled task was replaced (a deployment): connect finds the running one.
    let replaced = serde_json::json!({"tasks": {
        TASK: {"lastStatus": "STOPPED", "containers": []},
        NEW_TASK: {"lastStatus": "RUNNING", "containers": [{"name": "app", "lastStatus": "RUNNING"}]}}});
    bastion.sh(&format!("echo {} > /opt/box/ecs.json", worker::aws::user_data::shell_quote(&replaced.to_string())));
    let transcript = bastion.session(None, 24, "connect\nexit\nexit\n");
    assert!(transcript.contains("task 0f1e2d3c is STOPPED; looking for the running task of web"), "{transcript}");
    let sessions = plugin_sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[1]["target"], format!("ecs:{NEW_TASK}_app"));
    assert_eq!(sessions[1]["command"], "/bin/sh");
    // None left at all: a plain answer, no session.
    let stopped = serde_json::json!({"tasks": {TASK: {"lastStatus": "STOPPED", "containers": []}}});
    bastion.sh(&format!("echo {} > /opt/box/ecs.json", worker::aws::user_data::shell_quote(&stopped.to_string())));
    let transcript = bastion.session(None, 24, "connect\nexit\n");
    assert!(transcript.contains("connect: web has no running task"), "{transcript}");
    assert_eq!(plugin_sessions().len(), 2);
}
