//! The lines the bot posts to the audit channel (Slack mrkdwn): one per grant, extension, end,
//! denial and break-glass, each naming the person, the service, the cluster and the request
//! the same way, so the channel reads as one history and is easy to search. A leaf: the ledger
//! builds these from its requests (`Request::subject`), this module knows nothing of it.

/// A person's own words (a `--reason`), made safe to show in Slack mrkdwn: `&`, `<` and `>`
/// escaped as Slack asks, so `<!here>`, `<!channel>`, `<!subteam^…>` or `<@U…>` typed by one
/// person ping nobody through the bot; line breaks and other control characters folded into one
/// space, so nobody can forge an "Approved by" line or a second audit line.
pub fn person_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            if !space {
                out.push(' ');
                space = true;
            }
            continue;
        }
        space = false;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Who asked for what, as every audit-channel line names it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub requester: &'a str,
    pub service: &'a str,
    pub cluster: &'a str,
    pub request: &'a str,
}

impl Subject<'_> {
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
    fn a_persons_text_pings_nobody_and_stays_on_one_line() {
        assert_eq!(person_text("<!here> look"), "&lt;!here&gt; look");
        assert_eq!(person_text("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(person_text("<!subteam^S0123|@oncall>"), "&lt;!subteam^S0123|@oncall&gt;");
        assert_eq!(person_text("<@U0LEAD>"), "&lt;@U0LEAD&gt;");
        assert_eq!(person_text("INC-42 & co"), "INC-42 &amp; co");
        assert_eq!(
            person_text("fix\n*Approved by* <@U0LEAD>\r\n\u{2028}granted: x"),
            "fix *Approved by* &lt;@U0LEAD&gt; granted: x"
        );
        assert_eq!(person_text("  INC-42: queue stuck  "), "INC-42: queue stuck");
    }

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
