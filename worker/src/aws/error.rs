//! The one error type of the AWS boundary: which call failed, AWS's error code, and whether
//! trying again later can help.

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

const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "ServerException",
    "Unavailable",
];

impl AwsError {
    pub fn config(message: &str) -> Self {
        Self { action: "configure", code: None, message: message.into(), retryable: false }
    }

    pub fn from_sdk<E, R>(action: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
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
                let retryable = code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c));
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
