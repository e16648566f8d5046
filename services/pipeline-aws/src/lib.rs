//! The imperative shell's building blocks shared by the functions, the operations library and the local stack:
//! the storage traits the handlers are generic over, their AWS SDK implementations (the in-memory
//! ones for tests are in `test-support`), CloudWatch Embedded Metric Format output and logging
//! set-up.

pub mod dynamodb;
pub mod emf;
pub mod env;
pub mod error;
pub mod s3;
pub mod secrets;
pub mod store;

pub use error::StoreError;
pub use store::{
    Lease, LeaseOutcome, ListedObject, MarkOutcome, MetadataItem, MetadataStore, ObjectCatalog,
    ObjectStore, OutputPage, OutputSet, OutputsOutcome, PendingObject, ProcessedUpdate, RawItem,
    RecordOutcome, StoredObject, delete_output_set, read_output_set, write_output_set,
};

/// Where a handler reads the time (the metadata items' times, leases): [`wall_clock`] in the
/// functions; tests set their own.
pub type Clock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

/// The system's clock.
pub fn wall_clock() -> Clock {
    std::sync::Arc::new(chrono::Utc::now)
}

/// How long one attempt of an AWS call may take before the SDK abandons it and retries it (a
/// timed-out attempt is transient): a connection that never answers then costs this, not the
/// function's whole timeout and its invocation. The functions' calls take milliseconds in AWS,
/// a 6 MB PUT well under a second.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The SDK's default connect timeout, kept when the attempt timeout is set.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3100);

/// The SDK's timeouts with `attempt_timeout` for each attempt of a call, and the SDK's default
/// connect timeout.
pub fn timeouts(attempt_timeout: std::time::Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt_timeout)
        .build()
}

/// Loads the AWS configuration once: the standard credential chain and region,
/// `AWS_ENDPOINT_URL` (or an explicit endpoint) for emulators, and [`ATTEMPT_TIMEOUT`].
pub async fn load_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    load_config_with(endpoint_url, ATTEMPT_TIMEOUT).await
}

/// [`load_config`] with another attempt timeout.
pub async fn load_config_with(
    endpoint_url: Option<&str>,
    attempt_timeout: std::time::Duration,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts(attempt_timeout));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A server that accepts connections and never answers, as a hung connection does: every
    /// attempt times out, and the call fails, retryable, instead of hanging until the function's
    /// timeout.
    #[tokio::test]
    async fn a_call_that_never_gets_an_answer_fails_retryably_within_its_attempts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let config = load_config_with(Some(&url), Duration::from_millis(300))
            .await
            .to_builder()
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("k", "s", None, None, "test"),
            ))
            .build();
        let store = s3::S3Store::new(&config);
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), store.get("b", "k"))
            .await
            .expect("the call gives up by itself, long before 30 s");
        let err = result.expect_err("nobody answered");
        assert!(err.retryable, "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        held.abort();
    }
}
