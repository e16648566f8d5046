//! Reconciliation in three parts: `collect` reads back what the stack holds (the stream's units,
//! Parquet rows, quarantine lines, metadata items, dead-letter queues) into [`collect::Facts`];
//! `account` turns facts into a [`Report`] (pure, unit-tested on hand-made facts); `render` writes
//! it as text and as a self-contained HTML page. Also the progress counters used to detect
//! quiescence.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;
use pipeline_aws::dynamodb::DynamoStore;
use pipeline_aws::store::{MetadataItem, Status};
use serde::Serialize;

use crate::queue::{Hold, Queue, SqsQueue, read_all};
use crate::{Clients, Error, Stack};

pub mod account;
pub mod collect;
mod render;

pub use account::{Operations, PartitionFiles, Percentiles, Sent, Stages, account};

/// Cheap counters from the metadata table and the queues (one scan), polled while waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub raw_objects: u64,
    pub raw_records: u64,
    pub processed_objects: u64,
    pub processed_rows: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub pending_objects: u64,
    pub stream_dlq_messages: u64,
    pub transform_dlq_messages: u64,
    /// The latest end of a transformer's lease on a raw object (Unix milliseconds), expired or
    /// not: a run holds it, or held it when it died.
    pub lease_until_ms: Option<i64>,
}

impl Progress {
    /// Units accounted for: rows, dropped duplicates, quarantined.
    pub fn accounted(&self) -> u64 {
        self.processed_rows + self.duplicates + self.quarantined
    }

    /// Whether a transformer's lease was still held at `now_ms`.
    pub fn leased_at(&self, now_ms: i64) -> bool {
        self.lease_until_ms.is_some_and(|until| until > now_ms)
    }
}

/// Every raw object's metadata item, through the store's paged scan and item parser.
pub(crate) async fn raw_object_items(
    clients: &Clients,
    stack: &Stack,
) -> Result<Vec<MetadataItem>, Error> {
    DynamoStore::from_client(clients.dynamodb.clone(), &stack.metadata_table)
        .raw_object_items()
        .await
        .map_err(|e| Error::aws("dynamodb Scan", e))
}

/// Unix milliseconds of an item's RFC 3339 time (`None` when absent or unreadable).
pub(crate) fn unix_ms(time: Option<&str>) -> Option<i64> {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
}

pub async fn progress(clients: &Clients, stack: &Stack) -> Result<Progress, Error> {
    let mut p = Progress::default();
    for item in raw_object_items(clients, stack).await? {
        if item.raw_sha256.is_some() {
            p.raw_objects += 1;
            p.raw_records += item.valid_records;
            p.quarantined += item.quarantined_records;
        }
        if item.status == Some(Status::Processed) {
            p.processed_objects += 1;
            p.processed_rows += item.processed_rows.unwrap_or(0);
            p.duplicates += item.duplicates.unwrap_or(0);
        }
        p.pending_objects += u64::from(item.pending);
        p.lease_until_ms = p.lease_until_ms.max(item.lease_until_ms);
    }
    p.stream_dlq_messages = queue_depth(clients, &stack.stream_dlq_url).await?;
    p.transform_dlq_messages = queue_depth(clients, &stack.transform_dlq_url).await?;
    Ok(p)
}

/// Whether every raw object still pending has given up, as facts say: the transform dead-letter
/// queue holds a message naming it that was sent after the object was last written, so the
/// retries of its latest notification are exhausted. An object whose notification is still
/// queued, or being retried, has none yet; nor has one whose notification was lost. Peeks the
/// queue (its messages are hidden for a few seconds, see [`Hold::Peek`]).
pub async fn pending_given_up(clients: &Clients, stack: &Stack) -> Result<bool, Error> {
    let pending: Vec<(String, Option<i64>)> = raw_object_items(clients, stack)
        .await?
        .into_iter()
        .filter(|item| item.pending)
        .map(|item| {
            let written = unix_ms(item.written_at.as_deref());
            (item.raw_key, written)
        })
        .collect();
    if pending.is_empty() {
        return Ok(true);
    }
    let queue = SqsQueue::new(clients, &stack.transform_dlq_url);
    let read = read_all(&queue, Hold::Peek, crate::queue::SETTLE).await?;
    let dead: Vec<(String, i64)> = read.messages.iter().flat_map(dead_lettered).collect();
    Ok(all_given_up(&pending, &dead))
}

/// The raw keys a transform dead-letter message names (its `requestPayload`, the S3 event), with
/// when the message was sent.
fn dead_lettered(message: &crate::queue::Message) -> Vec<(String, i64)> {
    let (Some(sent), Ok(body)) = (
        message.sent_at_ms,
        serde_json::from_str::<serde_json::Value>(&message.body),
    ) else {
        return Vec::new();
    };
    crate::redrive::event_keys(&body["requestPayload"])
        .into_iter()
        .map(|k| (k, sent))
        .collect()
}

/// Every pending object (key, when last written) has a dead-letter message (key, when sent)
/// sent at or after it was written.
fn all_given_up(pending: &[(String, Option<i64>)], dead: &[(String, i64)]) -> bool {
    pending.iter().all(|(key, written)| {
        dead.iter()
            .any(|(k, sent)| k == key && written.is_none_or(|w| *sent >= w))
    })
}

/// Messages in a queue, visible or not.
pub async fn queue_depth(clients: &Clients, url: &str) -> Result<u64, Error> {
    let depth = SqsQueue::new(clients, url).depth().await?;
    Ok(depth.visible + depth.not_visible)
}

/// The final account of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub events_sent: u64,
    pub events_sent_valid: u64,
    pub events_sent_invalid: u64,
    /// Input units the stream holds (records, each sub-record of a KPL aggregate counted): what
    /// the pipeline must account for. More than `events_sent` when a producer retried a call that
    /// had taken effect (it counts those as possibly twice).
    pub stream_units: u64,
    /// `stream_units - events_sent`: copies the producer's retries put in the stream.
    pub stream_duplicates: i64,
    pub raw_objects: u64,
    pub raw_records: u64,
    pub processed_objects: u64,
    pub processed_rows: u64,
    pub distinct_event_ids: u64,
    /// Processed rows whose Kinesis record (shard, sequence number, sub-sequence number) is in
    /// processed already: each is a record delivered twice that did not heal.
    pub duplicated: u64,
    pub duplicates_dropped: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub quarantined_total: u64,
    pub stream_dlq_messages: u64,
    pub stream_dlq_records: u64,
    pub transform_dlq_messages: u64,
    pub pending_objects: u64,
    pub lost: i64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub throughput_events_per_second: f64,
    pub elapsed_seconds: f64,
    /// Latency histogram: (upper bound ms, count).
    pub latency_histogram: Vec<(f64, u64)>,
    /// Per second since the first arrival: (second, arrived, processed).
    pub timeline: Vec<(i64, u64, u64)>,
    /// Latency per stage: Kinesis arrival → raw object recorded → processed.
    pub stages: Stages,
    /// Processed files per partition with their sizes (small files show here).
    pub partitions: Vec<PartitionFiles>,
    /// What the run's machinery did: faults injected, the mapping's retries (filled by the
    /// caller that ran it).
    pub operations: Option<Operations>,
}

/// The input units in the stream (every shard from its trim horizon to its newest record): a
/// record is one unit, a KPL aggregate one per sub-record (or one if it cannot be decoded, as the
/// stream processor quarantines it).
pub async fn stream_units(clients: &Clients, stack: &Stack) -> Result<u64, Error> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = clients.kinesis.list_shards();
        req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_arn(&stack.stream_arn),
        };
        let page = req
            .send()
            .await
            .map_err(|e| Error::aws("kinesis ListShards", DisplayErrorContext(e)))?;
        shards.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let mut units = 0;
    for shard in shards {
        let mut iterator = clients
            .kinesis
            .get_shard_iterator()
            .stream_arn(&stack.stream_arn)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| Error::aws("kinesis GetShardIterator", DisplayErrorContext(e)))?
            .shard_iterator;
        // An emulator may not report how far behind a page is: three empty pages in a row end too.
        let mut empty = 0;
        while let Some(it) = iterator.take() {
            let page = clients
                .kinesis
                .get_records()
                .stream_arn(&stack.stream_arn)
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| Error::aws("kinesis GetRecords", DisplayErrorContext(e)))?;
            for r in page.records() {
                let data = r.data().as_ref();
                units += if pipeline_core::kpl::is_aggregated(data) {
                    pipeline_core::kpl::deaggregate(data).map_or(1, |s| s.len() as u64)
                } else {
                    1
                };
            }
            // Caught up: an empty page at the shard's newest record (or a closed shard's end).
            empty = if page.records().is_empty() {
                empty + 1
            } else {
                0
            };
            let caught_up = empty > 0 && (page.millis_behind_latest() == Some(0) || empty >= 3);
            if !caught_up {
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
        }
    }
    Ok(units)
}

/// Reads back everything the stack holds and accounts for `sent` events.
pub async fn reconcile(
    clients: &Clients,
    stack: &Stack,
    sent: u64,
    sent_valid: u64,
    sent_invalid: u64,
) -> Result<Report, Error> {
    let facts = collect::collect(clients, stack).await?;
    Ok(account(
        &facts,
        &Sent {
            events: sent,
            valid: sent_valid,
            invalid: sent_invalid,
        },
    ))
}

/// Records referenced by the stream DLQ's messages: every message, peeked (hidden for the
/// seconds of the read, then visible again; see `queue`). Fails rather than count short: when the
/// queue holds messages the read did not see (another reader holds them) or a message that is not
/// in the event-source mapping's format. Waits up to `settle` for messages in flight.
pub async fn dlq_records(queue: &impl Queue, settle: Duration) -> Result<u64, Error> {
    let read = read_all(queue, Hold::Peek, settle).await?;
    if read.unseen() > 0 {
        return Err(Error::Reconcile(format!(
            "read {} of the stream DLQ's {} messages: {} are held by another reader (a redrive?); reconcile again once it is done",
            read.messages.len(),
            read.expected,
            read.unseen()
        )));
    }
    read.messages
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(&m.body)
                .ok()
                .and_then(|v| v["KinesisBatchInfo"]["batchSize"].as_u64())
                .ok_or_else(|| {
                    Error::Reconcile(format!(
                        "stream DLQ message {} has no KinesisBatchInfo.batchSize: {}",
                        m.id, m.body
                    ))
                })
        })
        .sum()
}

/// Every key under `prefix`, in key order.
pub async fn list(clients: &Clients, bucket: &str, prefix: &str) -> Result<Vec<String>, Error> {
    let listed = collect::list_sized(clients, bucket, prefix).await?;
    Ok(listed.into_iter().map(|f| f.key).collect())
}

pub async fn get(clients: &Clients, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
    // The SDK retries a request that fails, not a body cut off after the response began: a
    // streaming error is read again, a few times, before the reading fails.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::aws("s3 GetObject", DisplayErrorContext(e)))?;
        match out.body.collect().await {
            Ok(body) => return Ok(body.into_bytes().to_vec()),
            Err(e) if attempt >= BODY_ATTEMPTS => {
                return Err(Error::aws(
                    "s3 GetObject body",
                    format!("s3://{bucket}/{key}: {e} ({attempt} attempts)"),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
        }
    }
}

/// Reads of an object's body before a streaming error fails the reading.
const BODY_ATTEMPTS: u64 = 5;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;
    use crate::queue::tests::Fake;

    use test_support::block_on as block;

    fn dead_letter(keys: &[&str], sent_at_ms: Option<i64>) -> crate::queue::Message {
        let records: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| serde_json::json!({"s3": {"object": {"key": k}}}))
            .collect();
        crate::queue::Message {
            id: "m".into(),
            receipt: "r".into(),
            body: serde_json::json!({
                "requestContext": {"condition": "RetriesExhausted"},
                "requestPayload": {"Records": records},
            })
            .to_string(),
            sent_at_ms,
        }
    }

    #[test]
    fn a_dead_letter_names_the_decoded_raw_keys_of_its_event() {
        let m = dead_letter(&["raw/dt%3D2026-11-25/a+b.jsonl.gz", "raw/c"], Some(7));
        assert_eq!(
            dead_lettered(&m),
            [
                ("raw/dt=2026-11-25/a b.jsonl.gz".to_owned(), 7),
                ("raw/c".to_owned(), 7)
            ]
        );
        assert!(dead_lettered(&dead_letter(&["raw/c"], None)).is_empty());
    }

    #[test]
    fn pending_objects_have_given_up_only_when_each_has_a_later_dead_letter() {
        let pending = |written: Option<i64>| {
            vec![
                ("raw/a".to_owned(), written),
                ("raw/b".to_owned(), Some(100)),
            ]
        };
        let both = [("raw/a".to_owned(), 150), ("raw/b".to_owned(), 120)];
        assert!(all_given_up(&pending(Some(100)), &both));
        // An older message about the same key: the object was written again since, and its new
        // notification may still be queued.
        assert!(!all_given_up(&pending(Some(200)), &both));
        // Other objects' messages do not count for it, however many.
        let others = [
            ("raw/b".to_owned(), 120),
            ("raw/x".to_owned(), 500),
            ("raw/y".to_owned(), 500),
        ];
        assert!(!all_given_up(&pending(Some(100)), &others));
        assert!(
            all_given_up(&pending(None), &both),
            "no write time: any message names it"
        );
        assert!(all_given_up(&[], &[]));
    }

    /// A server whose first answer to each object read is cut off after 10 of its 100 bytes.
    #[tokio::test]
    async fn a_body_cut_off_is_read_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let body = [b'x'; 100];
        let server = tokio::spawn(async move {
            for answer in 0.. {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
                socket.write_all(head.as_bytes()).await.unwrap();
                let sent = if answer == 0 { 10 } else { 100 };
                socket.write_all(&body[..sent]).await.unwrap();
                socket.shutdown().await.unwrap();
            }
        });
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        let clients = Clients::from_config(&endpoint, config);
        let got = get(&clients, "bucket", "processed/k.parquet")
            .await
            .unwrap();
        assert_eq!(got, body);
        server.abort();
    }

    fn message(batch_size: u64) -> String {
        serde_json::json!({"KinesisBatchInfo": {"shardId": "shardId-000000000000", "batchSize": batch_size}})
            .to_string()
    }

    #[test]
    fn every_stream_dlq_message_is_counted_not_the_first_ten() {
        let queue = Fake::with((0..15).map(|_| message(3)));
        assert_eq!(block(dlq_records(&queue, Duration::ZERO)).unwrap(), 45);
    }

    #[test]
    fn messages_held_elsewhere_or_out_of_format_fail_the_count() {
        // Held longer than the read waits for them: the count would be short, so it fails.
        let queue = Fake::with((0..12).map(|_| message(1)));
        queue.hold(2);
        let e = block(dlq_records(&queue, Duration::from_millis(300)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("read 10 of the stream DLQ's 12 messages"), "{e}");
        let queue = Fake::with([message(1), "{}".to_owned()]);
        let e = block(dlq_records(&queue, Duration::ZERO))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no KinesisBatchInfo.batchSize"), "{e}");
    }
}
