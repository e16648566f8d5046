//! Every log line and every metric the stream processor writes is one of these typed events
//! (besides what every invocation records, see [`pipeline_aws::emf::Invocations`]).

use pipeline_aws::StoreError;
use pipeline_aws::emf::{Event, Metrics, Unit, catalogue};
use pipeline_core::ShardOutput;

/// The counters every invocation reports, zero when nothing happened: the catalogue's metrics
/// but the ingest lag, a maximum reported when the batch had one.
pub fn counters() -> impl Iterator<Item = &'static str> {
    catalogue::STREAM_PROCESSOR
        .iter()
        .copied()
        .filter(|name| *name != "IngestLagMs")
}

/// A shard group's objects and metadata are durably written.
#[derive(Debug)]
pub struct ShardWritten<'a> {
    pub shard: &'a ShardOutput,
    /// Objects written (the raw object and the quarantine object, if any) and their bytes.
    pub objects: u64,
    pub bytes: u64,
    pub correlation_id: &'a str,
}

impl Event for ShardWritten<'_> {
    fn emit(&self, m: &mut Metrics) {
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
        m.count("KinesisRecords", s.kinesis_records)
            .count("RecordsReceived", s.units)
            .count("RecordsValid", s.valid)
            .count("RecordsQuarantined", s.quarantined_total())
            .count("ObjectsWritten", self.objects)
            .add("BytesWritten", self.bytes as f64, Unit::Bytes);
        for (reason, count) in &s.quarantined {
            tracing::warn!(message = "records quarantined", shard_id = %s.shard_id, reason = %reason, count, correlation_id = self.correlation_id);
            m.count(&format!("Quarantined_{reason}"), *count);
        }
        if let Some(lag) = s.max_ingest_lag_ms {
            m.max("IngestLagMs", lag as f64, Unit::Milliseconds);
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

impl Event for ShardFailed<'_> {
    fn emit(&self, m: &mut Metrics) {
        tracing::error!(
            message = "shard batch not written; reported for redelivery",
            shard_id = %self.shard.shard_id,
            resume_at = %self.shard.first_sequence_number,
            records = self.shard.units,
            retryable = self.error.retryable,
            error = %self.error,
            correlation_id = self.correlation_id,
        );
        m.count("KinesisRecords", self.shard.kinesis_records)
            .count("RecordsReceived", self.shard.units)
            .count("RecordsFailed", self.shard.units);
    }
}
