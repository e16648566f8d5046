//! Every log line the transformer writes is one of these typed events.

use crate::{Error, Outcome};

#[derive(Debug)]
pub struct RecordDone<'a> {
    pub outcome: &'a Outcome,
    pub correlation_id: &'a str,
}

impl RecordDone<'_> {
    pub fn emit(&self) {
        let c = self.correlation_id;
        match self.outcome {
            Outcome::Ignored { key, why } => {
                tracing::info!(message = "notification ignored", key = %key, why, correlation_id = c)
            }
            Outcome::Duplicate { key } => {
                tracing::info!(message = "duplicate notification: content already processed", key = %key, correlation_id = c)
            }
            Outcome::Processed {
                key,
                rows,
                duplicates,
                outputs,
                deleted,
                upstream_correlation_id,
                ..
            } => tracing::info!(
                message = "raw object processed",
                key = %key,
                rows,
                duplicates,
                outputs = outputs.len(),
                deleted = deleted.len(),
                upstream_correlation_id = upstream_correlation_id.as_deref(),
                correlation_id = c,
            ),
        }
    }
}

#[derive(Debug)]
pub struct RecordFailed<'a> {
    pub key: &'a str,
    pub error: &'a Error,
    pub correlation_id: &'a str,
}

impl RecordFailed<'_> {
    pub fn emit(&self) {
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

impl Registered<'_> {
    pub fn emit(&self) {
        tracing::info!(
            message = "raw object registered: the stream processor did not record it",
            key = %self.key,
            lines = self.lines,
            replaced_sha256 = self.replaced,
            correlation_id = self.correlation_id,
        );
    }
}
