//! The audit history's hash chain and its readers. Each event's `hash` is SHA-256 over the
//! previous event's hash and this event's fields, so a row edited, deleted or inserted by hand
//! breaks the chain at that row; `verify` walks it and names the first broken link. `export`
//! writes the history of requests as CSV or JSON lines.
//!
//! The chain proves order and integrity, not completeness of the tail: deleting the newest rows
//! leaves a valid shorter chain. The audit channel (one line per grant, extension, end and
//! denial) is the copy outside the database that makes that visible.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;

/// One row of the audit history (`audit_events`), as the ledger reads it.
#[derive(Debug, Clone, FromRow)]
pub struct AuditEvent {
    pub seq: i64,
    pub request_id: Option<String>,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub detail: String,
    /// The chain (see `audit`); none on events written before it existed.
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The hash of an event, given the hash of the one before (`None` for the first).
pub fn event_hash(
    prev: Option<&str>,
    request_id: Option<&str>,
    at: i64,
    actor: &str,
    kind: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different events share an input.
    for field in [prev.unwrap_or(""), request_id.unwrap_or(""), &at.to_string(), actor, kind, detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event links to the one before it.
    Intact { events: u64, head: Option<String> },
    /// The first event whose link or hash does not hold.
    Broken { seq: i64, why: String },
}

/// Walks the chain incrementally: feed rows in `seq` order.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<String>,
    events: u64,
    broken: Option<(i64, String)>,
}

impl Verifier {
    pub fn push(&mut self, row: &AuditEvent) {
        if self.broken.is_some() {
            return;
        }
        self.events += 1;
        // Every event the bot writes carries its hash: one without (or with an empty one) was
        // written or changed by hand, wherever it is in the chain (a chain whose first events
        // lost their hashes must not pass as "not covered").
        let Some(hash) = row.hash.as_ref().filter(|h| !h.is_empty()) else {
            self.broken = Some((row.seq, "the event has no hash (inserted or changed by hand?)".into()));
            return;
        };
        if row.prev_hash != self.last {
            self.broken = Some((
                row.seq,
                "the event does not link to the one before it (an event before it was deleted or inserted)".into(),
            ));
            return;
        }
        let expected =
            event_hash(row.prev_hash.as_deref(), row.request_id.as_deref(), row.at, &row.actor, &row.kind, &row.detail);
        if &expected != hash {
            self.broken = Some((row.seq, "the event's content does not match its hash (it was edited)".into()));
            return;
        }
        self.last = Some(hash.clone());
    }

    pub fn verdict(self) -> Verdict {
        match self.broken {
            Some((seq, why)) => Verdict::Broken { seq, why },
            None => Verdict::Intact { events: self.events, head: self.last },
        }
    }
}

/// One request in the exported history.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    pub request_id: String,
    pub requester_id: String,
    pub requester_name: String,
    pub service: String,
    pub cluster: String,
    pub task_arn: Option<String>,
    pub container: Option<String>,
    pub reason: Option<String>,
    pub break_glass: bool,
    pub approver: Option<String>,
    pub instance_id: Option<String>,
    pub state: String,
    pub requested_at: String,
    pub ready_at: Option<String>,
    pub ended_at: Option<String>,
    pub how_it_ended: Option<String>,
    pub ended_by: Option<String>,
}

pub const EXPORT_COLUMNS: [&str; 17] = [
    "request_id",
    "requester_id",
    "requester_name",
    "service",
    "cluster",
    "task_arn",
    "container",
    "reason",
    "break_glass",
    "approver",
    "instance_id",
    "state",
    "requested_at",
    "ready_at",
    "ended_at",
    "how_it_ended",
    "ended_by",
];

/// The SQL behind `ExportRow` (`ExportSource`), newest first, from `$1` (ms) on.
pub const EXPORT_SQL: &str = "SELECT id AS request_id, requester_id, requester_name, service, cluster, task_arn,
        container, reason, break_glass, decided_by AS approver, instance_id, state, created_at, ready_at, ended_at,
        end_reason AS how_it_ended, ended_by
     FROM requests WHERE created_at >= $1 ORDER BY created_at DESC, id";

/// A row of `EXPORT_SQL` as stored (times in ms), before it is written out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportSource {
    pub request_id: String,
    pub requester_id: String,
    pub requester_name: String,
    pub service: String,
    pub cluster: String,
    pub task_arn: Option<String>,
    pub container: Option<String>,
    pub reason: Option<String>,
    pub break_glass: i64,
    pub approver: Option<String>,
    pub instance_id: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub how_it_ended: Option<String>,
    pub ended_by: Option<String>,
}

/// A ledger time (UTC ms) as RFC 3339 to the second, `2026-11-30T21:48:29Z`.
pub fn rfc3339_seconds(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

impl From<ExportSource> for ExportRow {
    fn from(r: ExportSource) -> Self {
        ExportRow {
            request_id: r.request_id,
            requester_id: r.requester_id,
            requester_name: r.requester_name,
            service: r.service,
            cluster: r.cluster,
            task_arn: r.task_arn,
            container: r.container,
            reason: r.reason,
            break_glass: r.break_glass != 0,
            approver: r.approver,
            instance_id: r.instance_id,
            state: r.state,
            requested_at: rfc3339_seconds(r.created_at),
            ready_at: r.ready_at.map(rfc3339_seconds),
            ended_at: r.ended_at.map(rfc3339_seconds),
            how_it_ended: r.how_it_ended,
            ended_by: r.ended_by,
        }
    }
}

/// RFC 4180: quote a field that holds a comma, quote, CR or LF; double its quotes. A field that
/// a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) gets a leading `'`.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_string() };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

impl ExportRow {
    pub fn csv_line(&self) -> String {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            self.request_id.clone(),
            self.requester_id.clone(),
            self.requester_name.clone(),
            self.service.clone(),
            self.cluster.clone(),
            o(&self.task_arn),
            o(&self.container),
            o(&self.reason),
            self.break_glass.to_string(),
            o(&self.approver),
            o(&self.instance_id),
            self.state.clone(),
            self.requested_at.clone(),
            o(&self.ready_at),
            o(&self.ended_at),
            o(&self.how_it_ended),
            o(&self.ended_by),
        ]
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: Option<&str>, detail: &str) -> AuditEvent {
        let hash = event_hash(prev, Some("fc-1"), seq, "U1", "k", detail);
        AuditEvent {
            seq,
            request_id: Some("fc-1".into()),
            at: seq,
            actor: "U1".into(),
            kind: "k".into(),
            detail: detail.into(),
            prev_hash: prev.map(str::to_string),
            hash: Some(hash),
        }
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut rows: Vec<AuditEvent> = Vec::new();
        for seq in 1..=n {
            let prev = rows.last().and_then(|r| r.hash.clone());
            rows.push(row(seq, prev.as_deref(), "{}"));
        }
        rows
    }

    fn verify(rows: &[AuditEvent]) -> Verdict {
        let mut v = Verifier::default();
        rows.iter().for_each(|r| v.push(r));
        v.verdict()
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_named() {
        let rows = chain(5);
        assert!(matches!(verify(&rows), Verdict::Intact { events: 5, .. }));
        let mut edited = rows.clone();
        edited[2].detail = "{\"x\":1}".into();
        assert!(matches!(verify(&edited), Verdict::Broken { seq: 3, ref why } if why.contains("edited")));
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert!(matches!(verify(&deleted), Verdict::Broken { seq: 3, ref why } if why.contains("deleted")));
        let mut unhashed = rows.clone();
        unhashed[4].hash = None;
        assert!(matches!(verify(&unhashed), Verdict::Broken { seq: 5, .. }));
        // Hashes stripped from the first events, or emptied, break it too.
        let mut stripped = rows.clone();
        stripped[0].hash = None;
        stripped[1].hash = None;
        assert!(matches!(verify(&stripped), Verdict::Broken { seq: 1, ref why } if why.contains("no hash")));
        let mut emptied = rows;
        emptied[2].hash = Some(String::new());
        assert!(matches!(verify(&emptied), Verdict::Broken { seq: 3, .. }));
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
