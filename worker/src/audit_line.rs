//! The lines the bot posts to the audit channel (Slack mrkdwn): one per grant, extension, end,
//! denial and break-glass, each naming the person, the service, the cluster and the request
//! the same way, so the channel reads as one history and is easy to search.

/// Who asked for what, as every audit-channel line names it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub requester: &'a str,
    pub service: &'a str,
    pub cluster: &'a str,
    pub request: &'a str,
}

impl<'a> Subject<'a> {
    pub fn of(request: &'a crate::ledger::Request) -> Self {
        Self {
            requester: &request.requester_id,
            service: &request.service,
            cluster: &request.cluster,
            request: &request.id,
        }
    }

    /// `<what>: <@U…> → <service> in <cluster>[ until <time>] (request fc-…)`. `until` is Unix
    /// milliseconds, shown by Slack in each reader's own time zone.
    pub fn line(&self, what: &str, until_ms: Option<i64>) -> String {
        let until = until_ms.map(|ms| format!(" until <!date^{0}^{{time}}|{0}>", ms / 1000)).unwrap_or_default();
        format!(
            "{what}: <@{}> → {} in {}{until} (request {})",
            self.requester, self.service, self.cluster, self.request
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_subject_the_same_way_with_and_without_an_end_time() {
        let s = Subject { requester: "U1", service: "web", cluster: "prod", request: "fc-1" };
        assert_eq!(s.line("ended (expired)", None), "ended (expired): <@U1> → web in prod (request fc-1)");
        assert_eq!(
            s.line("granted", Some(1_795_000_000_123)),
            "granted: <@U1> → web in prod until <!date^1795000000^{time}|1795000000> (request fc-1)"
        );
    }
}
