//! [`RecordSink`] over the official Kinesis client.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use pipeline_aws::error::{Classification, classify};

use pipeline_core::kpl::ShardRange;

use crate::{Entry, EntryOutcome, RecordSink, SinkError};

#[derive(Debug, Clone)]
pub struct KinesisSink {
    /// For ListShards, with the SDK's retries.
    client: aws_sdk_kinesis::Client,
    /// For PutRecords, without them: [`crate::send_batch`] retries itself, so that it knows when
    /// a retried call may have put its records already (the SDK would retry such a call unseen).
    put_client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    pub fn new(config: &aws_config::SdkConfig, stream: impl Into<String>) -> Self {
        let put_client = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(config)
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .build(),
        );
        KinesisSink {
            client: aws_sdk_kinesis::Client::new(config),
            put_client,
            stream: stream.into(),
        }
    }
}

/// An SDK error as a [`SinkError`], classified as the stores classify theirs
/// ([`pipeline_aws::error::classify`]).
fn sink_error<E, R>(e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let Classification {
        retryable,
        ambiguous,
    } = classify(&e);
    SinkError {
        retryable,
        ambiguous,
        code: e.code().unwrap_or("RequestFailed").to_owned(),
        message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    }
}

impl RecordSink for KinesisSink {
    async fn shards(&self) -> Result<Vec<ShardRange>, SinkError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_shards();
            req = match &token {
                // A call with a token names nothing else.
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.stream),
            };
            let page = req.send().await.map_err(sink_error)?;
            for s in page.shards() {
                // A closed shard (a parent of a reshard) takes no more records.
                let open = s
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                let range = s.hash_key_range();
                if let (true, Some(r)) = (open, range)
                    && let Some(shard) =
                        ShardRange::parse(s.shard_id(), r.starting_hash_key(), r.ending_hash_key())
                {
                    out.push(shard);
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, SinkError> {
        let records: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&e.partition_key)
                    .set_explicit_hash_key(e.explicit_hash_key.clone())
                    .data(Blob::new(e.data.clone()))
                    .build()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| SinkError {
                retryable: false,
                ambiguous: false,
                code: "InvalidRequest".into(),
                message: e.to_string(),
            })?;
        let out = self
            .put_client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(sink_error)?;
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
