//! Property tests for everything the bot parses from outside: the `/fargate` command grammar,
//! the Slack signature check, the slash-command form and the interaction payload as the
//! handlers read them, and the config file. Whatever the input, nothing panics; a refusal is a
//! clear message (not a Debug dump); what the grammar allows parses to what was written.
//! (Durations have their own properties in `worker/tests/robustness.rs`.)
//!
//! Each property prints how many cases it ran (`PROPTEST_CASES` overrides the count).

use bot::command::{Command, CommandError, ConnectArgs};
use bot::config::{parse_file, Config, ConfigError, Secret, SlackSecrets};
use bot::interactions::{parse_payload, Click, PayloadError};
use bot::routes::SlashCommand;
use bot::signature::{sign, verify, SignatureError, MAX_SKEW_SECS};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::time::Instant;
use worker::duration::HumanDuration;
use worker::ids::{ContainerName, RequestId, ServiceName};

/// Runs `test` on `cases` values of `strategy` and reports the count on stderr (outside the
/// test harness's capture, so it shows in the test output).
fn check<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let started = Instant::now();
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("robustness: {name}: {e}");
    }
    let line = format!("robustness: {name}: {cases} cases passed in {:.2?}\n", started.elapsed());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn fail(why: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(why.into())
}

/// A list written as one string, split on whitespace.
fn split_list(list: &'static str) -> Vec<&'static str> {
    list.split_whitespace().collect()
}

/// A message for a person: not empty, a few words, not the Debug form or a Rust failure. Text
/// the input itself contained may be echoed back.
fn clear_message(input: &str, msg: &str, debug: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.trim().is_empty(), "empty message for {:?}", input);
    prop_assert!(msg != debug, "the Debug form is the message: {}", msg);
    prop_assert!(msg.split_whitespace().count() >= 2, "not a sentence: {:?}", msg);
    let variant: String = debug.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    prop_assert!(!msg.starts_with(&format!("{variant}(")), "reads as Debug: {}", msg);
    for rust in ["Err(", "Ok(", "Some(", "unwrap", "panicked", "expect(", "Error {", "ParseIntError"] {
        prop_assert!(!msg.contains(rust) || input.contains(rust), "{:?} for {:?}", msg, input);
    }
    Ok(())
}

/// Characters people (and Slack) put in command text, and some that merely look like them.
const NEAR: &[char] = &[
    ' ', ' ', ' ', '\t', '\n', '\u{a0}', '\u{2003}', '"', '\'', '“', '”', '‘', '’', '-', '-', '—', '–', '=', '/', '@',
    '<', '>', '|', '`', '*', '_', 'a', 'Z', '0', '9', 'é', 'ß', 'İ', 'ı', '日', '🚀', '\u{200b}', '\u{0}',
];

fn near_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(NEAR),
        1 => any::<char>(),
    ]
}

fn near_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(near_char(), 0..max).prop_map(String::from_iter)
}

/// Words of the grammar and plausible values, in any order.
fn token() -> impl Strategy<Value = String> {
    let mut words = split_list(
        "connect CONNECT list ls extend end stop history services help -h --help web web/app api_v2-blue -web we$b \
         web/ /app --for --for=5m 5m 90s 1h30m 0m soon --reason --reason= \"INC-42:stuck\" “smart-quotes” 'single' \
         \" ' “ --container x --task 0f1e2d3c arn:aws:ecs:eu-west-1:1:task/prod/0f1e a;b --cluster prod --cluster= \
         --break-glass --break-glass=yes —for — -- --since 7d --page 0 2 -1 99999999999 <@U0ALICE|alice> <@U0ALICE> \
         @alice <@ U0BOB fc-7k3m9q2d FC-7K3M9Q2D 7k3m9q2d fc-nope 18446744073709551615s 99999999999999999999m = --=",
    );
    words.extend(["\"INC-42: stuck\"", "“smart quotes”", "'a b'"]);
    let words = prop::sample::select(words).prop_map(str::to_string);
    prop_oneof![
        8 => words,
        2 => near_text(12),
        1 => "[a-z0-9_-]{1,300}",
        1 => (1usize..2_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec((token(), prop::sample::select(vec![" ", "  ", "\t", "\n", "", " \u{a0}"])), 0..12)
        .prop_map(|parts| parts.into_iter().map(|(t, sep)| t + sep).collect())
}

fn parse_never_panics(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = Command::parse(text) {
        let msg = e.to_string();
        clear_message(text, &msg, &format!("{e:?}"))?;
        // An error names at most what was typed, plus a sentence or two.
        prop_assert!(msg.len() <= 2 * text.len() + 300, "{} bytes of message for {} of text", msg.len(), text.len());
    }
    Ok(())
}

#[test]
fn command_arbitrary_text_never_panics() {
    check("command grammar: arbitrary text", 4000, prop_oneof![any::<String>(), near_text(200)], |text| {
        parse_never_panics(&text)
    });
}

#[test]
fn command_token_soup_never_panics() {
    check("command grammar: plausible tokens in any order", 3000, token_soup(), |text| {
        parse_never_panics(&text)?;
        parse_never_panics(&format!("connect {text}"))?;
        parse_never_panics(&format!("history {text}"))
    });
}

#[test]
fn command_very_long_input_never_panics() {
    let long = (prop::sample::select(vec!["connect ", "history ", "extend ", "", "conect "]), 1usize..65_536, token())
        .prop_map(|(head, n, t)| format!("{head}{}", t.repeat(n / t.len().max(1) + 1)));
    check("command grammar: inputs up to 64 KiB", 100, long, |text| parse_never_panics(&text));
}

/// A `connect` command as generated, and the text written for it.
#[derive(Debug, Clone)]
struct Connect {
    args: ConnectArgs,
    text: String,
}

fn quoted(text: &str, quote: usize) -> String {
    match quote {
        0 => format!("\"{text}\""),
        1 => format!("'{text}'"),
        _ => format!("“{text}”"),
    }
}

/// A reason that the chosen quote can hold (at most 500 characters once trimmed).
fn reason() -> impl Strategy<Value = (String, usize)> {
    (prop::collection::vec(prop_oneof![any::<char>(), prop::sample::select(NEAR)], 0..120), 0usize..3).prop_map(
        |(chars, quote)| {
            let banned: &[char] = match quote {
                0 => &['"'],
                1 => &['\''],
                _ => &['“', '”'],
            };
            (chars.into_iter().filter(|c| !banned.contains(c)).collect(), quote)
        },
    )
}

fn duration_text() -> impl Strategy<Value = (String, u64)> {
    let unit = prop::sample::select(vec![("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400), ("M", 60), ("H", 3600)]);
    prop_oneof![
        prop::collection::vec((1u64..1000, unit), 1..3).prop_map(|parts| {
            (parts.iter().map(|(n, (u, _))| format!("{n}{u}")).collect(), parts.iter().map(|(n, (_, s))| n * s).sum())
        }),
        (1u64..10_000).prop_map(|n| (n.to_string(), n * 60)),
        (1u64..10_000_000).prop_map(|s| (HumanDuration::from_secs(s).to_string(), s)),
    ]
}

const NAME: &str = "[a-zA-Z0-9][a-zA-Z0-9_-]{0,30}";

fn connect_command() -> impl Strategy<Value = Connect> {
    (
        (NAME, prop::option::of(NAME), prop::option::of(NAME)),
        (prop::option::of(duration_text()), prop::option::of(reason()), prop::option::of("[a-zA-Z0-9:/_-]{1,80}")),
        (any::<bool>(), prop::sample::select(vec!["connect", "CONNECT", "Connect"])),
        (any::<[bool; 4]>(), any::<[bool; 5]>(), prop::sample::select(vec![" ", "  ", "\t", "\n", " \u{a0}"])),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            |((service, container, cluster), (ttl, reason, task), (glass, verb), (inline, dash, sep), seed)| {
                let reason_value = reason.as_ref().map(|(r, _)| r.trim().to_string()).filter(|r| !r.is_empty());
                let args = ConnectArgs {
                    service: Some(ServiceName::parse(&service).unwrap()),
                    container: container.as_deref().map(|c| ContainerName::parse(c).unwrap()),
                    cluster: cluster.clone(),
                    ttl: ttl.as_ref().map(|(_, secs)| HumanDuration::from_secs(*secs)),
                    reason: reason_value.clone(),
                    task: task.clone(),
                    break_glass: glass && reason_value.is_some(),
                };
                let option = |i: usize, name: &str, value: String| {
                    let flag = if dash[i] { format!("--{name}") } else { format!("—{name}") };
                    if inline[i % 4] {
                        vec![format!("{flag}={value}")]
                    } else {
                        vec![flag, value]
                    }
                };
                let target = match &container {
                    Some(c) => format!("{service}/{c}"),
                    None => service.clone(),
                };
                let mut groups: Vec<Vec<String>> = vec![vec![target]];
                if let Some(c) = &cluster {
                    groups.push(option(0, "cluster", c.clone()));
                }
                if let Some((text, _)) = &ttl {
                    groups.push(option(1, "for", text.clone()));
                }
                if let Some((text, quote)) = &reason {
                    groups.push(option(2, "reason", quoted(text, *quote)));
                }
                if let Some(t) = &task {
                    groups.push(option(3, "task", t.clone()));
                }
                if args.break_glass {
                    groups.push(vec![if dash[4] { "--break-glass" } else { "—break-glass" }.to_string()]);
                }
                // Options and the target in any order (each option keeps its value after it).
                let n = groups.len();
                let at = seed.index(n);
                groups.rotate_left(at);
                if n > 2 && seed.index(2) == 1 {
                    groups[1..].reverse();
                }
                let words: Vec<String> = groups.into_iter().flatten().collect();
                Connect { args, text: format!("{verb}{sep}{}", words.join(sep)) }
            },
        )
}

#[test]
fn command_valid_connect_round_trips() {
    check("command grammar: generated connect commands", 2500, connect_command(), |c| {
        match Command::parse(&c.text) {
            Ok(Command::Connect(args)) => prop_assert_eq!(args, c.args, "{:?}", c.text),
            other => return Err(fail(format!("{:?} parsed to {other:?}", c.text))),
        }
        Ok(())
    });
}

#[test]
fn command_mutated_connect_never_panics() {
    let mutated =
        (connect_command(), prop::collection::vec((any::<prop::sample::Index>(), 0..3usize, near_char()), 1..4))
            .prop_map(|(c, edits)| {
                let mut chars: Vec<char> = c.text.chars().collect();
                for (at, kind, ch) in edits {
                    let i = at.index(chars.len() + 1);
                    match kind {
                        0 => chars.insert(i, ch),
                        1 if i < chars.len() => {
                            chars.remove(i);
                        }
                        _ if i < chars.len() => chars[i] = ch,
                        _ => chars.push(ch),
                    }
                }
                String::from_iter(chars)
            });
    check("command grammar: mutated connect commands", 2000, mutated, |text| parse_never_panics(&text));
}

fn request_id() -> impl Strategy<Value = (String, RequestId)> {
    ("[0-9abcdefghjkmnpqrstvwxyz]{8}", any::<bool>(), any::<bool>()).prop_map(|(tail, prefix, upper)| {
        let id = RequestId::parse(&format!("fc-{tail}")).unwrap();
        let text = if prefix { format!("fc-{tail}") } else { tail };
        (if upper { text.to_uppercase() } else { text }, id)
    })
}

#[test]
fn command_other_commands_round_trip() {
    // Slack escapes a mention as `<@U123|name>` (or `<@U123>`).
    let user = ("[UW][A-Z0-9]{2,10}", prop::option::of("[a-z.]{1,10}")).prop_map(|(id, name)| match name {
        Some(n) => (format!("<@{id}|{n}>"), id),
        None => (format!("<@{id}>"), id),
    });
    let command = prop_oneof![
        (request_id(), prop::option::of(duration_text())).prop_map(|((text, id), by)| {
            let words = format!("extend {text} {}", by.as_ref().map(|b| b.0.as_str()).unwrap_or_default());
            (words, Command::Extend { request: id, by: by.map(|(_, s)| HumanDuration::from_secs(s)) })
        }),
        (request_id(), prop::sample::select(vec!["end", "stop", "END"]))
            .prop_map(|((text, id), verb)| (format!("{verb} {text}"), Command::End { request: id })),
        (prop::option::of(NAME), prop::option::of(user), prop::option::of(duration_text()), prop::option::of(1u32..))
            .prop_map(|(service, user, since, page)| {
                let mut words = vec!["history".to_string()];
                words.extend(service.clone());
                words.extend(user.as_ref().map(|(text, _)| text.clone()));
                words.extend(since.as_ref().map(|(text, _)| format!("--since {text}")));
                words.extend(page.map(|p| format!("--page={p}")));
                let expected = Command::History {
                    service: service.map(|s| ServiceName::parse(&s).unwrap()),
                    user: user.map(|(_, id)| id),
                    since: since.map(|(_, s)| HumanDuration::from_secs(s)),
                    page: page.unwrap_or(1),
                };
                (words.join(" "), expected)
            }),
        prop::sample::select(vec![
            ("list", Command::List),
            ("LS", Command::List),
            ("services", Command::Services),
            ("", Command::Help),
            ("  help ", Command::Help),
            ("--help", Command::Help),
        ])
        .prop_map(|(text, command)| (text.to_string(), command)),
    ];
    check("command grammar: generated other commands", 2000, command, |(text, expected)| {
        prop_assert_eq!(Command::parse(&text), Ok(expected), "{:?}", text);
        Ok(())
    });
}

#[test]
fn command_reasons_are_at_most_500_characters() {
    let strategy = (reason(), prop_oneof![490usize..510, 0usize..1500]);
    check("command grammar: reason length limit", 2000, strategy, |((pattern, quote), n)| {
        // `a…a`, n + 2 characters long: nothing to trim.
        let middle: String = pattern.chars().chain(['x']).cycle().take(n).collect();
        let reason = format!("a{middle}a");
        let text = format!("connect web --reason {}", quoted(&reason, quote));
        match Command::parse(&text) {
            Ok(Command::Connect(args)) if n + 2 <= 500 => prop_assert_eq!(args.reason, Some(reason)),
            Err(CommandError::ReasonTooLong) if n + 2 > 500 => {}
            other => return Err(fail(format!("{} characters gave {other:?}", n + 2))),
        }
        Ok(())
    });
}

// ---- The signature check ----

fn body_and_secret() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, i64)> {
    (
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..512),
        0i64..=4_102_444_800, // now .. 2100
    )
}

#[test]
fn signature_signed_bodies_verify_within_the_window() {
    let strategy = (body_and_secret(), -MAX_SKEW_SECS..=MAX_SKEW_SECS);
    check("signature: signed bodies verify within ±300 s", 3000, strategy, |((secret, body, ts), skew)| {
        let ts_text = ts.to_string();
        let sig = sign(&secret, &ts_text, &body);
        prop_assert_eq!(verify(&secret, Some(&ts_text), Some(&sig), &body, ts + skew), Ok(()));
        Ok(())
    });
}

#[test]
fn signature_any_change_is_refused() {
    let strategy = (body_and_secret(), any::<prop::sample::Index>(), 1u8..=255, 0..5usize, any::<u8>());
    check("signature: one changed byte, stale time or other secret refused", 3000, strategy, |case| {
        let ((secret, body, ts), at, flip, what, other) = case;
        let ts_text = ts.to_string();
        let sig = sign(&secret, &ts_text, &body);
        let now = ts;
        let refused = match what {
            // One byte of the body changed (or one added, when it is empty).
            0 => {
                let mut changed = body.clone();
                match changed.is_empty() {
                    true => changed.push(flip),
                    false => changed[at.index(body.len())] ^= flip,
                }
                verify(&secret, Some(&ts_text), Some(&sig), &changed, now)
            }
            // One hex digit of the signature changed to another.
            1 => {
                let mut changed = sig.clone().into_bytes();
                let i = 3 + at.index(changed.len() - 3);
                let digits = b"0123456789abcdef";
                let pos = digits.iter().position(|d| *d == changed[i]).unwrap();
                changed[i] = digits[(pos + 1 + usize::from(flip) % 15) % 16];
                verify(&secret, Some(&ts_text), Some(&String::from_utf8(changed).unwrap()), &body, now)
            }
            // Any one byte of the header changed to anything else.
            2 => {
                let mut changed = sig.clone().into_bytes();
                let i = at.index(changed.len());
                changed[i] ^= flip;
                let changed = String::from_utf8_lossy(&changed).into_owned();
                if changed.eq_ignore_ascii_case(&sig) {
                    return Ok(()); // the same digits in upper case: the same signature
                }
                verify(&secret, Some(&ts_text), Some(&changed), &body, now)
            }
            // Outside the window, either way.
            3 => {
                let off = MAX_SKEW_SECS + 1 + i64::from(other) * i64::from(flip) * 1000;
                let now = if flip % 2 == 0 { ts + off } else { ts - off };
                prop_assert_eq!(verify(&secret, Some(&ts_text), Some(&sig), &body, now), Err(SignatureError::Stale));
                return Ok(());
            }
            // Another secret.
            // Another secret (not one that only adds zero bytes: HMAC pads keys with zeros).
            _ => {
                let mut wrong = secret.clone();
                match wrong.is_empty() {
                    true => wrong.push(flip),
                    false => wrong[at.index(secret.len())] ^= flip,
                }
                verify(&wrong, Some(&ts_text), Some(&sig), &body, now)
            }
        };
        let e = refused.err().ok_or_else(|| fail("a changed request was accepted"))?;
        prop_assert!(matches!(e, SignatureError::Mismatch | SignatureError::MissingSignature), "{:?}", e);
        Ok(())
    });
}

#[test]
fn signature_arbitrary_headers_never_panic() {
    let header = prop_oneof![
        any::<String>(),
        any::<i64>().prop_map(|n| n.to_string()),
        "[ ]{0,2}-?[0-9]{1,25}[ ]{0,2}",
        "v0=[0-9a-fA-F]{0,70}",
        "v[0-9]=[0-9a-z]{0,64}",
    ];
    let strategy = (
        prop::option::of(header.clone()),
        prop::option::of(header),
        prop::collection::vec(any::<u8>(), 0..256),
        prop_oneof![any::<i64>(), 0i64..=4_102_444_800, Just(i64::MIN), Just(i64::MAX)],
        prop::collection::vec(any::<u8>(), 0..40),
    );
    check("signature: arbitrary headers and clocks", 4000, strategy, |(ts, sig, body, now, secret)| {
        let result = verify(&secret, ts.as_deref(), sig.as_deref(), &body, now);
        if let Err(e) = &result {
            clear_message("", &e.to_string(), &format!("{e:?}"))?;
        }
        // Whatever the clocks, the window is ±300 s of real time.
        if let Some(t) = ts.as_deref().and_then(|t| t.trim().parse::<i64>().ok()) {
            let off = (i128::from(now) - i128::from(t)).abs();
            prop_assert_eq!(result == Err(SignatureError::Stale), off > i128::from(MAX_SKEW_SECS));
        }
        Ok(())
    });
}

// ---- The slash-command form and the interaction payload, as the handlers read them ----

const FIELDS: [&str; 7] = ["command", "text", "user_id", "user_name", "team_id", "channel_id", "response_url"];
const REQUIRED: [&str; 4] = ["user_id", "team_id", "channel_id", "response_url"];

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Field names, separators, broken percent escapes and bytes that are not UTF-8.
    let piece = prop_oneof![
        prop::sample::select(FIELDS.to_vec()).prop_map(|f| f.as_bytes().to_vec()),
        prop::sample::select(vec!["=", "&", "%", "%2", "%2F", "%C3", "%FF", "%00", "+", ";", "payload", "é"])
            .prop_map(|p| p.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    let formish = prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat());
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), formish]
}

#[test]
fn slash_form_arbitrary_bytes_never_panic() {
    check("slash-command form: arbitrary bytes", 4000, arbitrary_bytes(), |body| {
        match serde_urlencoded::from_bytes::<SlashCommand>(&body) {
            Ok(form) => parse_never_panics(&form.text)?,
            Err(e) => clear_message("", &e.to_string(), &format!("{e:?}"))?,
        }
        Ok(())
    });
}

#[test]
fn slash_form_key_value_sets_parse_as_sent() {
    let key = prop_oneof![4 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string), 1 => any::<String>()];
    let value = prop_oneof![any::<String>(), near_text(60)];
    let strategy = prop::collection::btree_map(key, value, 0..10);
    check("slash-command form: url-encoded key-value sets", 3000, strategy, |fields: BTreeMap<String, String>| {
        let body = serde_urlencoded::to_string(&fields).map_err(|e| fail(e.to_string()))?;
        match serde_urlencoded::from_bytes::<SlashCommand>(body.as_bytes()) {
            Ok(form) => {
                prop_assert!(REQUIRED.iter().all(|k| fields.contains_key(*k)));
                let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
                prop_assert_eq!(&form.text, &get("text"));
                prop_assert_eq!(&form.command, &get("command"));
                prop_assert_eq!(&form.user_id, &get("user_id"));
                prop_assert_eq!(&form.response_url, &get("response_url"));
                parse_never_panics(&form.text)?;
            }
            Err(e) => {
                prop_assert!(REQUIRED.iter().any(|k| !fields.contains_key(*k)), "refused a complete form: {}", e);
                prop_assert!(e.to_string().contains("missing field"), "{}", e);
            }
        }
        Ok(())
    });
}

#[test]
fn interaction_payload_arbitrary_bytes_never_panic() {
    let bytes = prop_oneof![
        arbitrary_bytes(),
        arbitrary_bytes().prop_map(|b| [b"payload=".to_vec(), b].concat()),
        near_text(200).prop_map(|t| format!("payload={}", urlencode(&t)).into_bytes()),
        (1usize..600).prop_map(|n| format!("payload={}{}", "%5B".repeat(n), "%5D".repeat(n)).into_bytes()),
    ];
    check("interaction payload: arbitrary bytes", 4000, bytes, |body| {
        match parse_payload(&body) {
            Ok(payload) => {
                let _ = Click::parse(&payload);
            }
            Err(e) => {
                clear_message("", &e.to_string(), &format!("{e:?}"))?;
                prop_assert!(matches!(e, PayloadError::Form(_) | PayloadError::Json(_)));
            }
        }
        Ok(())
    });
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).unwrap()[1..].to_string()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 4.0)), // exact in decimal
        any::<String>().prop_map(Value::from),
        prop::sample::select(vec!["block_actions", "approve", "deny", "extend", "end", "fc-7k3m9q2d", "U0ALICE"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec!["type", "user", "id", "actions", "action_id", "value", "response_url"])
                .prop_map(str::to_string),
            any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn interaction_payload_json_round_trips_and_clicks_never_panic() {
    let strategy = prop_oneof![
        json_value(),
        // Shaped like a block_actions payload, with arbitrary values where Slack puts strings.
        (json_value(), json_value(), json_value(), json_value()).prop_map(|(user, action, value, url)| {
            json!({"type": "block_actions", "user": {"id": user}, "response_url": url,
                   "actions": [{"action_id": action, "value": value}]})
        }),
    ];
    check("interaction payload: JSON values", 2000, strategy, |value| {
        let body = format!("payload={}", urlencode(&value.to_string()));
        let parsed = parse_payload(body.as_bytes()).map_err(|e| fail(format!("{value}: {e}")))?;
        prop_assert_eq!(&parsed, &value);
        if let Some(click) = Click::parse(&parsed) {
            prop_assert_eq!(Some(click.user.as_str()), value["user"]["id"].as_str());
            prop_assert_eq!(Some(click.value.as_str()), value["actions"][0]["value"].as_str());
        }
        Ok(())
    });
}

#[test]
fn interaction_real_clicks_parse() {
    let strategy = (any::<String>(), any::<String>(), any::<String>(), prop::option::of(any::<String>()));
    check("interaction payload: block_actions clicks", 2000, strategy, |(user, action, value, url)| {
        let mut payload = json!({"type": "block_actions", "user": {"id": user, "name": "x"}, "team": {"id": "T1"},
            "actions": [{"action_id": action, "value": value, "type": "button"}]});
        if let Some(url) = &url {
            payload["response_url"] = json!(url);
        }
        let body = format!("payload={}&other=1", urlencode(&payload.to_string()));
        let parsed = parse_payload(body.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let click = Click::parse(&parsed).ok_or_else(|| fail("a click was not read"))?;
        prop_assert_eq!((click.user, click.action, click.value), (user, action, value));
        prop_assert_eq!(click.response_url, url.unwrap_or_default());
        Ok(())
    });
}

// ---- The config file ----

const EXAMPLE: &str = include_str!("../../deploy/fargate-connect.example.toml");

/// The problem a config error names.
fn config_error_is_clear(text: &str, e: &ConfigError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    clear_message(text, &msg, &format!("{e:?}"))?;
    match e {
        ConfigError::Parse { path, message } => {
            prop_assert_eq!(path, "t.toml");
            prop_assert!(msg.starts_with("config file t.toml: "), "{}", msg);
            prop_assert!(message.trim().len() > 5, "{:?}", message);
            if let Some(line) = message.rsplit_once("(at line ").and_then(|(_, l)| l.strip_suffix(')')) {
                let line: usize = line.parse().map_err(|_| fail(format!("line in {message:?}")))?;
                let lines = text.matches('\n').count() + 1;
                prop_assert!((1..=lines).contains(&line), "line {} of {}", line, lines);
            }
        }
        ConfigError::Invalid(message) => {
            let settings = ["aws.", "time_box.", "database.url", "limits.", "server.", "slack.", "policy."];
            prop_assert!(settings.iter().any(|s| message.contains(s)), "names no setting: {}", msg);
        }
        other => return Err(fail(format!("unexpected error from text: {other}"))),
    }
    Ok(())
}

fn all_secrets() -> SlackSecrets {
    SlackSecrets {
        signing_secret: Some(Secret::new("s3cr3t-x")),
        bot_token: Secret::new("xoxb-s3cr3t"),
        app_token: Some(Secret::new("xapp-s3cr3t")),
    }
}

fn config_never_panics(text: &str) -> Result<(), TestCaseError> {
    match parse_file(text, "t.toml") {
        // Every secret given, so that either mode validates as far as the file allows.
        Ok(file) => match Config::from_secrets(file, all_secrets()) {
            // The secrets never show, valid or not.
            Ok(config) => {
                let shown = format!("{config:?}");
                prop_assert!(!shown.contains("s3cr3t"), "a secret shows in {}", shown);
            }
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("s3cr3t"), "a secret shows in {}", shown);
                config_error_is_clear(text, &e)?;
            }
        },
        Err(e) => config_error_is_clear(text, &e)?,
    }
    Ok(())
}

#[test]
fn config_arbitrary_text_never_panics() {
    let text = prop_oneof![any::<String>(), near_text(200), "[\\[\\]a-z_.=\" \n0-9#{},']{0,300}"];
    check("config: arbitrary text", 3000, text, |text| config_never_panics(&text));
}

/// A TOML-ish line: the real sections and keys, some that are not, and values of every kind.
fn config_line() -> impl Strategy<Value = String> {
    let section = prop::sample::select(split_list(
        "[server] [database] [slack] [aws] [time_box] [worker] [limits] [policy] [[policy.services]] [polcy] [aws \
         [[aws]] []",
    ))
    .prop_map(str::to_string);
    let key = prop::sample::select(split_list(
        "bind ops_bind header_timeout body_timeout max_connections url api_base_url region cluster subnets \
         instance_types require_boundary session_manager_plugin_url session_run_as_user kms_key_arns default min max \
         poll_interval_ms lease_ms ready_timeout concurrency max_attempts live_bastions open_per_person \
         per_person_per_hour admins audit_channel approval_timeout name allow deny approval approvers \
         approvals_channel break_glass max_time_box clustr \"quoted-key\" a.b",
    ));
    let value = prop_oneof![
        prop::sample::select({
            let mut values = split_list(
                "\"prod\" \"30m\" \"0s\" \"soon\" \"99999999999999999999d\" \"18446744073709551615s\" \"127.0.0.1:3000\" \
                 \"[::1]:0\" \"sqlite://x.db\" \"postgres://x\" \"https://slack.com/api\" \"ftp://x\" \"U0ALICE\" \"S0OPS\" \
                 \"*\" \"nobody\" [\"U1\",\"S2\"] [] [1,\"a\"] true false 0 -1 1 9223372036854775807 \
                 18446744073709551616 1.5 nan inf 1979-05-27T07:32:00Z {} 'lit' \"\\u0000\"",
            );
            values.extend(["{ a = 1 }", "\"\"\"multi\nline\"\"\"", "[ \"U1\", \"S2\" ]"]);
            values
        })
        .prop_map(str::to_string),
        any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9\"\\[\\]{}=., ]{0,20}",
    ];
    prop_oneof![
        2 => section,
        6 => (key, prop::sample::select(vec![" = ", "=", " =", " "]), value).prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
        1 => prop::sample::select(vec!["", "# comment", "   ", "\t"]).prop_map(str::to_string),
        1 => near_text(20),
    ]
}

#[test]
fn config_tomlish_text_never_panics() {
    let text = (prop::collection::vec(config_line(), 0..16), any::<bool>()).prop_map(|(lines, aws_first)| {
        let head = if aws_first { "[aws]\ncluster = \"prod\"\n" } else { "" };
        format!("{head}{}", lines.join("\n"))
    });
    check("config: TOML-ish text", 2000, text, |text| config_never_panics(&text));
}

#[test]
fn config_mutated_example_never_panics() {
    let edit = (0..6usize, any::<prop::sample::Index>(), config_line(), any::<char>());
    let mutated = prop::collection::vec(edit, 1..4).prop_map(|edits| {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_string).collect();
        for (kind, at, line, ch) in edits {
            if lines.is_empty() {
                lines.push(line);
                continue;
            }
            let i = at.index(lines.len());
            match kind {
                0 => {
                    lines.remove(i);
                }
                1 => lines.insert(i, line),
                2 => lines[i] = line,
                3 => lines.insert(i, lines[i].clone()),
                4 => {
                    let chars: Vec<char> = lines[i].chars().collect();
                    let cut = at.index(chars.len() + 1);
                    lines[i] = chars[..cut].iter().chain(std::iter::once(&ch)).chain(&chars[cut..]).collect();
                }
                _ => lines.truncate(i),
            }
        }
        lines.join("\n")
    });
    check("config: mutated example config", 2000, mutated, |text| config_never_panics(&text));
}

#[test]
fn config_syntax_errors_name_their_line() {
    let lines = EXAMPLE.lines().count();
    let strategy = (0..lines, prop::sample::select(vec!["= =", "[broken", "x = ", "\"unclosed = 1", "a = b c"]));
    check("config: syntax errors name their line", 2000, strategy, |(i, bad)| {
        let mut text: Vec<&str> = EXAMPLE.lines().collect();
        text[i] = bad;
        let text = text.join("\n");
        match parse_file(&text, "t.toml") {
            Err(ConfigError::Parse { message, .. }) => {
                let want = format!("(at line {})", i + 1);
                prop_assert!(message.ends_with(&want), "line {} is broken, the error says {:?}", i + 1, message);
            }
            other => return Err(fail(format!("line {} = {bad:?} gave {other:?}", i + 1))),
        }
        Ok(())
    });
}
