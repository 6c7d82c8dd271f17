//! The `/fargate` grammar: the text after the slash command, parsed into a `Command` or a
//! `CommandError` whose message tells the person what to type instead.

use worker::duration::{DurationError, HumanDuration};
use worker::ids::{ContainerName, IdError, RequestId, ServiceName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `connect <service>[/<container>] [--cluster <c>] [--for <duration>] [--reason "<text>"]
    /// [--task <id>] [--break-glass]`
    Connect(ConnectArgs),
    /// `list`: your open requests (everyone's, for admins).
    List,
    /// `extend <request> [<duration>]`
    Extend { request: RequestId, by: Option<HumanDuration> },
    /// `end <request>`
    End { request: RequestId },
    /// `history [<service>] [@user] [--since 7d] [--page n]`
    History { service: Option<ServiceName>, user: Option<String>, since: Option<HumanDuration>, page: u32 },
    /// `services`: what you may connect to.
    Services,
    /// `help`, or nothing at all.
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectArgs {
    pub service: Option<ServiceName>,
    pub container: Option<ContainerName>,
    pub cluster: Option<String>,
    pub ttl: Option<HumanDuration>,
    pub reason: Option<String>,
    pub task: Option<String>,
    pub break_glass: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("I don't know `{0}`.{hint}", hint = suggest(.0))]
    Unknown(String),
    #[error("Which service? Try `/fargate connect web`, or `/fargate services` to see yours.")]
    MissingService,
    #[error("Which request? Try `/fargate {0} fc-7k3m9q2d` (`/fargate list` shows yours).")]
    MissingRequest(&'static str),
    #[error("{0}")]
    BadName(#[from] IdError),
    #[error("`{0}` wants a duration such as 30m or 2h: {1}")]
    BadDuration(String, DurationError),
    #[error("`{0}` needs a value, e.g. `{0} {1}`.")]
    MissingValue(String, &'static str),
    #[error("I don't know the option `{0}`.")]
    UnknownOption(String),
    #[error("Unexpected `{0}`.")]
    Unexpected(String),
    #[error("`{0}` is not a task id or ARN.")]
    BadTask(String),
    #[error("`{0}` is not a cluster name.")]
    BadCluster(String),
    #[error("`{0}` is not a page number.")]
    BadPage(String),
    #[error("Mention the person as @name so Slack sends who it is (`{0}` is only text).")]
    BadUser(String),
    #[error("A reason is at most 500 characters.")]
    ReasonTooLong,
    #[error("`--break-glass` needs `--reason \"what is on fire\"`.")]
    BreakGlassNeedsReason,
    #[error("A quote is not closed.")]
    UnclosedQuote,
}

const SUBCOMMANDS: [&str; 7] = ["connect", "list", "extend", "end", "history", "services", "help"];

fn suggest(word: &str) -> String {
    match crate::policy::closest(word, SUBCOMMANDS.into_iter()) {
        Some(s) => format!(" Did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Splits on whitespace, keeping "double" or 'single' quoted parts (and Slack's “smart”
/// quotes) together.
pub fn tokenize(text: &str) -> Result<Vec<String>, CommandError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_token = false;
    for c in text.chars() {
        match quote {
            Some(q) if c == q || (q == '“' && c == '”') => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' || c == '“' => {
                quote = Some(c);
                in_token = true;
            }
            None if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            None => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return Err(CommandError::UnclosedQuote);
    }
    if in_token {
        tokens.push(current);
    }
    Ok(tokens)
}

impl Command {
    pub fn parse(text: &str) -> Result<Self, CommandError> {
        let tokens = tokenize(text)?;
        let mut words = tokens.iter().map(String::as_str);
        match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("help") | Some("-h") | Some("--help") => Ok(Command::Help),
            Some("connect") => parse_connect(words),
            Some("list") | Some("ls") => no_more(words).map(|()| Command::List),
            Some("services") => no_more(words).map(|()| Command::Services),
            Some("extend") => {
                let request = RequestId::parse(words.next().ok_or(CommandError::MissingRequest("extend"))?)?;
                let by = words.next().map(|w| duration("extend", w)).transpose()?;
                no_more(words)?;
                Ok(Command::Extend { request, by })
            }
            Some("end") | Some("stop") => {
                let request = RequestId::parse(words.next().ok_or(CommandError::MissingRequest("end"))?)?;
                no_more(words)?;
                Ok(Command::End { request })
            }
            Some("history") => parse_history(words),
            Some(other) => Err(CommandError::Unknown(other.to_string())),
        }
    }
}

fn no_more<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<(), CommandError> {
    match words.next() {
        Some(extra) => Err(CommandError::Unexpected(extra.to_string())),
        None => Ok(()),
    }
}

fn duration(option: &str, value: &str) -> Result<HumanDuration, CommandError> {
    HumanDuration::parse(value).map_err(|e| CommandError::BadDuration(option.to_string(), e))
}

/// `--name value` or `--name=value`: the option's name and its value, if it takes one.
fn option_value<'a>(
    word: &str,
    inline: Option<&'a str>,
    words: &mut impl Iterator<Item = &'a str>,
    example: &'static str,
) -> Result<&'a str, CommandError> {
    inline.or_else(|| words.next()).ok_or_else(|| CommandError::MissingValue(word.to_string(), example))
}

fn split_option(word: &str) -> Option<(&str, Option<&str>)> {
    let option = word.strip_prefix("--").or_else(|| word.strip_prefix("—"))?;
    Some(match option.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (option, None),
    })
}

fn parse_connect<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Command, CommandError> {
    let mut args = ConnectArgs::default();
    let mut target: Option<&str> = None;
    while let Some(word) = words.next() {
        let Some((name, inline)) = split_option(word) else {
            if target.is_some() {
                return Err(CommandError::Unexpected(word.to_string()));
            }
            target = Some(word);
            continue;
        };
        let flag = format!("--{name}");
        match name {
            "for" => args.ttl = Some(duration("--for", option_value(&flag, inline, &mut words, "30m")?)?),
            "cluster" => {
                let value = option_value(&flag, inline, &mut words, "prod")?;
                if ServiceName::parse(value).is_err() {
                    return Err(CommandError::BadCluster(value.to_string()));
                }
                args.cluster = Some(value.to_string());
            }
            "reason" => {
                let value = option_value(&flag, inline, &mut words, "\"INC-123: stuck queue\"")?.trim();
                if value.chars().count() > 500 {
                    return Err(CommandError::ReasonTooLong);
                }
                args.reason = Some(value.to_string()).filter(|r| !r.is_empty());
            }
            "task" => {
                let value = option_value(&flag, inline, &mut words, "0f1e2d3c")?;
                let ok = !value.is_empty()
                    && value.len() <= 255
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:/_".contains(&b));
                if !ok {
                    return Err(CommandError::BadTask(value.to_string()));
                }
                args.task = Some(value.to_string());
            }
            "break-glass" if inline.is_none() => args.break_glass = true,
            _ => return Err(CommandError::UnknownOption(word.to_string())),
        }
    }
    let target = target.ok_or(CommandError::MissingService)?;
    let (service, container) = match target.split_once('/') {
        Some((s, c)) => (s, Some(ContainerName::parse(c)?)),
        None => (target, None),
    };
    if args.break_glass && args.reason.is_none() {
        return Err(CommandError::BreakGlassNeedsReason);
    }
    args.service = Some(ServiceName::parse(service)?);
    args.container = container;
    Ok(Command::Connect(args))
}

/// A user as Slack escapes it in command text: `<@U123>` or `<@U123|name>`; a bare id is taken too.
fn parse_user(word: &str) -> Result<String, CommandError> {
    let inner = word.strip_prefix("<@").and_then(|w| w.strip_suffix('>')).map(|w| w.split('|').next().unwrap_or(w));
    let id = inner.unwrap_or(word);
    match crate::policy::Principal::parse(id) {
        Ok(crate::policy::Principal::User(id)) => Ok(id),
        _ => Err(CommandError::BadUser(word.to_string())),
    }
}

fn parse_history<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Command, CommandError> {
    let (mut service, mut user, mut since, mut page) = (None, None, None, 1u32);
    while let Some(word) = words.next() {
        if let Some((name, inline)) = split_option(word) {
            let flag = format!("--{name}");
            match name {
                "since" => since = Some(duration("--since", option_value(&flag, inline, &mut words, "7d")?)?),
                "page" => {
                    let value = option_value(&flag, inline, &mut words, "2")?;
                    page = value.parse().ok().filter(|p| *p >= 1).ok_or_else(|| CommandError::BadPage(value.into()))?;
                }
                _ => return Err(CommandError::UnknownOption(word.to_string())),
            }
        } else if word.starts_with("<@") || word.starts_with('@') {
            user = Some(parse_user(word)?);
        } else if service.is_none() {
            service = Some(ServiceName::parse(word)?);
        } else {
            return Err(CommandError::Unexpected(word.to_string()));
        }
    }
    Ok(Command::History { service, user, since, page })
}

/// The usage text shown for `help` and after every mistake.
pub const USAGE: &str = "*Usage*\n\
• `/fargate connect <service>[/<container>] [--for <duration>] [--reason \"<text>\"] [--cluster <c>] [--task <id>]` — a time-boxed shell in the service's running task (the newest healthy one unless you name one), e.g. `/fargate connect web --for 30m --reason \"INC-42\"`\n\
• `/fargate connect <service> --break-glass --reason \"<text>\"` — skip approval in an emergency, where the policy allows it (the audit channel is told)\n\
• `/fargate list` — your open requests and live bastions\n\
• `/fargate extend <request> [<duration>]` — more time, within the service's maximum\n\
• `/fargate end <request>` — end it now; the bastion and its access go at once\n\
• `/fargate history [<service>] [@person] [--since 7d] [--page 2]` — the audited access history, newest first\n\
• `/fargate services` — what you may connect to, and whether approval is needed\n\
• `/fargate help` — this message\n\
Durations look like `90s`, `15m`, `2h`, `1h30m` or `7d`. Request ids look like `fc-7k3m9q2d`.";

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(service: &str, container: Option<&str>, ttl: Option<u64>) -> Command {
        Command::Connect(ConnectArgs {
            service: Some(ServiceName::parse(service).unwrap()),
            container: container.map(|c| ContainerName::parse(c).unwrap()),
            ttl: ttl.map(HumanDuration::from_secs),
            ..Default::default()
        })
    }

    #[test]
    fn parses_connect_forms() {
        assert_eq!(Command::parse("connect web"), Ok(connect("web", None, None)));
        assert_eq!(Command::parse("  CONNECT   web  --for 15m"), Ok(connect("web", None, Some(900))));
        assert_eq!(Command::parse("connect web/app --for=2h"), Ok(connect("web", Some("app"), Some(7200))));
        assert_eq!(Command::parse("connect --for 90s web"), Ok(connect("web", None, Some(90))));
        assert_eq!(Command::parse(""), Ok(Command::Help));
        let Ok(Command::Connect(args)) =
            Command::parse("connect web --task 0f1e2d --cluster staging --reason “INC-42: queue stuck” --break-glass")
        else {
            panic!()
        };
        assert_eq!(args.task.as_deref(), Some("0f1e2d"));
        assert_eq!(args.cluster.as_deref(), Some("staging"));
        assert_eq!(args.reason.as_deref(), Some("INC-42: queue stuck"));
        assert!(args.break_glass);
        assert!(matches!(Command::parse("connect web --task a;b"), Err(CommandError::BadTask(_))));
        assert_eq!(Command::parse("connect web --break-glass"), Err(CommandError::BreakGlassNeedsReason));
        assert_eq!(Command::parse("help"), Ok(Command::Help));
    }

    #[test]
    fn parses_the_other_commands() {
        let id = RequestId::parse("fc-7k3m9q2d").unwrap();
        assert_eq!(Command::parse("list"), Ok(Command::List));
        assert_eq!(Command::parse("services"), Ok(Command::Services));
        assert_eq!(
            Command::parse("extend FC-7K3M9Q2D 15m"),
            Ok(Command::Extend { request: id.clone(), by: Some(HumanDuration::from_secs(900)) })
        );
        assert_eq!(Command::parse("extend 7k3m9q2d"), Ok(Command::Extend { request: id.clone(), by: None }));
        assert_eq!(Command::parse("end fc-7k3m9q2d"), Ok(Command::End { request: id }));
        assert_eq!(
            Command::parse("history web <@U0ALICE|alice> --since 7d --page 2"),
            Ok(Command::History {
                service: Some(ServiceName::parse("web").unwrap()),
                user: Some("U0ALICE".into()),
                since: Some(HumanDuration::from_secs(7 * 86400)),
                page: 2
            })
        );
        assert_eq!(Command::parse("history"), Ok(Command::History { service: None, user: None, since: None, page: 1 }));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert_eq!(Command::parse("conect web"), Err(CommandError::Unknown("conect".into())));
        assert!(CommandError::Unknown("conect".into()).to_string().contains("Did you mean `connect`?"));
        assert_eq!(Command::parse("connect"), Err(CommandError::MissingService));
        assert!(matches!(Command::parse("connect web --for soon"), Err(CommandError::BadDuration(..))));
        assert!(matches!(Command::parse("connect web --for"), Err(CommandError::MissingValue(..))));
        assert!(matches!(Command::parse("connect web --ttl 5m"), Err(CommandError::UnknownOption(_))));
        assert!(matches!(Command::parse("connect web api"), Err(CommandError::Unexpected(_))));
        assert!(matches!(Command::parse("connect we$b"), Err(CommandError::BadName(_))));
        assert_eq!(Command::parse("connect \"web"), Err(CommandError::UnclosedQuote));
        assert_eq!(Command::parse("extend"), Err(CommandError::MissingRequest("extend")));
        assert!(matches!(Command::parse("end fc-nope"), Err(CommandError::BadName(_))));
        assert!(matches!(Command::parse("history @alice"), Err(CommandError::BadUser(_))));
        assert!(matches!(Command::parse("history --page 0"), Err(CommandError::BadPage(_))));
        assert!(matches!(Command::parse("list everything"), Err(CommandError::Unexpected(_))));
    }

    #[test]
    fn tokenizer_keeps_quoted_text() {
        assert_eq!(tokenize(r#"a "b c" 'd e' “f g”"#).unwrap(), vec!["a", "b c", "d e", "f g"]);
    }
}
