use std::fmt;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A storage call that failed. `retryable` tells throttling, timeouts and server errors (worth
/// another attempt by the platform) from errors a retry cannot fix (access denied, no such bucket).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StoreError {
    pub operation: &'static str,
    pub target: String,
    pub retryable: bool,
    pub message: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable {
            "retryable"
        } else {
            "permanent"
        };
        write!(
            f,
            "{} {} failed ({kind}): {}",
            self.operation, self.target, self.message
        )
    }
}

impl StoreError {
    pub fn new(
        operation: &'static str,
        target: impl Into<String>,
        retryable: bool,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            operation,
            target: target.into(),
            retryable,
            message: message.into(),
        }
    }
}

/// Error codes that mean "slow down" or "try again" across S3 and DynamoDB.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// Classifies an SDK error by its kind and service error code.
pub(crate) fn from_sdk<E, R>(
    operation: &'static str,
    target: &str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => e.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    };
    let message = match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
        None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
    };
    StoreError::new(operation, target, retryable, message)
}
