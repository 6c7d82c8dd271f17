//! Process-wide counters for `GET /metrics` (Prometheus text format): requests by outcome, time
//! from request to ready, AWS errors by action and code, Slack delivery retries and failures.
//! Gauges that the database knows better (live bastions) are read at scrape time by the bot.
//! Plain atomics and one small map: incrementing never blocks on I/O.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-ready histogram.
pub const READY_BUCKETS: [f64; 10] = [15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0];

pub struct Metrics {
    /// (name, labels) → count.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    ready_buckets: [AtomicU64; READY_BUCKETS.len()],
    ready_count: AtomicU64,
    /// Milliseconds, so the sum stays an integer.
    ready_sum_ms: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    counters: Mutex::new(BTreeMap::new()),
    ready_buckets: [const { AtomicU64::new(0) }; READY_BUCKETS.len()],
    ready_count: AtomicU64::new(0),
    ready_sum_ms: AtomicU64::new(0),
};

/// Label values are ours or AWS error codes; keep them to a safe alphabet all the same.
fn clean(value: &str) -> String {
    value.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')).take(64).collect()
}

impl Metrics {
    fn add(&self, name: &'static str, labels: String) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.entry((name, labels)).or_default() += 1;
    }

    /// A request reached an outcome: created, already_open, denied_by_policy, approved, denied,
    /// approval_expired, ready, failed, ended.
    pub fn request(&self, outcome: &str) {
        self.add("fargate_connect_requests_total", format!("outcome=\"{}\"", clean(outcome)));
    }

    pub fn aws_error(&self, action: &str, code: Option<&str>) {
        let labels = format!("action=\"{}\",code=\"{}\"", clean(action), clean(code.unwrap_or("none")));
        self.add("fargate_connect_aws_errors_total", labels);
    }

    pub fn slack_retry(&self, reason: &str) {
        self.add("fargate_connect_slack_delivery_retries_total", format!("reason=\"{}\"", clean(reason)));
    }

    pub fn slack_failure(&self) {
        self.add("fargate_connect_slack_delivery_failures_total", String::new());
    }

    /// Time from the request to its link being ready.
    pub fn ready_after(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let secs = ms as f64 / 1000.0;
        for (i, bound) in READY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.ready_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ready_count.fetch_add(1, Ordering::Relaxed);
        self.ready_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Everything counted so far, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let help = [
            ("fargate_connect_requests_total", "Requests by outcome."),
            (
                "fargate_connect_aws_errors_total",
                "AWS API errors by action and code (expected ones included, e.g. NoSuchEntity on idempotent lookups).",
            ),
            ("fargate_connect_slack_delivery_retries_total", "Slack deliveries that will be retried, by reason."),
            ("fargate_connect_slack_delivery_failures_total", "Slack messages given up after their last attempt."),
        ];
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (name, text) in help {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} counter");
            let mut any = false;
            for ((n, labels), value) in counters.iter().filter(|((n, _), _)| *n == name) {
                any = true;
                if labels.is_empty() {
                    let _ = writeln!(out, "{n} {value}");
                } else {
                    let _ = writeln!(out, "{n}{{{labels}}} {value}");
                }
            }
            if !any && name == "fargate_connect_slack_delivery_failures_total" {
                let _ = writeln!(out, "{name} 0");
            }
        }
        let name = "fargate_connect_time_to_ready_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a request to its link being ready.\n# TYPE {name} histogram");
        for (i, bound) in READY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.ready_buckets[i].load(Ordering::Relaxed));
        }
        let count = self.ready_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.ready_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics {
            counters: Mutex::new(BTreeMap::new()),
            ready_buckets: [const { AtomicU64::new(0) }; READY_BUCKETS.len()],
            ready_count: AtomicU64::new(0),
            ready_sum_ms: AtomicU64::new(0),
        };
        m.request("ready");
        m.request("ready");
        m.aws_error("RunInstances", Some("InsufficientInstanceCapacity"));
        m.ready_after(20_000);
        m.ready_after(100_000);
        let text = m.render();
        assert!(text.contains("fargate_connect_requests_total{outcome=\"ready\"} 2"), "{text}");
        assert!(text.contains(
            "fargate_connect_aws_errors_total{action=\"RunInstances\",code=\"InsufficientInstanceCapacity\"} 1"
        ));
        assert!(text.contains("fargate_connect_time_to_ready_seconds_bucket{le=\"15\"} 0"), "{text}");
        assert!(text.contains("fargate_connect_time_to_ready_seconds_bucket{le=\"30\"} 1"), "{text}");
        assert!(text.contains("fargate_connect_time_to_ready_seconds_bucket{le=\"120\"} 2"), "{text}");
        assert!(text.contains("fargate_connect_time_to_ready_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("fargate_connect_time_to_ready_seconds_sum 120"), "{text}");
        assert!(text.contains("fargate_connect_slack_delivery_failures_total 0"), "{text}");
    }
}
