//! The request state machine (ARCHITECTURE.md), stored as text.
//!
//! `requested → awaiting_approval → approved | denied`, then
//! `provisioning → ready → ending → ended`; `failed` and `cancelled` from any non-final state.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    Requested,
    AwaitingApproval,
    Approved,
    Denied,
    Provisioning,
    Ready,
    Ending,
    Ended,
    Failed,
    Cancelled,
}

impl RequestState {
    pub const ALL: [RequestState; 10] = [
        Self::Requested,
        Self::AwaitingApproval,
        Self::Approved,
        Self::Denied,
        Self::Provisioning,
        Self::Ready,
        Self::Ending,
        Self::Ended,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Ending => "ending",
            Self::Ended => "ended",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Final states: nothing more happens to the request (teardown of a failed one aside).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Denied | Self::Ended | Self::Failed | Self::Cancelled)
    }

    /// States in which a request still holds, or may yet hold, AWS resources or attention.
    pub fn is_open(&self) -> bool {
        !self.is_final()
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| format!("unknown request state `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_text() {
        for state in RequestState::ALL {
            assert_eq!(state.as_str().parse::<RequestState>().unwrap(), state);
        }
        assert!("nope".parse::<RequestState>().is_err());
    }
}
