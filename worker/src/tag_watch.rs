//! The bastion's tags, read again. A person's Session Manager policy lets them onto an
//! instance whose `fargate-connect:requester` tag names them (and whose
//! `fargate-connect:managed` is `true`), so a bastion retagged for someone else is access
//! nobody approved. The module's tag guard keeps those tags the bot's; this is the check that
//! notices where the guard is not in place: at each reminder (the request is ended) and at
//! teardown, a tag that no longer says whose the bastion is goes to the audit channel.

use crate::audit_line::person_text;
use crate::aws::{ec2, AwsError};
use crate::ledger::{Ledger, LedgerError, Request};
use serde_json::json;

/// What the tags say now.
#[derive(Debug, PartialEq, Eq)]
pub enum Tags {
    /// Still the requester's, still managed (or no instance to look at).
    Intact,
    /// Someone changed them: what they say now.
    Changed { requester: Option<String>, managed: Option<String> },
}

/// Reads the request's bastion's tags.
pub async fn check(ec2_client: &aws_sdk_ec2::Client, request: &Request) -> Result<Tags, AwsError> {
    let Some(instance) = request.instance_id.as_deref() else { return Ok(Tags::Intact) };
    Ok(match ec2::bastion_tags(ec2_client, instance).await? {
        None => Tags::Intact,
        Some((requester, managed))
            if requester.as_deref() == Some(request.requester_id.as_str()) && managed.as_deref() == Some("true") =>
        {
            Tags::Intact
        }
        Some((requester, managed)) => Tags::Changed { requester, managed },
    })
}

/// Records a change (audit event, audit-channel line). Returns whether there was one.
pub async fn record(ledger: &Ledger, request: &Request, tags: &Tags, when: &str) -> Result<bool, LedgerError> {
    let Tags::Changed { requester, managed } = tags else { return Ok(false) };
    let shown = |v: &Option<String>| v.as_deref().map(person_text).unwrap_or_else(|| "(none)".into());
    let line = request.subject().line(
        &format!(
            ":rotating_light: bastion retagged (found at {when}: requester {}, managed {}); ending it",
            shown(requester),
            shown(managed)
        ),
        None,
    );
    let detail =
        json!({"instance_id": request.instance_id, "requester": requester, "managed": managed, "found_at": when});
    ledger.record_tag_change(&request.id, detail, line).await?;
    Ok(true)
}
