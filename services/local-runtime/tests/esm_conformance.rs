//! Conformance of our Kinesis event-source mapping with Lambda's documented rules, one named test
//! per rule, against an in-memory shard, a scripted function and a recording destination.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use local_runtime::Error;
use local_runtime::esm::{
    FailureDestination, Invocation, Invoker, MAX_PAYLOAD_BYTES, Record, Settings, ShardMapping,
    ShardReader, Verdict, verdict,
};
use pipeline_config::StartingPosition;
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
        retry_base: Duration::from_millis(1),
        retry_cap: Duration::from_millis(2),
    }
}

/// Runs the mapping until the shard is drained.
fn drive(
    recs: Vec<Record>,
    settings: Settings,
    script: Script,
) -> (Script, Dlq, local_runtime::esm::Stats) {
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
    let event: Value = serde_json::from_slice(&local_runtime::esm::event(
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
