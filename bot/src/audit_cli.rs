//! `fargate-connect audit verify` and `audit export`: the audit history's chain checked end to
//! end, and the history of requests written to stdout as CSV or JSON lines.

use std::io::Write;
use worker::audit::{Verdict, EXPORT_COLUMNS};
use worker::duration::HumanDuration;
use worker::ledger::{now_ms, Ledger};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// Checks the chain. Returns the report and whether it holds.
pub async fn verify(ledger: &Ledger) -> anyhow::Result<(String, bool)> {
    Ok(match ledger.verify_audit().await? {
        Verdict::Intact { events, head } => {
            let mut text = format!("audit chain intact: {events} events");
            if let Some(head) = head {
                text.push_str(&format!("\nhead {head}"));
            }
            (text, true)
        }
        Verdict::Broken { seq, why } => (format!("audit chain BROKEN at event {seq}: {why}"), false),
    })
}

/// Writes the requests created in the last `since` (all when None), newest first.
pub async fn export(
    ledger: &Ledger,
    format: Format,
    since: Option<HumanDuration>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let since_ms = since.map(|d| now_ms() - d.as_secs() as i64 * 1000).unwrap_or(0);
    let rows = ledger.export(since_ms).await?;
    if format == Format::Csv {
        writeln!(out, "{}", EXPORT_COLUMNS.join(","))?;
    }
    for row in &rows {
        match format {
            Format::Csv => writeln!(out, "{}", row.csv_line())?,
            Format::Jsonl => writeln!(out, "{}", serde_json::to_string(row)?)?,
        }
    }
    out.flush()?;
    Ok(rows.len())
}
