//! Every log line the stream processor writes is one of these typed events.

use pipeline_aws::StoreError;
use pipeline_core::ShardOutput;

/// A shard group's objects and metadata are durably written.
#[derive(Debug)]
pub struct ShardWritten<'a> {
    pub shard: &'a ShardOutput,
    pub correlation_id: &'a str,
}

impl ShardWritten<'_> {
    pub fn emit(&self) {
        let s = self.shard;
        tracing::info!(
            message = "shard batch written",
            shard_id = %s.shard_id,
            first_sequence_number = %s.first_sequence_number,
            last_sequence_number = %s.last_sequence_number,
            records = s.units,
            valid = s.valid,
            quarantined = s.quarantined_total(),
            raw_key = %s.raw.key,
            quarantine_key = s.quarantine.as_ref().map(|o| o.key.as_str()),
            correlation_id = self.correlation_id,
        );
        for (reason, count) in &s.quarantined {
            tracing::warn!(message = "records quarantined", shard_id = %s.shard_id, reason = %reason, count, correlation_id = self.correlation_id);
        }
    }
}

/// A shard group could not be written: it is reported in `batchItemFailures` for redelivery.
#[derive(Debug)]
pub struct ShardFailed<'a> {
    pub shard: &'a ShardOutput,
    pub error: &'a StoreError,
    pub correlation_id: &'a str,
}

impl ShardFailed<'_> {
    pub fn emit(&self) {
        tracing::error!(
            message = "shard batch not written; reported for redelivery",
            shard_id = %self.shard.shard_id,
            resume_at = %self.shard.first_sequence_number,
            records = self.shard.units,
            retryable = self.error.retryable,
            error = %self.error,
            correlation_id = self.correlation_id,
        );
    }
}
