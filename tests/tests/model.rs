//! The pipeline's central invariant, checked against a model of the platform.
//!
//! The real handlers run over in-memory stores that fail at random (before or after a write takes
//! effect), behind the real Kinesis event-source mapping of the local stack (`pipeline_ops::esm`:
//! batches, `ParallelizationFactor` lanes, partial batch failures with checkpointing at the lowest
//! reported sequence number, function errors, bisection, `MaximumRetryAttempts` and the
//! on-failure destination in AWS's format), invoking the stream processor in process and crashing
//! it after its work at random; a redrive of every dead letter by its range; and a model of S3 →
//! Lambda async invocation (duplicate and out-of-order notifications, retries, a dead-letter queue
//! and a redrive). After quiescence:
//! - every valid unit is in exactly one processed row (event ids are unique here);
//! - every invalid unit is in exactly one quarantine line, with the expected reason;
//! - every metadata item is `PROCESSED` and its output set lists exactly the processed objects of
//!   its raw key.
//!
//! The in-memory table refuses items over DynamoDB's 400 KB limit, as DynamoDB does.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::{DateTime, TimeZone, Utc};
use pipeline_aws::read_output_set;
use pipeline_aws::store::Status;
use pipeline_core::ingest::{QuarantineLine, gunzip};
use pipeline_core::keys::seq_cmp;
use pipeline_core::kpl::{self, SubRecord};
use pipeline_core::parquet_io::read_rows;
use pipeline_core::transform::Pseudonymizer;
use pipeline_core::{Reason, event};
use pipeline_ops::esm;
use proptest::prelude::*;
use serde_json::{Value, json};
use stream_processor::StreamProcessor;
use test_support::memory::{Faults, MemoryMetadataStore, MemoryObjectStore, PutNotice};
use transformer::Transformer;

const RAW: &str = "raw";
const PROCESSED: &str = "processed";

fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 30, 0).unwrap()
}

#[derive(Debug, Clone)]
enum Unit {
    Valid { ty: &'static str, minutes_ago: i64 },
    Invalid(&'static str),
}

#[derive(Debug, Clone)]
enum Rec {
    Plain(Unit),
    Aggregate(Vec<Unit>),
    CorruptAggregate(Vec<Unit>),
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        5 => (prop::sample::select(vec!["page_view", "click", "purchase"]), 0i64..120)
            .prop_map(|(ty, minutes_ago)| Unit::Valid { ty, minutes_ago }),
        1 => prop::sample::select(vec!["{", "[]", "{\"event_id\":\"x\"}", "\u{0}\u{ff}"]).prop_map(Unit::Invalid),
    ]
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        6 => unit().prop_map(Rec::Plain),
        1 => prop::collection::vec(unit(), 1..4).prop_map(Rec::Aggregate),
        1 => prop::collection::vec(unit(), 1..3).prop_map(Rec::CorruptAggregate),
    ]
}

#[derive(Debug, Clone)]
struct Platform {
    batch_size: usize,
    /// `ParallelizationFactor`: lanes of a shard by partition key.
    parallelization: usize,
    max_retries: u32,
    bisect: bool,
    sp_fail_before: f64,
    sp_fail_after: f64,
    sp_crash: f64,
    tf_fail: f64,
    duplicate_notification: f64,
    /// Whether the operator redrives the stream's dead letters. Without, a batch whose object was
    /// written before it failed for good leaves that object behind, overlapping its halves'.
    redrive: bool,
    /// A redelivery after the run: the mapping restarted from an earlier checkpoint (a share of
    /// each shard's records, in percent) with another batch size, so batch boundaries differ.
    redelivery: Option<(usize, usize)>,
    seed: u64,
}

impl Platform {
    /// No fault, no retry, no duplicate notification, one lane, batches of one, every dead letter
    /// redriven, no redelivery.
    fn fault_free() -> Self {
        Platform {
            batch_size: 1,
            parallelization: 1,
            max_retries: 0,
            bisect: false,
            sp_fail_before: 0.0,
            sp_fail_after: 0.0,
            sp_crash: 0.0,
            tf_fail: 0.0,
            duplicate_notification: 0.0,
            redrive: true,
            redelivery: None,
            seed: 1,
        }
    }
}

fn platform() -> impl Strategy<Value = Platform> {
    (
        (1usize..8, 1usize..4),
        0u32..3,
        any::<bool>(),
        0.0..0.25f64,
        0.0..0.15f64,
        0.0..0.2f64,
        0.0..0.3f64,
        0.0..0.5f64,
        (any::<bool>(), prop::option::of((0usize..100, 1usize..8))),
        any::<u64>(),
    )
        .prop_map(
            |(
                (batch_size, parallelization),
                max_retries,
                bisect,
                sp_fail_before,
                sp_fail_after,
                sp_crash,
                tf_fail,
                duplicate_notification,
                (redrive, redelivery),
                seed,
            )| Platform {
                batch_size,
                parallelization,
                max_retries,
                bisect,
                sp_fail_before,
                sp_fail_after,
                sp_crash,
                tf_fail,
                duplicate_notification,
                redrive,
                redelivery,
                seed,
            },
        )
}

/// A record of the stream: its coordinates and bytes.
struct StreamRecord {
    shard: String,
    seq: String,
    data: Vec<u8>,
}

fn unit_bytes(u: &Unit, id: usize) -> Vec<u8> {
    match u {
        Unit::Valid { ty, minutes_ago } => json!({
            "event_id": format!("ev-{id}"),
            "event_type": ty,
            "occurred_at": event::fmt_time(arrival() - chrono::Duration::minutes(*minutes_ago)),
            "source": "model",
            "user_id": format!("user-{}", id % 7),
        })
        .to_string()
        .into_bytes(),
        Unit::Invalid(s) => s.as_bytes().to_vec(),
    }
}

/// (shard, sequence number, sub-sequence number) → `Ok(())` or the rejection reason.
type Expected = BTreeMap<(String, String, u64), Result<(), Reason>>;

/// Builds the stream and the expected outcome of every unit.
fn build(records: &[Rec], shards: usize) -> (Vec<StreamRecord>, Expected) {
    let mut stream = Vec::new();
    let mut expected = BTreeMap::new();
    let mut next_id = 0;
    for (i, r) in records.iter().enumerate() {
        let shard = format!("shardId-{:012}", i % shards);
        let seq = format!("{}", 49_000_000_000u64 + i as u64);
        let mut subs = |units: &[Unit]| -> Vec<SubRecord> {
            units
                .iter()
                .map(|u| {
                    next_id += 1;
                    SubRecord {
                        partition_key: "pk".into(),
                        explicit_hash_key: None,
                        data: unit_bytes(u, next_id),
                    }
                })
                .collect()
        };
        let data = match r {
            Rec::Plain(u) => subs(std::slice::from_ref(u)).remove(0).data,
            Rec::Aggregate(units) => kpl::aggregate(&subs(units)),
            Rec::CorruptAggregate(units) => {
                let mut b = kpl::aggregate(&subs(units));
                let n = b.len();
                b[n - 1] ^= 1;
                b
            }
        };
        // The oracle: what the contract says about each unit.
        let verdict = |d: &[u8]| {
            event::validate(d, arrival())
                .map(drop)
                .map_err(|r| r.reason)
        };
        if kpl::is_aggregated(&data) {
            match kpl::deaggregate(&data) {
                Ok(subs) => {
                    for (j, s) in subs.iter().enumerate() {
                        expected.insert((shard.clone(), seq.clone(), j as u64), verdict(&s.data));
                    }
                }
                Err(rej) => {
                    expected.insert((shard.clone(), seq.clone(), 0), Err(rej.reason));
                }
            }
        } else {
            expected.insert((shard.clone(), seq.clone(), 0), verdict(&data));
        }
        stream.push(StreamRecord { shard, seq, data });
    }
    (stream, expected)
}

fn s3_event(n: &PutNotice) -> Value {
    lambda_payloads::s3::object_created(
        &[lambda_payloads::s3::CreatedObject {
            bucket: &n.bucket,
            key: &n.key,
            size: 1,
            sequencer: Some(&n.sequencer),
        }],
        "2026-11-25T10:30:00Z".parse().expect("a time"),
        "eu-west-1",
        "x",
    )
}

/// Deterministic coin flips for the model's own choices.
struct Coin(u64);

impl Coin {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn flip(&mut self, p: f64) -> bool {
        self.next() < p
    }
}

struct Model {
    p: Platform,
    /// The transformer's time: milliseconds after [`arrival`]; the model steps it.
    clock: std::sync::Arc<std::sync::atomic::AtomicI64>,
    coin: Coin,
    objects: MemoryObjectStore,
    metadata: MemoryMetadataStore,
    sp: StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    tf: Transformer<MemoryObjectStore, MemoryMetadataStore>,
    notifications: Vec<PutNotice>,
    transform_dlq: Vec<PutNotice>,
    invocations: u64,
}

impl Model {
    fn new(p: Platform) -> Self {
        let clock = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let objects =
            MemoryObjectStore::new(Faults::new(p.seed, p.sp_fail_before, p.sp_fail_after));
        let metadata = MemoryMetadataStore::new(Faults::new(
            p.seed.rotate_left(17),
            p.sp_fail_before,
            p.sp_fail_after,
        ));
        let sp = StreamProcessor::with_clock(
            objects.clone(),
            metadata.clone(),
            stream_processor::Settings {
                raw_bucket: RAW.into(),
                metadata_table: "t".into(),
                metadata_ttl_days: 1,
                function_name: "sp".into(),
            },
            std::sync::Arc::new(arrival),
        );
        let tf = Transformer::with_clock(
            objects.clone(),
            metadata.clone(),
            Pseudonymizer::new(b"model").unwrap(),
            transformer::Settings {
                processed_bucket: PROCESSED.into(),
                metadata_table: "t".into(),
                metadata_ttl_days: 1,
                hmac_secret_id: "s".into(),
                function_name: "tf".into(),
                item_wait: Duration::from_millis(1),
                lease: Duration::ZERO,
                version: "model".into(),
            },
            {
                let clock = clock.clone();
                std::sync::Arc::new(move || {
                    arrival()
                        + chrono::Duration::milliseconds(
                            clock.load(std::sync::atomic::Ordering::SeqCst),
                        )
                })
            },
        );
        Model {
            clock,
            coin: Coin(p.seed | 1),
            p,
            objects,
            metadata,
            sp,
            tf,
            notifications: Vec::new(),
            transform_dlq: Vec::new(),
            invocations: 0,
        }
    }

    fn set_faults(&self, on: bool) {
        let p = &self.p;
        let (before, after) = if on {
            (p.sp_fail_before, p.sp_fail_after)
        } else {
            (0.0, 0.0)
        };
        self.objects
            .set_faults(Faults::new(p.seed ^ self.invocations, before, after));
        self.metadata.set_faults(Faults::new(
            p.seed.rotate_left(7) ^ self.invocations,
            before,
            after,
        ));
    }

    /// One invocation of the stream processor with the mapping's event: its response, or `None`
    /// when it crashed after doing its work (the response is lost, the mapping sees a function
    /// error).
    async fn invoke_sp(&mut self, payload: &[u8], faults: bool) -> Option<Vec<u8>> {
        self.invocations += 1;
        self.set_faults(faults);
        let event: KinesisEvent =
            serde_json::from_slice(payload).expect("the mapping sends a Kinesis event");
        let id = format!("sp-{}", self.invocations);
        let (response, _) = self.sp.handle(&event, &id).await;
        self.collect_notices();
        if faults && self.coin.flip(self.p.sp_crash) {
            return None;
        }
        Some(serde_json::to_vec(&response).unwrap())
    }

    fn collect_notices(&mut self) {
        for n in self.objects.take_notices() {
            if n.bucket == RAW && n.key.starts_with("raw/") {
                if self.coin.flip(self.p.duplicate_notification) {
                    self.notifications.push(n.clone());
                }
                self.notifications.push(n);
            }
        }
    }

    /// Delivers queued notifications in random order, each with async retries (1 + 2 attempts).
    async fn deliver_some(&mut self, faults: bool) {
        let mut queue = std::mem::take(&mut self.notifications);
        // Shuffle: out-of-order delivery.
        for i in (1..queue.len()).rev() {
            let j = (self.coin.next() * (i + 1) as f64) as usize;
            queue.swap(i, j.min(i));
        }
        for n in queue {
            let mut done = false;
            for attempt in 0..3 {
                self.invocations += 1;
                // Time passes between attempts: a dead attempt's zero-length lease has expired.
                self.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let p = if faults { self.p.tf_fail } else { 0.0 };
                self.objects
                    .set_faults(Faults::new(self.p.seed ^ self.invocations, p, p / 2.0));
                self.metadata.set_faults(Faults::new(
                    self.p.seed.rotate_left(3) ^ self.invocations,
                    p,
                    p / 2.0,
                ));
                let owner = format!("tf-{}-{attempt}", n.sequencer);
                match self.tf.handle(&s3_event(&n), &owner).await {
                    Ok(_) => {
                        done = true;
                        break;
                    }
                    Err(e) if !faults => eprintln!("transform failed without faults: {e}"),
                    Err(_) => {}
                }
            }
            // Puts by the transformer are not raw objects; drop their notices.
            let _ = self.objects.take_notices();
            if !done {
                self.transform_dlq.push(n);
            }
        }
    }
}

/// The stream processor behind the real event-source mapping: invoked in process, over the
/// failing stores; notifications are delivered while the stream is still being consumed.
struct InProcess<'m> {
    model: &'m tokio::sync::Mutex<Model>,
}

impl esm::Invoker for InProcess<'_> {
    async fn invoke(&self, payload: Vec<u8>) -> Result<esm::Invocation, pipeline_ops::Error> {
        let mut m = self.model.lock().await;
        let response = m.invoke_sp(&payload, true).await;
        if m.coin.flip(0.5) {
            m.deliver_some(true).await;
        }
        let request_id = format!("sp-{}", m.invocations);
        Ok(match response {
            Some(payload) => esm::Invocation {
                request_id,
                status_code: 200,
                function_error: None,
                payload,
            },
            None => esm::Invocation {
                request_id,
                status_code: 200,
                function_error: Some("Unhandled".into()),
                payload:
                    br#"{"errorType":"Runtime.ExitError","errorMessage":"crashed after its work"}"#
                        .to_vec(),
            },
        })
    }
}

/// The on-failure destination: the messages, in AWS's format, that a redrive reads.
#[derive(Default)]
struct Destination {
    messages: std::sync::Mutex<Vec<String>>,
}

impl esm::FailureDestination for &Destination {
    async fn send(&self, message: String) -> Result<(), pipeline_ops::Error> {
        self.messages.lock().unwrap().push(message);
        Ok(())
    }
}

/// The mapping reads each shard's records at once.
struct Shard(Vec<esm::Record>);

impl esm::ShardReader for Shard {
    async fn read(&mut self) -> Result<Vec<esm::Record>, pipeline_ops::Error> {
        Ok(std::mem::take(&mut self.0))
    }
}

fn partition_key(i: usize) -> String {
    format!("pk-{}", i % 5)
}

/// Record `i` of the stream as the mapping reads it.
fn esm_record(i: usize, r: &StreamRecord) -> esm::Record {
    esm::Record {
        sequence_number: r.seq.clone(),
        arrival: arrival(),
        partition_key: partition_key(i),
        data: r.data.clone(),
    }
}

fn mapping_settings(p: &Platform) -> esm::Settings {
    esm::Settings {
        batch_size: p.batch_size,
        batching_window: Duration::ZERO,
        starting_position: pipeline_config::StartingPosition::TrimHorizon,
        starting_timestamp: None,
        bisect_on_error: p.bisect,
        maximum_retry_attempts: p.max_retries as i32,
        maximum_record_age_seconds: -1,
        report_batch_item_failures: true,
        parallelization_factor: p.parallelization,
        // The model's time does not pass.
        retry_base: Duration::ZERO,
        retry_cap: Duration::ZERO,
    }
}

/// One shard through the real event-source mapping (`pipeline_ops::esm`): batches, lanes,
/// partial failures, bisection, retries and the on-failure destination as it implements them.
async fn run_shard(
    model: &tokio::sync::Mutex<Model>,
    destination: &Destination,
    stream: &[StreamRecord],
    shard: &str,
    from: Option<(usize, usize)>,
) {
    let mut p = model.lock().await.p.clone();
    let records: Vec<esm::Record> = stream
        .iter()
        .enumerate()
        .filter(|(_, r)| r.shard == shard)
        .map(|(i, r)| esm_record(i, r))
        .collect();
    let records = match from {
        Some((percent, batch_size)) => {
            p.batch_size = batch_size;
            let start = records.len() * percent / 100;
            records[start..].to_vec()
        }
        None => records,
    };
    if records.is_empty() {
        return;
    }
    let mut mapping = esm::ShardMapping::new(
        shard.to_owned(),
        STREAM_ARN.to_owned(),
        "arn:aws:lambda:eu-west-1:000000000000:function:sp".to_owned(),
        "eu-west-1".to_owned(),
        mapping_settings(&p),
        Shard(records),
        InProcess { model },
        destination,
    );
    let delivered = mapping.step(arrival).await.unwrap();
    assert_eq!(mapping.pending(), 0);
    assert!(delivered > 0);
}

const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-1:000000000000:stream/model";

/// Quiescence: the on-failure destinations are redriven with the cause fixed (the stream's only
/// if the platform says so). A stream dead letter names its batch's range of one shard; with
/// lanes, only the batch's lane of it. Returns the records the stream dead letters that were
/// not redriven reference.
async fn quiesce(
    model: &mut Model,
    destination: &Destination,
    stream: &[StreamRecord],
) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut referenced = BTreeSet::new();
    let mut stuck = BTreeSet::new();
    model.deliver_some(true).await;
    let lanes = model.p.parallelization;
    let messages = std::mem::take(&mut *destination.messages.lock().unwrap());
    for message in messages {
        let m: Value = serde_json::from_str(&message).unwrap();
        let info = &m["KinesisBatchInfo"];
        let shard = info["shardId"].as_str().unwrap();
        let (start, end) = (
            info["startSequenceNumber"].as_str().unwrap(),
            info["endSequenceNumber"].as_str().unwrap(),
        );
        let first = stream
            .iter()
            .position(|r| r.shard == shard && r.seq == start)
            .expect("a dead letter names a record of the stream");
        let lane = esm::lane(&partition_key(first), lanes);
        let batch: Vec<esm::Record> = stream
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                r.shard == shard
                    && seq_cmp(&r.seq, start).is_ge()
                    && seq_cmp(&r.seq, end).is_le()
                    && esm::lane(&partition_key(*i), lanes) == lane
            })
            .map(|(i, r)| esm_record(i, r))
            .collect();
        assert_eq!(
            batch.len() as u64,
            info["batchSize"].as_u64().unwrap(),
            "{message}"
        );
        if !model.p.redrive {
            referenced.extend(
                batch
                    .iter()
                    .map(|r| (shard.to_owned(), r.sequence_number.clone())),
            );
            continue;
        }
        let payload = esm::event(&batch, shard, STREAM_ARN, "eu-west-1");
        let response = model
            .invoke_sp(&payload, false)
            .await
            .expect("a redrive without faults does not crash");
        let response: Value = serde_json::from_slice(&response).unwrap();
        assert!(
            response["batchItemFailures"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "a redrive without faults must succeed: {response}"
        );
    }
    model
        .notifications
        .extend(std::mem::take(&mut model.transform_dlq));
    // Leases left by runs that died are time-bounded (zero-length here): an operator's redrive
    // comes after they expire.
    model
        .clock
        .fetch_add(1_000, std::sync::atomic::Ordering::SeqCst);
    model.deliver_some(false).await;
    // Without a redrive of the stream's dead letters, an object (or a rewrite of one) whose batch
    // failed for good after writing it is never recorded, and its notification ends in the
    // transform dead-letter queue (the auditor reports it): the checks below show that each of
    // its records is processed elsewhere or referenced by a dead letter.
    for n in std::mem::take(&mut model.transform_dlq) {
        let object = model.objects.object(RAW, &n.key).unwrap();
        let recorded =
            model.metadata.all().into_iter().any(|i| {
                i.raw_key == n.key && i.raw_sha256 == object.metadata.get("sha256").cloned()
            });
        assert!(
            !model.p.redrive && !recorded,
            "a transform redrive without faults must succeed: {}",
            n.key
        );
        stuck.insert(n.key);
    }
    // The checks read the stores (output pages) too: no fault of the last run may outlive it.
    model.set_faults(false);
    (referenced, stuck)
}

fn check(records: Vec<Rec>, shards: usize, p: Platform) -> Result<(), TestCaseError> {
    let (stream, expected) = build(&records, shards);
    let (redrive, redelivery) = (p.redrive, p.redelivery);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let model = tokio::sync::Mutex::new(Model::new(p));
    let destination = Destination::default();
    rt.block_on(async {
        for shard in 0..shards {
            let shard = format!("shardId-{shard:012}");
            run_shard(&model, &destination, &stream, &shard, None).await;
            if redelivery.is_some() {
                run_shard(&model, &destination, &stream, &shard, redelivery).await;
            }
        }
    });
    let mut model = model.into_inner();
    // `stuck`: raw objects whose current content no batch recorded (the auditor reports them).
    let (referenced, stuck) = rt.block_on(quiesce(&mut model, &destination, &stream));
    let dead_lettered = |(shard, seq, _): &(String, String, u64)| {
        referenced.contains(&(shard.clone(), seq.clone()))
    };

    // Processed: every valid unit exactly once.
    let mut processed: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
    let processed_keys = model.objects.keys(PROCESSED, "processed/");
    for key in &processed_keys {
        for row in read_rows(model.objects.object(PROCESSED, key).unwrap().body).unwrap() {
            *processed
                .entry((
                    row.kinesis_shard.to_string(),
                    row.kinesis_seq,
                    row.kinesis_subseq as u64,
                ))
                .or_default() += 1;
        }
    }
    // A unit a dead letter that was not redriven references may or may not be processed (its
    // batch may have written its object before failing): at most once, like every unit.
    let want_valid: BTreeSet<_> = expected
        .iter()
        .filter(|(k, v)| v.is_ok() && !dead_lettered(k))
        .map(|(k, _)| k.clone())
        .collect();
    let dup: Vec<_> = processed.iter().filter(|(_, n)| **n > 1).collect();
    if (!dup.is_empty() || processed.len() < want_valid.len())
        && std::env::var_os("MODEL_DEBUG").is_some()
    {
        for key in &processed_keys {
            let rows = read_rows(model.objects.object(PROCESSED, key).unwrap().body).unwrap();
            eprintln!(
                "{key}: {:?}",
                rows.iter()
                    .map(|r| (r.kinesis_seq.clone(), r.raw_key.clone()))
                    .collect::<Vec<_>>()
            );
        }
        for item in model.metadata.all() {
            eprintln!("item {item:?}");
        }
    }
    prop_assert!(dup.is_empty(), "processed more than once: {dup:?}");
    let got_valid: BTreeSet<_> = processed
        .keys()
        .filter(|k| !dead_lettered(k))
        .cloned()
        .collect();
    prop_assert_eq!(
        &got_valid,
        &want_valid,
        "processed rows differ from the valid input"
    );
    prop_assert!(
        processed.keys().all(|k| expected.get(k) == Some(&Ok(()))),
        "a processed row is no valid unit"
    );

    // Quarantine: every invalid unit exactly once, with its reason.
    let mut quarantined: BTreeMap<(String, String, u64), Vec<Reason>> = BTreeMap::new();
    for key in model.objects.keys(RAW, "quarantine/") {
        let text =
            String::from_utf8(gunzip(&model.objects.object(RAW, &key).unwrap().body).unwrap())
                .unwrap();
        for line in text.lines() {
            let q: QuarantineLine = serde_json::from_str(line).unwrap();
            quarantined
                .entry((q.shard, q.seq, q.subseq))
                .or_default()
                .push(q.reason);
        }
    }
    let want_invalid: BTreeMap<_, _> = expected
        .iter()
        .filter_map(|(k, v)| v.err().map(|r| (k.clone(), vec![r])))
        .collect();
    if redrive && redelivery.is_none() {
        prop_assert_eq!(
            &quarantined,
            &want_invalid,
            "quarantine differs from the invalid input"
        );
    } else {
        // Quarantine objects are per batch: overlapping batches that both stay quarantine a
        // unit in each (the owner rule covers processed rows only). Every invalid unit that no
        // unredriven dead letter references is there, and only with its reason.
        for (k, reasons) in &quarantined {
            let want = want_invalid.get(k).map(|r| r[0]);
            prop_assert!(
                want.is_some() && reasons.iter().all(|r| Some(*r) == want),
                "{k:?} quarantined as {reasons:?}, want {want:?}"
            );
        }
        for k in want_invalid.keys().filter(|k| !dead_lettered(k)) {
            prop_assert!(quarantined.contains_key(k), "{k:?} not quarantined");
        }
    }

    // Metadata: every raw object processed, listing its outputs; a stuck one still lists the
    // outputs of the content it last processed, if any.
    let mut listed = BTreeSet::new();
    for item in model
        .metadata
        .all()
        .into_iter()
        .filter(|i| i.raw_sha256.is_some())
    {
        if stuck.contains(&item.raw_key) {
            if let Some(set) = item.outputs {
                listed.extend(
                    rt.block_on(read_output_set(&model.metadata, &item.raw_key, &set))
                        .unwrap(),
                );
            }
            continue;
        }
        prop_assert_eq!(
            item.status,
            Some(Status::Processed),
            "{} not processed",
            item.raw_key
        );
        prop_assert!(item.legacy_outputs.is_empty());
        let set = item
            .outputs
            .expect("a processed item refers to its output set");
        let keys = rt
            .block_on(read_output_set(&model.metadata, &item.raw_key, &set))
            .unwrap();
        prop_assert_eq!(keys.len() as u64, set.count);
        listed.extend(keys);
    }
    // Every output is listed by its raw object's item: none that nobody knows about. A listed
    // output may be gone: an object whose outputs lost every row to an object that starts
    // before it (while its raw object held a rewrite no batch recorded) keeps listing it.
    let existing: BTreeSet<String> = processed_keys.into_iter().collect();
    let unknown: Vec<_> = existing.difference(&listed).collect();
    prop_assert!(unknown.is_empty(), "outputs no item lists: {unknown:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, .. ProptestConfig::default() })]

    #[test]
    fn nothing_is_lost_or_duplicated_under_retries_and_failures(
        records in prop::collection::vec(rec(), 1..40),
        shards in 1usize..3,
        p in platform(),
    ) {
        check(records, shards, p)?;
    }

    /// A restart from an earlier checkpoint with another batch size (or any redelivery with
    /// other batch boundaries) on a platform without faults: every record is delivered twice,
    /// in batches that start at other records, and still processed once.
    #[test]
    fn a_redelivery_with_other_batch_boundaries_processes_each_record_once(
        records in prop::collection::vec(rec(), 1..40),
        shards in 1usize..3,
        (batch_size, parallelization, duplicate_notification) in (1usize..8, 1usize..4, 0.0..0.5f64),
        redelivery in (0usize..100, 1usize..8),
        seed in any::<u64>(),
    ) {
        let p = Platform {
            batch_size,
            parallelization,
            duplicate_notification,
            redelivery: Some(redelivery),
            seed,
            ..Platform::fault_free()
        };
        check(records, shards, p)?;
    }
}

#[test]
fn a_fault_free_run_is_exact_too() {
    let records: Vec<Rec> = (0..30)
        .map(|i| match i % 5 {
            0 => Rec::Aggregate(vec![
                Unit::Valid {
                    ty: "click",
                    minutes_ago: 1,
                },
                Unit::Invalid("[]"),
            ]),
            1 => Rec::Plain(Unit::Invalid("{")),
            _ => Rec::Plain(Unit::Valid {
                ty: "purchase",
                minutes_ago: 61,
            }),
        })
        .collect();
    let p = Platform {
        batch_size: 7,
        ..Platform::fault_free()
    };
    check(records.clone(), 2, p.clone()).unwrap();
    // A restart from an earlier checkpoint with another batch size delivers every record of
    // the last two thirds again, in batches that start at other records: each is still processed
    // once.
    check(
        records,
        2,
        Platform {
            redelivery: Some((33, 3)),
            ..p
        },
    )
    .unwrap();
}
