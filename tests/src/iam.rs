//! The bot's IAM policy, enforced: the Terraform module's bot policy
//! (`deploy/iam/bot-policy.json`, the module's rendering with `${account}`, `${region}`,
//! `${partition}` and `${bastion_security_group}` left as placeholders) is filled in for one
//! test's account and handed to the emulator's front (`POST /_front/iam`), which from then on
//! authorizes every call signed with the bot's access key ([`BOT_ACCESS_KEY`]) as AWS would:
//! the actions, resource ARNs and condition keys the Service Authorization Reference lists for
//! the call, against the policy. A call the policy does not allow is answered `AccessDenied` /
//! `UnauthorizedOperation` naming the action and the resource, and is marked `denied` in the
//! front's call log, which [`assert_nothing_denied`] checks when a test ends (the bot tolerates
//! some refusals, e.g. an unreadable task role is only a preflight warning).
//!
//! The harness's own calls (seeding, planting, inspecting) are signed with another key and are
//! never held to the policy.
//!
//! `FARGATE_CONNECT_BOT_POLICY=/path/to/policy.json` enforces that template instead (same
//! placeholders), e.g. the module's policy less one statement, to see which test needs it.

use crate::moto::moto;
use crate::seed::{BOT_ACCESS_KEY, REGION};
use std::path::PathBuf;

/// The role name the refusals name (`arn:aws:sts::ACCOUNT:assumed-role/fargate-connect-bot/…`).
pub const BOT_PRINCIPAL: &str = "fargate-connect-bot";

/// The policy template enforced on the bot: `$FARGATE_CONNECT_BOT_POLICY`, else the module's.
pub fn policy_template() -> PathBuf {
    std::env::var_os("FARGATE_CONNECT_BOT_POLICY")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::moto::repo_root().join("deploy/iam/bot-policy.json"))
}

/// The bot's policy for `account`, its placeholders filled in.
pub fn bot_policy(account: &str, bastion_security_group: &str) -> serde_json::Value {
    let path = policy_template();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let filled = text
        .replace("${account}", account)
        .replace("${region}", REGION)
        .replace("${partition}", "aws")
        .replace("${bastion_security_group}", bastion_security_group);
    assert!(!filled.contains("${"), "{} has a placeholder the harness does not fill: {filled}", path.display());
    serde_json::from_str(&filled).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Holds every call of `account` signed with the bot's key to the bot's policy.
pub async fn enforce_bot_policy(account: &str, bastion_security_group: &str) {
    enforce(account, bot_policy(account, bastion_security_group), Some(BOT_ACCESS_KEY)).await;
}

/// Holds the calls of `account` signed with `access_key` (all of them: `None`) to `policy`.
pub async fn enforce(account: &str, policy: serde_json::Value, access_key: Option<&str>) {
    let spec = serde_json::json!({
        "account": account,
        "policy": policy,
        "principal": BOT_PRINCIPAL,
        "access_key_id": access_key,
        // As AWS does, we hold: a call naming a role or profile that does not exist is
        // authorised against its ARN without a path, which path-scoped statements refuse.
        "missing_iam_entities": "default-path",
    });
    let response = reqwest::Client::new()
        .post(format!("{}/_front/iam", moto().endpoint))
        .json(&spec)
        .send()
        .await
        .expect("front /_front/iam");
    let status = response.status();
    assert!(
        status.is_success(),
        "the front refused the policy: {status} {}",
        response.text().await.unwrap_or_default()
    );
}

/// Lifts the account's policy: nothing it calls is refused any more.
pub async fn lift(account: &str) {
    let response = reqwest::Client::new()
        .delete(format!("{}/_front/iam?account={account}", moto().endpoint))
        .send()
        .await
        .expect("front /_front/iam");
    assert!(response.status().is_success());
}

/// The account's calls the policy refused, as the front logged them (`denied` names the
/// action and the resource).
pub async fn denied(account: &str) -> Vec<serde_json::Value> {
    crate::moto::calls_detailed(account).await.into_iter().filter(|c| c.get("denied").is_some()).collect()
}

/// One line per refused authorization (with how often), in order of first refusal.
fn describe(account: &str, denied: &[serde_json::Value]) -> String {
    let mut lines: Vec<(String, usize)> = Vec::new();
    for call in denied {
        let line =
            format!("  {} refused: {}", call["action"].as_str().unwrap_or("?"), call["denied"].as_str().unwrap_or("?"));
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += 1,
            None => lines.push((line, 1)),
        }
    }
    let listed: Vec<String> =
        lines.into_iter().map(|(l, n)| if n > 1 { format!("{l} ({n} times)") } else { l }).collect();
    format!(
        "the bot's IAM policy ({}) refused {} call(s) in account {account}:\n{}",
        policy_template().display(),
        denied.len(),
        listed.join("\n")
    )
}

/// Panics naming every call of `account` the policy refused.
pub async fn assert_nothing_denied(account: &str) {
    let denied = denied(account).await;
    assert!(denied.is_empty(), "{}", describe(account, &denied));
}

/// What the policy refused in `account`, as [`assert_nothing_denied`] says it; `None` when it
/// refused nothing. Without a runtime (for `Drop`).
pub fn denial_report_blocking(account: &str) -> Option<String> {
    let body = crate::moto::blocking_get(&format!("{}/_front/calls?account={account}", moto().endpoint))?;
    let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    let denied: Vec<serde_json::Value> = calls.into_iter().filter(|c| c.get("denied").is_some()).collect();
    (!denied.is_empty()).then(|| describe(account, &denied))
}

/// Evaluates `policy` (a document's text) on `cases` offline with the emulator's evaluator
/// (`deploy/iam/evaluate.py`; `{"variables": {…}, "cases": [{"name", "action", "resource",
/// "context", "want"}]}`) and asserts each case's outcome is its `want` (`allow`,
/// `explicit-deny` or `implicit-deny`).
pub fn assert_outcomes(policy: &str, cases: &serde_json::Value) {
    let dir = crate::app::TempDir::new();
    let policy_file = dir.0.join("policy.json");
    let cases_file = dir.0.join("cases.json");
    std::fs::write(&policy_file, policy).unwrap();
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let out = std::process::Command::new(crate::moto::ensure_venv())
        .arg(crate::moto::repo_root().join("deploy/iam/evaluate.py"))
        .arg(&policy_file)
        .arg(&cases_file)
        .output()
        .expect("evaluate.py runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let wanted = cases["cases"].as_array().expect("cases");
    let got: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), wanted.len(), "{text}");
    for (got, want) in got.iter().zip(wanted) {
        assert_eq!(got["outcome"], want["want"], "{}: {got}", want["name"]);
    }
}
