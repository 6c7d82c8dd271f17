//! Human durations as people type them in Slack and in the config file: `90s`, `15m`, `2h`,
//! `1h30m`, `7d`. One newtype, parsed once at the boundary, shown back the same way.

use std::fmt;
use std::time::Duration;

/// A whole number of seconds, written the way people write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("`{0}` is not a duration; write it like 90s, 15m, 2h or 1h30m")]
    Invalid(String),
    #[error("a duration must be more than zero")]
    Zero,
    #[error("`{0}` is too long; a duration is at most 3650d (ten years)")]
    TooLong(String),
}

/// The longest duration anyone means (ten years): anything longer is a typo or an attack, and
/// capping here keeps every later `secs * 1000` (UTC ms) and `as i64` far from overflowing.
pub const MAX_SECS: u64 = 3650 * 86_400;

impl HumanDuration {
    /// Parses `90s`, `15m`, `2h`, `1d`, and combinations such as `1h30m`. A bare number is
    /// minutes, as people mean it when they type `/fargate connect web --for 30`.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let text = input.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(DurationError::Invalid(input.to_string()));
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            let minutes: u64 = text.parse().map_err(|_| DurationError::Invalid(input.into()))?;
            return Self::from_secs_checked(minutes.saturating_mul(60), input);
        }
        let mut total: u64 = 0;
        let mut number = String::new();
        let mut saw_unit = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(DurationError::Invalid(input.to_string())),
            };
            let value: u64 = number.parse().map_err(|_| DurationError::Invalid(input.into()))?;
            total = total.saturating_add(value.saturating_mul(unit));
            number.clear();
            saw_unit = true;
        }
        if !number.is_empty() || !saw_unit {
            return Err(DurationError::Invalid(input.to_string()));
        }
        Self::from_secs_checked(total, input)
    }

    fn from_secs_checked(secs: u64, input: &str) -> Result<Self, DurationError> {
        if secs == 0 {
            return Err(DurationError::Zero);
        }
        if secs > MAX_SECS {
            return Err(DurationError::TooLong(input.trim().chars().take(40).collect()));
        }
        Ok(Self(Duration::from_secs(secs)))
    }

    pub fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{}", secs / size, unit)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_type() {
        assert_eq!(HumanDuration::parse("90s").unwrap().as_secs(), 90);
        assert_eq!(HumanDuration::parse("15m").unwrap().as_secs(), 900);
        assert_eq!(HumanDuration::parse("2h").unwrap().as_secs(), 7200);
        assert_eq!(HumanDuration::parse("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(HumanDuration::parse("7d").unwrap().as_secs(), 604_800);
        assert_eq!(HumanDuration::parse(" 30 ").unwrap().as_secs(), 1800);
        assert_eq!(HumanDuration::parse("2H").unwrap().as_secs(), 7200);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "h", "1x", "1.5h", "-5m", "m5", "10m5", "forever"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(HumanDuration::parse("0m"), Err(DurationError::Zero));
    }

    #[test]
    fn displays_back_compactly() {
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "1m30s");
        assert_eq!(HumanDuration::from_secs(3600).to_string(), "1h");
    }
}
