//! Our own Kinesis event-source mapping, faithful to Lambda's documented rules, driven by the same
//! settings the Pulumi stack gives AWS, invoking the function through the Lambda Invoke API.
//!
//! Rules (each has a named test in `esm_conformance.rs`):
//! - batches of at most `BatchSize` records and at most 6 MB of payload, from one shard, waiting up
//!   to `MaximumBatchingWindowInSeconds` to fill a batch;
//! - `ParallelizationFactor` 1-10: up to that many batches of one shard in flight at once, one per
//!   lane; a record's lane is its partition key's hash, so the records of one key stay in order;
//! - the shard's checkpoint, after every batch acknowledged or dead-lettered, is the record before
//!   the lowest one not yet done in any lane; it is written, under the shard's lease, to the
//!   checkpoint table (`checkpoint.rs`), and a new mapping resumes after it;
//! - a closed shard read to its end is checkpointed at SHARD_END; a child shard of a reshard
//!   starts (at its first record) only once every parent is checkpointed at SHARD_END;
//! - `StartingPosition` TRIM_HORIZON, LATEST or AT_TIMESTAMP, for a shard without a checkpoint;
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
//! Differences from AWS (see docs/local.md): retries wait 50 ms doubling to 2 s (AWS backs off for
//! longer), polling is every 200 ms when a shard is idle (AWS: about once a second), the lane hash
//! is FNV-1a (AWS does not document its own), and the lanes of a shard work through the records
//! of one read each at its own pace, but the next read waits for the slowest lane.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline_config::{EventSourceMapping, StartingPosition};
use serde_json::{Value, json};

use crate::Error;
use crate::checkpoint::{Checkpoint, CheckpointStore, Lease, NoCheckpoints};

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
    /// `ParallelizationFactor`, 1-10: concurrent batches per shard.
    pub parallelization_factor: usize,
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
            parallelization_factor: m.parallelization_factor as usize,
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
    /// The shard is closed and the reader has read its last record (a null NextShardIterator).
    fn at_shard_end(&self) -> bool {
        false
    }
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

/// The event Lambda delivers for a batch (`lambda_payloads::kinesis`, the one builder).
pub fn event(batch: &[Record], shard_id: &str, stream_arn: &str, region: &str) -> Vec<u8> {
    let records: Vec<lambda_payloads::kinesis::Record<'_>> = batch
        .iter()
        .map(|r| lambda_payloads::kinesis::Record {
            partition_key: &r.partition_key,
            sequence_number: &r.sequence_number,
            data: &r.data,
            arrival: r.arrival,
        })
        .collect();
    let source = lambda_payloads::kinesis::Source {
        shard_id,
        stream_arn,
        region,
        kms: false,
    };
    lambda_payloads::kinesis::payload(&records, &source)
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
    /// Checkpoint writes that failed (and were retried).
    pub checkpoint_failures: u64,
    /// Age of the oldest record not yet checkpointed, in milliseconds.
    pub iterator_age_ms: i64,
    /// Reads that found no new record: each one a moment the shard was read to its tip (a
    /// watermark: every record put before that read has been read).
    pub reads_at_tip: u64,
}

impl Stats {
    /// Adds `other`'s counts (not its iterator age).
    pub fn add(&mut self, other: &Stats) {
        self.records_read += other.records_read;
        self.records_delivered += other.records_delivered;
        self.invocations += other.invocations;
        self.function_errors += other.function_errors;
        self.partial_failures += other.partial_failures;
        self.bisections += other.bisections;
        self.records_sent_to_destination += other.records_sent_to_destination;
        self.destination_messages += other.destination_messages;
        self.destination_failures += other.destination_failures;
        self.checkpoint_failures += other.checkpoint_failures;
    }
}

/// The lane of a partition key among `lanes` batch lanes of a shard: FNV-1a (64 bits) of its
/// bytes, modulo `lanes`. Lambda hashes the partition key to pick the lane; the hash it uses is
/// not documented, only that records with one key stay in order.
pub fn lane(partition_key: &str, lanes: usize) -> usize {
    let hash = partition_key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % lanes.max(1) as u64) as usize
}

/// Which of a shard's records are done (acknowledged or dead-lettered), in shard order. The
/// shard's checkpoint is the record before the first one not yet done, whatever lane it is in.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    seqs: Vec<String>,
    done: Vec<bool>,
    index: std::collections::HashMap<String, usize>,
    next: usize,
}

impl Frontier {
    /// The records of a step, in shard order.
    pub fn new(seqs: impl IntoIterator<Item = String>) -> Frontier {
        let seqs: Vec<String> = seqs.into_iter().collect();
        Frontier {
            done: vec![false; seqs.len()],
            index: seqs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, s)| (s, i))
                .collect(),
            seqs,
            next: 0,
        }
    }

    /// Marks records done.
    pub fn done<'a>(&mut self, seqs: impl IntoIterator<Item = &'a str>) {
        for s in seqs {
            if let Some(&i) = self.index.get(s) {
                self.done[i] = true;
            }
        }
    }

    /// Moves past the records done; the new checkpoint when it moved.
    pub fn advance(&mut self) -> Option<String> {
        let before = self.next;
        while self.done.get(self.next) == Some(&true) {
            self.next += 1;
        }
        (self.next > before).then(|| self.seqs[self.next - 1].clone())
    }

    /// Every record is done.
    pub fn complete(&self) -> bool {
        self.next == self.seqs.len()
    }
}

/// Where a shard's reader starts, given its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After the checkpoint.
    After(String),
    /// No checkpoint: at the mapping's `StartingPosition`.
    StartingPosition,
    /// No checkpoint, and the shard is a child of a reshard: at its first record (TRIM_HORIZON),
    /// since it starts only once its parents are done and nothing in it may be skipped.
    TrimHorizon,
    /// The shard is closed and done: nothing to read.
    Done,
}

pub fn start(lease: &Lease, has_parents: bool) -> Start {
    match &lease.checkpoint {
        Some(Checkpoint::After(seq)) => Start::After(seq.clone()),
        Some(Checkpoint::ShardEnd) => Start::Done,
        None if has_parents => Start::TrimHorizon,
        None => Start::StartingPosition,
    }
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// `ParentShardId` and `AdjacentParentShardId`, when the shard comes from a reshard.
    pub parents: Vec<String>,
}

/// The shards to start now: not started yet, and every parent finished (checkpointed at
/// `SHARD_END`) or no longer listed (past the stream's retention).
pub fn ready(
    shards: &[ShardInfo],
    started: &std::collections::HashSet<String>,
    finished: &std::collections::HashSet<String>,
) -> Vec<String> {
    let listed: std::collections::HashSet<&str> =
        shards.iter().map(|s| s.shard_id.as_str()).collect();
    shards
        .iter()
        .filter(|s| !started.contains(&s.shard_id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| finished.contains(p) || !listed.contains(p.as_str()))
        })
        .map(|s| s.shard_id.clone())
        .collect()
}

/// ListShards, page by page.
pub trait ShardLister: Sync {
    /// One page: the shards and the NextToken of the next page.
    fn page(
        &self,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<(Vec<ShardInfo>, Option<String>), Error>> + Send;
}

/// Every shard of the stream, following NextToken.
pub async fn list_shards(lister: &impl ShardLister) -> Result<Vec<ShardInfo>, Error> {
    let mut shards = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = lister.page(token.take()).await?;
        shards.extend(page);
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(shards),
        }
    }
}

/// What delivering a batch needs: the rules and the two ports.
struct Target<'a, I, D> {
    settings: &'a Settings,
    invoker: &'a I,
    destination: &'a D,
    shard_id: &'a str,
    stream_arn: &'a str,
    function_arn: &'a str,
    region: &'a str,
}

/// One shard's mapping: a buffer of records read but not yet checkpointed, split into up to
/// `ParallelizationFactor` lanes by partition key, and the shard's lease when it checkpoints.
#[derive(Debug)]
pub struct ShardMapping<R, I, D, C = NoCheckpoints> {
    pub shard_id: String,
    pub stream_arn: String,
    pub function_arn: String,
    pub region: String,
    pub settings: Settings,
    reader: R,
    invoker: I,
    destination: D,
    checkpoints: C,
    lease: Option<Lease>,
    finished: bool,
    buffer: VecDeque<Record>,
    pub stats: Stats,
}

impl<R: ShardReader, I: Invoker, D: FailureDestination> ShardMapping<R, I, D, NoCheckpoints> {
    /// A mapping that keeps no checkpoint.
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
            checkpoints: NoCheckpoints,
            lease: None,
            finished: false,
            buffer: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The same mapping, checkpointing in `store` under `lease` (taken by the caller, which
    /// started the reader after the lease's checkpoint: see [`start`]).
    pub fn with_checkpoints<C: CheckpointStore>(
        self,
        store: C,
        lease: Lease,
    ) -> ShardMapping<R, I, D, C> {
        ShardMapping {
            shard_id: self.shard_id,
            stream_arn: self.stream_arn,
            function_arn: self.function_arn,
            region: self.region,
            settings: self.settings,
            reader: self.reader,
            invoker: self.invoker,
            destination: self.destination,
            checkpoints: store,
            lease: Some(lease),
            finished: false,
            buffer: self.buffer,
            stats: self.stats,
        }
    }
}

impl<R: ShardReader, I: Invoker, D: FailureDestination, C: CheckpointStore>
    ShardMapping<R, I, D, C>
{
    pub fn invoker(&self) -> &I {
        &self.invoker
    }

    /// The lease the mapping holds, as of its last checkpoint.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The shard is closed, every record of it is done and checkpointed as such.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Reads what is available; true when the buffer holds records.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        let records = self.reader.read().await?;
        self.stats.records_read += records.len() as u64;
        self.buffer.extend(records);
        Ok(!self.buffer.is_empty())
    }

    /// Waits for a batch (full, or the window elapsed since the first record), then delivers
    /// every record read, to the end: in up to `ParallelizationFactor` lanes at once, each lane a
    /// partition-key hash's records in shard order, batch after batch, each batch acknowledged
    /// or handed to the destination; the shard's checkpoint moves on after every batch, to the
    /// record before the first one not yet done in any lane. A closed shard read to its end is
    /// checkpointed at SHARD_END. Returns the records consumed.
    pub async fn step(&mut self, now: impl Fn() -> DateTime<Utc>) -> Result<usize, Error> {
        if self.finished {
            return Ok(0);
        }
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
            self.stats.reads_at_tip += 1;
            if self.reader.at_shard_end() {
                self.checkpoint(Checkpoint::ShardEnd).await?;
                self.finished = true;
            }
            return Ok(0);
        }
        // The records stay in the buffer until every one of them is acknowledged or handed to
        // the on-failure destination: an error on the way leaves the shard where it was.
        let records: Vec<Record> = self.buffer.iter().cloned().collect();
        self.stats.iterator_age_ms = records
            .first()
            .map_or(0, |r| (now() - r.arrival).num_milliseconds().max(0));
        let n = self.settings.parallelization_factor.clamp(1, 10);
        let mut lanes: Vec<Vec<Record>> = vec![Vec::new(); n];
        for r in &records {
            lanes[lane(&r.partition_key, n)].push(r.clone());
        }
        let progress = tokio::sync::Mutex::new((
            Frontier::new(records.iter().map(|r| r.sequence_number.clone())),
            self.lease.take(),
        ));
        let target = Target {
            settings: &self.settings,
            invoker: &self.invoker,
            destination: &self.destination,
            shard_id: &self.shard_id,
            stream_arn: &self.stream_arn,
            function_arn: &self.function_arn,
            region: &self.region,
        };
        let store = &self.checkpoints;
        let now = &now;
        let results = futures_util::future::join_all(
            lanes
                .into_iter()
                .filter(|l| !l.is_empty())
                .map(|l| run_lane(&target, store, &progress, l, now)),
        )
        .await;
        let (frontier, lease) = progress.into_inner();
        self.lease = lease;
        let mut failed = None;
        for r in results {
            match r {
                Ok(stats) => self.stats.add(&stats),
                Err((stats, e)) => {
                    self.stats.add(&stats);
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        debug_assert!(frontier.complete());
        self.buffer.clear();
        self.stats.iterator_age_ms = 0;
        Ok(records.len())
    }

    /// Writes a checkpoint under the lease, retried with capped backoff while the store fails;
    /// only a lost lease ends it.
    async fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), Error> {
        if let Some(lease) = self.lease.take() {
            let (next, failures) = save(
                &self.checkpoints,
                &self.settings,
                &self.shard_id,
                &lease,
                checkpoint,
            )
            .await;
            self.stats.checkpoint_failures += failures;
            match next {
                Ok(next) => self.lease = Some(next),
                Err(e) => {
                    self.lease = Some(lease);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Delivers one batch under the retry, bisection and age rules, until every record is either
    /// acknowledged or handed to the on-failure destination.
    pub async fn process(
        &mut self,
        batch: Vec<Record>,
        now: &impl Fn() -> DateTime<Utc>,
    ) -> Result<(), Error> {
        let target = Target {
            settings: &self.settings,
            invoker: &self.invoker,
            destination: &self.destination,
            shard_id: &self.shard_id,
            stream_arn: &self.stream_arn,
            function_arn: &self.function_arn,
            region: &self.region,
        };
        deliver(&target, batch, now, &mut self.stats).await;
        Ok(())
    }

    /// Records read but not yet delivered or given up.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// One lane of a step: its records, batch after batch, each checkpointed once done. On a lost
/// lease, returns what it counted with the error.
async fn run_lane<I: Invoker, D: FailureDestination, C: CheckpointStore>(
    target: &Target<'_, I, D>,
    store: &C,
    progress: &tokio::sync::Mutex<(Frontier, Option<Lease>)>,
    records: Vec<Record>,
    now: &impl Fn() -> DateTime<Utc>,
) -> Result<Stats, (Stats, Error)> {
    let mut stats = Stats::default();
    let mut rest = records.as_slice();
    while !rest.is_empty() {
        let n = batch_len(rest, target.settings.batch_size);
        let (batch, after) = rest.split_at(n);
        rest = after;
        deliver(target, batch.to_vec(), now, &mut stats).await;
        let mut p = progress.lock().await;
        p.0.done(batch.iter().map(|r| r.sequence_number.as_str()));
        if let (Some(seq), Some(lease)) = (p.0.advance(), p.1.clone()) {
            let (next, failures) = save(
                store,
                target.settings,
                target.shard_id,
                &lease,
                Checkpoint::After(seq),
            )
            .await;
            stats.checkpoint_failures += failures;
            match next {
                Ok(next) => p.1 = Some(next),
                Err(e) => return Err((stats, e)),
            }
        }
    }
    Ok(stats)
}

/// Saves a checkpoint, retrying with the mapping's capped backoff while the store fails for any
/// reason but a lost lease; also the number of failed writes.
async fn save<C: CheckpointStore>(
    store: &C,
    settings: &Settings,
    shard_id: &str,
    lease: &Lease,
    checkpoint: Checkpoint,
) -> (Result<Lease, Error>, u64) {
    let mut failures = 0;
    loop {
        match store.save(lease, checkpoint.clone()).await {
            Ok(next) => return (Ok(next), failures),
            Err(e @ Error::Lease(_)) => return (Err(e), failures),
            Err(e) => {
                tracing::warn!(shard_id, error = %e, "writing the checkpoint failed; retrying");
                backoff(settings, failures.min(u64::from(u32::MAX)) as u32).await;
                failures += 1;
            }
        }
    }
}

/// How many of `records` make the next batch: at most `batch_size` and 6 MB of payload.
fn batch_len(records: &[Record], batch_size: usize) -> usize {
    let mut size = 200;
    let mut n = 0;
    for r in records.iter().take(batch_size.max(1)) {
        let add = record_payload_size(r);
        if n > 0 && size + add > MAX_PAYLOAD_BYTES {
            break;
        }
        size += add;
        n += 1;
    }
    n
}

/// Delivers one batch under the retry, bisection and age rules, until every record is either
/// acknowledged or handed to the on-failure destination.
async fn deliver<I: Invoker, D: FailureDestination>(
    t: &Target<'_, I, D>,
    batch: Vec<Record>,
    now: &impl Fn() -> DateTime<Utc>,
    stats: &mut Stats,
) {
    let mut work: Vec<WorkItem> = vec![(batch, 0, 0)];
    while let Some((mut records, retries, invokes)) = work.pop() {
        // Records past the maximum age are not delivered again.
        if t.settings.maximum_record_age_seconds >= 0 {
            let limit = chrono::Duration::seconds(i64::from(t.settings.maximum_record_age_seconds));
            let expired = records
                .iter()
                .take_while(|r| now() - r.arrival > limit)
                .count();
            if expired > 0 {
                let old: Vec<Record> = records.drain(..expired).collect();
                give_up(t, &old, "RecordAgeExceeded", invokes, None, now(), stats).await;
            }
        }
        if records.is_empty() {
            continue;
        }
        let payload = event(&records, t.shard_id, t.stream_arn, t.region);
        let inv = match t.invoker.invoke(payload).await {
            Ok(inv) => inv,
            Err(e) => {
                // The function was not invoked (throttled, unreachable): retried until the
                // records expire, without using the retry quota, as Lambda does.
                tracing::warn!(shard_id = %t.shard_id, error = %e, "invoke failed; retrying");
                backoff(t.settings, retries).await;
                work.push((records, retries, invokes));
                continue;
            }
        };
        let invokes = invokes + 1;
        stats.invocations += 1;
        match verdict(&records, &inv, t.settings.report_batch_item_failures) {
            Verdict::Success => stats.records_delivered += records.len() as u64,
            Verdict::Partial(i) => {
                stats.partial_failures += 1;
                stats.records_delivered += i as u64;
                let rest: Vec<Record> = records.split_off(i);
                let item = (rest, retries, invokes);
                retry_or_give_up(t, item, &inv, now(), stats, &mut work).await;
            }
            Verdict::Failure(_) => {
                stats.function_errors += 1;
                if t.settings.bisect_on_error && records.len() > 1 {
                    // Splitting does not consume a retry.
                    stats.bisections += 1;
                    let second = records.split_off(records.len() / 2);
                    work.push((second, retries, invokes));
                    work.push((records, retries, invokes));
                } else {
                    let item = (records, retries, invokes);
                    retry_or_give_up(t, item, &inv, now(), stats, &mut work).await;
                }
            }
        }
    }
}

/// A work item: records, the retries they have used, the invocations so far.
type WorkItem = (Vec<Record>, u32, u32);

/// Records the function failed: retried after a backoff (using one retry), or handed to the
/// on-failure destination once the retries are used up.
async fn retry_or_give_up<I: Invoker, D: FailureDestination>(
    t: &Target<'_, I, D>,
    (records, retries, invokes): WorkItem,
    last: &Invocation,
    now: DateTime<Utc>,
    stats: &mut Stats,
    work: &mut Vec<WorkItem>,
) {
    if out_of_retries(t.settings, retries) {
        give_up(
            t,
            &records,
            "RetryAttemptsExhausted",
            invokes,
            Some(last),
            now,
            stats,
        )
        .await;
    } else {
        backoff(t.settings, retries).await;
        work.push((records, retries + 1, invokes));
    }
}

fn out_of_retries(settings: &Settings, retries: u32) -> bool {
    settings.maximum_retry_attempts >= 0
        && i64::from(retries) >= i64::from(settings.maximum_retry_attempts)
}

async fn backoff(settings: &Settings, retries: u32) {
    let delay = settings
        .retry_base
        .saturating_mul(1 << retries.min(10))
        .min(settings.retry_cap);
    tokio::time::sleep(delay).await;
}

/// Hands records to the on-failure destination. A record is never passed over unless it is
/// acknowledged or in the destination: a send that fails is retried, with the same capped
/// backoff, until the destination takes it.
async fn give_up<I, D: FailureDestination>(
    t: &Target<'_, I, D>,
    records: &[Record],
    condition: &str,
    invokes: u32,
    last: Option<&Invocation>,
    now: DateTime<Utc>,
    stats: &mut Stats,
) {
    let message = failure_message(
        records,
        condition,
        invokes,
        last,
        t.function_arn,
        t.shard_id,
        t.stream_arn,
        now,
    );
    let mut attempt = 0;
    while let Err(e) = t.destination.send(message.clone()).await {
        stats.destination_failures += 1;
        tracing::warn!(shard_id = %t.shard_id, error = %e, attempt, "sending to the on-failure destination failed; retrying");
        backoff(t.settings, attempt).await;
        attempt = attempt.saturating_add(1);
    }
    stats.destination_messages += 1;
    stats.records_sent_to_destination += records.len() as u64;
    tracing::warn!(shard_id = %t.shard_id, condition, records = records.len(), "batch sent to the on-failure destination");
}
