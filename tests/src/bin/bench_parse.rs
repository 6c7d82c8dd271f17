//! Benchmark of the part of the HTTP acknowledgement path that slack-morphism would replace:
//! checking Slack's signature and reading the body, ours (`bot::signature::verify`, then the
//! form into `routes::SlashCommand` or the interaction's JSON into a `Value`) against the
//! crate's (`SlackEventSignatureVerifier`, then the form into its typed `SlackCommandEvent` or
//! the JSON into `SlackInteractionEvent`, as its axum listener does). The rest of the path
//! (hyper, axum, the handler, the intake) is the same either way. Single-threaded, after a
//! warm-up; prints ns per request for each.
//!
//! `cargo build --release -p fargate-connect-tests --bin bench_parse && target/release/bench_parse`

use harness::signed::{click_body, command_body, now, SIGNING_SECRET};
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent};
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use slack_morphism::SlackSigningSecret;
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: u32 = 200_000;

fn time(what: &str, mut f: impl FnMut() -> bool) -> f64 {
    for _ in 0..ROUNDS / 10 {
        assert!(f(), "{what} refused a good request");
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(f());
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
    println!("{what:<58} {ns:>8.0} ns per request");
    ns
}

fn main() {
    let ts = now().to_string();
    let command = command_body("connect web --for 30m --reason \"INC-42\"", "U0ALICE", "https://hooks.slack.com/x");
    let click = click_body("U0BOB", "approve", "fc-abcdefgh", "https://hooks.slack.com/y");
    let secret = SIGNING_SECRET.as_bytes();
    let sign = |body: &str| bot::signature::sign(secret, &ts, body.as_bytes());
    let (command_sig, click_sig) = (sign(&command), sign(&click));
    let morphism = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(SIGNING_SECRET.to_string()));
    let at = now();

    println!("{} rounds each, after {} of warm-up\n", ROUNDS, ROUNDS / 10);
    let ours = time("slash command, ours (verify + form → SlashCommand)", || {
        bot::signature::verify(secret, Some(&ts), Some(&command_sig), command.as_bytes(), at).is_ok()
            && serde_urlencoded::from_bytes::<bot::routes::SlashCommand>(command.as_bytes()).is_ok()
    });
    let theirs = time("slash command, slack-morphism (verify + form → SlackCommandEvent)", || {
        morphism.verify(&command_sig, &command, &ts).is_ok()
            && serde_urlencoded::from_str::<SlackCommandEvent>(&command).is_ok()
    });
    println!("  slack-morphism / ours: {:.2}\n", theirs / ours);
    let ours = time("click, ours (verify + payload → JSON Value)", || {
        bot::signature::verify(secret, Some(&ts), Some(&click_sig), click.as_bytes(), at).is_ok()
            && bot::interactions::parse_payload(click.as_bytes()).is_ok()
    });
    let theirs = time("click, slack-morphism (verify + payload → SlackInteractionEvent)", || {
        #[derive(serde::Deserialize)]
        struct Form {
            payload: String,
        }
        morphism.verify(&click_sig, &click, &ts).is_ok()
            && serde_urlencoded::from_str::<Form>(&click)
                .ok()
                .and_then(|f| serde_json::from_str::<SlackInteractionEvent>(&f.payload).ok())
                .is_some()
    });
    println!("  slack-morphism / ours: {:.2}", theirs / ours);
}
