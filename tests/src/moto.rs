//! The AWS emulator: moto 5.2.5 behind `deploy/sandbox/moto_front.py`, one server per test
//! process on 127.0.0.1 and a port the OS picks, started from a venv the harness creates on
//! first use (`.venv-moto/` in the repo, or `$FARGATE_CONNECT_MOTO_VENV`). Tests isolate
//! themselves with one moto account each (`x-moto-account-id`), never with global resets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub struct Moto {
    pub endpoint: String,
    /// Held so the server's stdin stays open; when this process exits the pipe closes and
    /// the server exits with it.
    _child: Mutex<Child>,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// The shared emulator, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn venv_dir() -> PathBuf {
    std::env::var_os("FARGATE_CONNECT_MOTO_VENV").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv-moto"))
}

/// Creates the venv with the pinned moto if it is missing. Built beside its final place and
/// renamed into it, so concurrent test processes never see half a venv.
pub fn ensure_venv() -> PathBuf {
    let dir = venv_dir();
    let python = dir.join("bin/python");
    let requirements = repo_root().join("deploy/sandbox/requirements.txt");
    let stamp = dir.join(".requirements");
    let wanted = std::fs::read_to_string(&requirements).expect("deploy/sandbox/requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&tmp)
        .status()
        .expect("python3 is needed for the AWS emulator");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(tmp.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip");
    assert!(status.success(), "installing moto into {} failed", tmp.display());
    std::fs::write(tmp.join(".requirements"), &wanted).expect("stamp");
    if python.exists() {
        // An outdated venv: replace it.
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process won the race; use its venv.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    python
}

fn start() -> Moto {
    let python = ensure_venv();
    let script = repo_root().join("deploy/sandbox/moto_front.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--port", "0"])
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stderr(if std::env::var_os("FARGATE_CONNECT_MOTO_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the moto front");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(port) = line.strip_prefix("LISTENING ") {
                let _ = tx.send(port.trim().to_string());
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(120)).expect("the moto front did not start within 120 s");
    let endpoint = format!("http://127.0.0.1:{port}");
    // ECS tasks stay RUNNING instead of advancing one state per read. The server is bound and
    // listening once it printed LISTENING, so the first call is answered.
    let accepted = ureq_post(
        &format!("{endpoint}/moto-api/state-manager/set-transition"),
        r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#,
    );
    assert!(accepted, "moto did not accept the state-manager transition");
    Moto { endpoint, _child: Mutex::new(child) }
}

/// A minimal blocking HTTP POST (the harness must not need a runtime here).
fn ureq_post(url: &str, body: &str) -> bool {
    blocking_request("POST", url, body).is_some_and(|(status, _)| (200..300).contains(&status))
}

/// A minimal blocking HTTP GET of the front (no runtime needed, e.g. in `Drop`): the body of a
/// 2xx answer.
pub fn blocking_get(url: &str) -> Option<String> {
    blocking_request("GET", url, "").filter(|(status, _)| (200..300).contains(status)).map(|(_, body)| body)
}

fn blocking_request(method: &str, url: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// A fresh moto account id for one test.
pub fn new_account() -> String {
    use rand::Rng;
    format!("{:012}", rand::thread_rng().gen_range(100_000_000_000u64..999_999_999_999))
}

/// Every AWS call the emulator saw for `account`, as the front layer logs them: `service`,
/// `action`, `at` and `took` (seconds), and `instances` for EC2 calls that name some.
pub async fn calls_detailed(account: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/_front/calls?account={account}", moto().endpoint);
    reqwest::get(url).await.expect("front calls").json().await.expect("json")
}

/// Every AWS call the emulator saw for `account`, as (service, action), in order.
pub async fn calls(account: &str) -> Vec<(String, String)> {
    let url = format!("{}/_front/calls?account={account}", moto().endpoint);
    let list: Vec<serde_json::Value> = reqwest::get(url).await.expect("front calls").json().await.expect("json");
    list.into_iter()
        .map(|c| (c["service"].as_str().unwrap_or("").to_string(), c["action"].as_str().unwrap_or("").to_string()))
        .collect()
}

async fn front_post(path: &str, spec: serde_json::Value) {
    let response =
        reqwest::Client::new().post(format!("{}{path}", moto().endpoint)).json(&spec).send().await.expect("front");
    assert!(response.status().is_success(), "{path}: {}", response.status());
}

/// Lets the next call of `action` take effect at once but holds its answer for `secs` (a
/// launch that happened while the bot still waits to hear of it).
pub async fn hold_answer(account: &str, action: &str, secs: f64) {
    front_post(
        "/_front/faults",
        serde_json::json!({"account": account, "action": action, "delay": secs, "after": true, "times": 1}),
    )
    .await;
}

/// Holds the next `times` calls of `action` (whose body contains `matching`) for `secs`.
pub async fn inject_delay(account: &str, action: &str, matching: &str, secs: f64, times: u32) {
    front_post(
        "/_front/faults",
        serde_json::json!({"account": account, "action": action, "delay": secs, "match": matching, "times": times}),
    )
    .await;
}

/// Answers the next `times` calls of `action` whose body contains `matching` with `code`.
pub async fn inject_fault_matching(account: &str, action: &str, matching: &str, code: &str, status: u16, times: u32) {
    front_post(
        "/_front/faults",
        serde_json::json!({"account": account, "action": action, "match": matching, "code": code, "message": format!("injected {code}"), "status": status, "times": times}),
    )
    .await;
}

/// RunInstances calls whose body contains `matching` (`InstanceType=t3.micro`,
/// `MarketType=spot`) are answered InsufficientInstanceCapacity, as AWS answers when that pool
/// has none, for the rest of the test (the next 100 such calls).
pub async fn no_capacity_for(account: &str, matching: &str) {
    inject_fault_matching(account, "RunInstances", matching, "InsufficientInstanceCapacity", 500, 100).await;
}

/// Answers the next `times` calls of `action` with `code` and AWS's own `message`.
pub async fn inject_fault_with_message(account: &str, action: &str, code: &str, message: &str, times: u32) {
    front_post(
        "/_front/faults",
        serde_json::json!({"account": account, "action": action, "code": code, "message": message, "status": 400, "times": times}),
    )
    .await;
}

/// Whether the account's instances register with SSM.
pub async fn set_ssm_online(account: &str, online: bool) {
    front_post("/_front/ssm", serde_json::json!({"account": account, "online": online})).await;
}

/// Reports the task's ExecuteCommandAgent with `status`.
pub async fn set_agent_status(account: &str, task_arn: &str, status: &str) {
    front_post("/_front/ecs-agent", serde_json::json!({"account": account, "task_arn": task_arn, "status": status}))
        .await;
}

/// Makes the emulator answer the next `times` calls of `action` in `account` with `code`.
pub async fn inject_fault(account: &str, action: &str, code: &str, status: u16, times: u32) {
    let spec = serde_json::json!({"account": account, "action": action, "code": code, "message": format!("injected {code}"), "status": status, "times": times});
    let response = reqwest::Client::new()
        .post(format!("{}/_front/faults", moto().endpoint))
        .json(&spec)
        .send()
        .await
        .expect("inject fault");
    assert!(response.status().is_success());
}

/// The next `times` calls of `action` take effect, but their answer is lost: `code` with
/// `status` instead (a launch whose answer never reached the bot).
pub async fn lose_answers(account: &str, action: &str, code: &str, status: u16, times: u32) {
    front_post(
        "/_front/faults",
        serde_json::json!({"account": account, "action": action, "code": code, "status": status, "times": times, "after": true}),
    )
    .await;
}

/// Sets the account's eventual-consistency windows (seconds), e.g.
/// `{"instance_not_found_secs": 20}`; see `deploy/sandbox/moto_front.py`.
pub async fn set_consistency(account: &str, windows: serde_json::Value) {
    let mut spec = windows;
    spec["account"] = serde_json::json!(account);
    front_post("/_front/consistency", spec).await;
}

/// Answers the next `times` Run Command commands whose text contains `matching` as failed on
/// the instance (exit 1 with `stderr`).
pub async fn fail_commands(account: &str, matching: &str, stderr: &str, times: u32) {
    front_post(
        "/_front/commands",
        serde_json::json!({"account": account, "match": matching, "status": "Failed", "stderr": stderr, "times": times}),
    )
    .await;
}

/// When each instance of the account becomes usable (its user data has finished), as the
/// emulator sees it: instance id → UTC seconds.
pub async fn usable_at(account: &str) -> std::collections::HashMap<String, f64> {
    let url = format!("{}/_front/usable?account={account}", moto().endpoint);
    reqwest::get(url).await.expect("front usable").json().await.expect("json")
}

/// Plants an active Session Manager session (nobody can start a real one here); returns its id.
pub async fn plant_session(account: &str, target: &str, owner: &str) -> String {
    let url = format!("{}/_front/sessions", moto().endpoint);
    let spec = serde_json::json!({"account": account, "target": target, "owner": owner});
    let session: serde_json::Value =
        reqwest::Client::new().post(url).json(&spec).send().await.expect("front").json().await.expect("json");
    session["SessionId"].as_str().expect("a session id").to_string()
}

/// The account's planted sessions with their status (`Connected`, `Terminated`).
pub async fn sessions(account: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/_front/sessions?account={account}", moto().endpoint);
    reqwest::get(url).await.expect("front sessions").json().await.expect("json")
}
