//! The imperative shell's building blocks shared by both functions and the local runtime:
//! the storage traits the handlers are generic over, their AWS SDK implementations, an in-memory
//! implementation with fault injection for tests, CloudWatch Embedded Metric Format output and
//! logging set-up.

pub mod dynamodb;
pub mod emf;
pub mod env;
pub mod error;
pub mod memory;
pub mod notification;
pub mod s3;
pub mod store;

pub use error::StoreError;
pub use store::{
    Lease, LeaseOutcome, ListedObject, MarkOutcome, MetadataItem, MetadataStore, ObjectCatalog,
    ObjectStore, OutputPage, OutputSet, OutputsOutcome, PendingObject, ProcessedUpdate, RawItem,
    RecordOutcome, StoredObject, delete_output_set, read_output_set, write_output_set,
};

/// Loads the AWS configuration once: the standard credential chain and region, and
/// `AWS_ENDPOINT_URL` (or an explicit endpoint) for emulators.
pub async fn load_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
