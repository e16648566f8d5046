//! Conformance of our Kinesis event-source mapping with Lambda's documented rules, one named test
//! per rule, against an in-memory shard, a scripted function and a recording destination.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use pipeline_config::StartingPosition;
use pipeline_ops::Error;
use pipeline_ops::checkpoint::{Checkpoint, CheckpointStore, Lease, MemoryCheckpoints};
use pipeline_ops::esm::{
    FailureDestination, Invocation, Invoker, MAX_PAYLOAD_BYTES, Record, Settings, ShardInfo,
    ShardLister, ShardMapping, ShardReader, Start, Verdict, lane, list_shards, ready, start,
    verdict,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn records(n: usize, size: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            sequence_number: format!("4959{i:052}"),
            arrival: t0(),
            partition_key: format!("pk{i}"),
            data: vec![b'x'; size],
        })
        .collect()
}

struct Shard(Vec<Record>);

impl ShardReader for Shard {
    async fn read(&mut self) -> Result<Vec<Record>, Error> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// The scripted answer to call number `n` with these sequence numbers.
type Answer = dyn Fn(usize, &[String]) -> Result<Invocation, Error> + Send + Sync;

/// A function scripted per call: it sees the delivered sequence numbers and answers.
#[derive(Clone)]
struct Script {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    answer: Arc<Answer>,
}

impl Script {
    fn new(
        answer: impl Fn(usize, &[String]) -> Result<Invocation, Error> + Send + Sync + 'static,
    ) -> Self {
        Script {
            calls: Arc::default(),
            answer: Arc::new(answer),
        }
    }
    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

impl Invoker for Script {
    async fn invoke(&self, payload: Vec<u8>) -> Result<Invocation, Error> {
        let event: Value = serde_json::from_slice(&payload).unwrap();
        let seqs: Vec<String> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned())
            .collect();
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(seqs.clone());
            calls.len() - 1
        };
        (self.answer)(n, &seqs)
    }
}

#[derive(Clone, Default)]
struct Dlq(Arc<Mutex<Vec<Value>>>);

impl FailureDestination for Dlq {
    async fn send(&self, message: String) -> Result<(), Error> {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::from_str(&message).unwrap());
        Ok(())
    }
}

fn ok(payload: Value) -> Result<Invocation, Error> {
    Ok(Invocation {
        request_id: "req".into(),
        status_code: 200,
        function_error: None,
        payload: payload.to_string().into_bytes(),
    })
}

fn raw_ok(payload: &str) -> Invocation {
    Invocation {
        request_id: "req".into(),
        status_code: 200,
        function_error: None,
        payload: payload.as_bytes().to_vec(),
    }
}

fn error() -> Result<Invocation, Error> {
    Ok(Invocation {
        request_id: "req-err".into(),
        status_code: 200,
        function_error: Some("Unhandled".into()),
        payload: br#"{"errorType":"Boom","errorMessage":"boom"}"#.to_vec(),
    })
}

fn failures(ids: &[&str]) -> Value {
    json!({"batchItemFailures": ids.iter().map(|i| json!({"itemIdentifier": i})).collect::<Vec<_>>()})
}

fn settings(batch_size: usize, retries: i32, bisect: bool) -> Settings {
    Settings {
        batch_size,
        batching_window: Duration::ZERO,
        starting_position: StartingPosition::TrimHorizon,
        starting_timestamp: None,
        bisect_on_error: bisect,
        maximum_retry_attempts: retries,
        maximum_record_age_seconds: -1,
        report_batch_item_failures: true,
        parallelization_factor: 1,
        retry_base: Duration::from_millis(1),
        retry_cap: Duration::from_millis(2),
    }
}

/// Runs the mapping until the shard is drained.
fn drive(
    recs: Vec<Record>,
    settings: Settings,
    script: Script,
) -> (Script, Dlq, pipeline_ops::esm::Stats) {
    let dlq = Dlq::default();
    let mut m = ShardMapping::new(
        "shardId-000000000000".into(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
        "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        "us-east-1".into(),
        settings,
        Shard(recs),
        script.clone(),
        dlq.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async { while m.step(t0).await.unwrap() > 0 {} });
    (script, dlq, m.stats.clone())
}

fn seq(i: usize) -> String {
    format!("4959{i:052}")
}

#[test]
fn batch_size_caps_every_batch() {
    let (script, _, stats) = drive(
        records(25, 10),
        settings(10, 0, false),
        Script::new(|_, _| ok(json!({}))),
    );
    assert_eq!(
        script.calls().iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5]
    );
    assert_eq!(stats.records_delivered, 25);
}

#[test]
fn payload_stays_under_6_mb() {
    // 20 records of 500 KB (about 667 KB in base64 each) cannot go in one invocation.
    let (script, _, _) = drive(
        records(20, 500_000),
        settings(10_000, 0, false),
        Script::new(|_, _| ok(json!({}))),
    );
    let calls = script.calls();
    assert!(
        calls.len() >= 3,
        "{:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        calls
            .iter()
            .all(|c| c.len() * 500_000 * 4 / 3 < MAX_PAYLOAD_BYTES)
    );
    assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 20);
}

#[test]
fn empty_or_null_responses_are_success() {
    let batch = records(3, 1);
    for payload in [
        "",
        "null",
        "{}",
        r#"{"batchItemFailures":[]}"#,
        r#"{"batchItemFailures":null}"#,
    ] {
        assert_eq!(
            verdict(&batch, &raw_ok(payload), true),
            Verdict::Success,
            "{payload:?}"
        );
    }
}

#[test]
fn partial_failure_checkpoints_at_the_lowest_reported_sequence_number() {
    let script = Script::new(|n, _| {
        if n == 0 {
            ok(failures(&[&seq(4), &seq(2), &seq(6)]))
        } else {
            ok(json!({}))
        }
    });
    let (script, dlq, stats) = drive(records(8, 1), settings(8, 3, false), script);
    let calls = script.calls();
    assert_eq!(
        calls[1],
        (2..8).map(seq).collect::<Vec<_>>(),
        "redelivered from the lowest reported record"
    );
    assert_eq!(stats.records_delivered, 8);
    assert!(dlq.0.lock().unwrap().is_empty());
}

#[test]
fn an_empty_null_missing_or_unknown_identifier_fails_the_whole_batch() {
    let batch = records(3, 1);
    for payload in [
        json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
        json!({"batchItemFailures": [{"itemIdentifier": null}]}),
        json!({"batchItemFailures": [{"itemId": seq(1)}]}),
        json!({"batchItemFailures": [{"itemIdentifier": "999"}]}),
    ] {
        assert!(
            matches!(
                verdict(&batch, &raw_ok(&payload.to_string()), true),
                Verdict::Failure(_)
            ),
            "{payload}"
        );
    }
    // And the mapping then retries the whole batch.
    let script = Script::new(|n, _| {
        if n == 0 {
            ok(json!({"batchItemFailures": [{"itemIdentifier": ""}]}))
        } else {
            ok(json!({}))
        }
    });
    let (script, _, _) = drive(records(3, 1), settings(3, 2, false), script);
    assert_eq!(script.calls()[1].len(), 3);
}

#[test]
fn a_function_error_bisects_and_a_split_does_not_consume_a_retry() {
    // Record 5 is poison: every batch holding it fails. With zero retries allowed, bisection alone
    // must isolate it, and only it goes to the destination.
    let poison = seq(5);
    let script = Script::new(move |_, seqs| {
        if seqs.contains(&poison) {
            error()
        } else {
            ok(json!({}))
        }
    });
    let (script, dlq, stats) = drive(records(8, 1), settings(8, 0, true), script);
    let messages = dlq.0.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(
        messages[0]["KinesisBatchInfo"]["startSequenceNumber"],
        seq(5)
    );
    assert_eq!(stats.records_delivered, 7);
    assert!(stats.bisections >= 3);
    assert!(script.calls().iter().all(|c| !c.is_empty()));
}

#[test]
fn exhausted_retries_send_an_aws_format_message_and_the_shard_moves_on() {
    let script = Script::new(|_, seqs| {
        if seqs.contains(&seq(1)) {
            error()
        } else {
            ok(json!({}))
        }
    });
    let (script, dlq, stats) = drive(records(6, 1), settings(3, 2, false), script);
    let messages = dlq.0.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(
        m["requestContext"]["approximateInvokeCount"], 3,
        "1 attempt + 2 retries"
    );
    assert_eq!(
        m["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:f"
    );
    assert_eq!(m["responseContext"]["functionError"], "Unhandled");
    assert_eq!(m["version"], "1.0");
    let info = &m["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(info["startSequenceNumber"], seq(0));
    assert_eq!(info["endSequenceNumber"], seq(2));
    assert_eq!(info["batchSize"], 3);
    assert_eq!(
        info["approximateArrivalOfFirstRecord"],
        "2026-11-25T10:00:00.000Z"
    );
    assert_eq!(
        info["streamArn"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/s"
    );
    // The next batch was delivered.
    assert_eq!(
        script.calls().last().unwrap(),
        &(3..6).map(seq).collect::<Vec<_>>()
    );
    assert_eq!(stats.records_delivered, 3);
}

#[test]
fn infinite_retries_retry_until_success() {
    let script = Script::new(|n, _| if n < 7 { error() } else { ok(json!({})) });
    let (script, dlq, stats) = drive(records(2, 1), settings(2, -1, false), script);
    assert_eq!(script.calls().len(), 8);
    assert!(dlq.0.lock().unwrap().is_empty());
    assert_eq!(stats.records_delivered, 2);
}

#[test]
fn records_older_than_the_maximum_age_go_to_the_destination_unsent() {
    let mut s = settings(10, -1, false);
    s.maximum_record_age_seconds = 60;
    let mut recs = records(4, 1);
    for r in recs.iter_mut().take(2) {
        r.arrival = t0() - chrono::Duration::minutes(5);
    }
    let (script, dlq, _) = drive(recs, s, Script::new(|_, _| ok(json!({}))));
    let messages = dlq.0.lock().unwrap().clone();
    assert_eq!(
        messages[0]["requestContext"]["condition"],
        "RecordAgeExceeded"
    );
    assert_eq!(messages[0]["KinesisBatchInfo"]["batchSize"], 2);
    assert_eq!(script.calls(), vec![vec![seq(2), seq(3)]]);
}

#[test]
fn without_report_batch_item_failures_the_response_body_is_ignored() {
    let batch = records(3, 1);
    assert_eq!(
        verdict(&batch, &raw_ok(&failures(&[&seq(1)]).to_string()), false),
        Verdict::Success
    );
    assert!(matches!(
        verdict(&batch, &error().unwrap(), false),
        Verdict::Failure(_)
    ));
}

#[test]
fn invoke_errors_are_retried_without_using_the_retry_quota() {
    let script = Script::new(|n, _| {
        if n < 3 {
            Err(Error::aws("lambda Invoke", "TooManyRequestsException"))
        } else {
            ok(json!({}))
        }
    });
    let (script, dlq, stats) = drive(records(2, 1), settings(2, 0, false), script);
    assert_eq!(script.calls().len(), 4);
    assert!(dlq.0.lock().unwrap().is_empty());
    assert_eq!(stats.records_delivered, 2);
}

#[test]
fn the_event_is_what_lambda_delivers() {
    let recs = records(1, 3);
    let event: Value = serde_json::from_slice(&pipeline_ops::esm::event(
        &recs,
        "shardId-000000000002",
        "arn:s",
        "us-east-1",
    ))
    .unwrap();
    let r = &event["Records"][0];
    assert_eq!(r["eventID"], format!("shardId-000000000002:{}", seq(0)));
    assert_eq!(r["eventSource"], "aws:kinesis");
    assert_eq!(
        r["kinesis"]["data"],
        base64::engine::general_purpose::STANDARD.encode(b"xxx")
    );
    assert_eq!(r["kinesis"]["approximateArrivalTimestamp"], 1_795_600_800.0);
    let parsed: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_value(event).unwrap();
    assert_eq!(parsed.records[0].kinesis.sequence_number, seq(0));
}

/// A destination that fails its first `failures` sends, then records every message; it notes how
/// many invocations the function had seen when each message was accepted.
#[derive(Clone)]
struct FlakyDlq {
    failures: usize,
    attempts: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<(Value, usize)>>>,
    calls: Arc<Mutex<Vec<Vec<String>>>>,
}

impl FailureDestination for FlakyDlq {
    async fn send(&self, message: String) -> Result<(), Error> {
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            *a += 1;
            *a
        };
        if attempt <= self.failures {
            return Err(Error::aws("sqs SendMessage", "ServiceUnavailable"));
        }
        let seen = self.calls.lock().unwrap().len();
        self.accepted
            .lock()
            .unwrap()
            .push((serde_json::from_str(&message).unwrap(), seen));
        Ok(())
    }
}

#[test]
fn a_failing_on_failure_destination_is_retried_and_the_shard_waits_for_it() {
    // Batch 0..3 exhausts its retries; the destination fails 4 times, then accepts. The mapping
    // must neither drop the batch nor deliver the next one before the message is sent, even when
    // its loop goes on after an error (as `run_mapping` does).
    let script = Script::new(|_, seqs| {
        if seqs.contains(&seq(1)) {
            error()
        } else {
            ok(json!({}))
        }
    });
    let dlq = FlakyDlq {
        failures: 4,
        attempts: Arc::default(),
        accepted: Arc::default(),
        calls: script.calls.clone(),
    };
    let mut m = ShardMapping::new(
        "shardId-000000000000".into(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
        "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        "us-east-1".into(),
        settings(3, 0, false),
        Shard(records(6, 1)),
        script.clone(),
        dlq.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut errors = 0;
    rt.block_on(async {
        for _ in 0..100 {
            match m.step(t0).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => errors += 1,
            }
        }
    });
    let accepted = dlq.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1, "exactly one message: {accepted:?}");
    assert_eq!(errors, 0, "a failed send is retried inside the mapping");
    assert_eq!(
        *dlq.attempts.lock().unwrap(),
        5,
        "4 failures, then accepted"
    );
    let (message, invocations_before) = &accepted[0];
    assert_eq!(message["KinesisBatchInfo"]["startSequenceNumber"], seq(0));
    assert_eq!(message["KinesisBatchInfo"]["batchSize"], 3);
    assert_eq!(
        *invocations_before, 1,
        "the next batch waited for the message"
    );
    assert_eq!(
        script.calls().last().unwrap(),
        &(3..6).map(seq).collect::<Vec<_>>()
    );
    assert_eq!(
        (
            m.stats.records_delivered,
            m.stats.records_sent_to_destination
        ),
        (3, 3)
    );
    assert_eq!(m.pending(), 0);
}

// Checkpoints (`checkpoint.rs`): a lease per shard, written after every batch, read at start.

/// A shard read in chunks (one per read), closed after the last one when `closed`.
struct Chunks {
    chunks: std::collections::VecDeque<Vec<Record>>,
    closed: bool,
}

impl Chunks {
    /// The shard's records from where `start` says, `per_read` at a time.
    fn from(recs: &[Record], start: &Start, per_read: usize, closed: bool) -> Chunks {
        let from = match start {
            Start::After(seq) => recs
                .iter()
                .position(|r| &r.sequence_number == seq)
                .map_or(0, |i| i + 1),
            Start::StartingPosition | Start::TrimHorizon => 0,
            Start::Done => recs.len(),
        };
        Chunks {
            chunks: recs[from..]
                .chunks(per_read)
                .map(<[Record]>::to_vec)
                .collect(),
            closed,
        }
    }
}

impl ShardReader for Chunks {
    async fn read(&mut self) -> Result<Vec<Record>, Error> {
        Ok(self.chunks.pop_front().unwrap_or_default())
    }
    fn at_shard_end(&self) -> bool {
        self.closed && self.chunks.is_empty()
    }
}

const SHARD: &str = "shardId-000000000000";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A mapping of `SHARD` that checkpoints in `store` as `owner`, its reader started as the lease
/// says.
#[allow(clippy::too_many_arguments)]
fn checkpointing<I: Invoker, D: FailureDestination, C: CheckpointStore>(
    rt: &tokio::runtime::Runtime,
    recs: &[Record],
    per_read: usize,
    closed: bool,
    settings: Settings,
    invoker: I,
    dlq: D,
    store: C,
    owner: &str,
) -> ShardMapping<Chunks, I, D, C> {
    let lease = rt.block_on(store.take(SHARD, owner)).unwrap();
    let reader = Chunks::from(recs, &start(&lease, false), per_read, closed);
    ShardMapping::new(
        SHARD.into(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
        "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        "us-east-1".into(),
        settings,
        reader,
        invoker,
        dlq,
    )
    .with_checkpoints(store, lease)
}

#[test]
fn the_checkpoint_moves_after_every_batch_and_a_new_mapping_resumes_after_it() {
    let rt = runtime();
    let store = MemoryCheckpoints::default();
    let recs = records(10, 1);
    let script = Script::new(|_, _| ok(json!({})));
    // The first mapping reads 4 records, delivers them in two batches, and stops.
    let mut first = checkpointing(
        &rt,
        &recs,
        4,
        false,
        settings(2, 0, false),
        script.clone(),
        Dlq::default(),
        store.clone(),
        "first",
    );
    assert_eq!(rt.block_on(first.step(t0)).unwrap(), 4);
    assert_eq!(
        store.writes(),
        [
            (SHARD.to_owned(), Checkpoint::After(seq(1))),
            (SHARD.to_owned(), Checkpoint::After(seq(3)))
        ]
    );
    // A new mapping (a restart) takes the lease and resumes after the checkpoint.
    let mut second = checkpointing(
        &rt,
        &recs,
        4,
        false,
        settings(2, 0, false),
        script.clone(),
        Dlq::default(),
        store.clone(),
        "second",
    );
    rt.block_on(async { while second.step(t0).await.unwrap() > 0 {} });
    let delivered: Vec<String> = script.calls().concat();
    assert_eq!(
        delivered,
        (0..10).map(seq).collect::<Vec<_>>(),
        "every record once"
    );
    let lease = store.lease(SHARD).unwrap();
    assert_eq!(lease.owner, "second");
    assert_eq!(lease.checkpoint, Some(Checkpoint::After(seq(9))));
    assert_eq!(second.stats.records_read, 6);
}

#[test]
fn a_mapping_whose_lease_was_taken_stops_at_its_next_checkpoint() {
    let rt = runtime();
    let store = MemoryCheckpoints::default();
    let recs = records(4, 1);
    let script = Script::new(|_, _| ok(json!({})));
    let mut old = checkpointing(
        &rt,
        &recs,
        4,
        false,
        settings(4, 0, false),
        script.clone(),
        Dlq::default(),
        store.clone(),
        "old",
    );
    rt.block_on(store.take(SHARD, "new")).unwrap();
    let e = rt.block_on(old.step(t0)).unwrap_err();
    assert!(matches!(e, Error::Lease(_)), "{e}");
    assert!(store.writes().is_empty(), "the old owner wrote nothing");
    assert_eq!(store.lease(SHARD).unwrap().owner, "new");
}

#[test]
fn failed_checkpoint_writes_are_retried_until_they_succeed() {
    let rt = runtime();
    let store = MemoryCheckpoints::default();
    store.fail_next_saves(SHARD, 3);
    let mut m = checkpointing(
        &rt,
        &records(2, 1),
        2,
        false,
        settings(2, 0, false),
        Script::new(|_, _| ok(json!({}))),
        Dlq::default(),
        store.clone(),
        "m",
    );
    assert_eq!(rt.block_on(m.step(t0)).unwrap(), 2);
    assert_eq!(m.stats.checkpoint_failures, 3);
    assert_eq!(
        store.writes(),
        [(SHARD.to_owned(), Checkpoint::After(seq(1)))]
    );
}

#[test]
fn a_dead_lettered_batch_moves_the_checkpoint_too() {
    let rt = runtime();
    let store = MemoryCheckpoints::default();
    let dlq = Dlq::default();
    let mut m = checkpointing(
        &rt,
        &records(2, 1),
        2,
        false,
        settings(2, 0, false),
        Script::new(|_, _| error()),
        dlq.clone(),
        store.clone(),
        "m",
    );
    rt.block_on(m.step(t0)).unwrap();
    assert_eq!(dlq.0.lock().unwrap().len(), 1);
    assert_eq!(
        store.writes(),
        [(SHARD.to_owned(), Checkpoint::After(seq(1)))]
    );
}

#[test]
fn a_closed_shard_is_checkpointed_at_shard_end_and_only_then_its_children_start() {
    let rt = runtime();
    let store = MemoryCheckpoints::default();
    let mut parent = checkpointing(
        &rt,
        &records(3, 1),
        3,
        true,
        settings(10, 0, false),
        Script::new(|_, _| ok(json!({}))),
        Dlq::default(),
        store.clone(),
        "m",
    );
    let shards = [
        ShardInfo {
            shard_id: SHARD.into(),
            parents: vec![],
        },
        ShardInfo {
            shard_id: "shardId-000000000001".into(),
            parents: vec![],
        },
        // A split of shard 0, and a merge of shards 0 and 1.
        ShardInfo {
            shard_id: "shardId-000000000002".into(),
            parents: vec![SHARD.into()],
        },
        ShardInfo {
            shard_id: "shardId-000000000003".into(),
            parents: vec![SHARD.into(), "shardId-000000000001".into()],
        },
    ];
    let started: std::collections::HashSet<String> =
        [SHARD.to_owned(), "shardId-000000000001".to_owned()].into();
    let mut finished = std::collections::HashSet::new();
    assert!(
        ready(&shards, &started, &finished).is_empty(),
        "children wait for their parents"
    );
    assert_eq!(rt.block_on(parent.step(t0)).unwrap(), 3);
    assert!(!parent.finished(), "the last records are delivered first");
    assert_eq!(rt.block_on(parent.step(t0)).unwrap(), 0);
    assert!(parent.finished());
    assert_eq!(
        rt.block_on(parent.step(t0)).unwrap(),
        0,
        "and it stays done"
    );
    assert_eq!(
        store.writes().last().unwrap(),
        &(SHARD.to_owned(), Checkpoint::ShardEnd)
    );
    if rt.block_on(store.checkpoint(SHARD)).unwrap() == Some(Checkpoint::ShardEnd) {
        finished.insert(SHARD.to_owned());
    }
    assert_eq!(
        ready(&shards, &started, &finished),
        ["shardId-000000000002"],
        "the merge also waits for shard 1"
    );
    finished.insert("shardId-000000000001".to_owned());
    assert_eq!(
        ready(&shards, &started, &finished),
        ["shardId-000000000002", "shardId-000000000003"]
    );
    // A parent past retention is no longer listed: its children start.
    assert_eq!(
        ready(
            &shards[2..],
            &std::collections::HashSet::new(),
            &Default::default()
        ),
        ["shardId-000000000002", "shardId-000000000003"]
    );
    // A child without a checkpoint reads from its first record; a finished shard reads nothing.
    let lease = |checkpoint| Lease {
        shard_id: "s".into(),
        owner: "o".into(),
        counter: 1,
        checkpoint,
    };
    assert_eq!(start(&lease(None), true), Start::TrimHorizon);
    assert_eq!(start(&lease(None), false), Start::StartingPosition);
    assert_eq!(
        start(&lease(Some(Checkpoint::ShardEnd)), false),
        Start::Done
    );
}

#[test]
fn list_shards_follows_next_token() {
    struct Pages;
    impl ShardLister for Pages {
        async fn page(
            &self,
            token: Option<String>,
        ) -> Result<(Vec<ShardInfo>, Option<String>), Error> {
            let page = token.as_deref().map_or(0, |t| t.parse::<usize>().unwrap());
            let shards = (page * 2..page * 2 + 2)
                .map(|i| ShardInfo {
                    shard_id: format!("shardId-{i:012}"),
                    parents: vec![],
                })
                .collect();
            Ok((shards, (page < 2).then(|| (page + 1).to_string())))
        }
    }
    let shards = runtime().block_on(list_shards(&Pages)).unwrap();
    assert_eq!(shards.len(), 6);
    assert_eq!(shards[5].shard_id, "shardId-000000000005");
}

// ParallelizationFactor: up to N concurrent batches per shard, one lane per partition-key hash.

/// A function that takes `delay(batch)` to answer success, and notes what runs at once.
#[derive(Clone)]
struct Lanes {
    delay: fn(&[(String, String)]) -> Duration,
    in_flight: Arc<Mutex<Vec<Vec<String>>>>,
    most_at_once: Arc<Mutex<usize>>,
    key_in_two_batches_at_once: Arc<Mutex<bool>>,
    /// "ack <seq>" and "checkpoint <seq>", in order.
    log: Arc<Mutex<Vec<(String, String)>>>,
    acked_by_key: Arc<Mutex<std::collections::BTreeMap<String, Vec<String>>>>,
}

impl Lanes {
    fn new(delay: fn(&[(String, String)]) -> Duration) -> Lanes {
        Lanes {
            delay,
            in_flight: Arc::default(),
            most_at_once: Arc::default(),
            key_in_two_batches_at_once: Arc::default(),
            log: Arc::default(),
            acked_by_key: Arc::default(),
        }
    }
}

impl Invoker for Lanes {
    async fn invoke(&self, payload: Vec<u8>) -> Result<Invocation, Error> {
        let event: Value = serde_json::from_slice(&payload).unwrap();
        let batch: Vec<(String, String)> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["kinesis"]["partitionKey"].as_str().unwrap().to_owned(),
                    r["kinesis"]["sequenceNumber"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            if in_flight.iter().flatten().any(|k| keys.contains(k)) {
                *self.key_in_two_batches_at_once.lock().unwrap() = true;
            }
            in_flight.push(keys.clone());
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(in_flight.len());
        }
        tokio::time::sleep((self.delay)(&batch)).await;
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let i = in_flight.iter().position(|k| k == &keys).unwrap();
            in_flight.remove(i);
            let mut log = self.log.lock().unwrap();
            let mut acked = self.acked_by_key.lock().unwrap();
            for (k, s) in batch {
                log.push(("ack".into(), s.clone()));
                acked.entry(k).or_default().push(s);
            }
        }
        ok(json!({}))
    }
}

fn parallel(n: usize, batch_size: usize) -> Settings {
    Settings {
        parallelization_factor: n,
        ..settings(batch_size, 0, false)
    }
}

/// Records whose partition keys are `keys[i % keys.len()]`.
fn keyed(n: usize, keys: &[String]) -> Vec<Record> {
    let mut recs = records(n, 1);
    for (i, r) in recs.iter_mut().enumerate() {
        r.partition_key = keys[i % keys.len()].clone();
    }
    recs
}

fn drive_with<I: Invoker>(
    recs: Vec<Record>,
    settings: Settings,
    invoker: I,
) -> pipeline_ops::esm::Stats {
    let mut m = ShardMapping::new(
        SHARD.into(),
        "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
        "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        "us-east-1".into(),
        settings,
        Shard(recs),
        invoker,
        Dlq::default(),
    );
    let rt = runtime();
    rt.block_on(async { while m.step(t0).await.unwrap() > 0 {} });
    m.stats.clone()
}

#[test]
fn parallelization_factor_runs_up_to_n_batches_of_a_shard_at_once() {
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    for n in [1, 4, 10] {
        let f = Lanes::new(|_| Duration::from_millis(5));
        let lanes_used: std::collections::HashSet<usize> =
            keys.iter().map(|k| lane(k, n)).collect();
        let stats = drive_with(keyed(200, &keys), parallel(n, 5), f.clone());
        assert_eq!(stats.records_delivered, 200);
        assert_eq!(
            *f.most_at_once.lock().unwrap(),
            lanes_used.len(),
            "ParallelizationFactor {n}: one batch per lane at once"
        );
        assert!(lanes_used.len() <= n);
    }
}

#[test]
fn records_with_one_partition_key_stay_in_order_when_batches_run_at_once() {
    let keys: Vec<String> = (0..7).map(|i| format!("user-{i}")).collect();
    // Batches take different times, so lanes overtake each other.
    let f = Lanes::new(|batch| {
        Duration::from_millis(batch.first().map_or(0, |(k, _)| k.len() as u64 % 3 * 4 + 1))
    });
    let recs = keyed(140, &keys);
    let stats = drive_with(recs.clone(), parallel(3, 4), f.clone());
    assert_eq!(stats.records_delivered, 140);
    assert!(
        *f.most_at_once.lock().unwrap() > 1,
        "batches ran at once: the test proves something"
    );
    assert!(
        !*f.key_in_two_batches_at_once.lock().unwrap(),
        "a partition key is never in two batches in flight"
    );
    for (key, acked) in f.acked_by_key.lock().unwrap().iter() {
        let want: Vec<String> = recs
            .iter()
            .filter(|r| &r.partition_key == key)
            .map(|r| r.sequence_number.clone())
            .collect();
        assert_eq!(acked, &want, "{key}: in shard order, each once");
    }
}

/// A store that logs each checkpoint it writes beside the function's acknowledgements.
#[derive(Clone)]
struct Logged(MemoryCheckpoints, Arc<Mutex<Vec<(String, String)>>>);

impl CheckpointStore for Logged {
    async fn take(&self, shard_id: &str, owner: &str) -> Result<Lease, Error> {
        self.0.take(shard_id, owner).await
    }
    async fn save(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<Lease, Error> {
        if let Checkpoint::After(s) = &checkpoint {
            self.1
                .lock()
                .unwrap()
                .push(("checkpoint".into(), s.clone()));
        }
        self.0.save(lease, checkpoint).await
    }
    async fn checkpoint(&self, shard_id: &str) -> Result<Option<Checkpoint>, Error> {
        self.0.checkpoint(shard_id).await
    }
}

#[test]
fn the_checkpoint_is_the_lowest_sequence_number_not_done_in_any_lane() {
    // Two keys in different lanes, alternating: one lane slow, the other fast.
    let slow = (0..)
        .map(|i| format!("slow-{i}"))
        .find(|k| lane(k, 2) == 0)
        .unwrap();
    let fast = (0..)
        .map(|i| format!("fast-{i}"))
        .find(|k| lane(k, 2) == 1)
        .unwrap();
    let recs = keyed(12, &[slow, fast]);
    let f = Lanes::new(|batch| {
        if batch[0].0.starts_with("slow") {
            Duration::from_millis(15)
        } else {
            Duration::from_millis(1)
        }
    });
    let rt = runtime();
    let store = Logged(MemoryCheckpoints::default(), f.log.clone());
    let mut m = checkpointing(
        &rt,
        &recs,
        12,
        false,
        parallel(2, 1),
        f.clone(),
        Dlq::default(),
        store.clone(),
        "m",
    );
    rt.block_on(m.step(t0)).unwrap();
    let log = f.log.lock().unwrap().clone();
    let mut acked = std::collections::HashSet::new();
    let mut overtaken = false;
    for (what, s) in &log {
        if what == "ack" {
            overtaken |= recs
                .iter()
                .any(|r| r.sequence_number < *s && !acked.contains(&r.sequence_number));
            acked.insert(s.clone());
        } else {
            for r in recs.iter().filter(|r| r.sequence_number <= *s) {
                assert!(
                    acked.contains(&r.sequence_number),
                    "checkpoint {s} written before {} was done: {log:?}",
                    r.sequence_number
                );
            }
        }
    }
    assert!(
        overtaken,
        "the fast lane ran ahead: the test proves something"
    );
    assert_eq!(
        store.0.lease(SHARD).unwrap().checkpoint,
        Some(Checkpoint::After(seq(11)))
    );
}

#[test]
fn the_environment_files_parallelization_factor_reaches_the_mapping() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["local", "dev", "prod"] {
        let file = root.join(format!("environments/{name}.toml"));
        let text = std::fs::read_to_string(&file).unwrap();
        let env = pipeline_config::Environment::from_toml(&format!("{name}.toml"), &text).unwrap();
        let mut m = env.event_source_mapping.clone();
        assert_eq!(
            Settings::from(&m).parallelization_factor,
            m.parallelization_factor as usize,
            "{name}"
        );
        m.parallelization_factor = 7;
        assert_eq!(Settings::from(&m).parallelization_factor, 7);
    }
}
