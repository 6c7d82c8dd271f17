//! The `/fargate` grammar: the text after the slash command, parsed into a `Command` or a
//! `CommandError` whose message tells the person what to type instead.

use worker::duration::{DurationError, HumanDuration};
use worker::ids::{ContainerName, IdError, ServiceName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `connect <service>[/<container>] [--for <duration>] [--task <id>]`
    Connect { service: ServiceName, container: Option<ContainerName>, ttl: Option<HumanDuration>, task: Option<String> },
    /// `help`, or nothing at all.
    Help,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("I don't know `{0}`.")]
    Unknown(String),
    #[error("Which service? Try `/fargate connect web`.")]
    MissingService,
    #[error("{0}")]
    BadName(#[from] IdError),
    #[error("`--for` wants a duration such as 30m or 2h: {0}")]
    BadDuration(DurationError),
    #[error("`{0}` needs a value, e.g. `--for 30m`.")]
    MissingValue(String),
    #[error("I don't know the option `{0}`.")]
    UnknownOption(String),
    #[error("Unexpected `{0}`.")]
    Unexpected(String),
    #[error("`{0}` is not a task id or ARN.")]
    BadTask(String),
    #[error("A quote is not closed.")]
    UnclosedQuote,
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
            Some(other) => Err(CommandError::Unknown(other.to_string())),
        }
    }
}

fn parse_connect<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Command, CommandError> {
    let mut target: Option<&str> = None;
    let mut ttl = None;
    let mut task = None;
    while let Some(word) = words.next() {
        if let Some(option) = word.strip_prefix("--") {
            let (name, inline) = match option.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (option, None),
            };
            match name {
                "for" => {
                    let value =
                        inline.or_else(|| words.next()).ok_or_else(|| CommandError::MissingValue("--for".into()))?;
                    ttl = Some(HumanDuration::parse(value).map_err(CommandError::BadDuration)?);
                }
                "task" => {
                    let value =
                        inline.or_else(|| words.next()).ok_or_else(|| CommandError::MissingValue("--task".into()))?;
                    let ok = !value.is_empty()
                        && value.len() <= 255
                        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:/_".contains(&b));
                    if !ok {
                        return Err(CommandError::BadTask(value.to_string()));
                    }
                    task = Some(value.to_string());
                }
                _ => return Err(CommandError::UnknownOption(word.to_string())),
            }
        } else if target.is_none() {
            target = Some(word);
        } else {
            return Err(CommandError::Unexpected(word.to_string()));
        }
    }
    let target = target.ok_or(CommandError::MissingService)?;
    let (service, container) = match target.split_once('/') {
        Some((s, c)) => (s, Some(ContainerName::parse(c)?)),
        None => (target, None),
    };
    Ok(Command::Connect { service: ServiceName::parse(service)?, container, ttl, task })
}

/// The usage text shown for `help` and after every mistake.
pub const USAGE: &str = "*Usage*\n\
• `/fargate connect <service>[/<container>] [--for <duration>] [--task <id>]` — a time-boxed shell in the service's running task (the newest healthy one unless you name one), e.g. `/fargate connect web --for 30m`\n\
• `/fargate help` — this message\n\
Durations look like `90s`, `15m`, `2h` or `1h30m`.";

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(service: &str, container: Option<&str>, ttl: Option<u64>) -> Command {
        Command::Connect {
            service: ServiceName::parse(service).unwrap(),
            container: container.map(|c| ContainerName::parse(c).unwrap()),
            ttl: ttl.map(HumanDuration::from_secs),
            task: None,
        }
    }

    #[test]
    fn parses_connect_forms() {
        assert_eq!(Command::parse("connect web"), Ok(connect("web", None, None)));
        assert_eq!(Command::parse("  CONNECT   web  --for 15m"), Ok(connect("web", None, Some(900))));
        assert_eq!(Command::parse("connect web/app --for=2h"), Ok(connect("web", Some("app"), Some(7200))));
        assert_eq!(Command::parse("connect --for 90s web"), Ok(connect("web", None, Some(90))));
        assert_eq!(Command::parse(""), Ok(Command::Help));
        let Ok(Command::Connect { task, .. }) = Command::parse("connect web --task 0f1e2d") else { panic!() };
        assert_eq!(task.as_deref(), Some("0f1e2d"));
        assert!(matches!(Command::parse("connect web --task a;b"), Err(CommandError::BadTask(_))));
        assert_eq!(Command::parse("help"), Ok(Command::Help));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert_eq!(Command::parse("conect web"), Err(CommandError::Unknown("conect".into())));
        assert_eq!(Command::parse("connect"), Err(CommandError::MissingService));
        assert!(matches!(Command::parse("connect web --for soon"), Err(CommandError::BadDuration(_))));
        assert_eq!(Command::parse("connect web --for"), Err(CommandError::MissingValue("--for".into())));
        assert!(matches!(Command::parse("connect web --ttl 5m"), Err(CommandError::UnknownOption(_))));
        assert!(matches!(Command::parse("connect web api"), Err(CommandError::Unexpected(_))));
        assert!(matches!(Command::parse("connect we$b"), Err(CommandError::BadName(_))));
        assert_eq!(Command::parse("connect \"web"), Err(CommandError::UnclosedQuote));
    }

    #[test]
    fn tokenizer_keeps_quoted_text() {
        assert_eq!(tokenize(r#"a "b c" 'd e' “f g”"#).unwrap(), vec!["a", "b c", "d e", "f g"]);
    }
}
