//! Every log line and every metric the transformer writes is one of these typed events (besides
//! what every invocation records, see [`pipeline_aws::emf::Invocations`]). A record's counts are
//! its outcome's, [`RecordDone`].

use pipeline_aws::emf::{Event, Metrics, Unit};

use crate::{Error, Outcome};

#[derive(Debug)]
pub struct RecordDone<'a> {
    pub outcome: &'a Outcome,
    pub correlation_id: &'a str,
}

impl Event for RecordDone<'_> {
    fn emit(&self, m: &mut Metrics) {
        let c = self.correlation_id;
        match self.outcome {
            Outcome::Ignored { key, why } => {
                tracing::info!(message = "notification ignored", key = %key, why, correlation_id = c);
                m.count("NotificationsIgnored", 1);
            }
            Outcome::Duplicate { key } => {
                tracing::info!(message = "duplicate notification: content already processed", key = %key, correlation_id = c);
                m.count("NotificationsDuplicate", 1);
            }
            Outcome::Processed {
                key,
                rows,
                duplicates,
                outputs,
                deleted,
                upstream_correlation_id,
                max_ingest_lag_ms,
                registered,
                owned_elsewhere,
                reprocessed,
                ..
            } => {
                tracing::info!(
                    message = "raw object processed",
                    key = %key,
                    rows,
                    duplicates,
                    outputs = outputs.len(),
                    deleted = deleted.len(),
                    upstream_correlation_id = upstream_correlation_id.as_deref(),
                    correlation_id = c,
                );
                m.count("RawObjectsProcessed", 1)
                    .count("RawObjectsRegistered", u64::from(*registered))
                    .count("RecordsOwnedElsewhere", *owned_elsewhere)
                    .count("OverlapsReprocessed", reprocessed.len() as u64)
                    .count("RecordsValid", *rows)
                    .count("DuplicatesDropped", *duplicates)
                    .count("ObjectsWritten", outputs.len() as u64)
                    .count("ObjectsDeleted", deleted.len() as u64);
                if let Some(lag) = max_ingest_lag_ms {
                    m.max("IngestLagMs", *lag as f64, Unit::Milliseconds);
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct RecordFailed<'a> {
    pub key: &'a str,
    pub error: &'a Error,
    pub correlation_id: &'a str,
}

impl Event for RecordFailed<'_> {
    fn emit(&self, _: &mut Metrics) {
        tracing::error!(
            message = "raw object not processed; the invocation fails and is retried",
            key = %self.key,
            retryable = self.error.is_retryable(),
            error = %self.error,
            correlation_id = self.correlation_id,
        );
    }
}

/// The transformer recorded an object the stream processor did not (see `wait_for_item`).
#[derive(Debug)]
pub struct Registered<'a> {
    pub key: &'a str,
    pub lines: u64,
    /// The content the item described before, if any.
    pub replaced: Option<&'a str>,
    pub correlation_id: &'a str,
}

impl Event for Registered<'_> {
    fn emit(&self, _: &mut Metrics) {
        tracing::info!(
            message = "raw object registered: the stream processor did not record it",
            key = %self.key,
            lines = self.lines,
            replaced_sha256 = self.replaced,
            correlation_id = self.correlation_id,
        );
    }
}
