//! The whole pipeline on one machine: the local AWS emulator (`emulator`), the stack provisioned
//! from the environment file (`provision`), the authorisation model it enforces (`authz`), the
//! fault injector (`faults`), and the running local pipeline with our event-source mapping
//! (`runtime`). What the tools do to a stack, here or deployed, is the `pipeline-ops` crate.

pub mod authz;
pub mod emulator;
pub mod faults;
pub mod provision;
pub mod runtime;

use std::path::Path;

use pipeline_ops::Clients;

/// The emulator's account and region.
pub const ACCOUNT_ID: &str = "000000000000";
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("local emulator: {0}")]
    Emulator(String),
    #[error("provisioning: {0}")]
    Provision(String),
    /// A failed AWS call or file operation ([`Error::aws`], [`Error::io`]), as the operations
    /// library reports them.
    #[error(transparent)]
    Ops(#[from] pipeline_ops::Error),
    #[error(transparent)]
    Environment(#[from] pipeline_config::ConfigError),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Ops(pipeline_ops::Error::io(path, source))
    }

    pub fn aws(service: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Ops(pipeline_ops::Error::aws(service, e))
    }
}

/// Clients for an emulator as the account's root (its administrator): fixed test
/// credentials, the emulator's region, path-style S3, and trust in the emulator's certificate
/// authority when it serves HTTPS.
pub async fn admin_clients(
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
    Ok(Clients::from_config(endpoint, loader.load().await))
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
