//! [`RecordSink`] over the official Kinesis client.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{Entry, EntryOutcome, RecordSink, SinkError};

#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(config: &aws_config::SdkConfig, stream: impl Into<String>) -> Self {
        KinesisSink {
            client: aws_sdk_kinesis::Client::new(config),
            stream: stream.into(),
        }
    }
}

const RETRYABLE: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
];

impl RecordSink for KinesisSink {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let records: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&e.partition_key)
                    .data(Blob::new(e.data.clone()))
                    .build()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| SinkError {
                retryable: false,
                code: "InvalidRequest".into(),
                message: e.to_string(),
            })?;
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| {
                use aws_smithy_runtime_api::client::result::SdkError;
                let retryable = match &e {
                    SdkError::TimeoutError(_)
                    | SdkError::DispatchFailure(_)
                    | SdkError::ResponseError(_) => true,
                    SdkError::ServiceError(s) => {
                        s.err().code().is_some_and(|c| RETRYABLE.contains(&c))
                    }
                    _ => false,
                };
                SinkError {
                    retryable,
                    code: e.code().unwrap_or("RequestFailed").to_owned(),
                    message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                }
            })?;
        Ok(out
            .records()
            .iter()
            .map(|r| match r.error_code() {
                None => EntryOutcome::Ok,
                Some(code) => EntryOutcome::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }
}
