//! Replay refusal: a correctly signed request is accepted once. Slack signs each delivery
//! afresh, so a second request with the same signature inside the five-minute window is
//! someone replaying a captured one (a click on Approve or End, a `connect`).
//!
//! The memory is bounded: at most `CAPACITY` signatures (8 bytes of each, kept with its
//! timestamp: about 1.1 MiB in all; 2.7 s of a flood at 12,000 requests a second, hours at
//! Slack's pace).
//! When it is full the oldest is forgotten and its timestamp becomes the floor: a request
//! signed at or before the floor can no longer be proven fresh and is refused too. At Slack's
//! own pace the memory spans the whole window; under a flood it spans seconds, and a request
//! is answered within milliseconds of being signed, so nobody honest meets the floor.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Signatures remembered at most.
pub const CAPACITY: usize = 32_768;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Replay {
    #[error("this signed request was already received (a replay)")]
    Seen,
    #[error("this signed request is older than the replay memory reaches")]
    BeyondMemory,
}

#[derive(Debug, Default)]
struct Seen {
    /// Signature keys remembered.
    keys: HashSet<u64>,
    /// Arrival order, for forgetting the oldest.
    order: VecDeque<(u64, i64)>,
    /// Requests signed at or before this are refused (their signatures may be forgotten).
    floor: i64,
}

#[derive(Debug)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
    capacity: usize,
    window_secs: i64,
}

impl ReplayGuard {
    pub fn new(window_secs: i64) -> Self {
        Self::with_capacity(window_secs, CAPACITY)
    }

    pub fn with_capacity(window_secs: i64, capacity: usize) -> Self {
        Self { seen: Mutex::new(Seen::default()), capacity: capacity.max(1), window_secs }
    }

    /// Records a verified request (its `signature` header and `timestamp`) at `now`; refuses
    /// one already seen, or one the memory no longer covers.
    pub fn check(&self, signature: &str, timestamp: i64, now: i64) -> Result<(), Replay> {
        let key = key_of(signature);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // What fell out of the window would be refused as stale anyway: forget it.
        while seen.order.front().is_some_and(|&(_, at)| at < now - self.window_secs) {
            if let Some((old, _)) = seen.order.pop_front() {
                seen.keys.remove(&old);
            }
        }
        if seen.keys.contains(&key) {
            return Err(Replay::Seen);
        }
        if timestamp <= seen.floor {
            return Err(Replay::BeyondMemory);
        }
        // Full: forget the oldest, and refuse from now on whatever was signed no later. (Made
        // room for first, so neither collection ever grows past the capacity.)
        while seen.order.len() >= self.capacity {
            if let Some((old, at)) = seen.order.pop_front() {
                seen.keys.remove(&old);
                seen.floor = seen.floor.max(at);
            }
        }
        seen.keys.insert(key);
        seen.order.push_back((key, timestamp));
        Ok(())
    }
}

/// The first 8 bytes of the HMAC (hex after `v0=`): an attacker cannot choose them.
fn key_of(signature: &str) -> u64 {
    let hex = signature.strip_prefix("v0=").unwrap_or(signature);
    hex.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or_else(|| {
        // Not hex (verification already refused such a header): hash it all the same.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        signature.hash(&mut h);
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: u64) -> String {
        format!("v0={n:016x}{}", "0".repeat(48))
    }

    #[test]
    fn a_signature_is_accepted_once() {
        let guard = ReplayGuard::new(300);
        assert_eq!(guard.check(&sig(1), 1000, 1000), Ok(()));
        assert_eq!(guard.check(&sig(2), 1000, 1000), Ok(()));
        assert_eq!(guard.check(&sig(1), 1000, 1001), Err(Replay::Seen));
    }

    #[test]
    fn a_full_memory_refuses_what_it_can_no_longer_vouch_for() {
        let guard = ReplayGuard::with_capacity(300, 2);
        assert_eq!(guard.check(&sig(1), 1000, 1000), Ok(()));
        assert_eq!(guard.check(&sig(2), 1001, 1001), Ok(()));
        // The third forgets the first: the floor moves to its timestamp.
        assert_eq!(guard.check(&sig(3), 1002, 1002), Ok(()));
        assert_eq!(guard.check(&sig(1), 1000, 1002), Err(Replay::BeyondMemory));
        assert_eq!(guard.check(&sig(4), 1003, 1003), Ok(()));
        assert_eq!(guard.check(&sig(3), 1002, 1003), Err(Replay::Seen));
    }

    #[test]
    fn what_left_the_window_is_forgotten_without_raising_the_floor() {
        let guard = ReplayGuard::with_capacity(300, 10);
        assert_eq!(guard.check(&sig(1), 1000, 1000), Ok(()));
        assert_eq!(guard.check(&sig(2), 1400, 1400), Ok(()));
        let seen = guard.seen.lock().unwrap();
        assert_eq!((seen.keys.len(), seen.floor), (1, 0));
    }
}
