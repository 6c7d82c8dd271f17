//! The bastion's scripts, held to shellcheck and run for real: the rendered `connect` runs
//! with a stub `aws` on PATH that records what it was asked and answers like the AWS CLI.

use std::path::Path;
use std::process::Command;
use worker::aws::user_data::BastionScript;

const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c";
const NEW_TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/prod/9a8b7c6d";

fn script() -> BastionScript<'static> {
    BastionScript {
        request_id: "fc-abcdefgh",
        service: "web",
        region: "eu-west-1",
        cluster: "prod",
        task_arn: TASK,
        container: "app",
        shutdown_after_minutes: 40,
    }
}

/// A stub `aws` that logs its arguments and answers as the CLI would with `--output text`.
const STUB_AWS: &str = r#"#!/bin/bash
echo "$*" >> "$STUB_LOG"
case "$*" in
  *"ecs describe-tasks"*"containers"*) printf 'app\tRUNNING\nenvoy\tRUNNING\n' ;;
  *"ecs describe-tasks"*"lastStatus"*) echo "$STUB_STATUS" ;;
  *"ecs list-tasks"*) echo "$STUB_NEW_TASK" ;;
  *"ecs execute-command"*) echo "EXEC" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"#;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    log: String,
}

fn run_connect(dir: &Path, args: &[&str], task_status: &str, new_task: &str) -> Run {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let aws = bin.join("aws");
    std::fs::write(&aws, STUB_AWS).unwrap();
    let connect = dir.join("connect");
    std::fs::write(&connect, script().connect_script()).unwrap();
    let log = dir.join("aws.log");
    let _ = std::fs::remove_file(&log);
    Command::new("chmod").arg("+x").arg(&aws).arg(&connect).status().unwrap();
    let out = Command::new("bash")
        .arg(&connect)
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("STUB_LOG", &log)
        .env("STUB_STATUS", task_status)
        .env("STUB_NEW_TASK", new_task)
        .output()
        .unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        log: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

#[test]
fn connect_execs_into_the_prefilled_task_and_container() {
    let dir = harness::app::TempDir::new();
    let run = run_connect(&dir.0, &[], "RUNNING", NEW_TASK);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "EXEC");
    let exec = run.log.lines().last().unwrap();
    assert_eq!(
        exec,
        format!("ecs execute-command --region eu-west-1 --cluster prod --task {TASK} --container app --interactive --command /bin/sh")
    );
    let run = run_connect(&dir.0, &["ls", "-la", "/app"], "RUNNING", NEW_TASK);
    assert!(run.log.lines().last().unwrap().ends_with("--command ls -la /app"), "{}", run.log);
}

#[test]
fn connect_finds_the_replacement_when_the_prefilled_task_stopped() {
    let dir = harness::app::TempDir::new();
    let run = run_connect(&dir.0, &[], "STOPPED", NEW_TASK);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("task 0f1e2d3c is STOPPED; looking for the running task of web"), "{}", run.stderr);
    assert!(run
        .log
        .contains("ecs list-tasks --region eu-west-1 --cluster prod --service-name web --desired-status RUNNING"));
    assert!(run.log.lines().last().unwrap().contains(&format!("--task {NEW_TASK} --container app")), "{}", run.log);
    // None left at all: a plain failure, no exec.
    let run = run_connect(&dir.0, &[], "STOPPED", "None");
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("web has no running task"), "{}", run.stderr);
    assert!(!run.log.contains("execute-command"));
}

#[test]
fn connect_lists_the_containers() {
    let dir = harness::app::TempDir::new();
    let run = run_connect(&dir.0, &["--list"], "RUNNING", NEW_TASK);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "app\tRUNNING\nenvoy\tRUNNING\n");
    assert!(!run.log.contains("execute-command"));
}

#[test]
fn user_data_and_connect_are_shellcheck_clean() {
    let python = harness::moto::ensure_venv();
    let shellcheck = python.parent().unwrap().join("shellcheck");
    let dir = harness::app::TempDir::new();
    let user_data = dir.0.join("user-data.sh");
    let connect = dir.0.join("connect.sh");
    std::fs::write(&user_data, script().render()).unwrap();
    std::fs::write(&connect, script().connect_script()).unwrap();
    for file in [&user_data, &connect] {
        let out = Command::new(&shellcheck)
            .args(["--shell=bash", "--severity=style"])
            .arg(file)
            .output()
            .expect("shellcheck runs");
        assert!(out.status.success(), "shellcheck {}:\n{}", file.display(), String::from_utf8_lossy(&out.stdout));
    }
}
