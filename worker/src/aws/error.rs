//! The one error type of the AWS boundary: which call failed, AWS's error code, and whether
//! trying again later can help.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;

#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    /// The API action, e.g. `RunInstances`.
    pub action: &'static str,
    /// AWS's error code, e.g. `InsufficientInstanceCapacity`, when AWS answered.
    pub code: Option<String>,
    pub message: String,
    /// Throttling, 5xx, timeouts and connection failures: trying again later can help.
    pub retryable: bool,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.action, self.message),
            None => write!(f, "{} failed: {}", self.action, self.message),
        }
    }
}

/// Codes that mean "try again later", from each service's API reference ("Common Errors" and
/// each action's errors): throttling, and the services' own server-side failures. Most come
/// with a 5xx or 429 status, which counts on its own (below); these cover the ones that AWS
/// sends with a 400 (EC2's `RequestLimitExceeded`, IAM's `Throttling`, SSM's
/// `ThrottlingException`, ECS's `ThrottlingException`) and keep the list honest per service.
const RETRYABLE_CODES: &[&str] = &[
    // Every service (AWS common errors).
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    // EC2.
    "RequestLimitExceeded",
    "Unavailable",
    "InsufficientReservedInstanceCapacity",
    // IAM: `ServiceFailure` (500); a concurrent change to the same entity (409).
    "ServiceFailure",
    "ConcurrentModification",
    "ConcurrentModificationException",
    // SSM: `InternalServerError` (500); `TooManyUpdates` (its throttle on writes).
    "InternalServerError",
    "TooManyUpdates",
    // ECS: `ServerException` (500).
    "ServerException",
];

/// Whether an answer with this HTTP status is worth another try: 429 (throttled) and every
/// 5xx (the service's fault), whatever the code says.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

impl AwsError {
    pub fn config(message: &str) -> Self {
        Self { action: "configure", code: None, message: message.into(), retryable: false }
    }

    pub fn from_sdk<E>(action: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let label = match &err {
            SdkError::ServiceError(service) => service.err().code().unwrap_or("unknown"),
            SdkError::TimeoutError(_) => "timeout",
            SdkError::DispatchFailure(_) => "dispatch_failure",
            SdkError::ResponseError(_) => "response_error",
            _ => "construction_failure",
        };
        crate::metrics::METRICS.aws_error(action, Some(label));
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().map(str::to_string);
                let message = inner.message().unwrap_or("").to_string();
                let status = service.raw().status().as_u16();
                let retryable =
                    retryable_status(status) || code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c));
                Self { action, code, message, retryable }
            }
            SdkError::ConstructionFailure(_) => {
                Self { action, code: None, message: DisplayErrorContext(&err).to_string(), retryable: false }
            }
            _ => Self { action, code: None, message: DisplayErrorContext(&err).to_string(), retryable: true },
        }
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_5xx_and_429_is_worth_another_try_and_4xx_is_not() {
        for status in [429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
