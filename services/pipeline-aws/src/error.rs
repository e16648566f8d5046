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

/// Error codes that mean "slow down" or "try again", across the services the pipeline calls
/// (S3, DynamoDB, Kinesis, KMS through them).
pub const RETRYABLE_CODES: &[&str] = &[
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
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "KMSThrottlingException",
];

/// How a failed AWS call is to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// Throttling, a server error, a timeout or a broken connection: worth another attempt.
    pub retryable: bool,
    /// The call may have taken effect (a timeout, a lost response, a connection that broke after
    /// the request may have been written): a retry of a non-idempotent call may apply it twice.
    /// Only a failure to connect at all is certainly not applied.
    pub ambiguous: bool,
}

/// The one classification of SDK errors, for the stores and the producer alike.
pub fn classify<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Classification
where
    E: ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let ambiguous = match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout() || d.is_other(),
        _ => false,
    };
    let retryable = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => e.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    };
    Classification {
        retryable,
        ambiguous,
    }
}

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
    let retryable = classify(&err).retryable;
    let message = match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
        None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
    };
    StoreError::new(operation, target, retryable, message)
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type Error = SdkError<aws_sdk_s3::operation::put_object::PutObjectError, ()>;

    fn service(code: &str) -> Error {
        let e = aws_sdk_s3::operation::put_object::PutObjectError::generic(
            ErrorMetadata::builder().code(code).build(),
        );
        SdkError::service_error(e, ())
    }

    #[test]
    fn throttling_and_server_errors_of_every_service_are_retryable_and_were_not_applied() {
        for code in [
            "SlowDown",
            "ProvisionedThroughputExceededException",
            "KMSThrottlingException",
            "InternalFailure",
        ] {
            assert_eq!(
                classify(&service(code)),
                Classification {
                    retryable: true,
                    ambiguous: false
                },
                "{code}"
            );
        }
        for code in [
            "AccessDenied",
            "ConditionalCheckFailedException",
            "ValidationException",
        ] {
            assert!(!classify(&service(code)).retryable, "{code}");
        }
    }

    #[test]
    fn a_broken_connection_may_have_been_applied_a_refused_one_not() {
        let io: Error = SdkError::dispatch_failure(ConnectorError::io("reset".into()));
        assert_eq!(
            classify(&io),
            Classification {
                retryable: true,
                ambiguous: true
            }
        );
        let timeout: Error = SdkError::timeout_error("slow");
        assert_eq!(
            classify(&timeout),
            Classification {
                retryable: true,
                ambiguous: true
            }
        );
    }
}
