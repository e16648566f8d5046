use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::{DateTime, Utc};
use lambda_payloads::kinesis;
use pipeline_aws::StoredObject;
use pipeline_aws::store::Status;
use pipeline_core::parquet_io::read_rows;
use stream_processor::StreamProcessor;
use test_support::memory::{Faults, MemoryMetadataStore, MemoryObjectStore, PutNotice};

use super::*;

const RAW: &str = "raw-bucket";
const PROCESSED: &str = "processed-bucket";

fn fixture(dir: &str, name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir)
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

// The transformer waits for items and leases on tokio's clock: paused here, those waits take
// no real time.
use test_support::{SetClock, block_on_paused as block_on};

fn settings() -> Settings {
    Settings {
        processed_bucket: PROCESSED.into(),
        metadata_table: "meta".into(),
        metadata_ttl_days: 30,
        hmac_secret_id: "secret".into(),
        function_name: "tf".into(),
        item_wait: Duration::from_millis(50),
        lease: Duration::from_secs(60),
        version: "v1".into(),
    }
}

fn pii() -> Pseudonymizer {
    Pseudonymizer::new(b"k").unwrap()
}

struct World {
    objects: MemoryObjectStore,
    metadata: MemoryMetadataStore,
    sp: StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    /// The stream processor's clock.
    sp_clock: SetClock,
    tf: Transformer<MemoryObjectStore, MemoryMetadataStore>,
}

impl World {
    /// The stream processor, handling batches at `at`.
    fn sp_at(&self, at: DateTime<Utc>) -> &StreamProcessor<MemoryObjectStore, MemoryMetadataStore> {
        self.sp_clock.set(at);
        &self.sp
    }
}

fn world() -> World {
    let objects = MemoryObjectStore::default();
    let metadata = MemoryMetadataStore::default();
    let sp_clock = SetClock::at(DateTime::UNIX_EPOCH);
    let sp = StreamProcessor::with_clock(
        objects.clone(),
        metadata.clone(),
        stream_processor::Settings {
            raw_bucket: RAW.into(),
            metadata_table: "meta".into(),
            metadata_ttl_days: 30,
            function_name: "sp".into(),
        },
        sp_clock.clock(),
    );
    let tf = Transformer::new(objects.clone(), metadata.clone(), pii(), settings());
    World {
        objects,
        metadata,
        sp,
        sp_clock,
        tf,
    }
}

/// An S3 notification for a put, with the key encoded the way S3 encodes it.
fn notification(n: &PutNotice) -> Value {
    let mut event: Value = serde_json::from_str(&fixture("transformer", "s3-put.json")).unwrap();
    let encoded: String = n.key.replace('=', "%3D").replace(' ', "+");
    let object = &mut event["Records"][0]["s3"]["object"];
    object["key"] = Value::String(encoded);
    object["sequencer"] = Value::String(n.sequencer.clone());
    event["Records"][0]["s3"]["bucket"]["name"] = Value::String(n.bucket.clone());
    event
}

fn raw_notices(w: &World) -> Vec<PutNotice> {
    w.objects
        .take_notices()
        .into_iter()
        .filter(|n| n.bucket == RAW && n.key.starts_with("raw/"))
        .collect()
}

fn ingest_fixture(w: &World, name: &str) -> (KinesisEvent, Vec<PutNotice>) {
    let event: KinesisEvent = serde_json::from_str(&fixture("stream-processor", name)).unwrap();
    let now = "2026-11-25T10:05:02Z".parse().unwrap();
    let (response, _) = block_on(w.sp_at(now).handle(&event, "sp-req"));
    assert!(response.batch_item_failures.is_empty());
    (event, raw_notices(w))
}

/// The output keys the item's output set lists.
fn listed(w: &World, item: &MetadataItem) -> Vec<String> {
    let set = item.outputs.expect("the item refers to an output set");
    block_on(read_output_set(&w.metadata, &item.raw_key, &set)).unwrap()
}

fn processed_ids(w: &World) -> Vec<String> {
    let mut ids: Vec<String> = w
        .objects
        .keys(PROCESSED, "processed/")
        .iter()
        .flat_map(|k| read_rows(w.objects.object(PROCESSED, k).unwrap().body).unwrap())
        .map(|r| r.event_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn fixture_keys_decode_as_s3_encodes_them() {
    for name in ["s3-put-url-encoded", "s3-put-url-encoded-plus"] {
        let event: S3Event =
            serde_json::from_str(&fixture("transformer", &format!("{name}.json"))).unwrap();
        let want = fixture("transformer", &format!("{name}.expected-key.txt"));
        let key = event.records[0].s3.object.key.as_deref().unwrap();
        assert_eq!(decode_s3_key(key).unwrap(), want.trim_end());
    }
    for name in ["s3-put.json", "s3-two-records.json"] {
        let text = fixture("transformer", name);
        let event: S3Event = serde_json::from_str(&text).unwrap();
        let back = serde_json::to_value(&event).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        for (a, b) in original["Records"]
            .as_array()
            .unwrap()
            .iter()
            .zip(back["Records"].as_array().unwrap())
        {
            assert_eq!(a["s3"]["object"]["key"], b["s3"]["object"]["key"], "{name}");
            assert_eq!(
                a["s3"]["object"]["sequencer"], b["s3"]["object"]["sequencer"],
                "{name}"
            );
            assert_eq!(a["eventName"], b["eventName"], "{name}");
        }
    }
}

#[test]
fn test_event_and_foreign_keys_are_ignored() {
    let w = world();
    let test_event: Value =
        serde_json::from_str(&fixture("transformer", "s3-test-event.json")).unwrap();
    let report = block_on(w.tf.handle(&test_event, "r")).unwrap();
    assert_eq!(
        report.outcomes,
        [Outcome::Ignored {
            key: String::new(),
            why: "s3:TestEvent"
        }]
    );

    let two: Value = serde_json::from_str(&fixture("transformer", "s3-two-records.json")).unwrap();
    let report = block_on(w.tf.handle(&two, "r")).unwrap();
    let whys: Vec<&str> = report
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Ignored { why, .. } => *why,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        whys,
        [
            "object no longer exists",
            "object no longer exists",
            "key outside raw/"
        ]
    );
    assert!(matches!(
        block_on(w.tf.handle(&serde_json::json!({"Records": 5}), "r")),
        Err(Error::BadEvent(_))
    ));
}

#[test]
fn processes_a_raw_object_into_partitioned_parquet() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event-mixed.json");
    assert_eq!(notices.len(), 1);
    let report = block_on(w.tf.handle(&notification(&notices[0]), "tf-req")).unwrap();
    let Outcome::Processed {
        rows,
        outputs,
        upstream_correlation_id,
        ..
    } = &report.outcomes[0]
    else {
        panic!("{report:?}")
    };
    assert_eq!(*rows, 5);
    assert_eq!(
        upstream_correlation_id.as_deref(),
        Some("sp-req"),
        "the correlation id travels with the raw object"
    );
    let seq = "49590338271490256608559692640926837632026877349173657698";
    assert_eq!(
        outputs,
        &[
            format!(
                "processed/event_type=click/dt=2026-11-25/hour=10/shardId-000000000000-{seq}.parquet"
            ),
            format!(
                "processed/event_type=page_view/dt=2026-11-25/hour=10/shardId-000000000000-{seq}.parquet"
            ),
        ]
    );
    assert_eq!(
        processed_ids(&w),
        ["kpl-mix-1", "kpl-mix-2", "kpl-mix-3", "mix-1", "mix-5"]
    );
    let items = w.metadata.all();
    assert_eq!(items[0].status, Some(Status::Processed));
    assert_eq!(&listed(&w, &items[0]), outputs);
    assert_eq!(items[0].processed_rows, Some(5));

    // A duplicate notification, even a stale (older sequencer) one, changes nothing.
    let before = w.objects.keys(PROCESSED, "");
    let mut stale = notices[0].clone();
    stale.sequencer = "0000000000000000".into();
    let report = block_on(w.tf.handle(&notification(&stale), "tf-req-2")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
    assert_eq!(w.objects.keys(PROCESSED, ""), before);
    assert_eq!(w.metadata.all(), items);
}

#[test]
fn a_rewritten_raw_object_replaces_its_outputs_and_deletes_stale_ones() {
    let w = world();
    let ev = |id: &str, ty: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"{ty}","occurred_at":"2026-11-25T09:59:00Z","source":"s"}}"#
        )
    };
    let batch = |events: &[String]| -> KinesisEvent {
        let records: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                use base64::Engine;
                serde_json::json!({
                    "kinesis": {"partitionKey": "p", "sequenceNumber": format!("{}", 100 + i), "approximateArrivalTimestamp": 1_795_600_800.0,
                                "data": base64::engine::general_purpose::STANDARD.encode(e), "kinesisSchemaVersion": "1.0"},
                    "eventID": format!("shardId-000000000000:{}", 100 + i), "eventSource": "aws:kinesis"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    };
    let v1 = batch(&[ev("a", "click"), ev("b", "purchase")]);
    block_on(
        w.sp_at("2026-11-25T10:00:01Z".parse().unwrap())
            .handle(&v1, "r1"),
    );
    let n1 = raw_notices(&w);
    block_on(w.tf.handle(&notification(&n1[0]), "t1")).unwrap();
    assert_eq!(w.objects.keys(PROCESSED, "").len(), 2);

    // Redelivery after a bisect: same first record, fewer records, same key, new content.
    let v2 = batch(&[ev("a", "click")]);
    block_on(
        w.sp_at("2026-11-25T10:00:09Z".parse().unwrap())
            .handle(&v2, "r2"),
    );
    let n2 = raw_notices(&w);
    assert_eq!(n2[0].key, n1[0].key);
    // The older notification arrives late: it still processes the current content.
    let report = block_on(w.tf.handle(&notification(&n1[0]), "t2")).unwrap();
    let Outcome::Processed { deleted, .. } = &report.outcomes[0] else {
        panic!("{report:?}")
    };
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].contains("event_type=purchase"));
    assert_eq!(processed_ids(&w), ["a"]);
    let report = block_on(w.tf.handle(&notification(&n2[0]), "t3")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
}

/// The Kinesis event of one shard's `(partition key, sequence number, data)` records.
fn kinesis_event(records: &[(String, String, String)], arrival: DateTime<Utc>) -> KinesisEvent {
    kinesis::event(
        &test_support::kinesis_records(records, arrival),
        &test_support::DEV_SHARD,
    )
}

/// A batch of one shard from `(event_id, event_type)` pairs, sequence numbers from 100.
fn small_batch(events: &[(&str, &str)]) -> KinesisEvent {
    let records: Vec<(String, String, String)> = events
        .iter()
        .enumerate()
        .map(|(i, (id, ty))| {
            let e = format!(
                r#"{{"event_id":"{id}","event_type":"{ty}","occurred_at":"2026-11-25T09:59:00Z","source":"s"}}"#
            );
            ("p".to_owned(), format!("{}", 100 + i), e)
        })
        .collect();
    kinesis_event(
        &records,
        DateTime::from_timestamp(1_795_600_800, 0).unwrap(),
    )
}

/// An object store whose second put takes effect and then fails: a run that dies after writing
/// two outputs.
struct DiesAfterPuts(MemoryObjectStore, AtomicUsize);

impl ObjectStore for DiesAfterPuts {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.0
            .put(bucket, key, body, content_type, metadata)
            .await?;
        if self.1.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(StoreError::new("PutObject", key, true, "the run died"));
        }
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.0.get(bucket, key).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.0.delete(bucket, key).await
    }
}

#[test]
fn outputs_of_a_run_that_died_are_known_and_deleted_by_the_next_run() {
    let w = world();
    block_on(
        w.sp_at("2026-11-25T10:00:01Z".parse().unwrap())
            .handle(&small_batch(&[("a", "click"), ("b", "purchase")]), "r1"),
    );
    let n1 = raw_notices(&w);
    // Every output lands, then the run dies before it marks the item.
    let dying = Transformer::new(
        DiesAfterPuts(w.objects.clone(), Default::default()),
        w.metadata.clone(),
        pii(),
        settings(),
    );
    assert!(block_on(dying.handle(&notification(&n1[0]), "t1")).is_err());
    assert_eq!(w.objects.keys(PROCESSED, "").len(), 2);
    let item = &w.metadata.all()[0];
    assert_eq!(item.status, Some(Status::RawWritten));
    assert_eq!(
        listed(&w, item),
        w.objects.keys(PROCESSED, ""),
        "recorded before written"
    );

    // The raw object is rewritten without the purchase; the next run deletes the dead run's output.
    block_on(
        w.sp_at("2026-11-25T10:00:09Z".parse().unwrap())
            .handle(&small_batch(&[("a", "click")]), "r2"),
    );
    let n2 = raw_notices(&w);
    let report = block_on(w.tf.handle(&notification(&n2[0]), "t2")).unwrap();
    let Outcome::Processed {
        outputs, deleted, ..
    } = &report.outcomes[0]
    else {
        panic!("{report:?}")
    };
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].contains("event_type=purchase"));
    assert_eq!(&w.objects.keys(PROCESSED, ""), outputs);
    assert_eq!(processed_ids(&w), ["a"]);
    let item = &w.metadata.all()[0];
    assert_eq!(&listed(&w, item), outputs);
    assert_eq!(
        w.metadata.page_keys().len(),
        1,
        "the sets it replaced are deleted"
    );
}

#[test]
fn an_item_written_before_output_pages_has_its_listed_outputs_cleaned_up() {
    let w = world();
    block_on(
        w.sp_at("2026-11-25T10:00:01Z".parse().unwrap())
            .handle(&small_batch(&[("a", "click")]), "r1"),
    );
    let n1 = raw_notices(&w);
    // As an earlier version left it: an output of an earlier content listed in the item itself.
    let old =
        "processed/event_type=purchase/dt=2026-11-25/hour=09/shardId-000000000000-100.parquet";
    block_on(
        w.objects
            .put(PROCESSED, old, b"x".to_vec(), "x", &Default::default()),
    )
    .unwrap();
    w.metadata
        .seed_legacy_outputs(&n1[0].key, vec![old.to_owned()])
        .unwrap();
    let report = block_on(w.tf.handle(&notification(&n1[0]), "t1")).unwrap();
    let Outcome::Processed {
        outputs, deleted, ..
    } = &report.outcomes[0]
    else {
        panic!("{report:?}")
    };
    assert_eq!(deleted, &[old.to_owned()]);
    assert_eq!(&w.objects.keys(PROCESSED, ""), outputs);
    let item = &w.metadata.all()[0];
    assert!(item.legacy_outputs.is_empty());
    assert_eq!(&listed(&w, item), outputs);
}

/// The first line of a raw object, as an object of its own.
fn first_line_of(body: &[u8]) -> Vec<u8> {
    let text = pipeline_core::ingest::gunzip(body).unwrap();
    pipeline_core::ingest::gzip(&text[..text.iter().position(|&b| b == b'\n').unwrap() + 1])
}

#[test]
fn an_object_another_writer_put_is_registered_from_its_lines_and_processed_once() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    let recorded = block_on(w.metadata.get(&key)).unwrap().unwrap();
    // A restore writes other content under the key, without the stream processor's metadata.
    let body = first_line_of(&w.objects.object(RAW, &key).unwrap().body);
    let sha = hex::encode(Sha256::digest(&body));
    block_on(w.objects.put(RAW, &key, body, "x", &Default::default())).unwrap();
    let report = block_on(w.tf.handle(&notification(&notices[0]), "t")).unwrap();
    let Outcome::Processed {
        rows, registered, ..
    } = &report.outcomes[0]
    else {
        panic!("{report:?}");
    };
    assert_eq!((*rows, *registered), (1, true));
    let m = &report.metrics;
    assert_eq!(m.get("RawObjectsRegistered"), Some(1.0));
    let item = block_on(w.metadata.get(&key)).unwrap().unwrap();
    assert_eq!(item.status, Some(Status::Processed));
    assert_eq!(item.raw_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(item.processed_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!((item.valid_records, item.processed_rows), (1, Some(1)));
    assert_ne!(item.raw_sha256, recorded.raw_sha256);
    // Exactly one row in processed, and the outputs of the earlier content are gone.
    let rows: usize = w
        .objects
        .keys(PROCESSED, "")
        .iter()
        .map(|k| {
            read_rows(w.objects.object(PROCESSED, k).unwrap().body)
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(rows, 1);
    // A second notification of the same put is a duplicate, not a second registration.
    let again = block_on(w.tf.handle(&notification(&notices[0]), "t2")).unwrap();
    assert_eq!(again.outcomes, [Outcome::Duplicate { key: key.clone() }]);
    let m = &again.metrics;
    assert_eq!(m.get("RawObjectsRegistered"), None);
}

#[test]
fn a_registered_item_names_the_batch_its_lines_span() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    let recorded = w.metadata.attributes(&key).unwrap();
    // The same content, copied without its metadata (a restore from a backup bucket).
    let body = w.objects.object(RAW, &key).unwrap().body;
    w.metadata.delete_item(&key);
    block_on(w.objects.put(RAW, &key, body, "x", &Default::default())).unwrap();
    block_on(w.tf.handle(&notification(&notices[0]), "t")).unwrap();
    let registered = w.metadata.attributes(&key).unwrap();
    for name in [
        "raw_sha256",
        "shard_id",
        "first_sequence_number",
        "last_sequence_number",
        "first_arrival",
        "last_arrival",
        "valid_records",
        "raw_bytes",
        "raw_uncompressed_bytes",
    ] {
        assert_eq!(registered.get(name), recorded.get(name), "{name}");
    }
    assert_eq!(
        registered.get("registered_by").map(String::as_str),
        Some(REGISTERED_BY)
    );
    assert_eq!(recorded.get("registered_by"), None);
}

#[test]
fn the_stream_processors_own_object_waits_for_its_item_instead_of_being_registered() {
    let w = world();
    let (event, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    // The item is not written yet: the notification overtook it.
    w.metadata.delete_item(&key);
    let tf = Transformer::new(
        w.objects.clone(),
        w.metadata.clone(),
        pii(),
        Settings {
            item_wait: Duration::from_secs(30),
            ..settings()
        },
    );
    let payload = notification(&notices[0]);
    let (report, ()) = block_on(async {
        tokio::join!(tf.handle(&payload, "t"), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = "2026-11-25T10:05:02Z".parse().unwrap();
            let (response, _) = w.sp_at(now).handle(&event, "sp-retry").await;
            assert!(response.batch_item_failures.is_empty());
        })
    });
    let report = report.unwrap();
    assert!(
        matches!(
            &report.outcomes[0],
            Outcome::Processed {
                registered: false,
                ..
            }
        ),
        "{report:?}"
    );
    let attributes = w.metadata.attributes(&key).unwrap();
    assert_eq!(attributes.get("registered_by"), None);
    assert_eq!(
        attributes.get("correlation_id").map(String::as_str),
        Some("sp-retry")
    );
}

#[test]
fn the_stream_processors_object_whose_item_never_comes_fails_retryably() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    // The stream processor died between the object and the item: its batch is retried or
    // dead-lettered, and the retry or the redrive records it.
    w.metadata.delete_item(&key);
    let (err, waited) = block_on(async {
        let started = tokio::time::Instant::now();
        let result = w.tf.handle(&notification(&notices[0]), "t").await;
        (result.unwrap_err(), started.elapsed())
    });
    assert!(waited >= settings().item_wait, "{waited:?}");
    assert!(matches!(err, Error::NotRecorded { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(w.metadata.attributes(&key).is_none());
    assert!(w.objects.keys(PROCESSED, "").is_empty());
}

#[test]
fn a_batch_retried_after_its_object_was_registered_writes_its_own_facts_and_stays_processed() {
    let w = world();
    let (event, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    let recorded = w.metadata.attributes(&key).unwrap();
    // The object restored without its metadata into a table that lost its item.
    let body = w.objects.object(RAW, &key).unwrap().body;
    w.metadata.delete_item(&key);
    block_on(w.objects.put(RAW, &key, body, "x", &Default::default())).unwrap();
    let report = block_on(w.tf.handle(&notification(&notices[0]), "t")).unwrap();
    assert!(
        matches!(
            &report.outcomes[0],
            Outcome::Processed {
                registered: true,
                ..
            }
        ),
        "{report:?}"
    );
    // The batch comes again: its own facts replace those read from the lines, and the object
    // stays processed (its new notification is a duplicate).
    let now = "2026-11-25T10:05:02Z".parse().unwrap();
    let (response, _) = block_on(w.sp_at(now).handle(&event, "sp-retry"));
    assert!(response.batch_item_failures.is_empty());
    let adopted = w.metadata.attributes(&key).unwrap();
    assert_eq!(adopted.get("registered_by"), None);
    assert_eq!(
        adopted.get("status").map(String::as_str),
        Some(Status::Processed.as_str())
    );
    assert_eq!(adopted.get("pending"), None);
    assert_eq!(
        adopted.get("correlation_id").map(String::as_str),
        Some("sp-retry")
    );
    for name in [
        "kinesis_records",
        "valid_records",
        "quarantined_records",
        "first_sequence_number",
        "last_sequence_number",
    ] {
        assert_eq!(adopted.get(name), recorded.get(name), "{name}");
    }
    let again: Vec<PutNotice> = raw_notices(&w)
        .into_iter()
        .filter(|n| n.key == key)
        .collect();
    let report = block_on(w.tf.handle(&notification(&again[0]), "t2")).unwrap();
    assert_eq!(report.outcomes, [Outcome::Duplicate { key }]);
}

#[test]
fn a_registration_never_overwrites_a_recording_made_after_the_item_was_read() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event.json");
    let key = notices[0].key.clone();
    let recorded = block_on(w.metadata.get(&key)).unwrap().unwrap();
    let body = first_line_of(&w.objects.object(RAW, &key).unwrap().body);
    let output = transform::transform(&key, &body, &pii()).unwrap();
    let object = StoredObject {
        body,
        metadata: BTreeMap::new(),
    };
    let raw =
        w.tf.registration(&key, "f".repeat(64).as_str(), &object, &output, "t");
    // Read when the key had no item: the stream processor's recording since then wins.
    assert_eq!(
        block_on(w.metadata.register_raw(&raw, None)).unwrap(),
        RecordOutcome::Changed
    );
    assert_eq!(
        block_on(w.metadata.register_raw(&raw, Some("0".repeat(64).as_str()))).unwrap(),
        RecordOutcome::Changed
    );
    assert_eq!(block_on(w.metadata.get(&key)).unwrap().unwrap(), recorded);
    assert_eq!(
        block_on(
            w.metadata
                .register_raw(&raw, recorded.raw_sha256.as_deref())
        )
        .unwrap(),
        RecordOutcome::Recorded
    );
}

#[test]
fn a_held_lease_defers_the_run() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event.json");
    let lease = w.tf.lease(&notices[0].key, "someone-else");
    assert_eq!(
        block_on(w.metadata.acquire_lease(&lease)).unwrap(),
        LeaseOutcome::Acquired
    );
    let err = block_on(w.tf.handle(&notification(&notices[0]), "t")).unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err}");
    block_on(w.metadata.release_lease(&notices[0].key, "someone-else")).unwrap();
    assert!(block_on(w.tf.handle(&notification(&notices[0]), "t")).is_ok());
}

#[test]
fn store_faults_fail_the_invocation_and_a_retry_converges() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event-mixed.json");
    w.objects.set_faults(Faults::new(11, 0.0, 1.0));
    assert!(matches!(
        block_on(w.tf.handle(&notification(&notices[0]), "t1")),
        Err(Error::Store(_))
    ));
    w.objects.set_faults(Faults::none());
    block_on(w.tf.handle(&notification(&notices[0]), "t2")).unwrap();
    assert_eq!(processed_ids(&w).len(), 5);
}

#[test]
fn settings_errors_are_actionable() {
    let err = Settings::from_env(|_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable PROCESSED_BUCKET is not set: the deployment must set it (see docs/deployment.md)"
    );
    assert!(!err.is_retryable());
}

/// One Kinesis batch of `records` events that span `types` event types × `hours` event-time hours,
/// all inside the contract's 7-day window: one raw object with `types × hours` partitions (and
/// more than one event in a partition when `records` exceeds that).
fn wide_batch(types: usize, hours: usize, records: usize) -> KinesisEvent {
    let arrival = 1_795_600_800i64; // 2026-11-25T10:00:00Z
    let records: Vec<(String, String, String)> = (0..records)
        .map(|i| {
            let (ty, hour) = (i % types, (i / types) % hours);
            let occurred = DateTime::from_timestamp(arrival - 60 - hour as i64 * 3600, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ");
            let data = format!(
                r#"{{"event_id":"wide-{i}","event_type":"checkout.step_{ty:02}_completed","occurred_at":"{occurred}","source":"web"}}"#
            );
            let seq = format!("4959033827149025660855969253836157109592157598913658{i:04}");
            (format!("u-{i}"), seq, data)
        })
        .collect();
    kinesis_event(&records, DateTime::from_timestamp(arrival, 0).unwrap())
}

#[test]
fn a_raw_object_spanning_2000_partitions_is_processed_completely_and_again_when_rewritten() {
    let w = world();
    let ingest = |batch: KinesisEvent, at: &str| {
        let (response, _) = block_on(w.sp_at(at.parse().unwrap()).handle(&batch, "sp-wide"));
        assert!(response.batch_item_failures.is_empty());
        let notices = raw_notices(&w);
        assert_eq!(notices.len(), 1, "one batch, one shard: one raw object");
        notices.into_iter().next().unwrap()
    };
    let process = |notice: &PutNotice, owner: &str, rows: u64| {
        let report = block_on(w.tf.handle(&notification(notice), owner)).unwrap();
        let Outcome::Processed {
            rows: got, outputs, ..
        } = &report.outcomes[0]
        else {
            panic!("{report:?}")
        };
        assert_eq!(*got, rows);
        assert_eq!(outputs.len(), 2000, "one output per partition");
        assert_eq!(w.objects.keys(PROCESSED, "processed/"), *outputs);
        assert_eq!(processed_ids(&w).len() as u64, rows);
        let items = w.metadata.all();
        assert_eq!(items[0].status, Some(Status::Processed));
        assert_eq!(&listed(&w, &items[0]), outputs);
        assert_eq!(items.len(), 1);
        // No output page but those of the set the item refers to.
        let set = items[0].outputs.unwrap();
        assert_eq!(w.metadata.page_keys().len(), set.pages as usize);
        // The raw object's item does not grow with its outputs; each page stays in its budget.
        let item_size = w.metadata.item_size(&items[0].raw_key).unwrap();
        assert!(item_size < 1024, "{item_size} bytes");
        for page in w.metadata.page_keys() {
            let size = w.metadata.item_size(&page).unwrap();
            assert!(
                size <= pipeline_core::metadata::OUTPUT_PAGE_BUDGET,
                "{page}: {size}"
            );
        }
        eprintln!(
            "raw object item: {item_size} bytes; {} output pages of {:?} bytes",
            set.pages,
            w.metadata
                .page_keys()
                .iter()
                .map(|k| w.metadata.item_size(k).unwrap())
                .collect::<Vec<_>>()
        );
        set
    };
    // 2,000 partitions: 20 event types × 100 event-time hours, plus a second event in one.
    let first = ingest(wide_batch(20, 100, 2001), "2026-11-25T10:00:01Z");
    process(&first, "tf-wide-1", 2001);
    // Redelivered smaller (a bisected retry): same first record, same key, new content, the same
    // 2,000 partitions.
    let second = ingest(wide_batch(20, 100, 2000), "2026-11-25T10:00:09Z");
    assert_eq!(second.key, first.key);
    process(&second, "tf-wide-2", 2000);
    // A duplicate notification finds it done.
    let report = block_on(w.tf.handle(&notification(&second), "tf-wide-3")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
}

#[test]
fn a_replay_re_transforms_what_an_earlier_version_processed_and_skips_its_own() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event-mixed.json");
    let plain = notification(&notices[0]);
    let mut replay = plain.clone();
    replay[lambda_payloads::s3::REPLAY_MEMBER] = Value::Bool(true);
    assert!(lambda_payloads::s3::is_replay(&replay) && !lambda_payloads::s3::is_replay(&plain));

    // Version 1 processes it; a replay by version 1 changes nothing.
    block_on(w.tf.handle(&plain, "v1-run")).unwrap();
    let first = w.metadata.all();
    assert_eq!(first[0].processed_version.as_deref(), Some("v1"));
    let outputs = w.objects.keys(PROCESSED, "processed/");
    let report = block_on(w.tf.handle(&replay, "v1-replay")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
    assert_eq!(w.metadata.all(), first);

    // Version 2 (a fix deployed): a plain notification is still a duplicate, a replay re-transforms
    // the object into exactly the same outputs, each record once, and records the new version.
    let v2 = Transformer::new(
        w.objects.clone(),
        w.metadata.clone(),
        pii(),
        Settings {
            version: "v2".into(),
            ..settings()
        },
    );
    let report = block_on(v2.handle(&plain, "v2-notification")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
    let report = block_on(v2.handle(&replay, "v2-replay")).unwrap();
    assert!(
        matches!(report.outcomes[0], Outcome::Processed { rows: 5, .. }),
        "{report:?}"
    );
    let items = w.metadata.all();
    assert_eq!(items[0].processed_version.as_deref(), Some("v2"));
    assert_eq!(items[0].status, Some(Status::Processed));
    assert_eq!(w.objects.keys(PROCESSED, "processed/"), outputs);
    assert_eq!(
        processed_ids(&w),
        ["kpl-mix-1", "kpl-mix-2", "kpl-mix-3", "mix-1", "mix-5"]
    );
    // And a second replay of version 2 is a duplicate: a replay can be resumed or repeated.
    let report = block_on(v2.handle(&replay, "v2-replay-again")).unwrap();
    assert!(matches!(report.outcomes[0], Outcome::Duplicate { .. }));
}

#[test]
fn the_transformer_reads_the_time_from_its_clock() {
    let w = world();
    let (_, notices) = ingest_fixture(&w, "kinesis-event-mixed.json");
    let at: DateTime<Utc> = "2026-11-25T10:07:00Z".parse().unwrap();
    let tf = Transformer::with_clock(
        w.objects.clone(),
        w.metadata.clone(),
        pii(),
        settings(),
        std::sync::Arc::new(move || at),
    );
    block_on(tf.handle(&notification(&notices[0]), "clocked")).unwrap();
    assert_eq!(
        w.metadata.all()[0].processed_at.as_deref(),
        Some("2026-11-25T10:07:00.000000Z")
    );
}

/// Every processed row's (sequence number, sub-sequence number), sorted.
fn processed_records(w: &World) -> Vec<(String, i64)> {
    let mut ids: Vec<(String, i64)> = w
        .objects
        .keys(PROCESSED, "processed/")
        .iter()
        .flat_map(|k| read_rows(w.objects.object(PROCESSED, k).unwrap().body).unwrap())
        .map(|r| (r.kinesis_seq, r.kinesis_subseq))
        .collect();
    ids.sort();
    ids
}

/// The stream processor writes `event`'s records as one batch; returns the raw object's notice.
fn write_batch(w: &World, event: &KinesisEvent) -> PutNotice {
    let now = "2026-11-25T10:05:02Z".parse().unwrap();
    let (response, _) = block_on(w.sp_at(now).handle(event, "sp-req"));
    assert!(response.batch_item_failures.is_empty());
    let mut notices = raw_notices(w);
    assert_eq!(notices.len(), 1);
    notices.remove(0)
}

fn slice(event: &KinesisEvent, range: std::ops::Range<usize>) -> KinesisEvent {
    let mut event = event.clone();
    event.records = event.records[range].to_vec();
    event
}

fn transform_notice(w: &World, n: &PutNotice) -> Outcome {
    let mut report = block_on(w.tf.handle(&notification(n), "tf-req")).unwrap();
    report.outcomes.remove(0)
}

fn seqs(range: std::ops::Range<u32>) -> Vec<(String, i64)> {
    range.map(|s| (s.to_string(), 0)).collect()
}

/// A batch of six whose object was written but whose invocation failed, bisected: the second
/// half (from record 103) is written under its own key, and the first half is never written
/// again (its retries ran out). Whichever object is processed first, records 103–105 are
/// processed once, by the object that starts first; when the first half is written after all,
/// they move to the second half's object.
#[test]
fn records_in_two_overlapping_raw_objects_are_processed_once_by_the_earlier_one() {
    let events: Vec<(String, &str)> = (0..6).map(|i| (format!("e{i}"), "click")).collect();
    let events: Vec<(&str, &str)> = events.iter().map(|(id, ty)| (id.as_str(), *ty)).collect();
    let batch = small_batch(&events);
    for second_half_first in [false, true] {
        let w = world();
        let whole = write_batch(&w, &batch);
        let half = write_batch(&w, &slice(&batch, 3..6));
        assert_ne!(whole.key, half.key);
        let (a, b) = if second_half_first {
            (&half, &whole)
        } else {
            (&whole, &half)
        };
        let first = transform_notice(&w, a);
        let second = transform_notice(&w, b);
        assert_eq!(
            processed_records(&w),
            seqs(100..106),
            "{first:?} {second:?}"
        );
        // The second half owns nothing of its own: its item says so, as processed.
        let item = block_on(w.metadata.get(&half.key)).unwrap().unwrap();
        assert_eq!(item.status, Some(Status::Processed));
        assert_eq!(item.processed_rows, Some(0));
        assert!(listed(&w, &item).is_empty());
        if second_half_first {
            let Outcome::Processed { reprocessed, .. } = &second else {
                panic!("{second:?}")
            };
            assert_eq!(reprocessed, std::slice::from_ref(&half.key));
        } else {
            let Outcome::Processed {
                owned_elsewhere, ..
            } = &second
            else {
                panic!("{second:?}")
            };
            assert_eq!(*owned_elsewhere, 3);
        }
        // A duplicate notification of either changes nothing.
        for n in [&whole, &half] {
            assert!(matches!(transform_notice(&w, n), Outcome::Duplicate { .. }));
        }
        assert_eq!(processed_records(&w), seqs(100..106));

        // The first half is written after all: the whole batch's object now holds 100–102, and
        // the second half's object takes 103–105 back.
        let rewritten = write_batch(&w, &slice(&batch, 0..3));
        assert_eq!(rewritten.key, whole.key);
        let Outcome::Processed { reprocessed, .. } = transform_notice(&w, &rewritten) else {
            panic!()
        };
        assert_eq!(reprocessed, std::slice::from_ref(&half.key));
        assert_eq!(processed_records(&w), seqs(100..106));
        let item = block_on(w.metadata.get(&half.key)).unwrap().unwrap();
        assert_eq!(item.processed_rows, Some(3));
    }
}

/// Objects that do not overlap read the ledger and own all their records: nothing reprocessed.
#[test]
fn adjacent_raw_objects_own_all_their_records() {
    let events: Vec<(String, &str)> = (0..6).map(|i| (format!("e{i}"), "click")).collect();
    let events: Vec<(&str, &str)> = events.iter().map(|(id, ty)| (id.as_str(), *ty)).collect();
    let batch = small_batch(&events);
    let w = world();
    let left = write_batch(&w, &slice(&batch, 0..3));
    let right = write_batch(&w, &slice(&batch, 3..6));
    for n in [&right, &left] {
        let Outcome::Processed {
            owned_elsewhere,
            reprocessed,
            rows,
            ..
        } = transform_notice(&w, n)
        else {
            panic!()
        };
        assert_eq!((owned_elsewhere, reprocessed.len(), rows), (0, 0, 3));
    }
    assert_eq!(processed_records(&w), seqs(100..106));
}

#[test]
fn every_outcome_counts_only_metrics_of_the_catalogue_and_together_all_of_them() {
    use pipeline_aws::emf::catalogue;
    let outcomes = [
        Outcome::Ignored {
            key: "k".into(),
            why: "test",
        },
        Outcome::Duplicate { key: "k".into() },
        Outcome::Processed {
            key: "k".into(),
            rows: 3,
            duplicates: 1,
            outputs: vec!["o".into()],
            deleted: vec![],
            max_ingest_lag_ms: Some(5),
            upstream_correlation_id: None,
            registered: true,
            owned_elsewhere: 0,
            reprocessed: vec![],
        },
    ];
    let mut m = Metrics::new();
    for outcome in &outcomes {
        events::RecordDone {
            outcome,
            correlation_id: "c",
        }
        .emit(&mut m);
    }
    let mut names: Vec<&str> = m.names().collect();
    let mut listed = catalogue::TRANSFORMER.to_vec();
    names.sort_unstable();
    listed.sort_unstable();
    assert_eq!(names, listed);
    assert_eq!(m.get("RecordsValid"), Some(3.0));
    assert_eq!(m.get("IngestLagMs"), Some(5.0));
}
