//! The config entirely from the environment, as a container gets it (the ECS example): the
//! real binary, no config file, `FARGATE_CONNECT_CONFIG_TOML` for the settings and
//! `FARGATE_CONNECT_DATABASE_URL` for the database, whose password never shows in what the
//! binary prints.

use std::process::{Command, Output};

const SETTINGS: &str = "[database]\nurl = \"sqlite:///nonexistent/ignored.db\"\n[aws]\ncluster = \"prod\"\n";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fargate-connect"));
    command.args(["--config", "/nonexistent/fargate-connect.toml"]).args(args);
    for var in ["FARGATE_CONNECT_CONFIG", "FARGATE_CONNECT_CONFIG_TOML", "FARGATE_CONNECT_DATABASE_URL", "PGPASSWORD"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().expect("run fargate-connect")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn the_settings_and_the_database_come_from_the_environment_without_a_file() {
    let dir = std::env::temp_dir().join(format!("fc-config-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/ledger.db", dir.display());
    let out = run(&["migrate"], &[("FARGATE_CONNECT_CONFIG_TOML", SETTINGS), ("FARGATE_CONNECT_DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("database {url} is up to date")), "{}", text(&out));
    assert!(dir.join("ledger.db").exists(), "the ledger was made where FARGATE_CONNECT_DATABASE_URL says");
    let _ = std::fs::remove_dir_all(&dir);

    // Without either, the missing file is named.
    let out = run(&["migrate"], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/fargate-connect.toml"), "{}", text(&out));
}

#[test]
fn a_database_password_is_never_printed() {
    // A PostgreSQL URL whose server is not there (port 9: discard, closed on loopback).
    let url = "postgres://fc:hunter2-s3cret@127.0.0.1:9/fc";
    let out = run(&["migrate"], &[("FARGATE_CONNECT_CONFIG_TOML", SETTINGS), ("FARGATE_CONNECT_DATABASE_URL", url)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "the password was printed: {}", text(&out));
    let aws_nowhere = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let env: Vec<(&str, &str)> = [("FARGATE_CONNECT_CONFIG_TOML", SETTINGS), ("FARGATE_CONNECT_DATABASE_URL", url)]
        .into_iter()
        .chain(aws_nowhere)
        .collect();
    let out = run(&["doctor"], &env);
    assert!(!text(&out).contains("hunter2"), "doctor printed the password: {}", text(&out));
    // A URL that is not a database's is refused plainly.
    let settings = "[database]\nurl = \"mysql://u@h/db\"\n[aws]\ncluster = \"prod\"\n";
    let out = run(&["migrate"], &[("FARGATE_CONNECT_CONFIG_TOML", settings)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("database.url must start with sqlite: or postgres://"), "{}", text(&out));
}
