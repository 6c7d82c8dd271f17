//! Who may connect to what: the `[policy]` part of the config and its evaluation. Per service
//! (and cluster): who may connect (Slack users, user groups, or everyone), who may not (an
//! explicit deny wins), the longest time box, whether approval is needed, who approves and in
//! which channel, and whether break-glass may skip the approval. Admins see and may end or
//! extend everyone's requests. Nothing is allowed unless a service entry allows it.
//!
//! Evaluation is pure: the caller resolves the user groups the entry names first (see
//! `slack::GroupDirectory`) and passes membership in.

use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use worker::duration::HumanDuration;

/// A Slack user (`U…`/`W…`), a user group (`S…`), or `*` (everyone in the workspace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Everyone,
    User(String),
    Group(String),
}

impl Principal {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let valid = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        match s.as_bytes().first() {
            _ if s == "*" => Ok(Principal::Everyone),
            Some(b'U') | Some(b'W') if valid(&s[1..]) => Ok(Principal::User(s.to_string())),
            Some(b'S') if valid(&s[1..]) => Ok(Principal::Group(s.to_string())),
            _ => Err(format!(
                "`{s}` is not a Slack user id (U…/W…), user-group id (S…) or `*` (find ids in a profile's ⋮ menu → Copy member ID)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Principal::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Everyone => f.write_str("everyone"),
            Principal::User(u) => write!(f, "<@{u}>"),
            Principal::Group(g) => write!(f, "<!subteam^{g}>"),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// See and end or extend everyone's requests; see everyone's history.
    #[serde(default)]
    pub admins: Vec<Principal>,
    /// Channel id for a one-line record of each grant, extension, end and denial.
    #[serde(default)]
    pub audit_channel: Option<String>,
    /// How long a request waits for a decision before it is cancelled.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout: HumanDuration,
    /// How long user-group membership (`usergroups.users.list`) is cached.
    #[serde(default = "default_group_cache_ttl")]
    pub group_cache_ttl: HumanDuration,
    /// `[[policy.services]]`; a request matches the entry with its service name and cluster,
    /// else the entry named `*` for its cluster.
    #[serde(default)]
    pub services: Vec<ServicePolicy>,
}

fn default_approval_timeout() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}
fn default_group_cache_ttl() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            admins: Vec::new(),
            audit_channel: None,
            approval_timeout: default_approval_timeout(),
            group_cache_ttl: default_group_cache_ttl(),
            services: Vec::new(),
        }
    }
}

/// `[[policy.services]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    /// The ECS service name, or `*` for every service of the cluster not listed by name.
    pub name: String,
    /// Defaults to `aws.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub allow: Vec<Principal>,
    /// Wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Principal>,
    /// The longest time box, extensions included; defaults to `time_box.max`.
    #[serde(default)]
    pub max_time_box: Option<HumanDuration>,
    #[serde(default)]
    pub approval: bool,
    #[serde(default)]
    pub approvers: Vec<Principal>,
    /// Channel id the approval card is posted to.
    #[serde(default)]
    pub approvals_channel: Option<String>,
    /// `--break-glass --reason …` skips the approval (and always alerts the audit channel).
    #[serde(default)]
    pub break_glass: bool,
}

/// The policy with defaults filled in, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Policy {
    pub admins: Vec<Principal>,
    pub audit_channel: Option<String>,
    pub approval_timeout: HumanDuration,
    pub group_cache_ttl: HumanDuration,
    pub services: Vec<ServiceRule>,
    pub default_cluster: String,
}

#[derive(Debug, Clone)]
pub struct ServiceRule {
    pub name: String,
    pub cluster: String,
    pub allow: Vec<Principal>,
    pub deny: Vec<Principal>,
    pub max_time_box: HumanDuration,
    pub approval: Option<Approval>,
    pub break_glass: bool,
}

#[derive(Debug, Clone)]
pub struct Approval {
    pub approvers: Vec<Principal>,
    pub channel: String,
}

/// What the policy says about one person and one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Allowed; `approval` names the channel when a decision is needed first.
    Allowed { approval: Option<String>, max_time_box: HumanDuration, break_glass: bool },
    /// Named in `deny`.
    Denied,
    /// Not in `allow`.
    NotAllowed,
    /// No entry for this service in this cluster; `suggestion` is the closest configured name.
    Unknown { suggestion: Option<String> },
}

impl Policy {
    pub fn from_settings(
        settings: PolicySettings,
        default_cluster: &str,
        time_box_max: HumanDuration,
    ) -> Result<Self, String> {
        let mut services = Vec::new();
        let audit_channel = settings.audit_channel.filter(|c| !c.trim().is_empty());
        for (i, s) in settings.services.into_iter().enumerate() {
            let at = format!("policy.services[{i}] ({})", s.name);
            if s.break_glass && audit_channel.is_none() {
                return Err(format!("{at}: break_glass = true needs policy.audit_channel, which it always alerts"));
            }
            if s.name != "*" && worker::ids::ServiceName::parse(&s.name).is_err() {
                return Err(format!("{at}: name must be an ECS service name or `*`"));
            }
            let approval = if s.approval {
                if s.approvers.is_empty() {
                    return Err(format!("{at}: approval = true needs approvers"));
                }
                let Some(channel) = s.approvals_channel.filter(|c| !c.trim().is_empty()) else {
                    return Err(format!("{at}: approval = true needs approvals_channel (a channel id, C…)"));
                };
                Some(Approval { approvers: s.approvers, channel })
            } else {
                None
            };
            let max_time_box = s.max_time_box.unwrap_or(time_box_max);
            if max_time_box > time_box_max {
                return Err(format!("{at}: max_time_box ({max_time_box}) is above time_box.max ({time_box_max})"));
            }
            services.push(ServiceRule {
                name: s.name,
                cluster: s.cluster.unwrap_or_else(|| default_cluster.to_string()),
                allow: s.allow,
                deny: s.deny,
                max_time_box,
                approval,
                break_glass: s.break_glass,
            });
        }
        Ok(Self {
            admins: settings.admins,
            audit_channel,
            approval_timeout: settings.approval_timeout,
            group_cache_ttl: settings.group_cache_ttl,
            services,
            default_cluster: default_cluster.to_string(),
        })
    }

    /// The entry for `service` in `cluster`: by name first, else the cluster's `*`.
    pub fn rule(&self, service: &str, cluster: &str) -> Option<&ServiceRule> {
        let in_cluster = || self.services.iter().filter(|r| r.cluster == cluster);
        in_cluster().find(|r| r.name == service).or_else(|| in_cluster().find(|r| r.name == "*"))
    }

    /// The cluster's `*` entry: its `deny` holds for every service of the cluster, named
    /// entries included (a named entry adds its own allow and deny; it cannot lift a
    /// cluster-wide deny).
    fn wildcard(&self, cluster: &str) -> Option<&ServiceRule> {
        self.services.iter().find(|r| r.cluster == cluster && r.name == "*")
    }

    /// Every group id a decision about `rule` (and admin status) may need.
    pub fn groups_for(&self, rule: Option<&ServiceRule>) -> HashSet<String> {
        let mut groups = HashSet::new();
        let mut add = |list: &[Principal]| {
            for p in list {
                if let Principal::Group(g) = p {
                    groups.insert(g.clone());
                }
            }
        };
        add(&self.admins);
        if let Some(rule) = rule {
            add(&rule.allow);
            add(&rule.deny);
            if let Some(wildcard) = self.wildcard(&rule.cluster) {
                add(&wildcard.deny);
            }
            if let Some(a) = &rule.approval {
                add(&a.approvers);
            }
        }
        groups
    }

    pub fn is_admin(&self, user: &str, in_group: &dyn Fn(&str) -> bool) -> bool {
        matches_any(&self.admins, user, in_group)
    }

    /// May `user` connect to `service` in `cluster`?
    pub fn access(&self, user: &str, service: &str, cluster: &str, in_group: &dyn Fn(&str) -> bool) -> Access {
        let Some(rule) = self.rule(service, cluster) else {
            let names = self.services.iter().filter(|r| r.cluster == cluster && r.name != "*").map(|r| r.name.as_str());
            return Access::Unknown { suggestion: closest(service, names) };
        };
        let denied_in_cluster = self.wildcard(cluster).is_some_and(|w| matches_any(&w.deny, user, in_group));
        if denied_in_cluster || matches_any(&rule.deny, user, in_group) {
            return Access::Denied;
        }
        if !matches_any(&rule.allow, user, in_group) {
            return Access::NotAllowed;
        }
        Access::Allowed {
            approval: rule.approval.as_ref().map(|a| a.channel.clone()),
            max_time_box: rule.max_time_box,
            break_glass: rule.break_glass,
        }
    }

    /// May `user` decide requests for `service` in `cluster`? Never their own (the caller checks).
    pub fn is_approver(&self, user: &str, service: &str, cluster: &str, in_group: &dyn Fn(&str) -> bool) -> bool {
        self.rule(service, cluster)
            .and_then(|r| r.approval.as_ref())
            .is_some_and(|a| matches_any(&a.approvers, user, in_group))
    }
}

fn matches_any(list: &[Principal], user: &str, in_group: &dyn Fn(&str) -> bool) -> bool {
    list.iter().any(|p| match p {
        Principal::Everyone => true,
        Principal::User(u) => u == user,
        Principal::Group(g) => in_group(g),
    })
}

/// The candidate nearest to `word` by edit distance, if near enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) + usize::from(c.starts_with(&word)) * 10)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Edit distance counting a swap of two neighbours as one edit (`wbe` → `web`), the commonest
/// typo (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_text: &str) -> Policy {
        let settings: PolicySettings = toml::from_str(toml_text).unwrap();
        Policy::from_settings(settings, "prod", HumanDuration::from_secs(4 * 3600)).unwrap()
    }

    const POLICY: &str = r#"
admins = ["U0ADMIN"]
audit_channel = "C0AUDIT"
[[services]]
name = "web"
allow = ["S0DEVS", "U0CAROL"]
deny = ["U0MALLORY"]
max_time_box = "1h"
[[services]]
name = "payments"
allow = ["*"]
deny = ["S0CONTRACTORS"]
approval = true
approvers = ["S0LEADS"]
approvals_channel = "C0APPROVE"
break_glass = true
"#;

    #[test]
    fn allow_deny_and_approval_follow_the_entry() {
        let p = policy(POLICY);
        let devs = |g: &str| g == "S0DEVS";
        let nobody = |_: &str| false;
        assert!(matches!(p.access("U0DAVE", "web", "prod", &devs), Access::Allowed { approval: None, .. }));
        assert!(matches!(p.access("U0CAROL", "web", "prod", &nobody), Access::Allowed { .. }));
        assert_eq!(p.access("U0EVE", "web", "prod", &nobody), Access::NotAllowed);
        // An explicit deny wins over a group that allows.
        assert_eq!(p.access("U0MALLORY", "web", "prod", &devs), Access::Denied);
        let contractor = |g: &str| g == "S0CONTRACTORS";
        assert_eq!(p.access("U0X", "payments", "prod", &contractor), Access::Denied);
        let Access::Allowed { approval, break_glass, .. } = p.access("U0X", "payments", "prod", &nobody) else {
            panic!()
        };
        assert_eq!((approval.as_deref(), break_glass), (Some("C0APPROVE"), true));
        assert!(p.is_approver("U0L", "payments", "prod", &|g| g == "S0LEADS"));
        assert!(!p.is_approver("U0L", "web", "prod", &|g| g == "S0LEADS"));
        assert!(p.is_admin("U0ADMIN", &nobody));
    }

    #[test]
    fn unknown_services_get_the_closest_name() {
        let p = policy(POLICY);
        assert_eq!(
            p.access("U1", "paymnts", "prod", &|_| false),
            Access::Unknown { suggestion: Some("payments".into()) }
        );
        assert_eq!(p.access("U1", "zzzzzz", "prod", &|_| false), Access::Unknown { suggestion: None });
        assert_eq!(p.access("U1", "web", "staging", &|_| false), Access::Unknown { suggestion: None });
        assert_eq!(closest("pay", ["payments", "web"].into_iter()).as_deref(), Some("payments"));
        assert_eq!(closest("wbe", ["payments", "web"].into_iter()).as_deref(), Some("web"));
    }

    #[test]
    fn the_clusters_wildcard_deny_holds_for_named_services_too() {
        let p = policy(
            "[[services]]\nname = \"*\"\nallow = [\"*\"]\ndeny = [\"U0GONE\", \"S0OFFBOARDED\"]\n\
             [[services]]\nname = \"web\"\nallow = [\"*\"]\n",
        );
        let offboarded = |g: &str| g == "S0OFFBOARDED";
        assert_eq!(p.access("U0GONE", "web", "prod", &|_| false), Access::Denied);
        assert_eq!(p.access("U0X", "web", "prod", &offboarded), Access::Denied);
        assert_eq!(p.access("U0GONE", "anything", "prod", &|_| false), Access::Denied);
        assert!(matches!(p.access("U0X", "web", "prod", &|_| false), Access::Allowed { .. }));
        // The group lookup for `web` asks about the cluster-wide deny's groups too.
        assert!(p.groups_for(p.rule("web", "prod")).contains("S0OFFBOARDED"));
    }

    #[test]
    fn a_wildcard_entry_covers_the_cluster() {
        let p = policy("[[services]]\nname = \"*\"\nallow = [\"*\"]\n");
        assert!(matches!(p.access("U1", "anything", "prod", &|_| false), Access::Allowed { .. }));
        assert!(matches!(p.access("U1", "anything", "other", &|_| false), Access::Unknown { .. }));
    }

    #[test]
    fn mistakes_in_the_policy_are_named() {
        let bad = |t: &str| {
            let s: Result<PolicySettings, _> = toml::from_str(t);
            match s {
                Err(e) => e.to_string(),
                Ok(s) => Policy::from_settings(s, "prod", HumanDuration::from_secs(3600)).unwrap_err(),
            }
        };
        assert!(bad("[[services]]\nname = \"web\"\nallow = [\"alice\"]\n").contains("alice"));
        assert!(bad("[[services]]\nname = \"web\"\napproval = true\n").contains("approvers"));
        assert!(
            bad("[[services]]\nname = \"web\"\napproval = true\napprovers = [\"U1\"]\n").contains("approvals_channel")
        );
        assert!(bad("[[services]]\nname = \"web\"\nmax_time_box = \"5h\"\n").contains("max_time_box"));
        assert!(bad("[[services]]\nname = \"web\"\nbreak_glass = true\n").contains("audit_channel"));
    }
}
