//! Property tests for `HumanDuration::parse`, which reads durations people type in Slack
//! (`--for`, `extend`, `--since`) and the config file: whatever the text, it never panics;
//! an error says what to write instead; every duration the grammar allows (`90s`, `15m`, `2h`,
//! `7d`, `1h30m`, a bare number of minutes, any case, spaces around) parses to the right number
//! of seconds, and huge numbers are refused (past `MAX_SECS`, ten years) instead of overflowing.
//!
//! Each property prints how many cases it ran (`PROPTEST_CASES` overrides the count).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use std::fmt::Debug;
use std::io::Write;
use std::time::Instant;
use worker::duration::{DurationError, HumanDuration, MAX_SECS};

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

/// The message of a refusal is a clear sentence: not empty, not a Debug dump.
fn clear(input: &str, e: &DurationError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.trim().is_empty(), "empty message for {input:?}");
    prop_assert!(msg != format!("{e:?}"), "Debug form as message: {msg}");
    for debugish in ["Invalid(", "Zero", "TooLong", "Err(", "unwrap", "panicked", "ParseIntError"] {
        prop_assert!(!msg.contains(debugish) || input.contains(debugish), "{msg:?} for {input:?}");
    }
    match e {
        DurationError::Invalid(echo) => {
            prop_assert_eq!(echo, input);
            prop_assert!(msg.contains("write it like"), "{}", msg);
        }
        DurationError::Zero => prop_assert!(msg.contains("more than zero")),
        DurationError::TooLong(_) => prop_assert!(msg.contains("at most 3650d"), "{}", msg),
    }
    Ok(())
}

fn parses_or_says_why(input: &str) -> Result<(), TestCaseError> {
    match HumanDuration::parse(input) {
        Ok(d) => {
            prop_assert!(d.as_secs() > 0, "{input:?} parsed to zero");
            // What is shown back parses to the same duration.
            prop_assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d));
        }
        Err(e) => clear(input, &e)?,
    }
    Ok(())
}

/// Characters that matter to the parser, and some that look like they might.
const NEAR: &[char] = &[
    's', 'm', 'h', 'd', 'S', 'M', 'H', 'D', 'w', 'y', '0', '1', '9', ' ', '\t', '\n', '.', '-', '+', '_', ',', 'µ',
    'ı', 'İ', 'K', '٣', '９', '\u{a0}', '\u{200b}',
];

fn near_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(NEAR),
            1 => any::<char>(),
        ],
        0..40,
    )
    .prop_map(String::from_iter)
}

#[test]
fn arbitrary_text_never_panics_and_errors_are_clear() {
    check("duration: arbitrary text", 4000, any::<String>(), |s| parses_or_says_why(&s));
}

#[test]
fn text_near_the_grammar_never_panics_and_errors_are_clear() {
    check("duration: text near the grammar", 4000, near_text(), |s| parses_or_says_why(&s));
}

const UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

/// `[(n, unit index)]`, written with random case and spacing around.
fn written() -> impl Strategy<Value = (Vec<(u64, usize)>, bool, &'static str, &'static str)> {
    (
        prop::collection::vec((0u64..100_000, 0..UNITS.len()), 1..5),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "  ", "\t", "\n"]),
        prop::sample::select(vec!["", " ", "\t ", "\r\n"]),
    )
}

#[test]
fn valid_durations_parse_to_their_seconds() {
    check("duration: valid forms", 4000, written(), |(parts, upper, before, after)| {
        let mut text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
        if upper {
            text = text.to_uppercase();
        }
        let input = format!("{before}{text}{after}");
        let secs: u64 = parts.iter().map(|(n, u)| n * UNITS[*u].1).sum();
        match HumanDuration::parse(&input) {
            Ok(d) => prop_assert_eq!(d.as_secs(), secs, "{:?}", input),
            Err(DurationError::Zero) => prop_assert_eq!(secs, 0, "{:?}", input),
            Err(DurationError::TooLong(_)) => prop_assert!(secs > MAX_SECS, "{:?}", input),
            Err(e) => return Err(TestCaseError::fail(format!("{input:?} refused: {e}"))),
        }
        Ok(())
    });
}

#[test]
fn a_bare_number_is_minutes() {
    check("duration: bare minutes", 2000, (1u64..10_000_000, "[ \t]{0,2}"), |(n, pad)| {
        match HumanDuration::parse(&format!("{pad}{n}{pad}")) {
            Ok(d) => prop_assert_eq!(d.as_secs(), n * 60),
            Err(DurationError::TooLong(_)) => prop_assert!(n * 60 > MAX_SECS),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
        Ok(())
    });
}

#[test]
fn every_duration_shown_back_parses_to_itself() {
    check("duration: display round trip", 4000, 1u64..=MAX_SECS, |secs| {
        let d = HumanDuration::from_secs(secs);
        prop_assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d), "{}", d);
        Ok(())
    });
}

#[test]
fn huge_numbers_are_refused_and_never_overflow() {
    let huge = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{19,60}",
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("{a}{b}")),
    ];
    let strategy = prop::collection::vec((huge, prop::sample::select(vec!["", "s", "m", "h", "d", "D"])), 1..4);
    check("duration: huge numbers", 3000, strategy, |parts| {
        let input: String = parts.iter().map(|(n, u)| format!("{n}{u}")).collect();
        // A model of the grammar: digits run on until a unit closes the number.
        let expected = || -> Option<u64> {
            let (mut total, mut digits, mut saw_unit) = (0u64, String::new(), false);
            for (n, u) in &parts {
                digits.push_str(n);
                if let Some((_, size)) = UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(u)) {
                    total = total.saturating_add(digits.parse::<u64>().ok()?.saturating_mul(*size));
                    digits.clear();
                    saw_unit = true;
                }
            }
            match (saw_unit, digits.is_empty()) {
                (true, true) => Some(total),
                (false, false) => Some(digits.parse::<u64>().ok()?.saturating_mul(60)), // bare minutes
                _ => None,
            }
        };
        let expected = expected();
        match (HumanDuration::parse(&input), expected) {
            (Ok(d), Some(secs)) => prop_assert_eq!(d.as_secs(), secs),
            (Err(DurationError::TooLong(_)), Some(secs)) => prop_assert!(secs > MAX_SECS, "{:?}", input),
            (Err(DurationError::Zero), Some(0)) => {}
            (Err(e), None) => clear(&input, &e)?,
            (got, want) => return Err(TestCaseError::fail(format!("{input:?}: got {got:?}, want {want:?}"))),
        }
        Ok(())
    });
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct InConfig {
    d: HumanDuration,
}

#[test]
fn durations_in_toml_never_panic_and_errors_name_the_text() {
    check("duration: in a TOML value", 2000, prop_oneof![near_text(), any::<String>()], |s| {
        let text = format!("d = {}", toml::Value::String(s.clone()));
        match (toml::from_str::<InConfig>(&text), HumanDuration::parse(&s)) {
            (Ok(c), Ok(d)) => prop_assert_eq!(c.d, d),
            (Err(e), Err(want)) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&want.to_string()), "{msg:?} does not say {want}");
            }
            (got, want) => return Err(TestCaseError::fail(format!("{s:?}: toml {got:?}, parse {want:?}"))),
        }
        Ok(())
    });
}
