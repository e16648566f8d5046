//! The stream processor: Kinesis batch → raw and quarantine objects in S3 + one metadata item per
//! raw object, answering with partial batch failures.
//!
//! **Invariant:** a record is acknowledged (absent from `batchItemFailures`) only after the object
//! holding it is durably written and, for raw objects, recorded in the metadata table. A failure
//! reports the shard's first sequence number, so the platform redelivers the whole group and the
//! same keys are overwritten with the same content.

mod events;

use std::collections::BTreeMap;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use chrono::{DateTime, Duration, Utc};
use pipeline_aws::emf::{Event, Metrics};
use pipeline_aws::{Clock, MetadataStore, ObjectStore, RawItem, StoreError};
use pipeline_core::ShardOutput;
use pipeline_core::event::fmt_time;

pub use events::ShardFailed;
pub use lambda_payloads::KinesisBatch;

/// Settings read from the function's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub raw_bucket: String,
    pub metadata_table: String,
    pub metadata_ttl_days: u32,
    pub function_name: String,
}

/// Configuration errors: a missing or malformed environment variable.
pub use pipeline_aws::env::EnvError as Error;

impl Settings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = pipeline_aws::env::Env(get);
        Ok(Settings {
            raw_bucket: env.required("RAW_BUCKET")?,
            metadata_table: env.required("METADATA_TABLE")?,
            metadata_ttl_days: env.number("METADATA_TTL_DAYS", 30, "a whole number of days")?,
            function_name: env.or("AWS_LAMBDA_FUNCTION_NAME", "stream-processor"),
        })
    }
}

/// The handler, generic over its two stores.
pub struct StreamProcessor<O, M> {
    objects: O,
    metadata: M,
    settings: Settings,
    clock: Clock,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub kinesis_records: u64,
    pub units: u64,
    pub valid: u64,
    pub quarantined: BTreeMap<pipeline_core::Reason, u64>,
    /// Units in shard groups that were reported as failed (to be redelivered).
    pub failed_units: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
    pub max_ingest_lag_ms: Option<i64>,
    /// The metrics its events reported (the invocation's own are added by
    /// [`pipeline_aws::emf::Invocations::run`]).
    pub metrics: Metrics,
}

pub use lambda_payloads::kinesis::records;

impl<O: std::fmt::Debug, M: std::fmt::Debug> std::fmt::Debug for StreamProcessor<O, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamProcessor")
            .field("objects", &self.objects)
            .field("metadata", &self.metadata)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<O: ObjectStore, M: MetadataStore> StreamProcessor<O, M> {
    /// A stream processor on the wall clock.
    pub fn new(objects: O, metadata: M, settings: Settings) -> Self {
        Self::with_clock(objects, metadata, settings, pipeline_aws::wall_clock())
    }

    /// A stream processor that reads the time (the metadata items' write and expiry times) from
    /// `clock`.
    pub fn with_clock(objects: O, metadata: M, settings: Settings, clock: Clock) -> Self {
        StreamProcessor {
            objects,
            metadata,
            settings,
            clock,
        }
    }

    /// Handles one batch; `correlation_id` is the request id. The records are validated and
    /// encoded before the returned future first runs.
    pub fn handle<'a>(
        &'a self,
        event: &KinesisEvent,
        correlation_id: &'a str,
    ) -> impl Future<Output = (KinesisEventResponse, Report)> + Send + 'a {
        self.write_outputs(pipeline_core::ingest(&records(event)), correlation_id)
    }

    /// [`Self::handle`] for a batch read by [`KinesisBatch`], the Lambda function's fast path.
    pub fn handle_batch<'a>(
        &'a self,
        batch: &KinesisBatch,
        correlation_id: &'a str,
    ) -> impl Future<Output = (KinesisEventResponse, Report)> + Send + 'a {
        self.write_outputs(pipeline_core::ingest(&batch.records()), correlation_id)
    }

    async fn write_outputs(
        &self,
        outputs: Vec<ShardOutput>,
        correlation_id: &str,
    ) -> (KinesisEventResponse, Report) {
        let now = (self.clock)();
        let mut response = KinesisEventResponse::default();
        let mut report = Report {
            metrics: Metrics::counting(events::counters()),
            ..Report::default()
        };
        for mut shard in outputs {
            let shard = &mut shard;
            report.kinesis_records += shard.kinesis_records;
            report.units += shard.units;
            match self.write_shard(shard, correlation_id, now).await {
                Ok((objects, bytes)) => {
                    report.valid += shard.valid;
                    for (reason, n) in &shard.quarantined {
                        *report.quarantined.entry(*reason).or_default() += n;
                    }
                    report.objects_written += objects;
                    report.bytes_written += bytes;
                    report.max_ingest_lag_ms =
                        report.max_ingest_lag_ms.max(shard.max_ingest_lag_ms);
                    events::ShardWritten {
                        shard,
                        objects,
                        bytes,
                        correlation_id,
                    }
                    .emit(&mut report.metrics);
                }
                Err(error) => {
                    report.failed_units += shard.units;
                    ShardFailed {
                        shard,
                        error: &error,
                        correlation_id,
                    }
                    .emit(&mut report.metrics);
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(shard.first_sequence_number.clone());
                    response.batch_item_failures.push(failure);
                }
            }
        }
        (response, report)
    }

    /// Puts one encoded object, handing its body to the store without a copy (the body is not
    /// needed afterwards: a failed shard is redelivered and encoded again); returns the bytes
    /// written.
    async fn put_object(
        &self,
        object: &mut pipeline_core::EncodedObject,
        correlation_id: &str,
    ) -> Result<u64, StoreError> {
        let meta = BTreeMap::from([
            ("correlation-id".to_owned(), correlation_id.to_owned()),
            ("records".to_owned(), object.lines.to_string()),
            (
                pipeline_core::keys::RAW_SHA256_METADATA.to_owned(),
                object.sha256.clone(),
            ),
        ]);
        let body = std::mem::take(&mut object.body);
        let bytes = body.len() as u64;
        self.objects
            .put(
                &self.settings.raw_bucket,
                &object.key,
                body,
                "application/x-ndjson+gzip",
                &meta,
            )
            .await?;
        Ok(bytes)
    }

    /// Writes the quarantine object, or deletes the key when nothing was rejected: an earlier,
    /// larger attempt of the same batch may have left rejected lines there that now belong to
    /// another batch.
    async fn write_quarantine(
        &self,
        quarantine: Option<&mut pipeline_core::EncodedObject>,
        quarantine_key: &str,
        correlation_id: &str,
    ) -> Result<u64, StoreError> {
        match quarantine {
            Some(q) => self.put_object(q, correlation_id).await,
            None => self
                .objects
                .delete(&self.settings.raw_bucket, quarantine_key)
                .await
                .map(|()| 0),
        }
    }

    /// Writes one shard's objects and metadata; returns (objects, bytes) written.
    async fn write_shard(
        &self,
        shard: &mut ShardOutput,
        correlation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let (q_bytes, r_bytes) = tokio::join!(
            self.write_quarantine(
                shard.quarantine.as_mut(),
                &shard.quarantine_key,
                correlation_id
            ),
            self.put_object(&mut shard.raw, correlation_id)
        );
        let (q_bytes, r_bytes) = (q_bytes?, r_bytes?);
        let raw = &shard.raw;
        let item = RawItem {
            raw_key: raw.key.clone(),
            raw_sha256: raw.sha256.clone(),
            shard_id: shard.shard_id.clone(),
            first_sequence_number: shard.first_sequence_number.clone(),
            last_sequence_number: shard.last_sequence_number.clone(),
            first_arrival: fmt_time(shard.first_arrival),
            last_arrival: fmt_time(shard.last_arrival),
            kinesis_records: shard.kinesis_records,
            valid_records: shard.valid,
            quarantined_records: shard.quarantined_total(),
            quarantine_key: shard.quarantine.as_ref().map(|q| q.key.clone()),
            raw_bytes: r_bytes,
            raw_uncompressed_bytes: raw.uncompressed_bytes,
            correlation_id: correlation_id.to_owned(),
            written_at: fmt_time(now),
            expires_at: (now + Duration::days(i64::from(self.settings.metadata_ttl_days)))
                .timestamp(),
            registered_by: None,
        };
        self.metadata.record_raw(&item).await?;
        Ok((1 + u64::from(shard.quarantine.is_some()), q_bytes + r_bytes))
    }
}

#[cfg(test)]
mod tests;
