//! Reconciliation: reads back what the pipeline wrote (Parquet rows, quarantine lines, metadata
//! items, dead-letter queues) and accounts for every event sent. Also the progress counters used
//! to detect quiescence, and the report as JSON and as a self-contained HTML page.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};
use pipeline_core::ingest::{QuarantineLine, gunzip};
use pipeline_core::parquet_io::read_rows;
use serde::Serialize;

use crate::provision::Stack;
use crate::queue::{Hold, Queue, SETTLE, SqsQueue, read_all};
use crate::{Clients, Error};

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
}

impl Progress {
    /// Units accounted for: rows, dropped duplicates, quarantined.
    pub fn accounted(&self) -> u64 {
        self.processed_rows + self.duplicates + self.quarantined
    }
}

pub async fn progress(clients: &Clients, stack: &Stack) -> Result<Progress, Error> {
    let mut p = Progress::default();
    let mut start = None;
    loop {
        let out = clients
            .dynamodb
            .scan()
            .table_name(&stack.metadata_table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb Scan", DisplayErrorContext(e)))?;
        for item in out.items() {
            let n = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if item.contains_key("raw_sha256") {
                p.raw_objects += 1;
                p.raw_records += n("valid_records");
                p.quarantined += n("quarantined_records");
            }
            if item
                .get("status")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|s| s == "PROCESSED")
            {
                p.processed_objects += 1;
                p.processed_rows += n("processed_rows");
                p.duplicates += n("duplicates");
            }
            if item.contains_key("pending") {
                p.pending_objects += 1;
            }
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    p.stream_dlq_messages = queue_depth(clients, &stack.stream_dlq_url).await?;
    p.transform_dlq_messages = queue_depth(clients, &stack.transform_dlq_url).await?;
    Ok(p)
}

pub async fn queue_depth(clients: &Clients, url: &str) -> Result<u64, Error> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| Error::aws("sqs GetQueueAttributes", DisplayErrorContext(e)))?;
    let attrs = out.attributes.unwrap_or_default();
    let get = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible))
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
    let progress = progress(clients, stack).await?;
    let mut report = Report {
        events_sent: sent,
        events_sent_valid: sent_valid,
        events_sent_invalid: sent_invalid,
        raw_objects: progress.raw_objects,
        raw_records: progress.raw_records,
        processed_objects: progress.processed_objects,
        duplicates_dropped: progress.duplicates,
        pending_objects: progress.pending_objects,
        stream_dlq_messages: progress.stream_dlq_messages,
        transform_dlq_messages: progress.transform_dlq_messages,
        ..Report::default()
    };
    // When each raw object was processed, for latency.
    let processed_at = processed_times(clients, stack).await?;

    let mut ids = std::collections::HashSet::new();
    let mut units = std::collections::HashSet::new();
    let mut latencies = Vec::new();
    let mut arrived_per_s: BTreeMap<i64, u64> = BTreeMap::new();
    let mut processed_per_s: BTreeMap<i64, u64> = BTreeMap::new();
    let (mut first_arrival, mut last_processed) = (i64::MAX, i64::MIN);
    for key in list(clients, &stack.processed_bucket, "processed/").await? {
        let body = get(clients, &stack.processed_bucket, &key).await?;
        let rows = read_rows(body).map_err(|e| Error::Reconcile(format!("{key}: {e}")))?;
        for r in rows {
            report.processed_rows += 1;
            if !units.insert((
                r.kinesis_shard.clone(),
                r.kinesis_seq.clone(),
                r.kinesis_subseq,
            )) {
                report.duplicated += 1;
            }
            ids.insert(r.event_id.clone());
            let arrival_ms = r.arrival_time_us / 1000;
            first_arrival = first_arrival.min(arrival_ms);
            *arrived_per_s.entry(arrival_ms / 1000).or_default() += 1;
            if let Some(done) = processed_at.get(&r.raw_key) {
                latencies.push((done - arrival_ms) as f64);
                last_processed = last_processed.max(*done);
                *processed_per_s.entry(done / 1000).or_default() += 1;
            }
        }
    }
    report.distinct_event_ids = ids.len() as u64;
    for key in list(clients, &stack.raw_bucket, "quarantine/").await? {
        let body = get(clients, &stack.raw_bucket, &key).await?;
        let text = gunzip(&body).map_err(|e| Error::Reconcile(format!("{key}: {e}")))?;
        for line in String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let q: QuarantineLine =
                serde_json::from_str(line).map_err(|e| Error::Reconcile(format!("{key}: {e}")))?;
            *report.quarantined.entry(q.reason.to_string()).or_default() += 1;
            report.quarantined_total += 1;
        }
    }
    report.stream_dlq_records =
        dlq_records(&SqsQueue::new(clients, &stack.stream_dlq_url), SETTLE).await?;
    // A record in processed twice counts once: a duplicate must not hide a loss.
    let accounted = report.processed_rows - report.duplicated
        + report.duplicates_dropped
        + report.quarantined_total
        + report.stream_dlq_records;
    report.stream_units = stream_units(clients, stack).await?;
    report.stream_duplicates = report.stream_units as i64 - sent as i64;
    // Every unit the stream holds ends processed, quarantined or in the DLQ; and no event sent
    // is missing from the stream.
    report.lost =
        (report.stream_units as i64 - accounted as i64) + (-report.stream_duplicates).max(0);

    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        }
    };
    report.latency_ms_p50 = pct(0.50);
    report.latency_ms_p95 = pct(0.95);
    report.latency_ms_p99 = pct(0.99);
    report.latency_ms_max = latencies.last().copied().unwrap_or(0.0);
    let bounds = [
        50.0,
        100.0,
        200.0,
        300.0,
        500.0,
        750.0,
        1000.0,
        1500.0,
        2000.0,
        3000.0,
        5000.0,
        10000.0,
        f64::INFINITY,
    ];
    report.latency_histogram = bounds
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let lo = if i == 0 {
                f64::NEG_INFINITY
            } else {
                bounds[i - 1]
            };
            (
                b,
                latencies.iter().filter(|&&l| l > lo && l <= b).count() as u64,
            )
        })
        .collect();
    if first_arrival < last_processed {
        report.elapsed_seconds = (last_processed - first_arrival) as f64 / 1000.0;
        report.throughput_events_per_second =
            report.processed_rows as f64 / report.elapsed_seconds.max(0.001);
        let start = first_arrival / 1000;
        let end = last_processed / 1000;
        report.timeline = (start..=end)
            .map(|s| {
                (
                    s - start,
                    arrived_per_s.get(&s).copied().unwrap_or(0),
                    processed_per_s.get(&s).copied().unwrap_or(0),
                )
            })
            .collect();
    }
    Ok(report)
}

/// Unix milliseconds at which each raw object was marked processed.
async fn processed_times(clients: &Clients, stack: &Stack) -> Result<BTreeMap<String, i64>, Error> {
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = clients
            .dynamodb
            .scan()
            .table_name(&stack.metadata_table)
            .projection_expression("raw_key, processed_at")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| Error::aws("dynamodb Scan", DisplayErrorContext(e)))?;
        for item in page.items() {
            let key = item.get("raw_key").and_then(|v| v.as_s().ok());
            let at = item
                .get("processed_at")
                .and_then(|v| v.as_s().ok())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            if let (Some(k), Some(t)) = (key, at) {
                out.insert(k.clone(), t.with_timezone(&Utc).timestamp_millis());
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
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

pub async fn list(clients: &Clients, bucket: &str, prefix: &str) -> Result<Vec<String>, Error> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::aws("s3 ListObjectsV2", DisplayErrorContext(e)))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token {
            Some(t) if out.is_truncated == Some(true) => token = Some(t),
            _ => return Ok(keys),
        }
    }
}

pub async fn get(clients: &Clients, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
    let out = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::aws("s3 GetObject", DisplayErrorContext(e)))?;
    Ok(out
        .body
        .collect()
        .await
        .map_err(|e| Error::aws("s3 GetObject body", e))?
        .into_bytes()
        .to_vec())
}

impl Report {
    /// The report as plain text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        line(
            "events sent",
            format!(
                "{} ({} valid, {} invalid by design)",
                self.events_sent, self.events_sent_valid, self.events_sent_invalid
            ),
        );
        line(
            "stream",
            format!(
                "{} units ({} copies from retried producer calls)",
                self.stream_units, self.stream_duplicates
            ),
        );
        line(
            "raw objects / records",
            format!("{} / {}", self.raw_objects, self.raw_records),
        );
        line(
            "processed rows (Parquet)",
            format!(
                "{} in {} objects, {} distinct event ids",
                self.processed_rows, self.processed_objects, self.distinct_event_ids
            ),
        );
        line(
            "duplicated (same record)",
            format!(
                "{} (by shard, sequence and sub-sequence number)",
                self.duplicated
            ),
        );
        line("duplicates dropped", self.duplicates_dropped.to_string());
        line(
            "quarantined",
            format!("{} {:?}", self.quarantined_total, self.quarantined),
        );
        line(
            "stream DLQ",
            format!(
                "{} messages, {} records",
                self.stream_dlq_messages, self.stream_dlq_records
            ),
        );
        line(
            "transform DLQ",
            format!("{} messages", self.transform_dlq_messages),
        );
        line(
            "raw objects still pending",
            self.pending_objects.to_string(),
        );
        line("LOST", self.lost.to_string());
        line(
            "latency arrival→processed",
            format!(
                "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                self.latency_ms_p50, self.latency_ms_p95, self.latency_ms_p99, self.latency_ms_max
            ),
        );
        line(
            "throughput",
            format!(
                "{:.0} events/s over {:.1} s",
                self.throughput_events_per_second, self.elapsed_seconds
            ),
        );
        s
    }

    /// A self-contained HTML page: the figures, a latency histogram and throughput over time.
    pub fn html(&self) -> String {
        let max_h = self
            .latency_histogram
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let bar_w = 48.0;
        let mut hist = String::new();
        for (i, (bound, count)) in self.latency_histogram.iter().enumerate() {
            let h = *count as f64 / max_h * 180.0;
            let x = 40.0 + i as f64 * (bar_w + 6.0);
            let label = if bound.is_finite() {
                format!("≤{bound:.0}")
            } else {
                "more".to_owned()
            };
            hist.push_str(&format!(
                r##"<rect x="{x:.0}" y="{:.0}" width="{bar_w}" height="{h:.0}" fill="#3b82f6"><title>{count}</title></rect><text x="{:.0}" y="215" font-size="10" text-anchor="middle">{label}</text><text x="{:.0}" y="{:.0}" font-size="10" text-anchor="middle">{count}</text>"##,
                200.0 - h,
                x + bar_w / 2.0,
                x + bar_w / 2.0,
                195.0 - h
            ));
        }
        let max_t = self
            .timeline
            .iter()
            .map(|(_, a, p)| (*a).max(*p))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let n = self.timeline.len().max(2) as f64 - 1.0;
        let points = |sel: fn(&(i64, u64, u64)) -> u64| -> String {
            self.timeline
                .iter()
                .map(|t| {
                    format!(
                        "{:.1},{:.1}",
                        40.0 + t.0 as f64 / n * 700.0,
                        200.0 - sel(t) as f64 / max_t * 180.0
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let json = serde_json::to_string_pretty(self)
            .unwrap_or_default()
            .replace('<', "\\u003c");
        format!(
            r##"<!doctype html><html><head><meta charset="utf-8"><title>eventpipe reconciliation</title>
<style>body{{font:14px system-ui,sans-serif;margin:2rem;max-width:60rem}}pre{{background:#f4f4f5;padding:1rem}}.ok{{color:#15803d}}.bad{{color:#b91c1c}}</style></head><body>
<h1>Reconciliation: <span class="{}">lost = {}</span></h1>
<pre>{}</pre>
<h2>Latency, Kinesis arrival → processed (ms)</h2>
<svg width="760" height="230" role="img" aria-label="latency histogram">{hist}</svg>
<h2>Throughput over time (events per second)</h2>
<svg width="760" height="230" role="img" aria-label="throughput over time"><polyline fill="none" stroke="#94a3b8" stroke-width="2" points="{}"/><polyline fill="none" stroke="#16a34a" stroke-width="2" points="{}"/>
<text x="40" y="220" font-size="11">0 s</text><text x="740" y="220" font-size="11" text-anchor="end">{} s</text><text x="45" y="15" font-size="11">max {:.0}/s — grey: arrived, green: processed</text></svg>
<h2>Data</h2><pre>{}</pre></body></html>
"##,
            if self.lost == 0 { "ok" } else { "bad" },
            self.lost,
            html_escape(&self.text()),
            points(|t| t.1),
            points(|t| t.2),
            self.timeline.len().saturating_sub(1),
            max_t,
            html_escape(&json),
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;
    use crate::queue::tests::Fake;

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
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
