//! Races between a person and the worker, made deterministic with the emulator's delays: End
//! pressed while the bastion is being launched leaves nothing behind (the teardown asked for
//! again while it runs runs once more); two quick extensions both reach the bastion, the later
//! deadline last; and bastions waiting to become ready hold no worker slot, so new requests
//! still launch and an expiry is still torn down on time.

use harness::app::TestApp;
use harness::moto::{calls_detailed, hold_answer, inject_delay, set_consistency, set_ssm_online};
use harness::wait_for;
use serde_json::json;
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);

async fn end_pressed_while_the_bastion_launches_leaves_no_instance_and_no_role() {
    let t = TestApp::start().await;
    // The launch takes effect at once but the bot hears of it only 3 s later; EC2's lookup by
    // tag does not list the new instance for 10 s (eventual consistency), so the teardown End
    // starts misses it. That teardown is held 5 s in DeleteRole: the launch is heard of while
    // it still runs, and asks for it again.
    set_consistency(&t.account, json!({"instance_not_found_secs": 10, "profile_propagation_secs": 0})).await;
    hold_answer(&t.account, "RunInstances", 3.0).await;
    inject_delay(&t.account, "DeleteRole", "", 5.0, 1).await;
    let id = t.connect("U0ALICE", "connect web --for 30m").await;
    wait_for("RunInstances under way", WAIT, || async {
        calls_detailed(&t.account).await.iter().any(|c| c["action"] == "RunInstances").then_some(())
    })
    .await;
    let reply = t.reply("U0ALICE", &format!("end {id}")).await;
    assert!(reply.contains("End"), "{reply}");
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    // The instance launched after the teardown looked: it is terminated all the same.
    let instance =
        wait_for("the late instance recorded", WAIT, || async { t.ledger.get(&id).await.unwrap().instance_id }).await;
    wait_for("the late instance terminated", WAIT, || async {
        (t.instance_state(&instance).await.as_deref() == Some("terminated")).then_some(())
    })
    .await;
    wait_for("no job left", WAIT, || async { (t.count("jobs").await == 0).then_some(()) }).await;
    let parts = worker::aws::iam::existing_parts(&t.aws.iam, &id).await.unwrap();
    assert!(!parts.role && !parts.profile, "the role and its profile are gone: {parts:?}");
    let kinds = t.audit_kinds(&id).await;
    assert!(kinds.iter().filter(|k| *k == "torn_down").count() >= 2, "{kinds:?}");
    t.stop().await;
}

async fn two_quick_extensions_both_reach_the_bastion_the_later_deadline_last() {
    let t = TestApp::start_with("default = \"30m\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let id = t.connect("U0ALICE", "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    t.wait_until_told(&id).await; // the time box (and so the expiry) starts then
                                  // The first extension's command is held 3 s: the second comes while it is on its way.
    inject_delay(&t.account, "SendCommand", "extend", 3.0, 1).await;
    let reply = t.reply("U0ALICE", &format!("extend {id} 5m")).await;
    assert!(reply.contains("Extended"), "{reply}");
    wait_for("the first extension under way", WAIT, || async {
        let calls = calls_detailed(&t.account).await;
        let sends = calls.iter().filter(|c| c["action"] == "SendCommand").count();
        // The readiness probe, then the first extension's (not answered yet).
        (sends >= 2 && calls.iter().any(|c| c["action"] == "SendCommand" && c.get("status").is_none())).then_some(())
    })
    .await;
    let reply = t.reply("U0ALICE", &format!("extend {id} 10m")).await;
    assert!(reply.contains("Extended"), "{reply}");
    let expires_at = t.ledger.get(&id).await.unwrap().expires_at.unwrap();
    let wanted = worker::aws::user_data::deadline_secs(expires_at + 300_000);
    let moved = wait_for("both extensions confirmed", WAIT, || async {
        let events = t.ledger.audit_for(&id).await.unwrap();
        let moved: Vec<String> =
            events.iter().filter(|e| e.kind == "shutdown_rescheduled").map(|e| e.detail.clone()).collect();
        (moved.len() >= 2).then_some(moved)
    })
    .await;
    let last: serde_json::Value = serde_json::from_str(moved.last().unwrap()).unwrap();
    let deadline =
        time::OffsetDateTime::parse(last["deadline"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(deadline.unix_timestamp(), wanted, "the bastion's deadline is the later one: {moved:?}");
    t.stop().await;
}

async fn bastions_waiting_to_be_ready_hold_no_slot_and_an_expiry_is_torn_down_on_time() {
    let t = TestApp::start_custom("default = \"4s\"\nmin = \"1s\"\nmax = \"1h\"", |config| {
        config.worker.concurrency = 2;
    })
    .await;
    let first = t.connect("U0ALICE", "connect web").await;
    t.wait_for_state(&first, RequestState::Ready, WAIT).await;
    t.wait_until_told(&first).await;
    // No agent comes online from now on: every new bastion waits to be ready.
    set_ssm_online(&t.account, false).await;
    let mut waiting = Vec::new();
    for n in 0..6 {
        waiting.push(t.connect(&format!("U0WAIT{n}"), "connect web --for 30m").await);
    }
    // Three times the slots launched, while each of them waits.
    for id in &waiting {
        t.wait_for_audit(id, "instance_launched", WAIT).await;
    }
    // The first one's time box ends meanwhile, and it is torn down within seconds of it.
    t.wait_for_state(&first, RequestState::Ended, WAIT).await;
    let request = t.ledger.get(&first).await.unwrap();
    let late = request.ended_at.unwrap() - request.expires_at.unwrap();
    assert!(late < 10_000, "torn down {late} ms after its expiry");
    for id in &waiting {
        assert_eq!(t.ledger.get(id).await.unwrap().state(), RequestState::Provisioning);
    }
    set_ssm_online(&t.account, true).await;
    for id in &waiting {
        t.wait_for_state(id, RequestState::Ready, WAIT).await;
    }
    t.stop().await;
}

harness::on_both_ledgers!(
    end_pressed_while_the_bastion_launches_leaves_no_instance_and_no_role,
    two_quick_extensions_both_reach_the_bastion_the_later_deadline_last,
    bastions_waiting_to_be_ready_hold_no_slot_and_an_expiry_is_torn_down_on_time,
);
