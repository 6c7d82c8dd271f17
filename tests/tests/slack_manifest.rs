//! `deploy/slack/manifest.yml` held to the code: its slash command and interactivity URLs are
//! routes the bot serves (they answer an unsigned request with 401, not 404), and its bot
//! scopes are exactly those needed by the Web API methods the bot calls in a full workflow
//! (seen at the Slack stand-in), plus `commands` for the slash command.
//! `deploy/slack/manifest.socket.yml` is the same app in Socket Mode: every setting the same but
//! `socket_mode_enabled`, and no request URL anywhere.

use harness::app::TestApp;
use harness::moto::repo_root;
use std::collections::BTreeSet;
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);

/// The scope each Web API method needs (api.slack.com/methods); `views.open` needs none.
fn scope_of(method: &str) -> Option<&'static str> {
    match method {
        "chat.postMessage" | "chat.update" => Some("chat:write"),
        "usergroups.users.list" => Some("usergroups:read"),
        "views.open" | "views.publish" => None,
        other => panic!("the bot called {other}; add its scope here and to the manifest"),
    }
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").expect("an absolute URL").1;
    format!("/{}", rest.split_once('/').expect("a path").1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_matches_the_routes_and_the_scopes_the_bot_uses() {
    let text = std::fs::read_to_string(repo_root().join("deploy/slack/manifest.yml")).unwrap();
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let commands = manifest["features"]["slash_commands"].as_sequence().unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["command"].as_str(), Some("/fargate"));
    assert_eq!(commands[0]["should_escape"].as_bool(), Some(true), "history @person needs user ids");
    let command_path = path_of(commands[0]["url"].as_str().unwrap());
    let interactivity = &manifest["settings"]["interactivity"];
    assert_eq!(interactivity["is_enabled"].as_bool(), Some(true));
    let interaction_path = path_of(interactivity["request_url"].as_str().unwrap());
    let events = &manifest["settings"]["event_subscriptions"];
    let events_path = path_of(events["request_url"].as_str().unwrap());
    let bot_events: Vec<&str> =
        events["bot_events"].as_sequence().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(bot_events, ["app_home_opened"], "the only event the bot handles");
    assert_eq!(manifest["features"]["app_home"]["home_tab_enabled"].as_bool(), Some(true));
    let scopes: BTreeSet<String> = manifest["oauth_config"]["scopes"]["bot"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();

    // A workflow that calls every Web API method the bot has: a user group in the policy, an
    // approval card, the requester's card, an update on approval, audit-channel lines.
    let policy = r#"[policy]
audit_channel = "C0AUDIT"
[[policy.services]]
name = "web"
allow = ["S0DEVS"]
approval = true
approvers = ["U0BOB"]
approvals_channel = "C0APPROVE"
"#;
    let t = TestApp::start_with_policy("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", policy).await;
    t.slack.set_group("S0DEVS", &["U0ALICE"]);

    // The manifest's URLs are the bot's routes.
    let client = reqwest::Client::new();
    for path in [&command_path, &interaction_path, &events_path] {
        let status = client.post(format!("{}{path}", t.url)).body("x=1").send().await.unwrap().status();
        assert_eq!(status.as_u16(), 401, "{path} is not a route of the bot (got {status})");
    }

    // The request form, from the command and from the manifest's shortcut.
    let shortcuts = manifest["features"]["shortcuts"].as_sequence().unwrap();
    assert_eq!(shortcuts.len(), 1);
    assert_eq!(shortcuts[0]["type"].as_str(), Some("global"));
    assert_eq!(shortcuts[0]["callback_id"].as_str(), Some(bot::modal::CALLBACK_ID));
    assert_eq!(manifest["features"]["app_home"]["messages_tab_enabled"].as_bool(), Some(true), "cards are DMs");
    assert_eq!(t.command("U0ALICE", "").await.0, 200);
    let opened = serde_json::json!({"type": "event_callback",
        "event": {"type": "app_home_opened", "user": "U0ALICE", "tab": "home"}});
    let (events_url, body, ts) = (format!("{}{events_path}", t.url), opened.to_string(), harness::signed::now());
    let secret = harness::signed::SIGNING_SECRET;
    let sent = harness::signed::post_signed_as(&events_url, &body, secret, &ts.to_string(), "application/json").await;
    assert_eq!(sent.status().as_u16(), 200);

    let reply = t.reply("U0ALICE", "connect web --reason manifest").await;
    let id = reply[reply.find("fc-").unwrap()..][..11].to_string();
    t.slack.wait_for_in("C0APPROVE", &id, WAIT).await;
    assert_eq!(t.click("U0BOB", "approve", &id).await, 200);
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    t.slack.wait_for_in("C0AUDIT", "ended", WAIT).await;

    let mut needed: BTreeSet<String> = t
        .slack
        .delivered()
        .iter()
        .filter_map(|c| c.path.strip_prefix("/api/"))
        .filter_map(scope_of)
        .map(str::to_string)
        .collect();
    assert!(t.slack.delivered().iter().any(|c| c.path == "/api/views.open"), "the form was opened");
    assert!(t.slack.delivered().iter().any(|c| c.path == "/api/views.publish"), "a Home was drawn");
    needed.insert("commands".into());
    assert_eq!(scopes, needed, "the manifest's bot scopes are not exactly the ones the code uses");
    t.stop().await;
}

/// Removes every `url` and `request_url` key, wherever it is.
fn without_urls(value: &mut serde_yaml::Value) -> usize {
    let mut removed = 0;
    match value {
        serde_yaml::Value::Mapping(map) => {
            for key in ["url", "request_url"] {
                removed += usize::from(map.remove(key).is_some());
            }
            for (_, v) in map.iter_mut() {
                removed += without_urls(v);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(|v| removed += without_urls(v)),
        _ => {}
    }
    removed
}

#[test]
fn the_socket_mode_manifest_is_the_same_app_without_request_urls() {
    let read = |name: &str| -> serde_yaml::Value {
        let text = std::fs::read_to_string(repo_root().join("deploy/slack").join(name)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    };
    let (mut http, mut socket) = (read("manifest.yml"), read("manifest.socket.yml"));
    assert_eq!(http["settings"]["socket_mode_enabled"].as_bool(), Some(false));
    assert_eq!(socket["settings"]["socket_mode_enabled"].as_bool(), Some(true));
    assert_eq!(without_urls(&mut socket), 0, "Socket Mode has no request URL");
    assert_eq!(without_urls(&mut http), 3, "the command's, interactivity's and the events' URL");
    http["settings"]["socket_mode_enabled"] = serde_yaml::Value::Bool(true);
    assert_eq!(http, socket, "the two manifests differ in more than the transport");
}
