//! The bastion's scripts, held to shellcheck, and the deadline helper run with a stub
//! `systemctl` writing its units into a temporary folder. `connect` and the lockdown run for
//! real in the bastion box (`bastion_box.rs`).

use std::path::Path;
use std::process::Command;
use worker::aws::user_data::BastionScript;

const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c";

fn script() -> BastionScript<'static> {
    BastionScript {
        request_id: "fc-abcdefgh",
        service: "web",
        region: "eu-west-1",
        cluster: "prod",
        task_arn: TASK,
        container: "app",
        deadline_epoch: 1_800_000_000,
        plugin_url:
            "https://s3.amazonaws.com/session-manager-downloads/plugin/latest/{arch}/session-manager-plugin.rpm",
        run_as_user: Some("ops"),
        plugin_sha256: &NO_PINS,
    }
}

static NO_PINS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// Runs `fargate-connect-deadline ARGS` with a stub `systemctl`; returns (exit code, timer
/// unit, what systemctl was asked).
fn run_deadline(dir: &Path, args: &str) -> (i32, String, String) {
    let bin = dir.join("bin");
    let units = dir.join("units");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(bin.join("systemctl"), "#!/bin/bash\necho \"$*\" >> \"$STUB_LOG\"\n").unwrap();
    let helper = dir.join("fargate-connect-deadline");
    std::fs::write(&helper, worker::aws::user_data::DEADLINE_HELPER).unwrap();
    Command::new("chmod").arg("+x").arg(bin.join("systemctl")).arg(&helper).status().unwrap();
    let log = dir.join("systemctl.log");
    let _ = std::fs::remove_file(&log);
    let out = Command::new("bash")
        .arg(&helper)
        .args(args.split(' '))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("FARGATE_CONNECT_UNIT_DIR", &units)
        .env("STUB_LOG", &log)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        std::fs::read_to_string(units.join("fargate-connect-deadline.timer")).unwrap_or_default(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn the_deadline_is_a_persistent_timer_at_an_absolute_time() {
    let dir = harness::app::TempDir::new();
    // 2030-01-01 00:00:00 UTC, in the future: the timer is written and started, no poweroff yet.
    let (status, timer, log) = run_deadline(&dir.0, "1893456000");
    assert_eq!(status, 0, "{log}");
    assert!(timer.contains("OnCalendar=2030-01-01 00:00:00 UTC"), "{timer}");
    assert!(timer.contains("Persistent=true"), "a reboot must not lose it: {timer}");
    assert_eq!(log, "daemon-reload\nenable fargate-connect-deadline.timer\nrestart fargate-connect-deadline.timer\n");
    let service = std::fs::read_to_string(dir.0.join("units/fargate-connect-deadline.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/systemctl poweroff"), "{service}");
    // Moved (an extension) to a time already past: it powers off at once.
    let (status, timer, log) = run_deadline(&dir.0, "1000000000");
    assert_eq!(status, 0);
    assert!(timer.contains("OnCalendar=2001-09-09 01:46:40 UTC"), "{timer}");
    assert!(log.ends_with("poweroff\n"), "{log}");
    // At boot (from inside cloud-init's stage) nothing waits for the timer's start.
    let (status, _, log) = run_deadline(&dir.0, "--no-block 1893456000");
    assert_eq!(status, 0);
    assert!(
        log.ends_with("enable fargate-connect-deadline.timer\n--no-block restart fargate-connect-deadline.timer\n"),
        "{log}"
    );
    // Nonsense is refused and changes nothing.
    let (status, _, log) = run_deadline(&dir.0, "soon; reboot");
    assert_eq!(status, 2);
    assert!(!log.contains("reboot"));
}

#[test]
fn connect_hands_over_to_the_connect_user_and_nothing_else() {
    use worker::aws::user_data::{CONNECT_PATH, CONNECT_USER, CONNECT_WRAPPER};
    let dir = harness::app::TempDir::new();
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // `id -un` says we are the session user; `sudo` records what it was asked.
    std::fs::write(bin.join("id"), "#!/bin/bash\necho ssm-user\n").unwrap();
    std::fs::write(bin.join("sudo"), "#!/bin/bash\necho \"sudo $*\"\n").unwrap();
    let wrapper = dir.0.join("connect");
    std::fs::write(&wrapper, CONNECT_WRAPPER).unwrap();
    Command::new("chmod").arg("+x").arg(bin.join("id")).arg(bin.join("sudo")).arg(&wrapper).status().unwrap();
    let out = Command::new("bash")
        .arg(&wrapper)
        .args(["ls", "-la"])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sudo -n -H -u {CONNECT_USER} -- {CONNECT_PATH} ls -la")
    );
    // The rules: one per session user, for connect only; the firewall before anything slow.
    let script = script().render();
    let sudoers = script.split("<<'SUDOERS'\n").nth(1).unwrap().split("SUDOERS\n").next().unwrap();
    let rules: Vec<&str> = sudoers.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        rules,
        [
            format!("ssm-user ALL=({CONNECT_USER}) NOPASSWD: {CONNECT_PATH}"),
            format!("ops ALL=({CONNECT_USER}) NOPASSWD: {CONNECT_PATH}")
        ]
    );
    let firewall = script.split("<<'NFT'\n").nth(1).unwrap().split("NFT\n").next().unwrap();
    for rule in [
        "ip daddr 169.254.169.254 meta skuid 0 accept",
        "ip daddr 169.254.169.254 meta skuid \"fargate-connect\" accept",
        "ip daddr 169.254.169.254 reject",
    ] {
        assert!(firewall.contains(rule), "{rule} not in {firewall}");
    }
    assert!(script.contains("Before=network-pre.target amazon-ssm-agent.service"), "before any session");
    // EC2 takes at most 16 KB of user data (before base64).
    assert!(script.len() < 16 * 1024, "{} bytes of user data", script.len());
    // The deadline is set before any of it, and the ready marker after all of it.
    let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("{needle} not in the user data"));
    assert!(at("fargate-connect-deadline --no-block 1800000000") < at("imds.nft"));
    assert!(at("chmod 0755 /usr/local/bin/connect") < at("touch /var/lib/fargate-connect/ready"));
}

#[test]
fn user_data_and_connect_are_shellcheck_clean() {
    let python = harness::moto::ensure_venv();
    let shellcheck = python.parent().unwrap().join("shellcheck");
    let dir = harness::app::TempDir::new();
    let pins: std::collections::BTreeMap<String, String> =
        [("linux_64bit", "a"), ("linux_arm64", "b")].map(|(k, c)| (k.to_string(), c.repeat(64))).into();
    let pinned = BastionScript { plugin_sha256: &pins, ..script() }.setup_script();
    // Pinned: the download is checked before anything is installed from it.
    let check = pinned.find("sha256sum --check").expect("a checksum check");
    assert!(check < pinned.find("dnf install -y /root/session-manager-plugin.rpm").unwrap(), "{pinned}");
    assert!(pinned.contains(&format!("linux_arm64) plugin_sha256={}", "b".repeat(64))), "{pinned}");
    assert!(!pinned.contains("dnf install -y \"https://"), "no unchecked install: {pinned}");
    let bastion = script();
    let lockdown = bastion.lockdown();
    // The boothook's first line is cloud-init's, which it strips before running the rest.
    let boothook = lockdown.script().strip_prefix("#cloud-boothook\n").expect("a boothook").to_string();
    let mut files = Vec::new();
    for (name, text) in [
        ("lockdown.sh", boothook),
        ("check.sh", lockdown.check()),
        ("setup.sh", script().setup_script()),
        ("setup-pinned.sh", pinned),
        ("connect.sh", script().connect_script()),
        ("deadline.sh", worker::aws::user_data::DEADLINE_HELPER.to_string()),
        ("wrapper.sh", worker::aws::user_data::CONNECT_WRAPPER.to_string()),
    ] {
        let file = dir.0.join(name);
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    for file in &files {
        let out = Command::new(&shellcheck)
            .args(["--shell=bash", "--severity=style"])
            .arg(file)
            .output()
            .expect("shellcheck runs");
        assert!(out.status.success(), "shellcheck {}:\n{}", file.display(), String::from_utf8_lossy(&out.stdout));
    }
}

/// The EC2 example's boot script installs the release binary only when its SHA-256 is the
/// pinned one: its download lines run here with a stub `curl` serving known bytes.
#[test]
fn the_example_installs_the_release_binary_only_with_the_pinned_checksum() {
    let template =
        std::fs::read_to_string(harness::moto::repo_root().join("deploy/terraform/examples/ec2/user-data.sh.tftpl"))
            .unwrap();
    let start = template.find("# The release binary").expect("the download section");
    let end = template.find("rm -f /tmp/fargate-connect.download").expect("its end");
    let section = &template[start..end];
    let served = b"#!/bin/sh\necho the real release\n";
    let good = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(served))
    };
    let run = |pinned: &str| {
        let dir = harness::app::TempDir::new();
        let bin = dir.0.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let payload = dir.0.join("payload");
        std::fs::write(&payload, served).unwrap();
        // curl … -o FILE URL: copy the payload to FILE.
        std::fs::write(
            bin.join("curl"),
            format!(
                "#!/bin/bash\nwhile [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then out=\"$2\"; fi; shift; done\ncp {} \"$out\"\n",
                payload.display()
            ),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(bin.join("curl")).status().unwrap();
        let installed = dir.0.join("fargate-connect");
        let script = section
            .replace("${release_url}", "https://releases.example.com/fargate-connect")
            .replace("${release_sha256}", pinned)
            .replace("/tmp/fargate-connect.download", &dir.0.join("download").display().to_string())
            .replace("/usr/local/bin/fargate-connect", &installed.display().to_string());
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), installed.exists(), dir)
    };
    let (status, installed, _dir) = run(&good);
    assert_eq!((status, installed), (0, true), "the pinned binary is installed");
    let other = "0".repeat(64);
    let (status, installed, _dir) = run(&other);
    assert_ne!(status, 0, "a binary with another checksum stops the boot script");
    assert!(!installed, "and is not installed");
}
