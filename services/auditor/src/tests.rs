//! The auditor against the in-memory stores, with the real stream processor writing and the real
//! transformer processing what it re-drives.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::kinesis::KinesisEvent;
use pipeline_aws::ObjectStore;
use pipeline_core::keys::RAW_SHA256_METADATA;
use pipeline_core::transform::Pseudonymizer;
use stream_processor::StreamProcessor;
use test_support::SetClock;
use test_support::memory::{MemoryMetadataStore, MemoryObjectStore};
use transformer::{Outcome, Transformer};

use super::*;

const RAW: &str = "raw-bucket";

use test_support::block_on;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Every notification sent, in order; fails the keys in `fail`.
#[derive(Debug, Clone, Default)]
struct Sent {
    sent: Arc<Mutex<Vec<(String, Value)>>>,
    fail: Vec<String>,
}

impl Sent {
    fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

impl Redrive for Sent {
    async fn redrive(&self, key: &str, notification: &Value) -> Result<(), Error> {
        if self.fail.iter().any(|k| k == key) {
            return Err(Error::Redrive {
                function: "tf".into(),
                key: key.to_owned(),
                message: "throttled".into(),
            });
        }
        self.sent
            .lock()
            .unwrap()
            .push((key.to_owned(), notification.clone()));
        Ok(())
    }
}

fn settings() -> Settings {
    Settings {
        raw_bucket: RAW.into(),
        transformer_function: "tf".into(),
        function_name: "auditor".into(),
        region: "eu-west-1".into(),
        stuck_after: Duration::minutes(15),
        period: Duration::minutes(5),
        lookback: Duration::hours(3),
    }
}

struct World {
    objects: MemoryObjectStore,
    sp: StreamProcessor<MemoryObjectStore, MemoryMetadataStore>,
    sp_clock: SetClock,
    tf: Transformer<MemoryObjectStore, MemoryMetadataStore>,
    sent: Sent,
    auditor: Auditor<MemoryObjectStore, MemoryMetadataStore, Sent>,
}

fn world(fail: &[&str]) -> World {
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
    let tf = Transformer::new(
        objects.clone(),
        metadata.clone(),
        Pseudonymizer::new(b"k").unwrap(),
        transformer::Settings {
            processed_bucket: "processed-bucket".into(),
            metadata_table: "meta".into(),
            metadata_ttl_days: 30,
            hmac_secret_id: "secret".into(),
            function_name: "tf".into(),
            item_wait: std::time::Duration::from_millis(20),
            lease: std::time::Duration::from_secs(60),
            version: "v1".into(),
        },
    );
    let sent = Sent {
        fail: fail.iter().map(|k| (*k).to_owned()).collect(),
        ..Sent::default()
    };
    let auditor = Auditor::new(objects.clone(), metadata.clone(), sent.clone(), settings());
    World {
        objects,
        sp,
        sp_clock,
        tf,
        sent,
        auditor,
    }
}

/// The stream processor writes and records the fixture's batch at `now`; its S3 notifications
/// are lost (nobody takes them to the transformer). Returns the raw keys.
fn ingest_and_lose_notifications(w: &World, now: &str) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../stream-processor/fixtures/kinesis-event-two-shards.json"),
    )
    .unwrap();
    let event: KinesisEvent = serde_json::from_str(&text).unwrap();
    w.objects.set_now_ms(at(now).timestamp_millis());
    w.sp_clock.set(at(now));
    let (response, _) = block_on(w.sp.handle(&event, "sp-req"));
    assert!(response.batch_item_failures.is_empty());
    let keys: Vec<String> = w
        .objects
        .take_notices()
        .into_iter()
        .filter(|n| n.key.starts_with("raw/"))
        .map(|n| n.key)
        .collect();
    assert!(!keys.is_empty());
    keys
}

fn audit(w: &World, now: &str) -> Report {
    block_on(w.auditor.audit(at(now), "audit-req")).unwrap()
}

/// What the transformer does with every notification the auditor sent.
fn deliver(w: &World) -> Vec<Outcome> {
    w.sent
        .take()
        .into_iter()
        .flat_map(|(_, n)| block_on(w.tf.handle(&n, "tf-req")).unwrap().outcomes)
        .collect()
}

#[test]
fn a_lost_notification_is_redriven_once_stuck_and_the_transformer_processes_it() {
    let w = world(&[]);
    let keys = ingest_and_lose_notifications(&w, "2026-11-25T10:05:02Z");

    // Younger than 15 minutes: its notification may still come.
    let young = audit(&w, "2026-11-25T10:15:00Z");
    assert_eq!((young.stuck_objects(), young.redriven), (0, 0));
    assert!(w.sent.take().is_empty());

    let run = audit(&w, "2026-11-25T10:21:00Z");
    assert_eq!(run.stuck_not_processed, keys.len() as u64);
    assert_eq!(run.redriven, keys.len() as u64);
    let mut named: Vec<&str> = run.stuck.iter().map(|s| s.key.as_str()).collect();
    named.sort_unstable();
    let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(named, want);
    assert!(
        run.stuck
            .iter()
            .all(|s| s.why == "not_processed" && s.redriven)
    );
    let outcomes = deliver(&w);
    assert_eq!(outcomes.len(), keys.len());
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Outcome::Processed {
                registered: false,
                ..
            }
        )),
        "{outcomes:?}"
    );

    // Healed: the next run finds nothing.
    let next = audit(&w, "2026-11-25T10:26:00Z");
    assert_eq!((next.stuck_objects(), next.redriven), (0, 0));
}

#[test]
fn a_stuck_object_older_than_two_periods_is_reported_but_not_sent_again() {
    let w = world(&[]);
    let keys = ingest_and_lose_notifications(&w, "2026-11-25T10:05:02Z");
    // 15 minutes to become stuck, then two periods of re-drives: past those, it is reported only.
    let run = audit(&w, "2026-11-25T10:31:00Z");
    assert_eq!(run.stuck_objects(), keys.len() as u64);
    assert_eq!(run.redriven, 0);
    assert!(run.stuck.iter().all(|s| !s.redriven));
    assert!(w.sent.take().is_empty());
    let metrics = &run.metrics;
    assert_eq!(metrics.get("StuckObjects"), Some(keys.len() as f64));
    assert_eq!(metrics.get("Redriven"), Some(0.0));
    let mut names: Vec<&str> = metrics.names().collect();
    let mut listed = pipeline_aws::emf::catalogue::AUDITOR.to_vec();
    names.sort_unstable();
    listed.sort_unstable();
    assert_eq!(names, listed, "a run reports every metric of the catalogue");
}

#[test]
fn another_writers_object_without_an_item_is_redriven_and_a_stream_processor_orphan_is_not() {
    let w = world(&[]);
    let keys = ingest_and_lose_notifications(&w, "2026-11-25T10:05:02Z");
    let body = w.objects.object(RAW, &keys[0]).unwrap().body;
    // A restore of the object under another hour, with its metadata dropped, and an object of the
    // stream processor (its sha256 metadata) whose batch died before recording it.
    let restored = keys[0].replace("hour=10", "hour=09");
    let orphan = keys[0].replace("hour=10", "hour=08");
    w.objects
        .set_now_ms(at("2026-11-25T10:06:00Z").timestamp_millis());
    block_on(w.objects.put(
        RAW,
        &restored,
        body.clone(),
        "application/gzip",
        &BTreeMap::new(),
    ))
    .unwrap();
    let sha = BTreeMap::from([(RAW_SHA256_METADATA.to_owned(), "ab".repeat(32))]);
    block_on(w.objects.put(RAW, &orphan, body, "application/gzip", &sha)).unwrap();
    w.objects.take_notices();

    let run = audit(&w, "2026-11-25T10:22:00Z");
    assert_eq!(run.stuck_no_item, 1);
    assert_eq!(run.orphans, 1);
    assert_eq!(run.stuck_not_processed, keys.len() as u64);
    assert!(run.listed >= keys.len() as u64 + 2, "{run:?}");
    let sent: Vec<String> = w
        .sent
        .take()
        .into_iter()
        .map(|(k, n)| {
            assert_eq!(n["Records"][0]["s3"]["bucket"]["name"], RAW);
            k
        })
        .collect();
    assert!(
        sent.contains(&restored) && !sent.contains(&orphan),
        "{sent:?}"
    );
    assert_eq!(sent.len(), keys.len() + 1);

    // The transformer registers the restored object when it processes it.
    let registered = block_on(w.tf.handle(
        &object_created(
            &[CreatedObject {
                bucket: RAW,
                key: &restored,
                size: 0,
                sequencer: None,
            }],
            "2026-11-25T10:22:00Z".parse().expect("a time"),
            "eu-west-1",
            "auditor",
        ),
        "tf-req",
    ))
    .unwrap();
    assert!(matches!(
        registered.outcomes[0],
        Outcome::Processed {
            registered: true,
            ..
        }
    ));
    let next = audit(&w, "2026-11-25T10:23:00Z");
    assert_eq!((next.stuck_no_item, next.orphans), (0, 1));
}

#[test]
fn a_failed_redrive_fails_the_run_after_the_others_were_sent() {
    let w0 = world(&[]);
    let keys = ingest_and_lose_notifications(&w0, "2026-11-25T10:05:02Z");
    let w = world(&[keys[0].as_str()]);
    ingest_and_lose_notifications(&w, "2026-11-25T10:05:02Z");
    let err = block_on(w.auditor.audit(at("2026-11-25T10:21:00Z"), "audit-req")).unwrap_err();
    assert!(err.to_string().contains(&keys[0]), "{err}");
    assert_eq!(w.sent.take().len(), keys.len() - 1);
}

#[test]
fn settings_come_from_the_environment() {
    let vars = BTreeMap::from([
        ("RAW_BUCKET", "r"),
        ("TRANSFORMER_FUNCTION", "t"),
        ("STUCK_AFTER_MINUTES", "20"),
        ("AUDIT_PERIOD_MINUTES", "1"),
        ("LOOKBACK_HOURS", "6"),
    ]);
    let s = Settings::from_env(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(s.stuck_after, Duration::minutes(20));
    assert_eq!(s.period, Duration::minutes(1));
    assert_eq!(s.lookback, Duration::hours(6));
    let err = Settings::from_env(|k| (k == "RAW_BUCKET").then(|| "r".to_owned())).unwrap_err();
    assert!(err.to_string().contains("TRANSFORMER_FUNCTION"), "{err}");
    let err = Settings::from_env(|k| match k {
        "RAW_BUCKET" | "TRANSFORMER_FUNCTION" => Some("x".to_owned()),
        "STUCK_AFTER_MINUTES" => Some("soon".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("STUCK_AFTER_MINUTES"), "{err}");
}

#[test]
fn a_scheduled_event_sets_the_time_a_run_audits_as_of() {
    let event: Value = serde_json::from_str(
        r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",
            "source":"aws.events","account":"123456789012","time":"2026-11-25T10:20:00Z",
            "region":"eu-west-1","resources":["arn:aws:events:eu-west-1:123456789012:rule/eventpipe-dev-auditor-schedule"],
            "detail":{}}"#,
    )
    .unwrap();
    assert_eq!(scheduled_time(&event), Some(at("2026-11-25T10:20:00Z")));
    assert_eq!(scheduled_time(&serde_json::json!({})), None);
    assert_eq!(scheduled_time(&serde_json::json!({"time": "soon"})), None);
}
