//! Requests to the bot signed exactly as Slack signs them, with the real current time.

use bot::signature::sign;

pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A slash command's form body, as Slack sends it.
pub fn command_body(text: &str, user_id: &str, response_url: &str) -> String {
    command_body_with_trigger(text, user_id, response_url, "13345224609.738474920.8088930838d88f008e0")
}

/// The same, with its own `trigger_id` (what a modal opened for it is known by).
pub fn command_body_with_trigger(text: &str, user_id: &str, response_url: &str, trigger_id: &str) -> String {
    serde_urlencoded::to_string(command_fields(text, user_id, response_url, trigger_id)).expect("form")
}

/// A slash command's fields: the form over HTTP, the envelope's payload object over Socket Mode.
pub fn command_fields<'a>(
    text: &'a str,
    user_id: &'a str,
    response_url: &'a str,
    trigger_id: &'a str,
) -> [(&'static str, &'a str); 12] {
    [
        ("token", "deprecated-verification-token"),
        ("team_id", "T0001"),
        ("team_domain", "acme"),
        ("channel_id", "C0001"),
        ("channel_name", "ops"),
        ("user_id", user_id),
        ("user_name", "alice"),
        ("command", "/fargate"),
        ("text", text),
        ("api_app_id", "A0001"),
        ("response_url", response_url),
        ("trigger_id", trigger_id),
    ]
}

/// The same fields as a JSON object: a `slash_commands` envelope's payload.
pub fn command_payload(text: &str, user_id: &str, response_url: &str, trigger_id: &str) -> serde_json::Value {
    let fields = command_fields(text, user_id, response_url, trigger_id);
    serde_json::Value::Object(fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect())
}

/// An interaction's form body: `payload=` its JSON, as Slack posts it.
pub fn interaction_body(payload: &serde_json::Value) -> String {
    serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form")
}

/// A button click's form body (`payload=` a `block_actions` JSON), as Slack sends it.
pub fn click_body(user_id: &str, action_id: &str, value: &str, response_url: &str) -> String {
    interaction_body(&click_payload(user_id, action_id, value, response_url))
}

/// Its JSON (an `interactive` envelope's payload over Socket Mode).
pub fn click_payload(user_id: &str, action_id: &str, value: &str, response_url: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "team_id": "T0001"},
        "api_app_id": "A0001",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": "C0APPROVE", "name": "approvals"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0APPROVE"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "response_url": response_url,
        "actions": [{
            "type": "button", "action_id": action_id, "block_id": format!("request:{value}"), "value": value,
            "action_ts": "1700000001.000001", "text": {"type": "plain_text", "text": action_id}
        }]
    })
}

/// A submission of the request modal (`payload=` a `view_submission` JSON), as Slack sends it:
/// `values` is the view's `state.values` (block id → action id → value).
pub fn submission_body(user_id: &str, values: serde_json::Value, private_metadata: &str) -> String {
    interaction_body(&submission_payload(user_id, values, private_metadata))
}

/// Its JSON (an `interactive` envelope's payload over Socket Mode).
pub fn submission_payload(user_id: &str, values: serde_json::Value, private_metadata: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "view_submission",
        "team": {"id": "T0001", "domain": "acme"},
        "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": "T0001"},
        "api_app_id": "A0001",
        "trigger_id": "13345224609.738474920.8088930838d88f008e1",
        "view": {
            "id": "V0001", "type": "modal", "callback_id": "fargate_connect_request",
            "private_metadata": private_metadata, "state": {"values": values},
        },
        "response_urls": [],
    })
}

/// Slack asking for the request modal's container options (`block_suggestion`) as `user` types
/// `query` in it, with the form's other fields as `values` (its `state.values`).
pub fn suggestion_payload(user_id: &str, values: serde_json::Value, query: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "block_suggestion",
        "user": {"id": user_id, "username": "someone", "team_id": "T0001"},
        "team": {"id": "T0001", "domain": "acme"},
        "api_app_id": "A0001",
        "container": {"type": "view", "view_id": "V0001"},
        "block_id": "container", "action_id": "value", "value": query,
        "view": {"id": "V0001", "type": "modal", "callback_id": "fargate_connect_request", "state": {"values": values}},
    })
}

/// A global shortcut's body (`payload=` a `shortcut` JSON), as Slack sends it.
pub fn shortcut_body(user_id: &str, callback_id: &str) -> String {
    interaction_body(&shortcut_payload(user_id, callback_id))
}

/// Its JSON (an `interactive` envelope's payload over Socket Mode).
pub fn shortcut_payload(user_id: &str, callback_id: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "shortcut", "callback_id": callback_id, "action_ts": "1700000001.000001",
        "team": {"id": "T0001", "domain": "acme"},
        "user": {"id": user_id, "username": "someone", "team_id": "T0001"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e2",
    })
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A click on a button of someone's App Home: a `block_actions` from a view, with no
/// response_url (Slack gives none for a Home).
pub fn home_click_body(user_id: &str, action_id: &str, value: &str) -> String {
    interaction_body(&home_click_payload(user_id, action_id, value))
}

/// Its JSON (an `interactive` envelope's payload over Socket Mode).
pub fn home_click_payload(user_id: &str, action_id: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "team_id": "T0001"},
        "api_app_id": "A0001",
        "team": {"id": "T0001", "domain": "acme"},
        "container": {"type": "view", "view_id": "V0HOME"},
        "view": {"id": "V0HOME", "type": "home"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e3",
        "actions": [{"type": "button", "action_id": action_id, "block_id": format!("home:x:{value}"), "value": value,
                     "action_ts": "1700000001.000001"}]
    })
}

/// POSTs `body` to `url` with Slack's headers for `secret` at `timestamp`.
pub async fn post_signed(url: &str, body: &str, secret: &str, timestamp: &str) -> reqwest::Response {
    post_signed_as(url, body, secret, timestamp, "application/x-www-form-urlencoded").await
}

/// The same, as `content_type` (the Events API sends JSON).
pub async fn post_signed_as(
    url: &str,
    body: &str,
    secret: &str,
    timestamp: &str,
    content_type: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", sign(secret.as_bytes(), timestamp, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .expect("the bot answers")
}
