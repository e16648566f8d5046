//! Our own Kinesis event-source mapping, faithful to Lambda's documented rules, driven by the same
//! settings the Pulumi stack gives AWS, invoking the function through the Lambda Invoke API.
//!
//! Rules (each has a named test in `esm_conformance.rs`):
//! - batches of at most `BatchSize` records and at most 6 MB of payload, from one shard, one batch
//!   in flight per shard, waiting up to `MaximumBatchingWindowInSeconds` to fill a batch;
//! - `StartingPosition` TRIM_HORIZON, LATEST or AT_TIMESTAMP;
//! - with `ReportBatchItemFailures`: an empty or null response, or an empty or null
//!   `batchItemFailures`, is success; otherwise the mapping checkpoints before the **lowest**
//!   reported sequence number and redelivers from there; an item whose identifier is empty, null,
//!   missing or not in the batch fails the whole batch;
//! - a function error with `BisectBatchOnFunctionError` splits the batch in two; a split does not
//!   consume a retry;
//! - `MaximumRetryAttempts` (-1 = infinite) and `MaximumRecordAgeInSeconds` (-1 = infinite); when
//!   either runs out, a message in AWS's format goes to the on-failure destination and the mapping
//!   moves on;
//! - the mapping never moves past a record that is neither acknowledged nor in the on-failure
//!   destination: a send to the destination that fails is retried with capped exponential backoff
//!   and the batch stays in place until the destination takes it.
//!
//! Differences from AWS in wall-clock terms: retries wait 50 ms doubling to 2 s (AWS backs off for
//! longer), polling is every 200 ms when a shard is idle (AWS: about once a second), and
//! `ParallelizationFactor` is 1 (see docs/local.md).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use pipeline_config::{EventSourceMapping, StartingPosition};
use serde_json::{Value, json};

use crate::Error;

/// The Lambda payload limit for a synchronous invocation.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub batch_size: usize,
    pub batching_window: Duration,
    pub starting_position: StartingPosition,
    pub starting_timestamp: Option<DateTime<Utc>>,
    pub bisect_on_error: bool,
    /// -1 is infinite.
    pub maximum_retry_attempts: i32,
    /// -1 is infinite.
    pub maximum_record_age_seconds: i32,
    pub report_batch_item_failures: bool,
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl From<&EventSourceMapping> for Settings {
    fn from(m: &EventSourceMapping) -> Self {
        Settings {
            batch_size: m.batch_size as usize,
            batching_window: Duration::from_secs(u64::from(m.maximum_batching_window_seconds)),
            starting_position: m.starting_position,
            starting_timestamp: m
                .starting_position_timestamp
                .and_then(|t| DateTime::from_timestamp(t, 0)),
            bisect_on_error: m.bisect_batch_on_function_error,
            maximum_retry_attempts: m.maximum_retry_attempts,
            maximum_record_age_seconds: m.maximum_record_age_seconds,
            report_batch_item_failures: true,
            retry_base: Duration::from_millis(50),
            retry_cap: Duration::from_secs(2),
        }
    }
}

/// A record read from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence_number: String,
    pub arrival: DateTime<Utc>,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// What one invocation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub status_code: i32,
    /// `Unhandled` or `Handled` when the function failed.
    pub function_error: Option<String>,
    pub payload: Vec<u8>,
}

/// Reads a shard.
pub trait ShardReader: Send {
    /// The next records after the reader's position (possibly none).
    fn read(&mut self) -> impl Future<Output = Result<Vec<Record>, Error>> + Send;
}

/// Invokes the function synchronously.
pub trait Invoker: Send + Sync {
    fn invoke(&self, payload: Vec<u8>) -> impl Future<Output = Result<Invocation, Error>> + Send;
}

/// The on-failure destination.
pub trait FailureDestination: Send + Sync {
    fn send(&self, message: String) -> impl Future<Output = Result<(), Error>> + Send;
}

/// How the mapping reads a function's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Checkpoint before this index of the batch and redeliver from it.
    Partial(usize),
    Failure(String),
}

/// Interprets a response under the documented `ReportBatchItemFailures` rules.
pub fn verdict(batch: &[Record], inv: &Invocation, report_failures: bool) -> Verdict {
    if let Some(e) = &inv.function_error {
        return Verdict::Failure(format!("function error ({e})"));
    }
    if !(200..300).contains(&inv.status_code) {
        return Verdict::Failure(format!("invoke status {}", inv.status_code));
    }
    if !report_failures {
        return Verdict::Success;
    }
    let text = std::str::from_utf8(&inv.payload).unwrap_or("").trim();
    if text.is_empty() || text == "null" {
        return Verdict::Success;
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Verdict::Failure("the response is not JSON".into());
    };
    let failures = match value.get("batchItemFailures") {
        None | Some(Value::Null) => return Verdict::Success,
        Some(Value::Array(items)) if items.is_empty() => return Verdict::Success,
        Some(Value::Array(items)) => items,
        Some(_) => return Verdict::Failure("batchItemFailures is not a list".into()),
    };
    let mut lowest: Option<usize> = None;
    for item in failures {
        let id = item
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or("");
        if id.is_empty() {
            return Verdict::Failure(
                "a batch item failure has an empty, null or missing itemIdentifier".into(),
            );
        }
        let Some(index) = batch.iter().position(|r| r.sequence_number == id) else {
            return Verdict::Failure(format!(
                "itemIdentifier {id} is not a sequence number of the batch"
            ));
        };
        lowest = Some(lowest.map_or(index, |l| l.min(index)));
    }
    lowest.map_or(Verdict::Success, Verdict::Partial)
}

/// The event Lambda delivers for a batch.
pub fn event(batch: &[Record], shard_id: &str, stream_arn: &str, region: &str) -> Vec<u8> {
    let records: Vec<Value> = batch
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival.timestamp_millis() as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::{}:role/event-source-mapping", crate::ACCOUNT_ID),
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records }).to_string().into_bytes()
}

/// The size a record adds to the event (base64 data plus its envelope, about 420 bytes).
fn record_payload_size(r: &Record) -> usize {
    r.data.len().div_ceil(3) * 4 + r.partition_key.len() + r.sequence_number.len() * 2 + 420
}

/// The on-failure message, in AWS's documented format.
#[allow(clippy::too_many_arguments)]
pub fn failure_message(
    batch: &[Record],
    condition: &str,
    invoke_count: u32,
    last: Option<&Invocation>,
    function_arn: &str,
    shard_id: &str,
    stream_arn: &str,
    now: DateTime<Utc>,
) -> String {
    let ts = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut response =
        json!({"statusCode": last.map_or(200, |i| i.status_code), "executedVersion": "$LATEST"});
    if let Some(e) = last.and_then(|i| i.function_error.clone()) {
        response["functionError"] = Value::String(e);
    }
    json!({
        "requestContext": {
            "requestId": last.map_or_else(String::new, |i| i.request_id.clone()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": ts(now),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": batch.first().map(|r| r.sequence_number.clone()),
            "endSequenceNumber": batch.last().map(|r| r.sequence_number.clone()),
            "approximateArrivalOfFirstRecord": batch.first().map(|r| ts(r.arrival)),
            "approximateArrivalOfLastRecord": batch.last().map(|r| ts(r.arrival)),
            "batchSize": batch.len(),
            "streamArn": stream_arn,
        },
    })
    .to_string()
}

/// Counters a status line shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub records_read: u64,
    pub records_delivered: u64,
    pub invocations: u64,
    pub function_errors: u64,
    pub partial_failures: u64,
    pub bisections: u64,
    pub records_sent_to_destination: u64,
    pub destination_messages: u64,
    /// Sends to the on-failure destination that failed (and were retried).
    pub destination_failures: u64,
    /// Age of the oldest record not yet checkpointed, in milliseconds.
    pub iterator_age_ms: i64,
}

/// One shard's mapping: a buffer of records read but not yet checkpointed.
#[derive(Debug)]
pub struct ShardMapping<R, I, D> {
    pub shard_id: String,
    pub stream_arn: String,
    pub function_arn: String,
    pub region: String,
    pub settings: Settings,
    reader: R,
    invoker: I,
    destination: D,
    buffer: VecDeque<Record>,
    pub stats: Stats,
}

impl<R: ShardReader, I: Invoker, D: FailureDestination> ShardMapping<R, I, D> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shard_id: String,
        stream_arn: String,
        function_arn: String,
        region: String,
        settings: Settings,
        reader: R,
        invoker: I,
        destination: D,
    ) -> Self {
        ShardMapping {
            shard_id,
            stream_arn,
            function_arn,
            region,
            settings,
            reader,
            invoker,
            destination,
            buffer: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn invoker(&self) -> &I {
        &self.invoker
    }

    /// Reads what is available; true when the buffer holds records.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        let records = self.reader.read().await?;
        self.stats.records_read += records.len() as u64;
        self.buffer.extend(records);
        Ok(!self.buffer.is_empty())
    }

    /// Waits for a batch (full, or the window elapsed since the first record), then processes it
    /// to the end: success, checkpoint after giving up, or nothing to do. Returns records consumed.
    pub async fn step(&mut self, now: impl Fn() -> DateTime<Utc>) -> Result<usize, Error> {
        let window_started = std::time::Instant::now();
        self.fill().await?;
        while self.buffer.len() < self.settings.batch_size
            && window_started.elapsed() < self.settings.batching_window
        {
            tokio::time::sleep(Duration::from_millis(50).min(self.settings.batching_window)).await;
            self.fill().await?;
        }
        if self.buffer.is_empty() {
            self.stats.iterator_age_ms = 0;
            return Ok(0);
        }
        // Take a batch within the count and payload limits.
        let mut size = 200;
        let mut n = 0;
        for r in self.buffer.iter().take(self.settings.batch_size) {
            let add = record_payload_size(r);
            if n > 0 && size + add > MAX_PAYLOAD_BYTES {
                break;
            }
            size += add;
            n += 1;
        }
        // The batch stays in the buffer until every record of it is acknowledged or handed to
        // the on-failure destination: an error on the way leaves the shard where it was.
        let batch: Vec<Record> = self.buffer.iter().take(n).cloned().collect();
        self.stats.iterator_age_ms = batch
            .first()
            .map_or(0, |r| (now() - r.arrival).num_milliseconds().max(0));
        self.process(batch, &now).await?;
        self.buffer.drain(..n);
        self.stats.iterator_age_ms = self
            .buffer
            .front()
            .map_or(0, |r| (now() - r.arrival).num_milliseconds().max(0));
        Ok(n)
    }

    /// Delivers one batch under the retry, bisection and age rules, until every record is either
    /// acknowledged or handed to the on-failure destination.
    pub async fn process(
        &mut self,
        batch: Vec<Record>,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), Error> {
        // Work items: (records, retries used, invocations so far).
        let mut work: Vec<(Vec<Record>, u32, u32)> = vec![(batch, 0, 0)];
        while let Some((mut records, retries, invokes)) = work.pop() {
            // Records past the maximum age are not delivered again.
            if self.settings.maximum_record_age_seconds >= 0 {
                let limit =
                    chrono::Duration::seconds(i64::from(self.settings.maximum_record_age_seconds));
                let expired = records
                    .iter()
                    .take_while(|r| now() - r.arrival > limit)
                    .count();
                if expired > 0 {
                    let old: Vec<Record> = records.drain(..expired).collect();
                    self.give_up(&old, "RecordAgeExceeded", invokes, None, now())
                        .await?;
                }
            }
            if records.is_empty() {
                continue;
            }
            let payload = event(&records, &self.shard_id, &self.stream_arn, &self.region);
            let inv = match self.invoker.invoke(payload).await {
                Ok(inv) => inv,
                Err(e) => {
                    // The function was not invoked (throttled, unreachable): retried until the
                    // records expire, without using the retry quota, as Lambda does.
                    tracing::warn!(shard_id = %self.shard_id, error = %e, "invoke failed; retrying");
                    self.backoff(retries).await;
                    work.push((records, retries, invokes));
                    continue;
                }
            };
            let invokes = invokes + 1;
            self.stats.invocations += 1;
            match verdict(&records, &inv, self.settings.report_batch_item_failures) {
                Verdict::Success => self.stats.records_delivered += records.len() as u64,
                Verdict::Partial(i) => {
                    self.stats.partial_failures += 1;
                    self.stats.records_delivered += i as u64;
                    let rest: Vec<Record> = records.split_off(i);
                    if self.out_of_retries(retries) {
                        self.give_up(&rest, "RetryAttemptsExhausted", invokes, Some(&inv), now())
                            .await?;
                    } else {
                        self.backoff(retries).await;
                        work.push((rest, retries + 1, invokes));
                    }
                }
                Verdict::Failure(_) => {
                    self.stats.function_errors += 1;
                    if self.settings.bisect_on_error && records.len() > 1 {
                        // Splitting does not consume a retry.
                        self.stats.bisections += 1;
                        let second = records.split_off(records.len() / 2);
                        work.push((second, retries, invokes));
                        work.push((records, retries, invokes));
                    } else if self.out_of_retries(retries) {
                        self.give_up(
                            &records,
                            "RetryAttemptsExhausted",
                            invokes,
                            Some(&inv),
                            now(),
                        )
                        .await?;
                    } else {
                        self.backoff(retries).await;
                        work.push((records, retries + 1, invokes));
                    }
                }
            }
        }
        Ok(())
    }

    fn out_of_retries(&self, retries: u32) -> bool {
        self.settings.maximum_retry_attempts >= 0
            && i64::from(retries) >= i64::from(self.settings.maximum_retry_attempts)
    }

    async fn backoff(&self, retries: u32) {
        let delay = self
            .settings
            .retry_base
            .saturating_mul(1 << retries.min(10))
            .min(self.settings.retry_cap);
        tokio::time::sleep(delay).await;
    }

    async fn give_up(
        &mut self,
        records: &[Record],
        condition: &str,
        invokes: u32,
        last: Option<&Invocation>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let message = failure_message(
            records,
            condition,
            invokes,
            last,
            &self.function_arn,
            &self.shard_id,
            &self.stream_arn,
            now,
        );
        // A record is never passed over unless it is acknowledged or in the destination: a send
        // that fails is retried, with the same capped backoff, until the destination takes it.
        let mut attempt = 0;
        while let Err(e) = self.destination.send(message.clone()).await {
            self.stats.destination_failures += 1;
            tracing::warn!(shard_id = %self.shard_id, error = %e, attempt, "sending to the on-failure destination failed; retrying");
            self.backoff(attempt).await;
            attempt = attempt.saturating_add(1);
        }
        self.stats.destination_messages += 1;
        self.stats.records_sent_to_destination += records.len() as u64;
        tracing::warn!(shard_id = %self.shard_id, condition, records = records.len(), "batch sent to the on-failure destination");
        Ok(())
    }

    /// Records read but not yet delivered or given up.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}
