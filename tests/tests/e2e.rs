//! End-to-end tests: the packaged functions in the local emulator, our event-source mapping in
//! front, each test on a fresh local stack. They package the functions first (`cargo xtask test`
//! has) and need Python 3 for the emulator.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use local_stack::runtime::{self, Local};
use pipeline_config::Environment;
use pipeline_core::kpl::{self, SubRecord};
use pipeline_core::parquet_io::read_rows;
use pipeline_ops::esm;
use pipeline_ops::reconcile::{self, list, reconcile};
use serde_json::{Value, json};

/// One stack at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The functions' zips, packaged once per run of these tests (see
/// [`runtime::host_packages`]).
fn packages() -> PathBuf {
    static PACKAGES: OnceLock<PathBuf> = OnceLock::new();
    PACKAGES
        .get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), PathBuf::from);
            let packaged = std::env::var_os(runtime::PACKAGED_ENV).is_some();
            runtime::host_packages(&root(), &target, !packaged).unwrap()
        })
        .clone()
}

/// A fresh local stack, authorisation enforced with dev's policies (recorded when
/// `EVENTPIPE_AUTHZ_RECORD` names a file: `cargo xtask test` keeps that record).
fn with_stack(test: impl AsyncFnOnce(&Local)) {
    with_stack_using(&runtime::Options::default(), test);
}

fn with_stack_using(options: &runtime::Options, test: impl AsyncFnOnce(&Local)) {
    with_stack_of(|_| {}, options, test);
}

/// A fresh local stack of `environments/local.toml` changed by `adjust`.
fn with_stack_of(
    adjust: impl FnOnce(&mut Environment),
    options: &runtime::Options,
    test: impl AsyncFnOnce(&Local),
) {
    let _guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut env = Environment::load(&root(), "local").unwrap();
        adjust(&mut env);
        let local = Local::up_with(&root(), env, &packages(), options)
            .await
            .unwrap();
        test(&local).await;
        local.down().await;
    });
}

/// Polls `check` until it returns `Some`, or fails the test after `limit`.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn event(id: &str, ty: &str, extra: Value) -> Vec<u8> {
    let mut e = json!({
        "event_id": id, "event_type": ty, "occurred_at": pipeline_core::event::fmt_time(chrono::Utc::now()),
        "source": "e2e", "user_id": format!("user-{id}"), "attributes": {"email": format!("{id}@example.com"), "path": "/"},
    });
    if let (Some(obj), Some(more)) = (e.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    e.to_string().into_bytes()
}

/// Sends records as the producer does, as the producer's role: its sink (ListShards, then
/// PutRecords within Kinesis's limits, partial failures retried).
async fn put(local: &Local, records: Vec<(String, Vec<u8>)>) {
    use producer::RecordSink;
    let sink = producer::kinesis::KinesisSink::new(&local.producer.config, &local.stack.stream);
    assert!(!sink.shards().await.unwrap().is_empty());
    let entries = records
        .into_iter()
        .map(|(pk, data)| producer::Entry::plain(pk, data))
        .collect();
    for batch in producer::batches(entries) {
        let r = producer::send_batch(&sink, batch, producer::Retry::default()).await;
        assert_eq!(r.failed_events, 0, "{r:?}");
    }
}

async fn rows(local: &Local) -> Vec<(String, pipeline_core::parquet_io::Row)> {
    let mut out = Vec::new();
    for key in list(&local.clients, &local.stack.processed_bucket, "processed/")
        .await
        .unwrap()
    {
        let body = reconcile::get(&local.clients, &local.stack.processed_bucket, &key)
            .await
            .unwrap();
        out.extend(
            read_rows(body)
                .unwrap()
                .into_iter()
                .map(|r| (key.clone(), r)),
        );
    }
    out
}

#[test]
fn happy_path_every_valid_event_becomes_one_parquet_row() {
    with_stack(async |local| {
        let n = 600;
        put(
            local,
            (0..n)
                .map(|i| {
                    (
                        format!("pk-{i}"),
                        event(
                            &format!("ok-{i}"),
                            ["click", "purchase", "page_view"][i % 3],
                            json!({}),
                        ),
                    )
                })
                .collect(),
        )
        .await;
        let p = local
            .wait_quiescent(n as u64, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(
            (p.processed_rows, p.quarantined, p.pending_objects),
            (n as u64, 0, 0),
            "{p:?}"
        );
        let report = reconcile(&local.clients, &local.stack, n as u64, n as u64, 0)
            .await
            .unwrap();
        assert_eq!(report.lost, 0);
        assert_eq!(
            (report.processed_rows, report.distinct_event_ids),
            (n as u64, n as u64)
        );
        assert_eq!(
            (report.stream_dlq_messages, report.transform_dlq_messages),
            (0, 0)
        );
        for (key, row) in rows(local).await {
            // Partitions follow event time and type.
            let date = chrono::DateTime::from_timestamp_micros(row.occurred_at_us).unwrap();
            assert!(
                key.starts_with(&format!(
                    "processed/event_type={}/dt={}/hour={}/",
                    row.event_type,
                    date.format("%Y-%m-%d"),
                    date.format("%H")
                )),
                "{key}"
            );
            // PII is hashed.
            assert_eq!(row.user_id_hash.as_ref().unwrap().len(), 64);
            let attrs = row.attributes_json.unwrap();
            assert!(!attrs.contains("@example.com"), "{attrs}");
        }
    });
}

#[test]
fn bad_input_is_quarantined_with_its_reason_and_the_shard_moves_on() {
    with_stack(async |local| {
        let now = chrono::Utc::now();
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        let mut want = std::collections::BTreeMap::new();
        // One record of each reason of the contract.
        for reason in pipeline_core::Reason::ALL {
            records.push((
                "bad".into(),
                producer::generate::invalid(reason, &format!("bad-{reason}"), now),
            ));
            want.insert(reason.as_str().to_owned(), 1u64);
        }
        // Valid events after the bad ones, on the same partition key (same shard).
        records.extend((0..20).map(|i| {
            (
                "bad".to_owned(),
                event(&format!("after-{i}"), "click", json!({})),
            )
        }));
        put(local, records).await;
        let total = want.values().sum::<u64>() + 20;
        let p = local
            .wait_quiescent(total, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(p.processed_rows, 20, "the shard is not blocked: {p:?}");
        let report = reconcile(&local.clients, &local.stack, total, 20, total - 20)
            .await
            .unwrap();
        assert_eq!(report.quarantined, want);
        assert_eq!(report.lost, 0);
    });
}

#[test]
fn kpl_aggregates_are_deaggregated_and_accounted() {
    with_stack(async |local| {
        let agg = |ids: std::ops::Range<usize>| {
            kpl::aggregate(
                &ids.map(|i| SubRecord {
                    partition_key: format!("k{i}"),
                    explicit_hash_key: None,
                    data: event(&format!("agg-{i}"), "purchase", json!({})),
                })
                .collect::<Vec<_>>(),
            )
        };
        let mut bad = agg(100..103);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        put(
            local,
            vec![
                ("a".into(), agg(0..40)),
                ("b".into(), agg(40..45)),
                ("c".into(), bad),
            ],
        )
        .await;
        let p = local
            .wait_quiescent(46, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!((p.processed_rows, p.quarantined), (45, 1), "{p:?}");
        let subseqs: std::collections::BTreeSet<i64> = rows(local)
            .await
            .into_iter()
            .map(|(_, r)| r.kinesis_subseq)
            .collect();
        assert_eq!(
            subseqs.len(),
            40,
            "sub-sequence numbers are the index in the aggregate"
        );
    });
}

#[test]
fn a_poison_batch_is_bisected_retried_reported_to_the_stream_dlq_and_redriven() {
    with_stack(async |local| {
        // Break the stream processor's storage: every batch fails, retries run out, the mapping
        // reports each batch to the stream DLQ in AWS's format and moves on.
        local
            .admin
            .dynamodb
            .delete_table()
            .table_name(&local.stack.metadata_table)
            .send()
            .await
            .unwrap();
        put(
            local,
            (0..30)
                .map(|i| {
                    (
                        "poison".to_owned(),
                        event(&format!("p-{i}"), "click", json!({})),
                    )
                })
                .collect(),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(90);
        let messages = loop {
            let n = reconcile::queue_depth(&local.clients, &local.stack.stream_dlq_url)
                .await
                .unwrap();
            if n > 0 && local.mapping_idle() {
                break n;
            }
            assert!(Instant::now() < deadline, "nothing reached the stream DLQ");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(messages >= 1);
        let stats = local.mapping_stats();
        assert!(stats.partial_failures >= 1, "{stats:?}");
        let peek = local
            .clients
            .sqs
            .receive_message()
            .queue_url(&local.stack.stream_dlq_url)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(peek.messages()[0].body().unwrap()).unwrap();
        assert_eq!(
            body["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(
            body["KinesisBatchInfo"]["streamArn"],
            local.stack.stream_arn
        );
        assert!(body["KinesisBatchInfo"]["startSequenceNumber"].is_string());

        // The fix: provisioning is idempotent and recreates the table. Then the redrive.
        local.reprovision(&packages()).await.unwrap();
        let dry = pipeline_ops::redrive::stream_dlq(
            &local.clients,
            &local.stack,
            esm::Settings::from(&local.env.event_source_mapping),
            true,
        )
        .await
        .unwrap();
        assert_eq!(dry.records, 30);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = pipeline_ops::redrive::stream_dlq(
            &local.clients,
            &local.stack,
            esm::Settings::from(&local.env.event_source_mapping),
            false,
        )
        .await
        .unwrap();
        assert_eq!(done.records, 30);
        let p = local
            .wait_quiescent(30, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!((p.processed_rows, p.stream_dlq_messages), (30, 0), "{p:?}");
    });
}

#[test]
fn a_failing_transformer_is_retried_then_lands_in_the_transform_dlq() {
    with_stack(async |local| {
        let key = "raw/dt=2026-11-25/hour=10/shard=shardId-000000000000/1.jsonl.gz";
        put_raw_object(local, key, b"not gzip and never recorded".to_vec()).await;
        let deadline = Instant::now() + Duration::from_secs(90);
        while reconcile::queue_depth(&local.clients, &local.stack.transform_dlq_url)
            .await
            .unwrap()
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "nothing reached the transform DLQ"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let out = local
            .clients
            .sqs
            .receive_message()
            .queue_url(&local.stack.transform_dlq_url)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(out.messages()[0].body().unwrap()).unwrap();
        assert_eq!(body["requestContext"]["condition"], "RetriesExhausted");
        let sent_key = body["requestPayload"]["Records"][0]["s3"]["object"]["key"]
            .as_str()
            .unwrap();
        assert_eq!(pipeline_core::keys::decode_s3_key(sent_key).unwrap(), key);

        // The operator removes the object nobody should have written; the redrive then finds it
        // gone (S3 answers NoSuchKey to a transformer that may list raw/), and the message goes.
        local
            .admin
            .s3
            .delete_object()
            .bucket(&local.stack.raw_bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let redriven = pipeline_ops::redrive::transform_dlq(&local.clients, &local.stack, false)
            .await
            .unwrap();
        assert_eq!(redriven.messages, 1);
        assert_eq!(
            reconcile::queue_depth(&local.clients, &local.stack.transform_dlq_url)
                .await
                .unwrap(),
            0
        );
    });
}

#[test]
fn test_events_encoded_keys_and_duplicate_or_stale_notifications_are_harmless() {
    with_stack(async |local| {
        put(
            local,
            (0..50)
                .map(|i| {
                    (
                        format!("k{i}"),
                        event(&format!("n-{i}"), "click", json!({})),
                    )
                })
                .collect(),
        )
        .await;
        local
            .wait_quiescent(50, Duration::from_secs(60))
            .await
            .unwrap();
        let before = rows(local).await;
        assert_eq!(before.len(), 50);
        let raw_key = before[0].1.raw_key.clone();
        let invoke = async |payload: Value| {
            let out = local
                .clients
                .lambda
                .invoke()
                .function_name(&local.stack.transformer)
                .payload(payload.to_string().into_bytes().into())
                .send()
                .await
                .unwrap();
            assert_eq!(
                out.function_error,
                None,
                "{:?}",
                out.payload
                    .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
            );
            serde_json::from_slice::<Value>(out.payload.unwrap().as_ref()).unwrap()
        };
        let test_event: Value = serde_json::from_str(
            &std::fs::read_to_string(
                root().join("services/transformer/fixtures/s3-test-event.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let r = invoke(test_event).await;
        assert_eq!(r["outcomes"][0]["why"], "s3:TestEvent");
        // The raw object's key URL-encoded as S3 encodes it, with a stale (old) sequencer: a
        // duplicate of work already done.
        let mut s3_event = raw_put_event(local, &raw_key);
        s3_event["Records"][0]["s3"]["object"]["sequencer"] = json!("0000000000000001");
        for _ in 0..2 {
            let r = invoke(s3_event.clone()).await;
            assert_eq!(r["outcomes"][0]["outcome"], "duplicate", "{r}");
        }
        assert_eq!(rows(local).await.len(), 50);
    });
}

#[test]
fn killing_the_functions_mid_batch_loses_and_duplicates_nothing() {
    with_stack(async |local| {
        // The emulator runs each function's `bootstrap` from its own directory: kill them there.
        let pattern = format!("emulator-{}/ministack-provided-code", local.emulator.port);
        let n = 2_000;
        let producer = async {
            for chunk in 0..20 {
                put(
                    local,
                    (0..100)
                        .map(|i| {
                            (
                                format!("k{i}"),
                                event(&format!("kill-{chunk}-{i}"), "click", json!({})),
                            )
                        })
                        .collect(),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        };
        let killer = async {
            let mut kills = 0;
            // Often enough to hit invocations in flight, over about 1.5 s of steady traffic.
            tokio::time::sleep(Duration::from_millis(800)).await;
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let status = std::process::Command::new("pkill")
                    .args(["-KILL", "-f", &pattern])
                    .status()
                    .unwrap();
                kills += u32::from(status.success());
            }
            kills
        };
        let ((), kills) = tokio::join!(producer, killer);
        assert!(
            kills > 0,
            "no function process was killed: the test proves nothing"
        );
        let mut p = local
            .wait_quiescent(n, Duration::from_secs(120))
            .await
            .unwrap();
        if p.stream_dlq_messages > 0 || p.transform_dlq_messages > 0 || p.pending_objects > 0 {
            // Killed more often than the retry quotas allow: once a killed transformer's lease
            // has expired (timeout + 5 s), the redrive recovers the work.
            let lease = u64::from(local.env.transformer.timeout_seconds) + 6;
            local
                .wait_leases_expired(Duration::from_secs(lease))
                .await
                .unwrap();
            let settings = esm::Settings::from(&local.env.event_source_mapping);
            pipeline_ops::redrive::stream_dlq(&local.clients, &local.stack, settings, false)
                .await
                .unwrap();
            pipeline_ops::redrive::transform_dlq(&local.clients, &local.stack, false)
                .await
                .unwrap();
            p = local
                .wait_quiescent(n, Duration::from_secs(60))
                .await
                .unwrap();
        }
        let report = reconcile(&local.clients, &local.stack, n, n, 0)
            .await
            .unwrap();
        assert_eq!(
            (
                report.processed_rows,
                report.distinct_event_ids,
                report.lost
            ),
            (n, n, 0),
            "{p:?}"
        );
        let stats = local.mapping_stats();
        eprintln!("{kills} kills; mapping: {stats:?}");
        assert!(
            stats.function_errors > 0,
            "no invocation was killed in flight: the test proves nothing"
        );
    });
}

#[test]
fn smoke_passes_on_a_fresh_stack_as_the_operator() {
    with_stack(async |local| {
        let passed =
            pipeline_ops::smoke::smoke(&local.clients, &local.stack, 3, Duration::from_secs(60))
                .await
                .unwrap();
        assert_eq!(passed.canaries, 3);
    });
}

/// A Kinesis record of shard 0 as the mapping would deliver it.
fn kinesis_record(seq: u64, id: &str, ty: &str) -> esm::Record {
    esm::Record {
        sequence_number: format!("4960000000000000000000000000000000000000000000{seq:010}"),
        arrival: chrono::Utc::now(),
        partition_key: format!("pk-{id}"),
        data: event(id, ty, json!({})),
    }
}

#[test]
fn a_smaller_redelivered_batch_rewrites_its_raw_object_and_leaves_no_stale_outputs() {
    with_stack(async |local| {
        // The Lambda service invokes the stream processor (the mapping's own call, as root).
        let deliver = async |batch: &[esm::Record]| {
            let payload = esm::event(
                batch,
                "shardId-000000000000",
                &local.stack.stream_arn,
                local_stack::REGION,
            );
            let out = local
                .admin
                .lambda
                .invoke()
                .function_name(&local.stack.stream_processor)
                .payload(payload.into())
                .send()
                .await
                .unwrap();
            assert_eq!(out.function_error, None);
            let body: Value = serde_json::from_slice(out.payload.unwrap().as_ref()).unwrap();
            assert_eq!(body["batchItemFailures"], json!([]), "{body}");
        };
        let records = [
            kinesis_record(1, "re-1", "click"),
            kinesis_record(2, "re-2", "click"),
            kinesis_record(3, "re-3", "purchase"),
            kinesis_record(4, "re-4", "purchase"),
        ];
        let types = async || {
            let rows = rows(local).await;
            let mut ids: Vec<String> = rows.iter().map(|(_, r)| r.event_id.clone()).collect();
            ids.sort();
            let purchases: std::collections::BTreeSet<String> = rows
                .iter()
                .filter(|(_, r)| &*r.event_type == "purchase")
                .map(|(_, r)| r.raw_key.to_string())
                .collect();
            (ids, purchases)
        };
        // The whole batch: one raw object, outputs in both partitions.
        deliver(&records).await;
        let (_, first_owner) = eventually(
            "both partitions processed",
            Duration::from_secs(60),
            async || {
                let (ids, purchases) = types().await;
                (ids.len() == 4).then_some(((), purchases))
            },
        )
        .await;
        // Redelivered with other boundaries: the first half under the same key, the rest apart.
        // The raw object's new content has no purchase: its purchase output is deleted.
        deliver(&records[..2]).await;
        eventually(
            "the stale purchase output deleted",
            Duration::from_secs(60),
            async || {
                let (ids, purchases) = types().await;
                (ids == ["re-1", "re-2"] && purchases.is_empty()).then_some(())
            },
        )
        .await;
        deliver(&records[2..]).await;
        let (ids, purchases) =
            eventually("every record once", Duration::from_secs(60), async || {
                let (ids, purchases) = types().await;
                (ids.len() == 4).then_some((ids, purchases))
            })
            .await;
        assert_eq!(
            ids,
            ["re-1", "re-2", "re-3", "re-4"],
            "each record exactly once"
        );
        assert_eq!(purchases.len(), 1);
        assert_ne!(
            purchases, first_owner,
            "the purchases now belong to the second raw object"
        );
    });
}

/// The review's defect, reproduced: without `ClearStaleQuarantineObjects` the stream processor may
/// not delete the quarantine key of a clean batch; S3 answers 403 AccessDenied, every clean batch
/// fails and ends in the stream DLQ.
fn without_quarantine_delete(model: &mut local_stack::authz::Model) {
    let p = model
        .principals
        .iter_mut()
        .find(|p| p.id == local_stack::authz::principal::STREAM_PROCESSOR)
        .unwrap();
    for policy in &mut p.policies {
        let statements = policy.document["Statement"].as_array_mut().unwrap();
        statements.retain(|s| s["Sid"] != "ClearStaleQuarantineObjects");
    }
}

#[test]
fn a_missing_grant_fails_every_clean_batch_into_the_stream_dlq() {
    let options = runtime::Options {
        adjust: Some(without_quarantine_delete),
        // What a broken policy makes the pipeline do is not what it asks of AWS.
        record: None,
        ..runtime::Options::default()
    };
    with_stack_using(&options, async |local| {
        put(
            local,
            vec![("k".into(), event("clean-1", "click", json!({})))],
        )
        .await;
        let messages = eventually(
            "a message in the stream DLQ",
            Duration::from_secs(120),
            async || {
                let n = reconcile::queue_depth(&local.clients, &local.stack.stream_dlq_url)
                    .await
                    .unwrap();
                (n > 0).then_some(n)
            },
        )
        .await;
        assert_eq!(messages, 1);
        let p = reconcile::progress(&local.clients, &local.stack)
            .await
            .unwrap();
        assert_eq!(p.processed_rows, 0, "{p:?}");
    });
}

#[test]
fn denied_requests_fail_as_aws_answers_them() {
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    // Requests the pipeline never makes are not part of its record.
    let options = runtime::Options {
        record: None,
        ..runtime::Options::default()
    };
    with_stack_using(&options, async |local| {
        // The operator reads processed data; it may not write it.
        let e = local
            .clients
            .s3
            .put_object()
            .bucket(&local.stack.processed_bucket)
            .key("processed/forged.parquet")
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
        assert_eq!(e.code(), Some("AccessDenied"));
        // The producer sends events; it may not read the metadata table.
        let e = local
            .producer
            .dynamodb
            .scan()
            .table_name(&local.stack.metadata_table)
            .send()
            .await
            .unwrap_err();
        // DynamoDB answers 400 (its error-handling page); the emulator answers 403. Both are
        // client errors the stores classify as permanent; the code is the same.
        assert!(
            matches!(
                e.raw_response().map(|r| r.status().as_u16()),
                Some(400 | 403)
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), Some("AccessDeniedException"));
        // Where the emulator and AWS disagree: AWS authorises GetRecords on the stream its
        // iterator belongs to (the Kinesis service authorization reference); the emulator cannot
        // read the iterator and authorises a request without `StreamARN` on `*`, which a role
        // scoped to its stream is not granted. So every GetRecords of ours names the stream.
        let iterator = local
            .clients
            .kinesis
            .get_shard_iterator()
            .stream_arn(&local.stack.stream_arn)
            .shard_id("shardId-000000000000")
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let e = local
            .clients
            .kinesis
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("AccessDeniedException"));
        local
            .clients
            .kinesis
            .get_records()
            .stream_arn(&local.stack.stream_arn)
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap();
        // Nobody but the transformer reads the HMAC key.
        let e = local
            .clients
            .secrets
            .get_secret_value()
            .secret_id(&local.stack.hmac_secret)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("AccessDeniedException"));
    });
}

/// The operator's policy widened to everything on S3, as a careless change would.
fn operator_may_do_anything_on_s3(model: &mut local_stack::authz::Model) {
    let p = model
        .principals
        .iter_mut()
        .find(|p| p.id == local_stack::authz::principal::OPERATOR)
        .unwrap();
    p.policies[0].document["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Sid": "Careless", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}));
}

fn and_no_boundary(model: &mut local_stack::authz::Model) {
    operator_may_do_anything_on_s3(model);
    for p in &mut model.principals {
        p.permissions_boundary = None;
    }
}

#[test]
fn the_permissions_boundary_caps_a_role_whose_own_policy_allows_everything() {
    // Someone else's bucket in the same account, and a write the operator's policy now allows.
    let write_elsewhere = async |local: &Local| {
        let _ = local
            .admin
            .s3
            .create_bucket()
            .bucket("another-team-data")
            .send()
            .await;
        local
            .clients
            .s3
            .put_object()
            .bucket("another-team-data")
            .key("x")
            .body(b"x".to_vec().into())
            .send()
            .await
    };
    for (adjust, allowed) in [
        (operator_may_do_anything_on_s3 as fn(&mut _), false),
        (and_no_boundary as fn(&mut _), true),
    ] {
        let options = runtime::Options {
            adjust: Some(adjust),
            record: None,
            ..runtime::Options::default()
        };
        with_stack_using(&options, async |local| {
            let result = write_elsewhere(local).await;
            assert_eq!(result.is_ok(), allowed, "{result:?}");
        });
    }
}

/// The mapping's settings from the environment file, changed by `adjust`.
fn mapping_settings(local: &Local, adjust: impl FnOnce(&mut esm::Settings)) -> esm::Settings {
    let mut settings = esm::Settings::from(&local.env.event_source_mapping);
    adjust(&mut settings);
    settings
}

fn clicks(prefix: &str, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                format!("{prefix}-{i}"),
                event(&format!("{prefix}-{i}"), "click", json!({})),
            )
        })
        .collect()
}

#[test]
fn more_than_ten_stream_dlq_messages_are_all_reconciled_and_redriven() {
    with_stack(async |local| {
        // One record per batch and no retries: every failing record is a message of its own.
        local
            .restart_mapping(mapping_settings(local, |s| {
                s.batch_size = 1;
                s.maximum_retry_attempts = 0;
            }))
            .await
            .unwrap();
        local
            .admin
            .dynamodb
            .delete_table()
            .table_name(&local.stack.metadata_table)
            .send()
            .await
            .unwrap();
        let n = 15;
        put(local, clicks("dlq", 0..n as usize)).await;
        eventually(
            "every record in the stream DLQ",
            Duration::from_secs(90),
            async || {
                let depth = reconcile::queue_depth(&local.clients, &local.stack.stream_dlq_url)
                    .await
                    .unwrap();
                (depth == n && local.mapping_idle()).then_some(())
            },
        )
        .await;
        local.reprovision(&packages()).await.unwrap();
        let report = reconcile(&local.clients, &local.stack, n, n, 0)
            .await
            .unwrap();
        assert_eq!(
            (
                report.stream_dlq_messages,
                report.stream_dlq_records,
                report.lost
            ),
            (n, n, 0),
            "every DLQ message counted, no false loss"
        );
        let settings = esm::Settings::from(&local.env.event_source_mapping);
        let dry =
            pipeline_ops::redrive::stream_dlq(&local.clients, &local.stack, settings.clone(), true)
                .await
                .unwrap();
        assert_eq!((dry.messages, dry.records, dry.held), (n, n, 0), "{dry:?}");
        let done = pipeline_ops::redrive::stream_dlq(&local.clients, &local.stack, settings, false)
            .await
            .unwrap();
        assert_eq!((done.messages, done.records), (n, n), "{done:?}");
        let p = local
            .wait_quiescent(n, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!((p.processed_rows, p.stream_dlq_messages), (n, 0), "{p:?}");
    });
}

#[test]
fn a_restarted_mapping_resumes_at_its_checkpoint_and_delivers_nothing_twice() {
    with_stack(async |local| {
        put(local, clicks("before", 0..300)).await;
        eventually(
            "the first 300 records delivered",
            Duration::from_secs(90),
            async || {
                let s = local.mapping_stats();
                (s.records_delivered == 300 && local.mapping_idle()).then_some(())
            },
        )
        .await;
        // As a restart of `local up` on the same stack: a new mapping, its counters at 0.
        local
            .restart_mapping(mapping_settings(local, |_| {}))
            .await
            .unwrap();
        put(local, clicks("after", 0..200)).await;
        let p = local
            .wait_quiescent(500, Duration::from_secs(90))
            .await
            .unwrap();
        let stats = local.mapping_stats();
        assert_eq!(
            (stats.records_read, stats.records_delivered),
            (200, 200),
            "the new mapping reads from the checkpoint, not from TRIM_HORIZON: {stats:?}"
        );
        assert_eq!((p.processed_rows, p.duplicates), (500, 0), "{p:?}");
        let report = reconcile(&local.clients, &local.stack, 500, 500, 0)
            .await
            .unwrap();
        assert_eq!((report.distinct_event_ids, report.lost), (500, 0));
        // One lease per shard in the checkpoint table (the Lambda service's own: root's), taken
        // by each mapping in turn and checkpointed by both.
        let leases = local
            .admin
            .dynamodb
            .scan()
            .table_name(&local.checkpoint_table)
            .send()
            .await
            .unwrap();
        assert_eq!(leases.items().len(), 2, "{leases:?}");
        for lease in leases.items() {
            assert_eq!(lease["stream_arn"].as_s().unwrap(), &local.stack.stream_arn);
            let counter: u64 = lease["lease_counter"].as_n().unwrap().parse().unwrap();
            assert!(counter > 3, "{lease:?}");
            let checkpoint = lease["checkpoint"].as_s().unwrap();
            assert!(checkpoint.bytes().all(|b| b.is_ascii_digit()), "{lease:?}");
        }
    });
}

#[test]
fn a_tenth_of_all_calls_faulted_loses_and_duplicates_nothing() {
    let options = runtime::Options {
        faults: Some(local_stack::faults::Plan {
            rate: 0.1,
            seed: 11,
        }),
        ..runtime::Options::default()
    };
    with_stack_using(&options, async |local| {
        // Ten rounds, each processed before the next is sent: many raw objects, many calls.
        let (rounds, per_round) = (10u64, 60u64);
        let n = rounds * per_round;
        for round in 0..rounds {
            put(
                local,
                (0..per_round)
                    .map(|i| {
                        let id = round * per_round + i;
                        let ty = ["click", "purchase"][id as usize % 2];
                        (format!("pk-{id}"), event(&format!("f-{id}"), ty, json!({})))
                    })
                    .collect(),
            )
            .await;
            local
                .wait_quiescent((round + 1) * per_round, Duration::from_secs(120))
                .await
                .unwrap();
        }
        // A producer call whose response was lost may have put its records twice: wait for
        // every unit the stream holds, not only for those sent.
        let units = reconcile::stream_units(&local.clients, &local.stack)
            .await
            .unwrap();
        let p = local
            .wait_quiescent(units, Duration::from_secs(240))
            .await
            .unwrap();
        let stats = local.faults.as_ref().unwrap().stats();
        assert!(stats.injected() >= 10, "faults were injected: {stats:?}");
        for service in ["s3", "dynamodb", "kinesis"] {
            assert!(
                stats.faults.contains_key(service),
                "no {service} fault: {stats:?}"
            );
        }
        let report = reconcile(&local.clients, &local.stack, n, n, 0)
            .await
            .unwrap();
        assert_eq!((report.lost, report.duplicated), (0, 0), "{p:?} {stats:?}");
        // Every Kinesis record at most once in processed, and every event there.
        let rows = rows(local).await;
        let mut units: Vec<(String, String, i64)> = rows
            .iter()
            .map(|(_, r)| {
                (
                    r.kinesis_shard.to_string(),
                    r.kinesis_seq.clone(),
                    r.kinesis_subseq,
                )
            })
            .collect();
        units.sort();
        let total = units.len();
        units.dedup();
        assert_eq!(total, units.len(), "a record is in processed twice");
        assert_eq!(
            (report.distinct_event_ids, report.pending_objects),
            (n, 0),
            "{p:?} {stats:?}"
        );
    });
}

#[test]
fn with_a_parallelization_factor_every_record_is_delivered_once() {
    with_stack(async |local| {
        local
            .restart_mapping(mapping_settings(local, |s| {
                s.parallelization_factor = 4;
                s.batch_size = 10;
            }))
            .await
            .unwrap();
        let records: Vec<(String, Vec<u8>)> = (0..400)
            .map(|i| {
                (
                    format!("user-{}", i % 40),
                    event(&format!("lanes-{i}"), "click", json!({})),
                )
            })
            .collect();
        put(local, records).await;
        let p = local
            .wait_quiescent(400, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!((p.processed_rows, p.duplicates), (400, 0), "{p:?}");
        let stats = local.mapping_stats();
        assert_eq!(stats.records_delivered, 400, "{stats:?}");
        assert!(stats.invocations >= 40, "batches of at most 10: {stats:?}");
        let report = reconcile(&local.clients, &local.stack, 400, 400, 0)
            .await
            .unwrap();
        assert_eq!((report.distinct_event_ids, report.lost), (400, 0));
    });
}

/// The S3 notification of a put of `raw_key` into the raw bucket, the key URL-encoded as S3
/// encodes it.
fn raw_put_event(local: &Local, raw_key: &str) -> Value {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("services/transformer/fixtures/s3-put.json")).unwrap(),
    )
    .unwrap();
    event["Records"][0]["s3"]["bucket"]["name"] = json!(local.stack.raw_bucket);
    event["Records"][0]["s3"]["object"]["key"] = json!(raw_key.replace('=', "%3D"));
    event
}

/// Writes a raw object as an outside client does (as root, with no `sha256` metadata).
async fn put_raw_object(local: &Local, key: &str, body: Vec<u8>) {
    local
        .admin
        .s3
        .put_object()
        .bucket(&local.stack.raw_bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

/// A raw object in the documented raw format, as a backfill job or a restore writes it: `n`
/// events of one made-up batch of shard 0.
fn outside_raw_object(first_seq: u64, n: u64) -> (String, Vec<u8>) {
    let arrival = chrono::Utc::now();
    let shard = "shardId-000000000000";
    let mut text = String::new();
    for i in 0..n {
        let line = json!({
            "shard": shard,
            "seq": (first_seq + i).to_string(),
            "subseq": 0,
            "arrival": pipeline_core::event::fmt_time(arrival),
            "partition_key": format!("user-{i}"),
            "event": serde_json::from_slice::<Value>(&event(&format!("backfill-{i}"), "view", json!({}))).unwrap(),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let key = pipeline_core::keys::raw_key(shard, &first_seq.to_string(), arrival);
    (key, pipeline_core::ingest::gzip(text.as_bytes()))
}

#[test]
fn a_raw_object_another_writer_puts_is_registered_and_processed_exactly_once() {
    with_stack(async |local| {
        let (key, body) = outside_raw_object(1_000_000, 25);
        // Written by an outside client (not the stream processor): no `sha256` metadata.
        put_raw_object(local, &key, body.clone()).await;
        let item = eventually(
            "the registered object processed",
            Duration::from_secs(60),
            async || processed_item(local, &key).await,
        )
        .await;
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        assert_eq!(s("registered_by").as_deref(), Some("transformer"));
        assert_eq!(s("first_sequence_number").as_deref(), Some("1000000"));
        assert_eq!(s("last_sequence_number").as_deref(), Some("1000024"));
        assert!(!item.contains_key("pending"));
        let mine = |rows: Vec<(String, pipeline_core::parquet_io::Row)>| {
            let mut ids: Vec<String> = rows
                .into_iter()
                .filter(|(_, r)| *r.raw_key == *key)
                .map(|(_, r)| r.event_id)
                .collect();
            ids.sort();
            ids
        };
        let ids = mine(rows(local).await);
        assert_eq!(ids.len(), 25);
        ids.windows(2).for_each(|w| assert_ne!(w[0], w[1]));
        // The same object written again (a backfill run twice): its notification is a duplicate.
        put_raw_object(local, &key, body).await;
        let s3_event = raw_put_event(local, &key);
        let out = local
            .admin
            .lambda
            .invoke()
            .function_name(&local.stack.transformer)
            .payload(s3_event.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
        assert_eq!(out.function_error, None);
        let r: Value = serde_json::from_slice(out.payload.unwrap().as_ref()).unwrap();
        assert_eq!(r["outcomes"][0]["outcome"], "duplicate", "{r}");
        assert_eq!(mine(rows(local).await), ids);
    });
}

/// The item of `raw_key` once it is processed.
async fn processed_item(
    local: &Local,
    raw_key: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let item = local
        .admin
        .dynamodb
        .get_item()
        .table_name(&local.stack.metadata_table)
        .key(
            "raw_key",
            aws_sdk_dynamodb::types::AttributeValue::S(raw_key.to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item?;
    (item.get("status")?.as_s().ok()? == pipeline_aws::store::Status::Processed.as_str())
        .then_some(item)
}

#[test]
fn the_auditor_on_its_schedule_heals_objects_whose_notification_was_lost() {
    // The shortest schedule the environment schema allows: stuck after a minute, a run a minute.
    let adjust = |env: &mut Environment| {
        env.storage.stuck_after_minutes = 1;
        env.auditor.period_minutes = 1;
    };
    with_stack_of(adjust, &runtime::Options::default(), async |local| {
        let started = Instant::now();
        // Lose every notification on purpose: the raw bucket notifies nobody from now on, so
        // only the auditor can bring these objects to the transformer.
        local
            .admin
            .s3
            .put_bucket_notification_configuration()
            .bucket(&local.stack.raw_bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder().build(),
            )
            .send()
            .await
            .unwrap();
        // Objects the stream processor writes and records (their item stays pending) ...
        let n = 40;
        put(local, clicks("lost", 0..n)).await;
        // ... and one of another writer (a restore), which has no item at all.
        let (outside, body) = outside_raw_object(2_000_000, 15);
        put_raw_object(local, &outside, body).await;
        let recorded = eventually(
            "the stream processor recorded every event",
            Duration::from_secs(60),
            async || {
                // As root: the operator's role may not list raw objects.
                let keys = list(&local.admin, &local.stack.raw_bucket, "raw/")
                    .await
                    .unwrap();
                let p = reconcile::progress(&local.clients, &local.stack)
                    .await
                    .unwrap();
                (p.raw_records >= n as u64 && local.mapping_idle()).then_some(keys)
            },
        )
        .await;
        assert!(recorded.contains(&outside), "{recorded:?}");
        let stream_keys: Vec<&String> = recorded.iter().filter(|k| **k != outside).collect();
        assert!(!stream_keys.is_empty());
        for key in &stream_keys {
            assert!(
                processed_item(local, key).await.is_none(),
                "{key} processed without a notification"
            );
        }
        // Pending with nothing in the transform dead-letter queue: not given up, so a wait for
        // the pipeline to settle keeps waiting for the auditor.
        assert!(
            !reconcile::pending_given_up(&local.clients, &local.stack)
                .await
                .unwrap(),
            "objects whose notification was lost count as given up"
        );

        // The rule fires every minute; an object is stuck a minute after it was written and a
        // run re-drives what became stuck in its last two periods: within stuck_after + two
        // periods, plus the emulator's 10 s scheduler tick and the transformer's run.
        let limit = Duration::from_secs(60 + 2 * 60 + 40);
        for key in recorded.iter() {
            let item = eventually(
                "the auditor re-drove it and it was processed",
                limit,
                async || processed_item(local, key).await,
            )
            .await;
            assert!(!item.contains_key("pending"), "{key}");
        }
        let healed_after = started.elapsed();
        assert_eq!(
            processed_item(local, &outside)
                .await
                .and_then(|i| i.get("registered_by").and_then(|v| v.as_s().ok()).cloned())
                .as_deref(),
            Some("transformer")
        );

        // Every record exactly once.
        let mut ids: Vec<String> = rows(local)
            .await
            .into_iter()
            .map(|(_, r)| r.event_id)
            .collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "a record processed twice");
        assert_eq!(ids.len(), n + 15);
        eprintln!(
            "healed {} raw objects after {healed_after:?}",
            recorded.len()
        );
    });
}

/// Changes one environment variable of a function, as a deployment of a new artifact would, and
/// waits until the update took effect.
async fn set_function_variable(local: &Local, function: &str, name: &str, value: &str) {
    let config = local
        .admin
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .unwrap();
    let mut vars = config
        .environment
        .and_then(|e| e.variables)
        .unwrap_or_default();
    vars.insert(name.to_owned(), value.to_owned());
    local
        .admin
        .lambda
        .update_function_configuration()
        .function_name(function)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(vars))
                .build(),
        )
        .send()
        .await
        .unwrap();
    eventually(
        "the function's update took effect",
        Duration::from_secs(30),
        async || {
            let c = local
                .admin
                .lambda
                .get_function_configuration()
                .function_name(function)
                .send()
                .await
                .unwrap();
            let done = c
                .last_update_status
                .is_none_or(|s| s == aws_sdk_lambda::types::LastUpdateStatus::Successful);
            let set = c
                .environment
                .and_then(|e| e.variables)
                .is_some_and(|v| v.get(name).map(String::as_str) == Some(value));
            (done && set).then_some(())
        },
    )
    .await;
}

#[test]
fn a_replay_re_transforms_a_range_of_hours_into_the_new_version_once() {
    with_stack(async |local| {
        use pipeline_ops::replay::replay;
        let n = 60;
        put(local, clicks("replay", 0..n)).await;
        let before = eventually(
            "every event processed",
            Duration::from_secs(60),
            async || {
                let r = rows(local).await;
                (r.len() == n).then_some(r)
            },
        )
        .await;
        let now = chrono::Utc::now();
        let (from, to) = (
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(2),
        );
        let mut quiet = |_: u64, _: u64| {};

        // A dry run lists and counts, and sends nothing.
        let dry = replay(&local.clients, &local.stack, from, to, true, &mut quiet)
            .await
            .unwrap();
        assert!(dry.objects > 0, "{dry:?}");
        assert_eq!((dry.retransformed, dry.current), (0, 0));

        // The version that processed them: every object is current already.
        let same = replay(&local.clients, &local.stack, from, to, false, &mut quiet)
            .await
            .unwrap();
        assert_eq!(
            (same.current, same.retransformed),
            (dry.objects, 0),
            "{same:?}"
        );

        // A transformer fix deployed (a new artifact, so a new version): the replay re-transforms
        // every object of the range, once.
        set_function_variable(
            local,
            &local.stack.transformer,
            "TRANSFORM_VERSION",
            "fixed",
        )
        .await;
        let fixed = replay(&local.clients, &local.stack, from, to, false, &mut quiet)
            .await
            .unwrap();
        assert!(fixed.failed.is_empty(), "{fixed:?}");
        assert_eq!(
            (fixed.retransformed, fixed.current),
            (dry.objects, 0),
            "{fixed:?}"
        );
        for key in list(&local.admin, &local.stack.raw_bucket, "raw/")
            .await
            .unwrap()
        {
            let item = processed_item(local, &key).await.unwrap();
            assert_eq!(
                item.get("processed_version")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str),
                Some("fixed"),
                "{key}"
            );
        }
        let after = rows(local).await;
        let ids = |rows: &[(String, pipeline_core::parquet_io::Row)]| {
            let mut ids: Vec<String> = rows.iter().map(|(_, r)| r.event_id.clone()).collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(&after),
            ids(&before),
            "each record once, before and after"
        );
        let keys = |rows: &[(String, pipeline_core::parquet_io::Row)]| {
            let mut keys: Vec<String> = rows.iter().map(|(k, _)| k.clone()).collect();
            keys.dedup();
            keys.sort();
            keys.dedup();
            keys
        };
        assert_eq!(
            keys(&after),
            keys(&before),
            "the same deterministic outputs"
        );

        // Resumed or repeated, a replay finds everything current.
        let again = replay(&local.clients, &local.stack, from, to, false, &mut quiet)
            .await
            .unwrap();
        assert_eq!((again.current, again.retransformed), (dry.objects, 0));
    });
}
