//! The producer: events → PutRecords batches (optionally KPL-aggregated) → a Kinesis stream, at a
//! steady rate, with retries of partial failures and throttling, and an exact account of what was
//! sent and what was lost.

pub mod generate;
#[cfg(feature = "kinesis")]
pub mod kinesis;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use pipeline_core::kpl::{self, ShardRange, SubRecord};
use rand::Rng;
use serde::Serialize;

/// Kinesis limits for PutRecords.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Aggregates stay small enough to spread over shards and to keep batches fine-grained.
pub const MAX_AGGREGATE_BYTES: usize = 50 * 1024;

/// One Kinesis record to put: a plain event or a KPL aggregate of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub partition_key: String,
    /// Where Kinesis puts it, instead of the partition key's hash: an aggregate's is its first
    /// sub-record's, so the whole aggregate lands on the shard that owns every sub-record.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// User events inside (1 for a plain record).
    pub events: u64,
}

impl Entry {
    pub fn plain(partition_key: String, data: Vec<u8>) -> Entry {
        Entry {
            partition_key,
            explicit_hash_key: None,
            data,
            events: 1,
        }
    }

    /// What counts against Kinesis's 1 MiB record limit: the data and the partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The reason an event over Kinesis's record limit is refused before it is sent.
pub const RECORD_TOO_LARGE: &str = "RecordTooLarge";

/// Keeps the entries within Kinesis's 1 MiB record limit; the others are refused before any call
/// (a PutRecords call with one of them would fail whole). Returns the kept entries and the number
/// of events refused.
pub fn within_record_limit(entries: Vec<Entry>) -> (Vec<Entry>, u64) {
    let (kept, refused): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| e.size() <= MAX_RECORD_BYTES);
    (kept, refused.iter().map(|e| e.events).sum())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Ok,
    Failed { code: String, message: String },
}

/// A whole PutRecords call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("putrecords failed ({}): {message}", if *.retryable { "retryable" } else { "permanent" })]
pub struct SinkError {
    pub retryable: bool,
    /// The call may have taken effect (a timeout or a lost response): retrying it may put its
    /// records twice.
    pub ambiguous: bool,
    pub code: String,
    pub message: String,
}

/// Where batches go: the Kinesis client, or a test double.
pub trait RecordSink: Send + Sync {
    fn put_records(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, SinkError>> + Send;

    /// The stream's open shards with their hash-key ranges (every page of ListShards).
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardRange>, SinkError>> + Send;
}

/// Groups events into aggregates of at most [`MAX_AGGREGATE_BYTES`], **only events bound for the
/// same shard together**: a Kinesis Client Library consumer drops the sub-records of an aggregate
/// that its shard does not own. `shards` are the stream's open shards (ListShards); without them
/// only events with the same partition key share an aggregate. Each aggregate carries its first
/// sub-record's hash key as its explicit hash key. An event that would make an aggregate larger
/// than Kinesis's record limit on its own is sent plain (and refused there if still too large).
pub fn aggregate(events: Vec<(String, Vec<u8>)>, shards: &[ShardRange]) -> Vec<Entry> {
    // Magic bytes and digest, then per record a conservative bound of the protobuf framing: the
    // record and its partition-key table entry.
    const FIXED: usize = 4 + 16;
    let mut groups: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut out = Vec::new();
    for (partition_key, data) in events {
        if data.len() + 2 * partition_key.len() + 24 + FIXED > MAX_AGGREGATE_BYTES {
            out.push(Entry::plain(partition_key, data));
            continue;
        }
        let group = match kpl::shard_of(shards, kpl::hash_key(&partition_key)) {
            Some(i) => format!("shard:{i}"),
            None => format!("key:{partition_key}"),
        };
        groups.entry(group).or_default().push((partition_key, data));
    }
    for (_, events) in groups {
        let mut current: Vec<SubRecord> = Vec::new();
        let mut size = FIXED;
        let flush = |current: &mut Vec<SubRecord>, out: &mut Vec<Entry>| {
            if let Some(first) = current.first() {
                out.push(Entry {
                    partition_key: first.partition_key.clone(),
                    explicit_hash_key: Some(kpl::hash_key(&first.partition_key).to_string()),
                    data: kpl::aggregate(current),
                    events: current.len() as u64,
                });
                current.clear();
            }
        };
        for (partition_key, data) in events {
            let add = data.len() + 2 * partition_key.len() + 24;
            if size + add > MAX_AGGREGATE_BYTES {
                flush(&mut current, &mut out);
                size = FIXED;
            }
            size += add;
            current.push(SubRecord {
                partition_key,
                explicit_hash_key: None,
                data,
            });
        }
        flush(&mut current, &mut out);
    }
    out
}

/// Splits entries into PutRecords calls within the count and size limits.
pub fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut size = 0;
    for e in entries {
        let full = out.last().is_none_or(|b| {
            b.len() >= MAX_RECORDS_PER_CALL || size + e.size() > MAX_BYTES_PER_CALL
        });
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += e.size();
        if let Some(b) = out.last_mut() {
            b.push(e);
        }
    }
    out
}

/// Retry policy: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 10,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        }
    }
}

impl Retry {
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        ceiling.mul_f64(rand::rng().random::<f64>())
    }
}

/// The result of sending one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub sent_records: u64,
    pub sent_events: u64,
    pub failed_events: u64,
    /// Why events were finally lost, by error code.
    pub failures: BTreeMap<String, u64>,
    pub retried_records: u64,
    /// Records sent again after a call that may have taken effect: they may be in the stream
    /// twice (downstream deduplication by `event_id` removes them).
    pub possibly_duplicated_records: u64,
    pub calls: u64,
    pub latencies: Vec<Duration>,
}

/// Sends one batch, retrying failed entries and retryable call errors until `retry` gives up.
pub async fn send_batch<S: RecordSink>(sink: &S, batch: Vec<Entry>, retry: Retry) -> BatchResult {
    let mut result = BatchResult::default();
    let mut pending = batch;
    let mut last_reason: BTreeMap<usize, String> = BTreeMap::new();
    for attempt in 0..retry.max_attempts {
        if attempt > 0 {
            tokio::time::sleep(retry.delay(attempt)).await;
        }
        let started = std::time::Instant::now();
        let outcome = sink.put_records(&pending).await;
        result.latencies.push(started.elapsed());
        result.calls += 1;
        match outcome {
            Ok(outcomes) => {
                let mut again = Vec::new();
                for (entry, o) in
                    pending
                        .into_iter()
                        .zip(
                            outcomes
                                .into_iter()
                                .chain(std::iter::repeat(EntryOutcome::Failed {
                                    code: "MissingResult".into(),
                                    message: "the response had fewer results than records".into(),
                                })),
                        )
                {
                    match o {
                        EntryOutcome::Ok => {
                            result.sent_records += 1;
                            result.sent_events += entry.events;
                        }
                        EntryOutcome::Failed { code, .. } => {
                            last_reason.insert(again.len(), code);
                            again.push(entry);
                        }
                    }
                }
                if again.is_empty() {
                    return result;
                }
                result.retried_records += again.len() as u64;
                pending = again;
            }
            Err(e) if e.retryable => {
                for i in 0..pending.len() {
                    last_reason.insert(i, e.code.clone());
                }
                result.retried_records += pending.len() as u64;
                if e.ambiguous {
                    result.possibly_duplicated_records += pending.len() as u64;
                }
            }
            Err(e) => {
                for entry in &pending {
                    result.failed_events += entry.events;
                    *result.failures.entry(e.code.clone()).or_default() += entry.events;
                }
                return result;
            }
        }
    }
    for (i, entry) in pending.iter().enumerate() {
        result.failed_events += entry.events;
        let reason = last_reason
            .get(&i)
            .cloned()
            .unwrap_or_else(|| "RetriesExhausted".into());
        *result.failures.entry(reason).or_default() += entry.events;
    }
    result
}

/// A token bucket over events per second, driven by the caller's clock for testability.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// `rate` events per second, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Duration::ZERO,
        }
    }

    /// Takes `n` tokens at time `now` (since start); returns how long to wait before sending.
    pub fn take(&mut self, n: f64, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The final account of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub events_generated: u64,
    pub events_valid: u64,
    pub events_invalid: u64,
    pub events_sent: u64,
    pub records_sent: u64,
    pub events_failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub records_retried: u64,
    /// Records sent again after a call that may have taken effect (see [`BatchResult`]).
    pub records_possibly_duplicated: u64,
    pub put_records_calls: u64,
    pub elapsed_seconds: f64,
    pub events_per_second: f64,
    pub put_records_p50_ms: f64,
    pub put_records_p99_ms: f64,
    pub first_event_id: Option<String>,
    pub last_event_id: Option<String>,
}

impl Summary {
    pub fn add(&mut self, r: &BatchResult) {
        self.events_sent += r.sent_events;
        self.records_sent += r.sent_records;
        self.events_failed += r.failed_events;
        self.records_retried += r.retried_records;
        self.records_possibly_duplicated += r.possibly_duplicated_records;
        self.put_records_calls += r.calls;
        for (k, v) in &r.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
    }

    /// Events lost before or without a call (a refused record, a send task that died).
    pub fn lose(&mut self, reason: &str, events: u64) {
        if events > 0 {
            self.events_failed += events;
            *self.failures.entry(reason.to_owned()).or_default() += events;
        }
    }

    pub fn finish(&mut self, elapsed: Duration, mut latencies: Vec<Duration>) {
        self.elapsed_seconds = elapsed.as_secs_f64();
        self.events_per_second = if self.elapsed_seconds > 0.0 {
            self.events_sent as f64 / self.elapsed_seconds
        } else {
            0.0
        };
        latencies.sort();
        let millis: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let pct = |p: f64| pipeline_core::stats::nearest_rank(&millis, p);
        self.put_records_p50_ms = pct(0.50);
        self.put_records_p99_ms = pct(0.99);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use test_support::block_on;

    use super::*;

    /// A sink that fails the entries whose position matches a pattern, a number of times.
    struct Flaky {
        calls: Mutex<u32>,
        fail_first_calls: u32,
        throttle_calls: u32,
        /// The throttled calls are timeouts instead: they may have taken effect.
        timeouts: bool,
    }

    impl RecordSink for Flaky {
        async fn shards(&self) -> Result<Vec<ShardRange>, SinkError> {
            Ok(Vec::new())
        }

        async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, SinkError> {
            let call = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if call <= self.throttle_calls {
                return Err(SinkError {
                    retryable: true,
                    ambiguous: self.timeouts,
                    code: "LimitExceededException".into(),
                    message: "slow down".into(),
                });
            }
            Ok(entries
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    if call <= self.throttle_calls + self.fail_first_calls && i % 2 == 0 {
                        EntryOutcome::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "busy".into(),
                        }
                    } else {
                        EntryOutcome::Ok
                    }
                })
                .collect())
        }
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::plain(format!("p{i}"), vec![b'x'; 10]))
            .collect()
    }

    fn fast() -> Retry {
        Retry {
            max_attempts: 4,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }
    }

    #[test]
    fn partial_failures_and_throttling_are_retried_until_sent() {
        let sink = Flaky {
            calls: Mutex::new(0),
            fail_first_calls: 2,
            throttle_calls: 1,
            timeouts: false,
        };
        let r = block_on(send_batch(&sink, entries(10), fast()));
        assert_eq!((r.sent_events, r.failed_events, r.calls), (10, 0, 4));
        assert_eq!(r.retried_records, 10 + 5 + 3);
    }

    #[test]
    fn exhausted_retries_are_counted_as_lost_with_their_reason() {
        let sink = Flaky {
            calls: Mutex::new(0),
            fail_first_calls: 100,
            throttle_calls: 0,
            timeouts: false,
        };
        let r = block_on(send_batch(&sink, entries(8), fast()));
        assert_eq!(r.sent_events + r.failed_events, 8);
        assert_eq!(r.failed_events, 1, "entry 0 fails on every attempt");
        assert_eq!(r.failures["ProvisionedThroughputExceededException"], 1);
    }

    #[test]
    fn batches_respect_count_and_size_limits() {
        let b = batches(entries(1_234));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 234]);
        let big: Vec<Entry> = (0..12)
            .map(|i| Entry::plain(format!("{i}"), vec![0; 1_000_000]))
            .collect();
        let b = batches(big);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
    }

    #[test]
    fn aggregates_stay_under_the_size_limit_and_keep_every_event() {
        let events: Vec<(String, Vec<u8>)> = (0..500)
            .map(|i| (format!("k{i}"), vec![b'e'; 400]))
            .collect();
        let agg = aggregate(events, &[]);
        assert!(agg.len() > 1);
        assert!(agg.iter().all(|e| e.data.len() <= MAX_AGGREGATE_BYTES));
        let total: usize = agg
            .iter()
            .map(|e| kpl::deaggregate(&e.data).unwrap().len())
            .sum();
        assert_eq!(total, 500);
        assert_eq!(agg.iter().map(|e| e.events).sum::<u64>(), 500);
    }

    fn two_shards() -> Vec<ShardRange> {
        let half = u128::MAX / 2;
        vec![
            ShardRange::parse("shardId-0", "0", &half.to_string()).unwrap(),
            ShardRange::parse("shardId-1", &(half + 1).to_string(), &u128::MAX.to_string())
                .unwrap(),
        ]
    }

    #[test]
    fn aggregates_hold_only_records_of_one_shard_and_say_where_they_go() {
        let shards = two_shards();
        let events: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("k{i}"), vec![b'e'; 400]))
            .collect();
        let agg = aggregate(events, &shards);
        assert_eq!(agg.iter().map(|e| e.events).sum::<u64>(), 300);
        for e in &agg {
            let explicit: u128 = e.explicit_hash_key.as_deref().unwrap().parse().unwrap();
            let shard = kpl::shard_of(&shards, explicit).unwrap();
            for sub in kpl::deaggregate(&e.data).unwrap() {
                assert_eq!(
                    kpl::shard_of(&shards, kpl::hash_key(&sub.partition_key)),
                    Some(shard),
                    "{} is not on the aggregate's shard",
                    sub.partition_key
                );
            }
        }
        // Both shards get aggregates: the keys spread over the hash space.
        let used: std::collections::BTreeSet<usize> = agg
            .iter()
            .map(|e| {
                kpl::shard_of(
                    &shards,
                    e.explicit_hash_key.as_deref().unwrap().parse().unwrap(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(used.len(), 2);
        // Without a shard map only one partition key shares an aggregate.
        let agg = aggregate(
            vec![
                ("a".into(), vec![1]),
                ("b".into(), vec![2]),
                ("a".into(), vec![3]),
            ],
            &[],
        );
        assert_eq!(agg.iter().map(|e| e.events).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn records_over_one_mebibyte_are_refused_before_any_call() {
        let entries = vec![
            Entry::plain("k".into(), vec![0; MAX_RECORD_BYTES - 1]),
            Entry::plain("kk".into(), vec![0; MAX_RECORD_BYTES - 1]),
            Entry::plain("k".into(), vec![0; 10]),
        ];
        let (kept, refused) = within_record_limit(entries);
        assert_eq!(refused, 1);
        assert_eq!(kept.len(), 2);
        // A huge event is not folded into an aggregate; it stays plain and is then refused.
        let agg = aggregate(vec![("k".into(), vec![0; MAX_RECORD_BYTES])], &two_shards());
        assert_eq!(agg[0].explicit_hash_key, None);
        assert_eq!(within_record_limit(agg).1, 1);
    }

    #[test]
    fn records_retried_after_a_call_that_may_have_taken_effect_are_counted_as_possible_duplicates()
    {
        let sink = Flaky {
            calls: Mutex::new(0),
            fail_first_calls: 0,
            throttle_calls: 2,
            timeouts: true,
        };
        let r = block_on(send_batch(&sink, entries(10), fast()));
        assert_eq!((r.sent_events, r.failed_events), (10, 0));
        assert_eq!(r.possibly_duplicated_records, 20);
        let mut s = Summary::default();
        s.add(&r);
        assert_eq!(s.records_possibly_duplicated, 20);
    }

    #[test]
    fn token_bucket_paces_to_the_rate() {
        let mut tb = TokenBucket::new(1_000.0, 100.0);
        assert_eq!(tb.take(100.0, Duration::ZERO), Duration::ZERO);
        // The next 500 events must wait half a second at 1,000/s.
        let wait = tb.take(500.0, Duration::ZERO);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // After that second has passed the debt is repaid and the burst refilled (capped).
        assert_eq!(tb.take(50.0, Duration::from_secs(2)), Duration::ZERO);
    }

    #[test]
    fn summary_percentiles() {
        let mut s = Summary {
            events_sent: 100,
            ..Summary::default()
        };
        s.finish(
            Duration::from_secs(2),
            (1..=100).map(Duration::from_millis).collect(),
        );
        assert_eq!(
            (
                s.put_records_p50_ms,
                s.put_records_p99_ms,
                s.events_per_second
            ),
            (50.0, 99.0, 50.0)
        );
    }
}
