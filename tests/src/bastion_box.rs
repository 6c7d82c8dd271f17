//! The bastion box: the user data the bot renders, run for real on a Linux root in its own
//! namespaces (`tests/bastion_box/up.sh` says how), booted in the order a bastion boots:
//! cloud-init's local and network stages (the boothook), the SSM agent's start (its unit and
//! drop-ins, with `ExecStartPre=`), a session at the earliest moment the agent serves one,
//! cloud-init's config and final stages (the shell script). Sessions are opened as the SSM
//! agent opens them, on a pseudo-terminal, and typed into.

use crate::moto::repo_root;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};

/// One box. Its processes end when this value is dropped or the test process ends.
pub struct BastionBox {
    pub dir: PathBuf,
    _keep_alive: ChildStdin,
    _up: Child,
}

/// What the boot did.
pub struct Boot {
    /// Each stage's name and what it printed (stdout and stderr), with its exit code.
    pub stages: Vec<(String, i32, String)>,
    /// Whether the SSM agent started (its drop-in's `ExecStartPre=` passed).
    pub agent_started: bool,
    /// What a session opened the moment the agent started showed (empty if it could not).
    pub earliest_session: String,
}

impl Boot {
    pub fn stage(&self, name: &str) -> &(String, i32, String) {
        self.stages.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no stage {name}"))
    }
}

/// What an attacker types first, the moment the agent serves a session: can they become
/// root, and can they reach the metadata service? The markers printed are computed by the
/// shell, so the echo of what was typed never contains them.
pub const EARLY_ATTACK: &str = "id -un\n\
sudo -n -l\n\
sudo -n id -u && echo \"ROOT-$((1+1))-GOT\" || echo \"ROOT-$((1+1))-REFUSED\"\n\
bash -c 'exec 3<>/dev/tcp/169.254.169.254/80' && echo \"IMDS-$((2+2))-OPEN\" || echo \"IMDS-$((2+2))-CLOSED\"\n\
exit\n";

fn folder() -> PathBuf {
    repo_root().join("tests/bastion_box")
}

impl BastionBox {
    /// Makes a box whose instance has `user_data`, and whose ECS tasks (for the `aws`
    /// stand-in) are `ecs`. Nothing has booted yet.
    pub fn up(user_data: &str, ecs: &serde_json::Value) -> BastionBox {
        sweep_ended_boxes();
        let dir = std::env::temp_dir().join(format!("fargate-connect-box-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("user-data"), user_data).unwrap();
        std::fs::write(dir.join("ecs.json"), serde_json::to_vec(ecs).unwrap()).unwrap();
        let mut up = Command::new("bash")
            .arg(folder().join("up.sh"))
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("up.sh runs");
        let keep_alive = up.stdin.take().unwrap();
        let status = up.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(up.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "the bastion box did not come up: {err}");
        BastionBox { dir, _keep_alive: keep_alive, _up: up }
    }

    /// Runs a bash script as root inside the box.
    pub fn root(&self, script: &str) -> Output {
        Command::new("bash")
            .arg(folder().join("enter.sh"))
            .arg(&self.dir)
            .args(["/bin/bash", "-c", script])
            .output()
            .expect("enter.sh runs")
    }

    /// Like [`BastionBox::root`], and its output (stdout then stderr) and exit code.
    pub fn sh(&self, script: &str) -> (i32, String) {
        let out = self.root(script);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Boots the instance (see the module header), the earliest session typing `early_keys`.
    pub fn boot(&self, early_keys: &str) -> Boot {
        let mut stages = Vec::new();
        let mut run = |name: &str, script: &str| {
            let (code, text) = self.sh(script);
            stages.push((name.to_string(), code, text));
            code
        };
        run("cloud-init local", "cloud-init init --local");
        run("cloud-init network", "cloud-init init");
        let agent = run("ssm agent", "systemctl start amazon-ssm-agent.service");
        let earliest_session = if agent == 0 { self.session(None, 24, early_keys) } else { String::new() };
        run("cloud-init config", "cloud-init modules --mode config");
        run("cloud-init final", "cloud-init modules --mode final");
        Boot { stages, agent_started: agent == 0, earliest_session }
    }

    /// A Session Manager session as the SSM agent starts it (as `ssm-user`, or `run_as`), on a
    /// terminal of `rows` rows, typing `keys` a line at a time; what the terminal showed.
    pub fn session(&self, run_as: Option<&str>, rows: u16, keys: &str) -> String {
        let name = format!("keys-{}", rand::random::<u64>());
        // The box's /run is its own tmpfs: the keys are written through the box.
        let mut writer = Command::new("bash")
            .arg(folder().join("enter.sh"))
            .arg(&self.dir)
            .args(["/bin/sh", "-c", &format!("cat > /run/box/{name}")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writer.stdin.take().unwrap().write_all(keys.as_bytes()).unwrap();
        assert!(writer.wait().unwrap().success());
        let mut args = vec!["/usr/bin/python3".to_string(), "/opt/box/session.py".into()];
        if let Some(user) = run_as {
            args.extend(["--run-as".into(), user.to_string()]);
        }
        args.extend(["--rows".into(), rows.to_string(), format!("/run/box/{name}")]);
        let out = Command::new("bash").arg(folder().join("enter.sh")).arg(&self.dir).args(&args).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// A file inside the box, as root sees it.
    pub fn read(&self, path: &str) -> Option<String> {
        let (code, text) = self.sh(&format!("cat {path}"));
        (code == 0).then_some(text)
    }
}

impl Drop for BastionBox {
    fn drop(&mut self) {
        // Closing the pipe (a field, dropped after this) ends the box's first process and the
        // kernel ends the rest. Seen from here the mount points are empty folders.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the folders of boxes that have ended (a box shared by a test file's tests lives in a
/// static and is never dropped; its folder stays behind). Only files and empty folders are
/// removed, never a tree: a live box's mount points look empty from here, but are skipped
/// anyway, as its process still runs.
fn sweep_ended_boxes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("fargate-connect-box-") {
            continue;
        }
        let pid = std::fs::read_to_string(dir.join("unshare.pid")).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() || std::path::Path::new("/proc").join(pid).exists() {
            continue; // still coming up, or still running
        }
        for name in ["lower", "root", "upper"] {
            let _ = std::fs::remove_dir(dir.join(name));
        }
        if let Ok(files) = std::fs::read_dir(&dir) {
            for file in files.flatten() {
                if file.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
