//! The IAM documents the bot writes at run time, and the one the README gives people, pass the
//! IAM lint (`deploy/iam/lint.py`: parliament, with only the reviewed exceptions of
//! `deploy/iam/parliament-exceptions.yml`): each per-request role's trust policy and inline
//! policy (for a commercial and an aws-cn cluster), and the README's policy for humans. The
//! Terraform module's documents are linted by the Terraform test, from the applied state.

use harness::app::TempDir;
use harness::moto::{ensure_venv, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use worker::aws::iam::{exec_policy, trust_policy};

fn lint(files: &[PathBuf]) -> String {
    let out = Command::new(ensure_venv())
        .arg(repo_root().join("deploy/iam/lint.py"))
        .args(files)
        .output()
        .expect("the IAM lint runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the IAM lint failed:\n{text}");
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The first ```json block after `heading` in the README.
fn readme_json_after(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let block = section.split("```json\n").nth(1).expect("a json block").split("```").next().unwrap();
    block.to_string()
}

#[test]
fn the_per_request_policies_and_the_readmes_policy_pass_the_iam_lint() {
    let dir = TempDir::new();
    let files = vec![
        write(&dir.0, "bastion-trust.json", &trust_policy()),
        write(
            &dir.0,
            "bastion-inline.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &[],
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-with-the-credential-perimeter.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &worker::aws::iam::perimeter_statements(true, true),
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-aws-cn.json",
            &exec_policy(
                "arn:aws-cn:ecs:cn-north-1:123456789012:cluster/prod",
                "arn:aws-cn:ecs:cn-north-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &[],
            ),
        ),
        write(
            &dir.0,
            "bastion-inline-with-session-settings.json",
            &exec_policy(
                "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                "arn:aws:ecs:eu-west-1:123456789012:task/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "app",
                "web",
                &worker::aws::exec_settings::grant_statements(
                    &serde_json::from_value(serde_json::json!({
                        "cluster": "prod",
                        "kms_key_arns": ["arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"],
                        "session_log_bucket": "audit-sessions",
                        "session_log_group": "/ssm/sessions",
                    }))
                    .unwrap(),
                    "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
                ),
            ),
        ),
        write(&dir.0, "readme-people.json", &readme_json_after("### Letting only the requester use their bastion")),
    ];
    let report = lint(&files);
    println!("{report}");
    assert!(report.contains("6 document(s), 0 failure(s)"), "{report}");
    assert!(report.contains("bastion-trust.json [trust policy]"), "{report}");
}

#[test]
fn the_lint_fails_on_a_document_that_grants_too_much() {
    // The lint can fail: a per-request policy that reads every parameter is a finding.
    let dir = TempDir::new();
    let broad = r#"{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "*"},
        {"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "arn:aws:ecs:eu-west-1:1:cluster/prod"}]}"#;
    let file = write(&dir.0, "broad.json", broad);
    let out = Command::new(ensure_venv()).arg(repo_root().join("deploy/iam/lint.py")).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("RESOURCE_MISMATCH") || text.contains("RESOURCE_STAR"), "{text}");
}
