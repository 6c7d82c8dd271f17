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
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let tail: String = (0..ID_LEN).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
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
    fn names() {
        assert!(ServiceName::parse("web").is_ok());
        assert!(ServiceName::parse("api_v2-blue").is_ok());
        assert!(ServiceName::parse("-web").is_err());
        assert!(ServiceName::parse("we b").is_err());
        assert!(ServiceName::parse("").is_err());
    }
}
