//! The Slack workflow over both transports (Slack-signed HTTP posts, and Socket Mode
//! envelopes; each flow runs as `<name>::over_http` and `<name>::over_socket_mode`), with the
//! recording Slack stand-in (user groups included), moto and SQLite: policy, approvals (first
//! decision wins, no self-approval, only approvers), extend within the maximum (and the
//! bastion's own shutdown moved with SendCommand), end, pending-approval expiry, the lists, and
//! the audit chain catching a hand-edited row.

use harness::app::{TestApp, Transport};
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const CAROL: &str = "U0CAROL";
const EVE: &str = "U0EVE";
const ADMIN: &str = "U0ADMIN";
const APPROVALS: &str = "C0APPROVE";
const AUDIT: &str = "C0AUDIT";
const TIME_BOX: &str = "default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"";

/// `web`: everyone but Mallory, no approval, at most 1h. `api`: developers, approved by leads in
/// #approvals, break-glass allowed.
fn policy(approval_timeout: &str) -> String {
    format!(
        r#"[policy]
admins = ["U0ADMIN"]
audit_channel = "{AUDIT}"
approval_timeout = "{approval_timeout}"
[[policy.services]]
name = "web"
allow = ["*"]
deny = ["U0MALLORY"]
max_time_box = "1h"
[[policy.services]]
name = "api"
allow = ["S0DEVS"]
approval = true
approvers = ["S0LEADS"]
approvals_channel = "{APPROVALS}"
break_glass = true
"#
    )
}

async fn start(transport: Transport, approval_timeout: &str) -> TestApp {
    let t = TestApp::start_over(transport, TIME_BOX, &policy(approval_timeout), |_| {}).await;
    t.slack.set_group("S0DEVS", &[ALICE, BOB, CAROL]);
    t.slack.set_group("S0LEADS", &[BOB, CAROL, ALICE]);
    t
}

fn id_in(text: &str) -> String {
    let start = text.find("fc-").unwrap_or_else(|| panic!("no request id in {text}"));
    text[start..start + 11].to_string()
}

/// The approval card as last posted or updated.
fn approval_card(t: &TestApp) -> serde_json::Value {
    t.slack.delivered().into_iter().rfind(|c| c.body["channel"] == APPROVALS).map(|c| c.body).expect("an approval card")
}

fn has_buttons(card: &serde_json::Value) -> bool {
    card["blocks"].as_array().unwrap().iter().any(|b| b["type"] == "actions")
}

/// Ephemeral answers to clicks, as delivered to response URLs.
fn answers(t: &TestApp) -> Vec<String> {
    t.slack
        .delivered()
        .into_iter()
        .filter(|c| c.path.starts_with("/response/") && c.body["replace_original"] == false)
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_answer(t: &TestApp, needle: &str) -> String {
    harness::wait_for(&format!("an answer containing {needle:?}"), WAIT, || async {
        answers(t).into_iter().find(|a| a.contains(needle))
    })
    .await
}

async fn approval_flow_end_to_end(transport: Transport) {
    let t = start(transport, "15m").await;
    let reply = t.reply(ALICE, "connect api --for 30m --reason \"INC-42: stuck queue\"").await;
    assert!(reply.contains("needs approval"), "{reply}");
    assert!(reply.contains(&format!("<#{APPROVALS}>")), "{reply}");
    let id = id_in(&reply);

    // The approval card: who, what, why, Approve / Deny. Nothing is started yet.
    let card = t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    assert_eq!(card.path, "/api/chat.postMessage");
    let text = card.all_text();
    assert!(text.contains("<@U0ALICE> asks for a shell in *api* in `prod` for 30m"), "{text}");
    assert!(text.contains("INC-42: stuck queue"), "{text}");
    assert!(text.contains("Approvers: <!subteam^S0LEADS>"), "{text}");
    let blocks = card.body["blocks"].as_array().unwrap();
    let buttons = blocks.iter().find(|b| b["type"] == "actions").unwrap()["elements"].as_array().unwrap();
    let actions: Vec<&str> = buttons.iter().map(|b| b["action_id"].as_str().unwrap()).collect();
    assert_eq!(actions, ["approve", "deny"]);
    assert!(buttons.iter().all(|b| b["value"] == id.as_str()));
    t.slack.wait_for_all(&[&id, "waiting for approval"], WAIT).await;
    assert_eq!(t.calls_of("RunInstances").await, 0, "nothing launched before approval");

    // Bob approves: the card shows who decided and loses its buttons; the bastion comes up.
    assert_eq!(t.click(BOB, "approve", &id).await, 200);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    harness::wait_for("the approval card to show the decision", WAIT, || async {
        let card = approval_card(&t);
        (card["text"].as_str().unwrap_or_default().contains("Approved by <@U0BOB>") && !has_buttons(&card))
            .then_some(())
    })
    .await;
    let ready = t.slack.wait_for_all(&[&id, "is ready", "Approved by <@U0BOB>"], WAIT).await;
    assert!(ready.all_text().contains("start-session"));
    let request = t.wait_until_told(&id).await;
    assert_eq!(request.decided_by.as_deref(), Some(BOB));
    assert_eq!(request.ready_at, request.told_at, "the clock starts when Alice is told");
    assert_eq!(request.expires_at.unwrap() - request.ready_at.unwrap(), 30 * 60 * 1000);
    let events = t.ledger.audit_for(&id).await.unwrap();
    let approved = events.iter().find(|e| e.kind == "approved").expect("an approval event");
    assert_eq!(approved.actor, BOB);
    assert_eq!(&t.audit_kinds(&id).await[..3], ["requested", "approved", "provisioning"]);
    t.stop().await;
}

async fn two_approve_clicks_at_the_same_moment_make_exactly_one_decision(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect api --reason \"deploy check\"").await);
    t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    let (a, b) = tokio::join!(t.click(BOB, "approve", &id), t.click(CAROL, "approve", &id));
    assert_eq!((a, b), (200, 200));
    let kinds = t.audit_kinds(&id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "approved").count(), 1, "{kinds:?}");
    let winner = t.ledger.get(&id).await.unwrap().decided_by.unwrap();
    let told = wait_answer(&t, "was already decided").await;
    assert!(told.contains(&format!("by <@{winner}>")), "{told}");
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    assert_eq!(t.launches().await, 1, "one bastion");
    t.stop().await;
}

async fn approve_and_deny_at_the_same_moment_make_exactly_one_decision(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect api --reason \"deploy check\"").await);
    t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    // Bob approves and Carol denies at the same moment.
    let (a, b) = tokio::join!(t.click(BOB, "approve", &id), t.click(CAROL, "deny", &id));
    assert_eq!((a, b), (200, 200));
    let kinds = t.audit_kinds(&id).await;
    let decisions = kinds.iter().filter(|k| *k == "approved" || *k == "denied").count();
    assert_eq!(decisions, 1, "{kinds:?}");
    let request = t.ledger.get(&id).await.unwrap();
    let (winner, loser) = if request.state() == RequestState::Denied { (CAROL, BOB) } else { (BOB, CAROL) };
    assert_eq!(request.decided_by.as_deref(), Some(winner));
    // The other clicker is told, privately, who decided first.
    let told = wait_answer(&t, "was already decided").await;
    assert!(told.contains(&format!("by <@{winner}>")), "{told}");
    let _ = loser;
    harness::wait_for("the approval card to show one decision", WAIT, || async {
        let card = approval_card(&t);
        (!has_buttons(&card) && card["text"].as_str().unwrap_or_default().contains(&format!("by <@{winner}>")))
            .then_some(())
    })
    .await;
    t.stop().await;
}

async fn only_approvers_decide_and_never_their_own_request(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect api").await);
    t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    // Eve is not an approver.
    assert_eq!(t.click(EVE, "approve", &id).await, 200);
    let told = wait_answer(&t, "Only approvers").await;
    assert!(told.contains("*api*"), "{told}");
    // Alice is an approver, but this is her own request.
    assert_eq!(t.click(ALICE, "approve", &id).await, 200);
    wait_answer(&t, "can't decide your own request").await;
    assert_eq!(t.ledger.get(&id).await.unwrap().state(), RequestState::AwaitingApproval);
    let kinds = t.audit_kinds(&id).await;
    assert!(kinds.contains(&"decision_refused".to_string()) && kinds.contains(&"self_approval_refused".to_string()));
    // A forged click changes nothing (over HTTP; Socket Mode has no listener to forge to).
    if transport == Transport::Socket {
        assert!(t.url.is_empty());
        t.stop().await;
        return;
    }
    let body = harness::signed::click_body(BOB, "approve", &id, &t.slack.response_url(99));
    let forged = harness::signed::post_signed(
        &format!("{}/slack/interactions", t.url),
        &body,
        "not-the-secret",
        &harness::signed::now().to_string(),
    )
    .await;
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(t.ledger.get(&id).await.unwrap().state(), RequestState::AwaitingApproval);
    t.stop().await;
}

async fn unanswered_approvals_expire(transport: Transport) {
    let t = start(transport, "1s").await;
    let id = id_in(&t.reply(ALICE, "connect api").await);
    t.wait_for_state(&id, RequestState::Cancelled, WAIT).await;
    harness::wait_for("the approval card to show the expiry", WAIT, || async {
        let card = approval_card(&t);
        (!has_buttons(&card) && card["text"].as_str().unwrap_or_default().contains("Expired without a decision"))
            .then_some(())
    })
    .await;
    t.slack.wait_for_all(&[&id, "expired without a decision"], WAIT).await;
    assert!(t.audit_kinds(&id).await.contains(&"approval_expired".to_string()));
    // A late click decides nothing.
    assert_eq!(t.click(BOB, "approve", &id).await, 200);
    wait_answer(&t, "was already decided").await;
    assert_eq!(t.ledger.get(&id).await.unwrap().state(), RequestState::Cancelled);
    assert_eq!(t.calls_of("RunInstances").await, 0);
    t.stop().await;
}

async fn break_glass_skips_approval_where_allowed_and_tells_the_audit_channel(transport: Transport) {
    let t = start(transport, "15m").await;
    let reply = t.reply(ALICE, "connect api --break-glass").await;
    assert!(reply.contains("--reason"), "{reply}");
    let reply = t.reply(ALICE, "connect api --break-glass --reason \"prod down, INC-7\"").await;
    assert!(reply.contains("Working on it"), "{reply}");
    let id = id_in(&reply);
    let alert = t.slack.wait_for_in(AUDIT, "BREAK-GLASS", WAIT).await;
    assert!(alert.all_text().contains("prod down, INC-7"));
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let granted = t.slack.wait_for_in(AUDIT, "granted", WAIT).await;
    assert!(granted.all_text().contains("BREAK-GLASS"));
    assert!(t.ledger.get(&id).await.unwrap().break_glass.0);
    t.stop().await;
}

async fn extend_moves_the_expiry_and_the_bastions_own_shutdown_within_the_maximum(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect web --for 50m").await);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let before = t.wait_until_told(&id).await.expires_at.unwrap();
    let probes = t.calls_of("SendCommand").await; // the readiness probe(s)

    let reply = t.reply(ALICE, &format!("extend {id} 5m")).await;
    assert!(reply.contains("Extended"), "{reply}");
    assert_eq!(t.ledger.get(&id).await.unwrap().expires_at.unwrap(), before + 5 * 60 * 1000);
    t.wait_for_audit(&id, "shutdown_rescheduled", WAIT).await;
    assert_eq!(t.calls_of("SendCommand").await, probes + 1, "the bastion's own deadline was moved");
    t.slack.wait_for_in(AUDIT, "extended by <@U0ALICE> by 5m", WAIT).await;

    // 55m of the 1h maximum are used: 10m more is refused, and says how much is possible.
    let reply = t.reply(ALICE, &format!("extend {id} 10m")).await;
    assert!(reply.contains("maximum of 1h") && reply.contains("at most 5m"), "{reply}");
    assert_eq!(t.ledger.get(&id).await.unwrap().expires_at.unwrap(), before + 5 * 60 * 1000);
    assert!(t.audit_kinds(&id).await.contains(&"extend_refused".to_string()));

    // The card's Extend button takes what is left (5m) rather than failing.
    assert_eq!(t.click(ALICE, "extend", &id).await, 200);
    wait_answer(&t, "Extended").await;
    assert_eq!(t.ledger.get(&id).await.unwrap().expires_at.unwrap(), before + 10 * 60 * 1000);
    // Someone else may not extend it.
    let reply = t.reply(EVE, &format!("extend {id} 1m")).await;
    assert!(reply.contains("Only <@U0ALICE>"), "{reply}");
    t.stop().await;
}

async fn end_is_for_the_requester_or_an_admin_and_tears_down_at_once(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect web --for 30m").await);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let instance = t.ledger.get(&id).await.unwrap().instance_id.unwrap();

    let reply = t.reply(EVE, &format!("end {id}")).await;
    assert!(reply.contains("Only <@U0ALICE> (who asked for it) or an admin"), "{reply}");
    assert_eq!(t.click(EVE, "end", &id).await, 200);
    wait_answer(&t, "Only <@U0ALICE>").await;
    assert_eq!(t.ledger.get(&id).await.unwrap().state(), RequestState::Ready);
    assert_eq!(t.audit_kinds(&id).await.iter().filter(|k| *k == "end_refused").count(), 2);

    // Alice presses End on her card.
    assert_eq!(t.click(ALICE, "end", &id).await, 200);
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    let state = t.aws.ec2.describe_instances().instance_ids(&instance).send().await.unwrap();
    let name = state.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string();
    assert!(name == "terminated" || name == "shutting-down", "instance is {name}");
    t.slack.wait_for_all(&[&id, "has ended", "ended early by <@U0ALICE>"], WAIT).await;
    t.slack.wait_for_in(AUDIT, "ended (ended by user) by <@U0ALICE>", WAIT).await;

    // An admin may end anyone's.
    let other = id_in(&t.reply(BOB, "connect web --for 30m").await);
    let reply = t.reply(ADMIN, &format!("end {other}")).await;
    assert!(reply.contains("Ending"), "{reply}");
    t.wait_for_state(&other, RequestState::Ended, WAIT).await;
    t.stop().await;
}

async fn denials_unknown_services_and_the_lists(transport: Transport) {
    let t = start(transport, "15m").await;
    // Twelve developers for the lists below (set before the first lookup, which is cached).
    let users: Vec<String> = (0..12).map(|i| format!("U0DEV{i:02}")).collect();
    let mut devs: Vec<&str> = users.iter().map(String::as_str).collect();
    devs.push(ALICE);
    t.slack.set_group("S0DEVS", &devs);
    // Denied by policy: a clear answer, an audit event without a request, a line in #audit.
    let reply = t.reply("U0MALLORY", "connect web").await;
    assert!(reply.contains("You may not connect to *web*") && reply.contains("explicitly denied"), "{reply}");
    let reply = t.reply(EVE, "connect api").await;
    assert!(reply.contains("not on the allow list"), "{reply}");
    t.slack.wait_for_in(AUDIT, "denied by policy (explicitly denied): <@U0MALLORY>", WAIT).await;
    let denials: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE kind = 'denied_by_policy' AND request_id IS NULL")
            .fetch_one(t.ledger.pool())
            .await
            .unwrap();
    assert_eq!(denials, 2);
    assert_eq!(t.count("requests").await, 0);
    // A typo gets the closest name; a mistyped subcommand too.
    let reply = t.reply(ALICE, "connect wbe").await;
    assert!(reply.contains("Did you mean `web`?"), "{reply}");
    let reply = t.reply(ALICE, "histroy").await;
    assert!(reply.contains("Did you mean `history`?"), "{reply}");
    // Out of bounds for the service.
    let reply = t.reply(ALICE, "connect web --for 2h").await;
    assert!(reply.contains("longer than the maximum of 1h"), "{reply}");

    // services: what Alice may use, and how.
    let reply = t.reply(ALICE, "services").await;
    assert!(reply.contains("*web* in `prod` — :large_green_circle: you may connect"), "{reply}");
    assert!(reply.contains("*api* in `prod` — :large_yellow_circle: you may ask; approval in <#C0APPROVE>"), "{reply}");
    let reply = t.reply(EVE, "services").await;
    assert!(reply.contains("*api* in `prod` — :no_entry: not for you"), "{reply}");

    // Twelve requests waiting for approval: list and history, paged, newest first.
    let mut ids = Vec::new();
    for user in &users {
        ids.push(id_in(&t.reply(user, "connect api").await));
    }
    let mine = t.reply(&users[0], "list").await;
    assert!(mine.contains(&ids[0]) && !mine.contains(&ids[1]), "{mine}");
    let all = t.reply(ADMIN, "list").await;
    assert!(ids.iter().all(|id| all.contains(id.as_str())), "{all}");
    let page1 = t.reply(ADMIN, "history api").await;
    assert!(page1.contains("page 1") && page1.contains("--page 2"), "{page1}");
    assert!(page1.contains(&ids[11]) && !page1.contains(&ids[1]), "newest first: {page1}");
    let page2 = t.reply(ADMIN, "history api --page 2").await;
    assert!(page2.contains(&ids[0]) && page2.contains(&ids[1]) && !page2.contains("--page 3"), "{page2}");
    // Someone else's history is for admins.
    let reply = t.reply(&users[0], "history <@U0DEV01|dev1>").await;
    assert!(reply.contains("Only admins"), "{reply}");
    let own = t.reply(&users[0], "history").await;
    assert!(own.contains(&ids[0]) && !own.contains(&ids[1]), "{own}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_a_hand_edited_row_and_export_has_the_history() {
    let t = start(Transport::Http, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect api --reason 'check, the \"queue\"'").await);
    t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    t.click(BOB, "deny", &id).await;
    t.wait_for_state(&id, RequestState::Denied, WAIT).await;
    t.reply("U0MALLORY", "connect web").await;
    let (report, intact) = bot::audit_cli::verify(&t.ledger).await.unwrap();
    assert!(intact, "{report}");

    // Export: one row per request, with the reason (quoted as CSV wants) and the approver.
    let mut csv = Vec::new();
    bot::audit_cli::export(&t.ledger, bot::audit_cli::Format::Csv, None, &mut csv).await.unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("request_id,requester_id,requester_name,service,cluster,"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(&id) && lines[1].contains("\"check, the \"\"queue\"\"\"") && lines[1].contains(BOB),
        "{csv}"
    );
    assert!(lines[1].contains(",denied,"), "{csv}");
    let mut jsonl = Vec::new();
    bot::audit_cli::export(&t.ledger, bot::audit_cli::Format::Jsonl, None, &mut jsonl).await.unwrap();
    let row: serde_json::Value = serde_json::from_slice(jsonl.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(row["approver"], BOB);
    assert_eq!(row["how_it_ended"], "denied");

    // Someone with the database file edits an event by hand (the triggers are dropped first).
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_events WHERE kind = 'denied'")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    let mut conn = t.ledger.pool().acquire().await.unwrap();
    sqlx::query("DROP TRIGGER audit_events_no_update").execute(&mut *conn).await.unwrap();
    sqlx::query("UPDATE audit_events SET actor = 'U0SOMEONEELSE' WHERE seq = ?")
        .bind(seq)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (report, intact) = bot::audit_cli::verify(&t.ledger).await.unwrap();
    assert!(!intact);
    assert!(report.contains(&format!("BROKEN at event {seq}")) && report.contains("edited"), "{report}");
    t.stop().await;
}

/// Holds `text` (as a person sees it in Slack) to show `evil` escaped and on one line.
fn assert_defused(text: &str, place: &str) {
    for ping in ["<!here>", "<!channel>", "<!subteam^S0EVIL>", "<@U0BOB>"] {
        assert!(!text.contains(ping), "{place} lets {ping} through: {text}");
    }
    assert!(text.contains("&lt;!here&gt;") && text.contains("&amp; see"), "{place}: {text}");
    assert!(!text.contains("\n*Approved by*"), "{place} has a forged line: {text}");
}

async fn a_persons_reason_pings_nobody_and_forges_no_line_wherever_it_is_shown(transport: Transport) {
    let t = start(transport, "15m").await;
    let evil = "<!here> <!channel> <!subteam^S0EVIL> & see\n*Approved by* <@U0BOB>";
    // The approval card.
    let reply = t.reply(ALICE, &format!("connect api --reason \"{evil}\"")).await;
    id_in(&reply);
    let card = t.slack.wait_for_in(APPROVALS, "Reason", WAIT).await;
    assert_defused(&card.all_text(), "the approval card");
    // The list.
    assert_defused(&t.reply(ALICE, "list").await, "list");
    // The audit channel's break-glass line, and the requester's card.
    let reply = t.reply(CAROL, &format!("connect api --break-glass --reason \"{evil}\"")).await;
    let id = id_in(&reply);
    let alert = t.slack.wait_for_in(AUDIT, "BREAK-GLASS", WAIT).await;
    assert_defused(&alert.all_text(), "the audit line");
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let card = t.slack.wait_for_all(&[&id, "Reason"], WAIT).await;
    assert_defused(&card.all_text(), "the requester's card");
    // The history (an admin's view of everyone's).
    assert_defused(&t.reply(ADMIN, "history api").await, "history");
    t.stop().await;
}

async fn an_extension_is_refused_once_the_policy_no_longer_allows_the_requester(transport: Transport) {
    let mut t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect web --for 30m").await);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let expires_at = t.wait_until_told(&id).await.expires_at;
    // The admins deny Alice `web` and restart the bot with that policy.
    let denying = policy("15m").replace(r#"deny = ["U0MALLORY"]"#, r#"deny = ["U0MALLORY", "U0ALICE"]"#);
    let fresh =
        harness::app::test_config_with(&t.config.database.url, &t.config.slack.api_base_url, TIME_BOX, &denying);
    t.config.policy = fresh.policy;
    t.restart().await;
    let reply = t.reply(ALICE, &format!("extend {id} 10m")).await;
    assert!(reply.contains("The policy no longer lets <@U0ALICE> use *web*"), "{reply}");
    assert_eq!(t.ledger.get(&id).await.unwrap().expires_at, expires_at, "not extended");
    assert!(t.audit_kinds(&id).await.contains(&"extend_refused".to_string()));
    // The admin's own click is refused the same way: the time is the requester's.
    let reply = t.reply(ADMIN, &format!("extend {id} 10m")).await;
    assert!(reply.contains("no longer lets"), "{reply}");
    t.stop().await;
}

harness::over_both_transports!(
    approval_flow_end_to_end,
    two_approve_clicks_at_the_same_moment_make_exactly_one_decision,
    approve_and_deny_at_the_same_moment_make_exactly_one_decision,
    only_approvers_decide_and_never_their_own_request,
    unanswered_approvals_expire,
    break_glass_skips_approval_where_allowed_and_tells_the_audit_channel,
    extend_moves_the_expiry_and_the_bastions_own_shutdown_within_the_maximum,
    end_is_for_the_requester_or_an_admin_and_tears_down_at_once,
    denials_unknown_services_and_the_lists,
    a_persons_reason_pings_nobody_and_forges_no_line_wherever_it_is_shown,
    an_extension_is_refused_once_the_policy_no_longer_allows_the_requester,
);
