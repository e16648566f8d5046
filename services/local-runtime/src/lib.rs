//! The whole pipeline on one machine: the local AWS emulator (`emulator`), the stack provisioned
//! from the environment file (`provision`), our Kinesis event-source mapping (`esm`, `aws`), and
//! the reconciliation that proves nothing was lost (`reconcile`). Every call goes through the
//! official AWS SDK with an endpoint override, so the same code drives a deployed stack.

pub mod authz;
pub mod aws;
pub mod checkpoint;
pub mod emulator;
pub mod esm;
pub mod faults;
pub mod provision;
pub mod queue;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod runtime;
pub mod smoke;

use std::path::Path;

/// The emulator's account and region.
pub const ACCOUNT_ID: &str = "000000000000";
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("local emulator: {0}")]
    Emulator(String),
    #[error("provisioning: {0}")]
    Provision(String),
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
    /// Clients for an emulator as the account's root (its administrator): fixed test
    /// credentials, the emulator's region, path-style S3, and trust in the emulator's certificate
    /// authority when it serves HTTPS.
    pub async fn for_endpoint(
        endpoint: &str,
        ca_certificate: Option<&Path>,
    ) -> Result<Clients, Error> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            // The tools ride out throttling and resets (and the fault injector) as a careful
            // operator's client would: more attempts than the SDK's default three.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ROOT_ACCESS_KEY,
                ROOT_ACCESS_KEY,
                None,
                None,
                "local-emulator",
            ));
        if let Some(ca) = ca_certificate {
            loader = loader.http_client(trusting(ca)?);
        }
        Ok(Self::from_config(endpoint, loader.load().await))
    }

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

    pub fn from_config(endpoint: &str, config: aws_config::SdkConfig) -> Clients {
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
            lambda: aws_sdk_lambda::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            config,
        }
    }
}

/// The emulator's root credentials (its account's administrator, which no policy limits).
pub const ROOT_ACCESS_KEY: &str = "test";

/// An HTTPS client that trusts only the certificate authority in `ca` (a PEM file).
fn trusting(ca: &Path) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, Error> {
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| Error::Emulator(format!("trusting {}: {e}", ca.display())))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}
