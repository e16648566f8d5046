//! The pipeline's central invariant, checked against a model of the platform.
//!
//! The real handlers run over in-memory stores that fail at random (before or after a write takes
//! effect). Around them, a model of Lambda's Kinesis event-source mapping (partial batch failures
//! with checkpointing at the lowest reported sequence number, function errors, bisection,
//! `MaximumRetryAttempts`, the on-failure destination and a redrive) and of S3 → Lambda async
//! invocation (duplicate and out-of-order notifications, retries, a dead-letter queue and a
//! redrive). After quiescence:
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
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use pipeline_aws::memory::{Faults, MemoryMetadataStore, MemoryObjectStore, PutNotice};
use pipeline_aws::read_output_set;
use pipeline_aws::store::STATUS_PROCESSED;
use pipeline_core::ingest::{QuarantineLine, gunzip};
use pipeline_core::kpl::{self, SubRecord};
use pipeline_core::parquet_io::read_rows;
use pipeline_core::transform::Pseudonymizer;
use pipeline_core::{Reason, event};
use proptest::prelude::*;
use serde_json::{Value, json};
use stream_processor::StreamProcessor;
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
    max_retries: u32,
    bisect: bool,
    sp_fail_before: f64,
    sp_fail_after: f64,
    sp_crash: f64,
    tf_fail: f64,
    duplicate_notification: f64,
    seed: u64,
}

fn platform() -> impl Strategy<Value = Platform> {
    (
        1usize..8,
        0u32..3,
        any::<bool>(),
        0.0..0.25f64,
        0.0..0.15f64,
        0.0..0.2f64,
        0.0..0.3f64,
        0.0..0.5f64,
        any::<u64>(),
    )
        .prop_map(
            |(
                batch_size,
                max_retries,
                bisect,
                sp_fail_before,
                sp_fail_after,
                sp_crash,
                tf_fail,
                duplicate_notification,
                seed,
            )| Platform {
                batch_size,
                max_retries,
                bisect,
                sp_fail_before,
                sp_fail_after,
                sp_crash,
                tf_fail,
                duplicate_notification,
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

fn kinesis_event(records: &[&StreamRecord]) -> KinesisEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "partitionKey": "pk",
                    "sequenceNumber": r.seq,
                    "approximateArrivalTimestamp": arrival().timestamp() as f64,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "kinesisSchemaVersion": "1.0",
                },
                "eventID": format!("{}:{}", r.shard, r.seq),
                "eventSource": "aws:kinesis",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn s3_event(n: &PutNotice) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2026-11-25T10:30:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "x"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "raw",
               "bucket": {"name": n.bucket, "ownerIdentity": {"principalId": "x"}, "arn": format!("arn:aws:s3:::{}", n.bucket)},
               "object": {"key": n.key.replace('=', "%3D"), "size": 1, "eTag": "e", "sequencer": n.sequencer}}
    }]})
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
    coin: Coin,
    objects: MemoryObjectStore,
    metadata: MemoryMetadataStore,
    sp: StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    tf: Transformer<MemoryObjectStore, MemoryMetadataStore>,
    rt: tokio::runtime::Runtime,
    notifications: Vec<PutNotice>,
    stream_dlq: Vec<Vec<usize>>,
    transform_dlq: Vec<PutNotice>,
    invocations: u64,
}

enum Invocation {
    Ok,
    Partial(String),
    FunctionError,
}

impl Model {
    fn new(p: Platform) -> Self {
        let objects =
            MemoryObjectStore::new(Faults::new(p.seed, p.sp_fail_before, p.sp_fail_after));
        let metadata = MemoryMetadataStore::new(Faults::new(
            p.seed.rotate_left(17),
            p.sp_fail_before,
            p.sp_fail_after,
        ));
        let sp = StreamProcessor::new(
            objects.clone(),
            metadata.clone(),
            stream_processor::Settings {
                raw_bucket: RAW.into(),
                metadata_table: "t".into(),
                metadata_ttl_days: 1,
                function_name: "sp".into(),
            },
        );
        let tf = Transformer::new(
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
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        Model {
            coin: Coin(p.seed | 1),
            p,
            objects,
            metadata,
            sp,
            tf,
            rt,
            notifications: Vec::new(),
            stream_dlq: Vec::new(),
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

    fn invoke_sp(&mut self, stream: &[StreamRecord], batch: &[usize], faults: bool) -> Invocation {
        self.invocations += 1;
        self.set_faults(faults);
        let records: Vec<&StreamRecord> = batch.iter().map(|&i| &stream[i]).collect();
        let event = kinesis_event(&records);
        let (response, _) = self.rt.block_on(self.sp.handle(
            &event,
            &format!("sp-{}", self.invocations),
            arrival(),
        ));
        self.collect_notices();
        if faults && self.coin.flip(self.p.sp_crash) {
            return Invocation::FunctionError; // the work happened, the response was lost
        }
        let ids: Vec<Option<String>> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        match ids
            .iter()
            .flatten()
            .min_by_key(|s| s.parse::<u64>().unwrap_or(0))
        {
            None => Invocation::Ok,
            Some(lowest) => Invocation::Partial(lowest.clone()),
        }
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

    /// One shard through the event-source mapping, in order, one batch in flight.
    fn run_shard(&mut self, stream: &[StreamRecord], indices: &[usize]) {
        let mut pos = 0;
        while pos < indices.len() {
            let end = (pos + self.p.batch_size).min(indices.len());
            let mut retries = 0;
            let mut work = vec![(pos, end)];
            while let Some((s, e)) = work.pop() {
                match self.invoke_sp(stream, &indices[s..e], true) {
                    Invocation::Ok => {}
                    Invocation::Partial(lowest) => {
                        let at = indices[s..e]
                            .iter()
                            .position(|&i| stream[i].seq == lowest)
                            .expect("reported a sequence number of the batch");
                        if retries >= self.p.max_retries {
                            self.stream_dlq.push(indices[s + at..e].to_vec());
                        } else {
                            retries += 1;
                            work.push((s + at, e));
                        }
                    }
                    Invocation::FunctionError => {
                        if self.p.bisect && e - s > 1 {
                            let m = s + (e - s) / 2;
                            work.push((m, e));
                            work.push((s, m));
                        } else if retries >= self.p.max_retries {
                            self.stream_dlq.push(indices[s..e].to_vec());
                        } else {
                            retries += 1;
                            work.push((s, e));
                        }
                    }
                }
                // Notifications are delivered while the stream is still being consumed.
                if self.coin.flip(0.5) {
                    self.deliver_some(true);
                }
            }
            pos = end;
        }
    }

    /// Delivers queued notifications in random order, each with async retries (1 + 2 attempts).
    fn deliver_some(&mut self, faults: bool) {
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
                let p = if faults { self.p.tf_fail } else { 0.0 };
                self.objects
                    .set_faults(Faults::new(self.p.seed ^ self.invocations, p, p / 2.0));
                self.metadata.set_faults(Faults::new(
                    self.p.seed.rotate_left(3) ^ self.invocations,
                    p,
                    p / 2.0,
                ));
                let owner = format!("tf-{}-{attempt}", n.sequencer);
                match self.rt.block_on(self.tf.handle(&s3_event(&n), &owner)) {
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

    /// Quiescence: the on-failure destinations are redriven with the cause fixed.
    fn quiesce(&mut self, stream: &[StreamRecord]) {
        self.deliver_some(true);
        for batch in std::mem::take(&mut self.stream_dlq) {
            match self.invoke_sp(stream, &batch, false) {
                Invocation::Ok => {}
                _ => panic!("a redrive without faults must succeed"),
            }
        }
        self.notifications
            .extend(std::mem::take(&mut self.transform_dlq));
        // Leases left by runs that died are time-bounded (zero-length here): an operator's redrive
        // comes after they expire.
        std::thread::sleep(Duration::from_millis(2));
        self.deliver_some(false);
        assert!(
            self.transform_dlq.is_empty(),
            "a transform redrive without faults must succeed"
        );
        // The checks read the stores (output pages) too: no fault of the last run may outlive it.
        self.set_faults(false);
    }
}

fn check(records: Vec<Rec>, shards: usize, p: Platform) -> Result<(), TestCaseError> {
    let (stream, expected) = build(&records, shards);
    let mut model = Model::new(p);
    for shard in 0..shards {
        let name = format!("shardId-{shard:012}");
        let indices: Vec<usize> = (0..stream.len())
            .filter(|&i| stream[i].shard == name)
            .collect();
        model.run_shard(&stream, &indices);
    }
    model.quiesce(&stream);

    // Processed: every valid unit exactly once.
    let mut processed: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
    let processed_keys = model.objects.keys(PROCESSED, "processed/");
    for key in &processed_keys {
        for row in read_rows(model.objects.object(PROCESSED, key).unwrap().body).unwrap() {
            *processed
                .entry((
                    row.kinesis_shard,
                    row.kinesis_seq,
                    row.kinesis_subseq as u64,
                ))
                .or_default() += 1;
        }
    }
    let want_valid: BTreeSet<_> = expected
        .iter()
        .filter(|(_, v)| v.is_ok())
        .map(|(k, _)| k.clone())
        .collect();
    let dup: Vec<_> = processed.iter().filter(|(_, n)| **n > 1).collect();
    if !dup.is_empty() && std::env::var_os("MODEL_DEBUG").is_some() {
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
    let got_valid: BTreeSet<_> = processed.keys().cloned().collect();
    prop_assert_eq!(
        &got_valid,
        &want_valid,
        "processed rows differ from the valid input"
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
    prop_assert_eq!(
        &quarantined,
        &want_invalid,
        "quarantine differs from the invalid input"
    );

    // Metadata: every raw object processed, listing exactly its outputs.
    let mut listed = BTreeSet::new();
    for item in model
        .metadata
        .all()
        .into_iter()
        .filter(|i| i.raw_sha256.is_some())
    {
        prop_assert_eq!(
            &item.status,
            STATUS_PROCESSED,
            "{} not processed",
            item.raw_key
        );
        prop_assert!(item.legacy_outputs.is_empty());
        let set = item
            .outputs
            .expect("a processed item refers to its output set");
        let keys = model
            .rt
            .block_on(read_output_set(&model.metadata, &item.raw_key, &set))
            .unwrap();
        prop_assert_eq!(keys.len() as u64, set.count);
        listed.extend(keys);
    }
    prop_assert_eq!(listed, processed_keys.into_iter().collect::<BTreeSet<_>>());
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
        max_retries: 0,
        bisect: false,
        sp_fail_before: 0.0,
        sp_fail_after: 0.0,
        sp_crash: 0.0,
        tf_fail: 0.0,
        duplicate_notification: 0.0,
        seed: 1,
    };
    check(records, 2, p).unwrap();
}
