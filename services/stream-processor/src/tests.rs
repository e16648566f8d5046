use std::path::Path;

use pipeline_aws::emf::catalogue;
use pipeline_aws::store::Status;
use pipeline_core::Reason;
use pipeline_core::ingest::{QuarantineLine, RawLine, gunzip};
use serde_json::Value;
use test_support::memory::{Faults, MemoryMetadataStore, MemoryObjectStore};

use super::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        raw_bucket: "raw".into(),
        metadata_table: "meta".into(),
        metadata_ttl_days: 30,
        function_name: "sp".into(),
    }
}

fn processor(
    faults: Faults,
) -> (
    StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    MemoryObjectStore,
    MemoryMetadataStore,
) {
    processor_on(&SetClock::at(now()), faults)
}

fn processor_on(
    clock: &SetClock,
    faults: Faults,
) -> (
    StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    MemoryObjectStore,
    MemoryMetadataStore,
) {
    let objects = MemoryObjectStore::new(faults.clone());
    let metadata = MemoryMetadataStore::new(faults);
    let sp =
        StreamProcessor::with_clock(objects.clone(), metadata.clone(), settings(), clock.clock());
    (sp, objects, metadata)
}

fn now() -> DateTime<Utc> {
    "2026-11-25T10:05:02Z".parse().unwrap()
}

use test_support::{SetClock, block_on};

fn lines(body: &[u8]) -> Vec<String> {
    String::from_utf8(gunzip(body).unwrap())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn fixtures_round_trip_through_aws_lambda_events() {
    for name in [
        "kinesis-event.json",
        "kinesis-event-mixed.json",
        "kinesis-event-two-shards.json",
    ] {
        let text = fixture(name);
        let event: KinesisEvent = serde_json::from_str(&text).unwrap();
        let back: Value = serde_json::to_value(&event).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        for (a, b) in original["Records"]
            .as_array()
            .unwrap()
            .iter()
            .zip(back["Records"].as_array().unwrap())
        {
            for field in ["sequenceNumber", "partitionKey", "data"] {
                assert_eq!(a["kinesis"][field], b["kinesis"][field], "{name}: {field}");
            }
            assert_eq!(a["eventID"], b["eventID"], "{name}");
        }
    }
}

#[test]
fn mixed_batch_matches_its_expectations() {
    let event: KinesisEvent = serde_json::from_str(&fixture("kinesis-event-mixed.json")).unwrap();
    let expected: Value =
        serde_json::from_str(&fixture("kinesis-event-mixed.expected.json")).unwrap();
    let (sp, objects, metadata) = processor(Faults::none());
    let (response, report) = block_on(sp.handle(&event, "req-1"));
    assert!(response.batch_item_failures.is_empty());

    let raw_keys = objects.keys("raw", "raw/");
    assert_eq!(raw_keys.len(), 1);
    let first_seq = event.records[0].kinesis.sequence_number.as_str();
    assert!(
        raw_keys[0].ends_with(&format!("/shard=shardId-000000000000/{first_seq}.jsonl.gz")),
        "{}",
        raw_keys[0]
    );
    let raw = objects.object("raw", &raw_keys[0]).unwrap();
    assert_eq!(raw.metadata["correlation-id"], "req-1");
    let accepted: Vec<(String, u64, String)> = lines(&raw.body)
        .iter()
        .map(|l| {
            let line: RawLine<'_> = serde_json::from_str(l).unwrap();
            let ev = pipeline_core::event::parse(line.event.get().as_bytes()).unwrap();
            (line.seq.to_string(), line.subseq, ev.event_id.to_string())
        })
        .collect();
    let quarantine_keys = objects.keys("raw", "quarantine/");
    let rejected: Vec<(String, Reason)> =
        lines(&objects.object("raw", &quarantine_keys[0]).unwrap().body)
            .iter()
            .map(|l| {
                let q: QuarantineLine = serde_json::from_str(l).unwrap();
                (q.seq, q.reason)
            })
            .collect();

    let mut want_accepted = Vec::new();
    let mut want_rejected = Vec::new();
    for r in expected["records"].as_array().unwrap() {
        let seq = r["sequence_number"].as_str().unwrap().to_owned();
        match r["expect"].as_str().unwrap() {
            "ok" => {
                for (i, id) in r["event_ids"].as_array().unwrap().iter().enumerate() {
                    want_accepted.push((seq.clone(), i as u64, id.as_str().unwrap().to_owned()));
                }
            }
            reason => want_rejected.push((
                seq,
                serde_json::from_value(Value::String(reason.into())).unwrap(),
            )),
        }
    }
    assert_eq!(accepted, want_accepted);
    assert_eq!(rejected, want_rejected);
    assert_eq!(
        report.units,
        (want_accepted.len() + want_rejected.len()) as u64
    );
    assert_eq!(report.valid, want_accepted.len() as u64);

    let items = metadata.all();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, Some(Status::RawWritten));
    assert_eq!(items[0].valid_records, want_accepted.len() as u64);
}

#[test]
fn two_shards_make_two_objects() {
    let event: KinesisEvent =
        serde_json::from_str(&fixture("kinesis-event-two-shards.json")).unwrap();
    let (sp, objects, metadata) = processor(Faults::none());
    let (response, report) = block_on(sp.handle(&event, "r"));
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(objects.keys("raw", "raw/").len(), 2);
    assert_eq!(metadata.all().len(), 2);
    assert_eq!(report.kinesis_records, 4);
}

#[test]
fn a_failed_write_reports_the_first_sequence_number_and_a_retry_is_harmless() {
    let event: KinesisEvent = serde_json::from_str(&fixture("kinesis-event.json")).unwrap();
    let clock = SetClock::at(now());
    let (sp, objects, metadata) = processor_on(&clock, Faults::new(7, 1.0, 0.0));
    let (response, report) = block_on(sp.handle(&event, "r1"));
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some(event.records[0].kinesis.sequence_number.as_str())
    );
    assert_eq!(report.failed_units, 3);
    assert!(objects.keys("raw", "").is_empty());

    // The write lands but the call reports a timeout: still a failure, and the retry converges.
    objects.set_faults(Faults::new(7, 0.0, 1.0));
    metadata.set_faults(Faults::none());
    let (response, _) = block_on(sp.handle(&event, "r2"));
    assert_eq!(response.batch_item_failures.len(), 1);
    let first = objects
        .object("raw", &objects.keys("raw", "raw/")[0])
        .unwrap();

    objects.set_faults(Faults::none());
    let (response, _) = block_on(sp.handle(&event, "r3"));
    assert!(response.batch_item_failures.is_empty());
    let keys = objects.keys("raw", "raw/");
    assert_eq!(keys.len(), 1, "the retry overwrote the same key");
    assert_eq!(
        objects.object("raw", &keys[0]).unwrap().body,
        first.body,
        "with the same bytes"
    );

    // A further duplicate delivery changes nothing in the metadata table.
    let before = metadata.all();
    clock.set(now() + Duration::minutes(1));
    let (response, _) = block_on(sp.handle(&event, "r4"));
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(metadata.all(), before);
}

#[test]
fn metadata_failure_is_reported_even_after_s3_succeeded() {
    let event: KinesisEvent = serde_json::from_str(&fixture("kinesis-event.json")).unwrap();
    let objects = MemoryObjectStore::default();
    let metadata = MemoryMetadataStore::new(Faults::new(3, 1.0, 0.0));
    let sp = StreamProcessor::with_clock(
        objects.clone(),
        metadata.clone(),
        settings(),
        SetClock::at(now()).clock(),
    );
    let (response, _) = block_on(sp.handle(&event, "r"));
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(metadata.all().is_empty());
}

#[test]
fn settings_come_from_the_environment_with_clear_errors() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let err = Settings::from_env(env(&[("METADATA_TABLE", "t")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "environment variable RAW_BUCKET is not set: the deployment must set it (see docs/deployment.md)"
    );
    let err = Settings::from_env(env(&[
        ("RAW_BUCKET", "b"),
        ("METADATA_TABLE", "t"),
        ("METADATA_TTL_DAYS", "x"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("METADATA_TTL_DAYS is `x`"));
    let s = Settings::from_env(env(&[("RAW_BUCKET", "b"), ("METADATA_TABLE", "t")])).unwrap();
    assert_eq!(s.metadata_ttl_days, 30);
}

#[test]
fn the_events_metrics_agree_with_the_report() {
    let event: KinesisEvent = serde_json::from_str(&fixture("kinesis-event-mixed.json")).unwrap();
    let (sp, _, _) = processor(Faults::none());
    let (_, report) = block_on(sp.handle(&event, "r"));
    let m = &report.metrics;
    assert_eq!(m.get("KinesisRecords"), Some(report.kinesis_records as f64));
    assert_eq!(m.get("RecordsReceived"), Some(report.units as f64));
    assert_eq!(m.get("RecordsValid"), Some(report.valid as f64));
    assert_eq!(m.get("Quarantined_invalid_json"), Some(1.0));
    assert_eq!(
        m.get("RecordsQuarantined"),
        Some(report.quarantined.values().sum::<u64>() as f64)
    );
    assert_eq!(m.get("ObjectsWritten"), Some(2.0));
    assert_eq!(m.get("BytesWritten"), Some(report.bytes_written as f64));
    assert_eq!(m.get("RecordsFailed"), Some(0.0), "reported even when zero");
    assert_eq!(
        m.get("IngestLagMs"),
        report.max_ingest_lag_ms.map(|l| l as f64)
    );
    // Every metric is in the catalogue the documentation and the dashboard are checked against,
    // and this batch shows them all.
    let mut names: Vec<&str> = m
        .names()
        .filter(|n| !n.starts_with(catalogue::QUARANTINED_PREFIX))
        .collect();
    let mut listed = catalogue::STREAM_PROCESSOR.to_vec();
    names.sort_unstable();
    listed.sort_unstable();
    assert_eq!(names, listed);
    for name in m
        .names()
        .filter_map(|n| n.strip_prefix(catalogue::QUARANTINED_PREFIX))
    {
        assert!(Reason::ALL.iter().any(|r| r.as_str() == name), "{name}");
    }
}

#[test]
fn a_failed_shard_counts_its_units_as_failed() {
    let event: KinesisEvent = serde_json::from_str(&fixture("kinesis-event-mixed.json")).unwrap();
    let (sp, _, _) = processor(Faults::new(7, 1.0, 0.0));
    let (response, report) = block_on(sp.handle(&event, "r"));
    assert!(!response.batch_item_failures.is_empty());
    let m = &report.metrics;
    assert_eq!(m.get("RecordsFailed"), Some(report.failed_units as f64));
    assert!(report.failed_units > 0);
    assert_eq!(m.get("RecordsValid"), Some(0.0));
    assert_eq!(m.get("ObjectsWritten"), Some(0.0));
    assert!(m.names().all(|n| catalogue::STREAM_PROCESSOR.contains(&n)));
}
