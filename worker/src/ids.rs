//! Domain identifiers, each parsed once at the boundary: request ids people can read aloud,
//! ECS service and container names.

use std::fmt;

/// Alphabet for request ids: lowercase Crockford base32 without i, l, o, u, so an id read off a
/// screen cannot be mistyped as another.
const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_LEN: usize = 8;

/// A request id as shown to people: `fc-` and 8 characters, e.g. `fc-7k3m9q2d`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{0}` is not a request id (they look like fc-7k3m9q2d)")]
    RequestId(String),
    #[error("`{0}` is not a valid ECS service name (letters, digits, - and _, up to 255)")]
    Service(String),
    #[error("`{0}` is not a valid container name (letters, digits, - and _, up to 255)")]
    Container(String),
}

impl RequestId {
    /// 40 random bits. The fallback when a [`RequestIds`] id is taken.
    pub fn generate() -> Self {
        use rand::Rng;
        Self::from_bits(rand::thread_rng().gen::<u64>())
    }

    /// The low 40 bits as 8 base32 characters, most significant first (so ids sort as the
    /// numbers do).
    fn from_bits(bits: u64) -> Self {
        let tail: String = (0..ID_LEN).rev().map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize] as char).collect();
        Self(format!("fc-{tail}"))
    }

    /// Accepts `fc-xxxxxxxx` and the bare 8 characters, in any case.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let lower = input.trim().to_ascii_lowercase();
        let tail = lower.strip_prefix("fc-").unwrap_or(&lower);
        if tail.len() == ID_LEN && tail.bytes().all(|b| ALPHABET.contains(&b)) {
            Ok(Self(format!("fc-{tail}")))
        } else {
            Err(IdError::RequestId(input.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Request ids for one writer, ordered by time: the high 24 bits are the second of creation
/// (wrapping every 194 days), the low 16 bits go through a random permutation of 0..65536 per
/// second (a random start and an odd step), so ids drawn in one second are distinct and do not
/// look consecutive to a person reading them.
///
/// Why: the request id keys the requests table and the audit and job indexes. Random keys
/// land each new row on a different B-tree leaf, so every commit rewrote a WAL page per row
/// per index; ids that share their leading characters append to the same leaf instead
/// (docs/PERFORMANCE.md). An id is still checked for uniqueness by the database: another
/// process in the same second, or more than 65,536 ids in a second, can collide, and the
/// caller then falls back to [`RequestId::generate`].
#[derive(Debug)]
pub struct RequestIds {
    second: u64,
    start: u64,
    step: u64,
    drawn: u64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    pub fn new() -> Self {
        Self { second: u64::MAX, start: 0, step: 1, drawn: 0 }
    }

    pub fn next_at(&mut self, unix_ms: i64) -> RequestId {
        use rand::Rng;
        let second = (unix_ms.max(0) as u64 / 1000) & 0xFF_FFFF;
        if second != self.second {
            let mut rng = rand::thread_rng();
            self.second = second;
            self.start = rng.gen::<u64>() & 0xFFFF;
            // Odd, so k ↦ start + k·step is a permutation; at least 1,024 away from 0 either
            // way round, so neighbours differ above their last two characters.
            self.step = 1025 + 2 * rng.gen_range(0..31_744);
            self.drawn = 0;
        }
        let low = (self.start + self.drawn * self.step) & 0xFFFF;
        self.drawn += 1;
        RequestId::from_bits((second << 16) | low)
    }
}

fn is_ecs_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// An ECS service name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if is_ecs_name(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::Service(input.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ECS container name within a task definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if is_ecs_name(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::Container(input.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_and_reject_ambiguous_letters() {
        let id = RequestId::generate();
        assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        assert_eq!(RequestId::parse(&id.as_str()[3..].to_uppercase()).unwrap(), id);
        assert!(RequestId::parse("fc-abcdefgi").is_err());
        assert!(RequestId::parse("fc-abc").is_err());
    }

    #[test]
    fn ids_of_one_second_share_a_prefix_are_distinct_and_sort_by_time() {
        let mut ids = RequestIds::new();
        let t = 1_795_000_000_000;
        let first: Vec<RequestId> = (0..65_536).map(|_| ids.next_at(t + 300)).collect();
        let distinct: std::collections::HashSet<&RequestId> = first.iter().collect();
        assert_eq!(distinct.len(), 65_536, "one second's ids are a permutation");
        assert!(first.iter().all(|id| id.as_str()[..7] == first[0].as_str()[..7]));
        let later = ids.next_at(t + 1_000);
        assert!(first.iter().all(|id| *id < later), "the next second sorts after");
        assert_eq!(RequestId::parse(later.as_str()).unwrap(), later);
        // Consecutive draws do not differ only in the last character.
        assert_ne!(first[0].as_str()[..10], first[1].as_str()[..10]);
    }

    #[test]
    fn names() {
        assert!(ServiceName::parse("web").is_ok());
        assert!(ServiceName::parse("api_v2-blue").is_ok());
        assert!(ServiceName::parse("-web").is_err());
        assert!(ServiceName::parse("we b").is_err());
        assert!(ServiceName::parse("").is_err());
    }
}
