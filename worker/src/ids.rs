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

/// Request ids for one writer, always increasing and following the clock: the high 24 bits
/// are the second of creation (wrapping every 194 days), the low 16 bits count within that
/// second from a random start, so the first id of each second does not look like the last one
/// of the one before.
///
/// Why: the request id keys the requests table and the audit and job indexes. Random keys put
/// each new row on a different B-tree leaf, and every commit rewrote a page per row per index
/// in the WAL; increasing keys append to the same leaves (docs/PERFORMANCE.md). A burst of
/// more than 32,768 in a second runs on into the next second's numbers, which only moves the
/// clock part ahead. An id is still checked for uniqueness by the database (another writer,
/// or a restart, can have used it); after a collision the caller draws a random id and
/// [`RequestIds::jump`]s past the taken numbers.
#[derive(Debug, Default)]
pub struct RequestIds {
    last: u64,
}

/// 40 bits of id.
const ID_BITS_MASK: u64 = (1 << 40) - 1;
/// How far ahead of the clock the counter may run (a long burst) before it is taken to be a
/// wrap of the 24-bit seconds instead: one hour.
const MAX_AHEAD: u64 = 3600 << 16;

impl RequestIds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_at(&mut self, unix_ms: i64) -> RequestId {
        use rand::Rng;
        let floor = ((unix_ms.max(0) as u64 / 1000) & 0xFF_FFFF) << 16;
        let next = if self.last >= floor && self.last - floor < MAX_AHEAD {
            self.last + 1
        } else {
            floor | rand::thread_rng().gen_range(0..1 << 15)
        };
        self.last = next & ID_BITS_MASK;
        RequestId::from_bits(self.last)
    }

    /// Moves past numbers found taken, by a random 1..=4,096.
    pub fn jump(&mut self) {
        use rand::Rng;
        self.last += rand::thread_rng().gen_range(1..=4096);
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
    fn ids_increase_follow_the_clock_and_survive_a_burst_and_a_wrap() {
        let mut ids = RequestIds::new();
        let t = 1_795_000_000_000;
        let burst: Vec<RequestId> = (0..100_000).map(|_| ids.next_at(t + 300)).collect();
        assert!(burst.windows(2).all(|w| w[0] < w[1]), "each id sorts after the one before");
        assert_eq!(RequestId::parse(burst[0].as_str()).unwrap(), burst[0]);
        // A second later than the burst reached: back on the clock, with a random start.
        let later = ids.next_at(t + 10_000);
        assert!(later > burst[burst.len() - 1]);
        assert_eq!(later.as_str()[..6], RequestIds::new().next_at(t + 10_000).as_str()[..6]);
        // The 24-bit seconds wrap (as it did at 2026-11-20 08:08:32 UTC): the counter follows the
        // clock down again.
        let wrap_ms: i64 = 107 * (1 << 24) * 1000;
        let before_wrap = ids.next_at(wrap_ms - 1_000);
        let wrapped = ids.next_at(wrap_ms + 1_000);
        assert!(wrapped < before_wrap);
        assert!(wrapped < ids.next_at(wrap_ms + 1_000));
        // After a collision the counter moves on.
        let before = ids.next_at(wrap_ms + 1_000);
        ids.jump();
        assert!(ids.next_at(wrap_ms + 1_000) > before);
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
