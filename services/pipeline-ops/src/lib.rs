//! The operations library: what the tools do to a stack, on any endpoint (a deployed stack, or the
//! local one): the SDK clients (`Clients`), the stack's description (`stack`), our Kinesis
//! event-source mapping (`esm`, its checkpoints and its ports over the SDK in `aws`), reading a
//! queue (`queue`), reconciliation (`reconcile`), dead-letter redrive (`redrive`), replay
//! (`replay`) and the smoke test (`smoke`). The local stack (emulator, provisioning, the running
//! local pipeline) is the `local-stack` crate, built on this one.

pub mod aws;
pub mod checkpoint;
pub mod esm;
pub mod faults;
pub mod queue;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod smoke;
pub mod stack;

use std::path::Path;

pub use stack::Stack;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service}: {message}")]
    Aws {
        service: &'static str,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("reconciliation: {0}")]
    Reconcile(String),
    #[error("replay: {0}")]
    Replay(String),
    #[error("event-source mapping: {0}")]
    Mapping(String),
    #[error("event-source mapping lease: {0}")]
    Lease(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn aws(service: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Aws {
            service,
            message: e.to_string(),
        }
    }
}

/// How long one attempt of an operations tool's AWS call may take (reconciliation, redrive,
/// replay, the local event-source mapping, the deploy checks) before the SDK abandons it and
/// retries: a connection that never answers costs this, not a hung tool. Longer than the
/// functions' ([`pipeline_aws::ATTEMPT_TIMEOUT`]): a tool reads whole shards and objects, from a
/// laptop.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A synchronous Lambda Invoke answers when the function returns: an attempt may take as long as
/// Lambda's longest timeout (15 minutes), and a retried attempt would invoke it again.
pub const INVOKE_ATTEMPT_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(15 * 60 + 30);

/// The SDK clients, built once against one endpoint.
#[derive(Debug, Clone)]
pub struct Clients {
    pub endpoint: String,
    pub config: aws_config::SdkConfig,
    pub kinesis: aws_sdk_kinesis::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub iam: aws_sdk_iam::Client,
    pub kms: aws_sdk_kms::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// The same endpoint as `role_arn`, through STS AssumeRole with these clients' credentials;
    /// the session is renewed before it expires.
    pub async fn assume(&self, role_arn: &str, session: &str) -> Clients {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(session)
            .configure(&self.config)
            .build()
            .await;
        let config = self
            .config
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
            .build();
        Self::from_config(&self.endpoint, config)
    }

    /// The clients over `config`, with the tools' attempt timeouts ([`ATTEMPT_TIMEOUT`], and
    /// [`INVOKE_ATTEMPT_TIMEOUT`] for Lambda).
    pub fn from_config(endpoint: &str, config: aws_config::SdkConfig) -> Clients {
        let config = config
            .to_builder()
            .timeout_config(pipeline_aws::timeouts(ATTEMPT_TIMEOUT))
            .build();
        let lambda = aws_sdk_lambda::config::Builder::from(&config)
            .timeout_config(pipeline_aws::timeouts(INVOKE_ATTEMPT_TIMEOUT))
            .build();
        // Path-style against the emulator only: a deployed stack's buckets are virtual hosts.
        let s3 = pipeline_aws::s3::client(&config);
        Clients {
            endpoint: endpoint.to_owned(),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            s3,
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            lambda: aws_sdk_lambda::Client::from_conf(lambda),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tool's client gives up on an attempt that never answers (how the SDK honours the
    /// timeout is tested with the functions' configuration in `pipeline-aws`); Lambda's waits for
    /// the longest function, so that a slow invocation is not abandoned and invoked again.
    #[test]
    fn the_tools_clients_bound_each_attempt_and_lambda_waits_for_the_longest_function() {
        let clients = test_support::block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "k", "s", None, None, "test",
                ))
                .load()
                .await;
            Clients::from_config("http://127.0.0.1:1", config)
        });
        let attempt = |t: Option<&aws_config::timeout::TimeoutConfig>| {
            t.and_then(aws_config::timeout::TimeoutConfig::operation_attempt_timeout)
        };
        let tools = [
            attempt(clients.kinesis.config().timeout_config()),
            attempt(clients.s3.config().timeout_config()),
            attempt(clients.dynamodb.config().timeout_config()),
            attempt(clients.sqs.config().timeout_config()),
            attempt(clients.events.config().timeout_config()),
        ];
        assert_eq!(tools, [Some(ATTEMPT_TIMEOUT); 5]);
        assert_eq!(
            attempt(clients.lambda.config().timeout_config()),
            Some(INVOKE_ATTEMPT_TIMEOUT)
        );
        assert!(INVOKE_ATTEMPT_TIMEOUT > std::time::Duration::from_secs(15 * 60));
    }
}
