//! The accounting: facts in, a report out. No IO, so every rule is unit-tested on hand-made facts.
//!
//! Two levels. The stream holds `stream_units` input units (a record, or each sub-record of a KPL
//! aggregate); a producer call whose response was lost may have put its records twice, so it can
//! hold more than were sent (`stream_duplicates`), never fewer without a loss. Every unit of the
//! stream must end in exactly one place: a processed row, a dropped in-object duplicate, a
//! quarantine line, or a stream dead letter. A Kinesis record (shard, sequence number,
//! sub-sequence number) in processed twice is `duplicated`, and counts once.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::Report;
use super::collect::Facts;
use crate::esm;
use crate::faults;

/// What the producer says it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub events: u64,
    pub valid: u64,
    pub invalid: u64,
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let pct = |p: f64| pipeline_core::stats::nearest_rank(&values, p);
        Percentiles {
            count: values.len() as u64,
            p50: pct(0.50),
            p95: pct(0.95),
            p99: pct(0.99),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// Latency per stage of the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stages {
    /// Kinesis arrival → the raw object recorded by the stream processor.
    pub arrival_to_raw: Percentiles,
    /// Raw object recorded → processed by the transformer.
    pub raw_to_processed: Percentiles,
    /// Kinesis arrival → processed.
    pub arrival_to_processed: Percentiles,
}

/// The processed files of one partition (`event_type=…/dt=…/hour=…`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionFiles {
    pub partition: String,
    pub files: u64,
    pub bytes: u64,
    pub smallest: u64,
    pub largest: u64,
}

/// What the run's machinery did, when the caller ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Operations {
    pub faults: Option<faults::Stats>,
    pub mapping_invocations: u64,
    pub mapping_function_errors: u64,
    pub mapping_partial_failures: u64,
    pub mapping_bisections: u64,
    pub mapping_destination_failures: u64,
    pub producer_records_retried: u64,
    pub producer_records_possibly_twice: u64,
}

impl Operations {
    pub fn with_mapping(mut self, m: &esm::Stats) -> Self {
        self.mapping_invocations = m.invocations;
        self.mapping_function_errors = m.function_errors;
        self.mapping_partial_failures = m.partial_failures;
        self.mapping_bisections = m.bisections;
        self.mapping_destination_failures = m.destination_failures;
        self
    }
}

/// The partition of a processed key: everything between `processed/` and the file name.
fn partition_of(key: &str) -> String {
    let rest = key.strip_prefix("processed/").unwrap_or(key);
    rest.rsplit_once('/')
        .map_or_else(String::new, |(p, _)| p.to_owned())
}

pub fn account(facts: &Facts, sent: &Sent) -> Report {
    let p = &facts.progress;
    let mut report = Report {
        events_sent: sent.events,
        events_sent_valid: sent.valid,
        events_sent_invalid: sent.invalid,
        raw_objects: p.raw_objects,
        raw_records: p.raw_records,
        processed_objects: p.processed_objects,
        duplicates_dropped: p.duplicates,
        pending_objects: p.pending_objects,
        stream_dlq_messages: p.stream_dlq_messages,
        transform_dlq_messages: p.transform_dlq_messages,
        stream_units: facts.stream_units,
        stream_dlq_records: facts.stream_dlq_records,
        quarantined: facts.quarantined.clone(),
        quarantined_total: facts.quarantined.values().sum(),
        processed_rows: facts.rows.len() as u64,
        ..Report::default()
    };

    let mut units = HashSet::new();
    let mut ids = HashSet::new();
    let (mut arrival_to_raw, mut raw_to_processed, mut arrival_to_processed) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut arrived_per_s: BTreeMap<i64, u64> = BTreeMap::new();
    let mut processed_per_s: BTreeMap<i64, u64> = BTreeMap::new();
    let (mut first_arrival, mut last_processed) = (i64::MAX, i64::MIN);
    for r in &facts.rows {
        if !units.insert((&r.shard, &r.sequence_number, r.sub_sequence_number)) {
            report.duplicated += 1;
        }
        ids.insert(&r.event_id);
        first_arrival = first_arrival.min(r.arrival_ms);
        *arrived_per_s.entry(r.arrival_ms / 1000).or_default() += 1;
        let times = facts.items.get(&r.raw_key).copied().unwrap_or_default();
        if let Some(raw) = times.raw_written_ms {
            arrival_to_raw.push((raw - r.arrival_ms) as f64);
        }
        if let Some(done) = times.processed_ms {
            arrival_to_processed.push((done - r.arrival_ms) as f64);
            if let Some(raw) = times.raw_written_ms {
                raw_to_processed.push((done - raw) as f64);
            }
            last_processed = last_processed.max(done);
            *processed_per_s.entry(done / 1000).or_default() += 1;
        }
    }
    report.distinct_event_ids = ids.len() as u64;
    // A record in processed twice counts once: a duplicate must not hide a loss.
    let accounted = report.processed_rows - report.duplicated
        + report.duplicates_dropped
        + report.quarantined_total
        + report.stream_dlq_records;
    report.stream_duplicates = report.stream_units as i64 - sent.events as i64;
    // Every unit the stream holds ends somewhere; and no event sent is missing from the stream.
    report.lost =
        (report.stream_units as i64 - accounted as i64) + (-report.stream_duplicates).max(0);

    let latencies = arrival_to_processed.clone();
    report.stages = Stages {
        arrival_to_raw: Percentiles::of(arrival_to_raw),
        raw_to_processed: Percentiles::of(raw_to_processed),
        arrival_to_processed: Percentiles::of(arrival_to_processed),
    };
    let end_to_end = report.stages.arrival_to_processed;
    report.latency_ms_p50 = end_to_end.p50;
    report.latency_ms_p95 = end_to_end.p95;
    report.latency_ms_p99 = end_to_end.p99;
    report.latency_ms_max = end_to_end.max;
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
            let n = latencies.iter().filter(|&&l| l > lo && l <= b).count();
            (b, n as u64)
        })
        .collect();
    if first_arrival < last_processed {
        report.elapsed_seconds = (last_processed - first_arrival) as f64 / 1000.0;
        report.throughput_events_per_second =
            report.processed_rows as f64 / report.elapsed_seconds.max(0.001);
        let (start, end) = (first_arrival / 1000, last_processed / 1000);
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

    let mut partitions: BTreeMap<String, PartitionFiles> = BTreeMap::new();
    for f in &facts.files {
        let partition = partition_of(&f.key);
        let e = partitions
            .entry(partition.clone())
            .or_insert_with(|| PartitionFiles {
                partition,
                smallest: u64::MAX,
                ..PartitionFiles::default()
            });
        e.files += 1;
        e.bytes += f.size;
        e.smallest = e.smallest.min(f.size);
        e.largest = e.largest.max(f.size);
    }
    report.partitions = partitions.into_values().collect();
    report
}

#[cfg(test)]
mod tests {
    use super::super::collect::{FileFacts, ItemTimes, RowFacts};
    use super::*;

    fn row(seq: &str, id: &str, raw: &str, arrival_ms: i64) -> RowFacts {
        RowFacts {
            shard: "shardId-000000000000".into(),
            sequence_number: seq.into(),
            sub_sequence_number: 0,
            event_id: id.into(),
            raw_key: raw.into(),
            arrival_ms,
        }
    }

    fn facts() -> Facts {
        let mut f = Facts {
            stream_units: 6,
            rows: vec![
                row("1", "a", "raw/x", 1_000),
                row("2", "b", "raw/x", 1_100),
                row("3", "c", "raw/y", 2_000),
            ],
            files: vec![
                FileFacts {
                    key: "processed/event_type=click/dt=2026-11-30/hour=10/s-1.parquet".into(),
                    size: 100,
                },
                FileFacts {
                    key: "processed/event_type=click/dt=2026-11-30/hour=10/s-3.parquet".into(),
                    size: 300,
                },
                FileFacts {
                    key: "processed/event_type=view/dt=2026-11-30/hour=10/s-1.parquet".into(),
                    size: 50,
                },
            ],
            quarantined: BTreeMap::from([("invalid_json".to_owned(), 2)]),
            stream_dlq_records: 1,
            ..Facts::default()
        };
        f.items.insert(
            "raw/x".into(),
            ItemTimes {
                raw_written_ms: Some(1_500),
                processed_ms: Some(2_500),
            },
        );
        f.items.insert(
            "raw/y".into(),
            ItemTimes {
                raw_written_ms: Some(2_200),
                processed_ms: Some(3_000),
            },
        );
        f
    }

    fn sent(events: u64) -> Sent {
        Sent {
            events,
            valid: events - 2,
            invalid: 2,
        }
    }

    #[test]
    fn every_unit_of_the_stream_is_accounted_for() {
        let r = account(&facts(), &sent(6));
        assert_eq!((r.lost, r.duplicated, r.stream_duplicates), (0, 0, 0));
        assert_eq!(
            (r.processed_rows, r.distinct_event_ids, r.quarantined_total),
            (3, 3, 2)
        );
    }

    #[test]
    fn a_record_in_processed_twice_is_a_duplicate_and_cannot_hide_a_loss() {
        let mut f = facts();
        // The stream's unit "3" was never processed, but "1" was twice: still one lost.
        f.rows[2] = row("1", "a", "raw/y", 2_000);
        let r = account(&f, &sent(6));
        assert_eq!((r.duplicated, r.lost), (1, 1));
    }

    #[test]
    fn copies_from_retried_producer_calls_are_stream_duplicates_not_losses() {
        let mut f = facts();
        f.stream_units = 7;
        f.rows.push(row("4", "a", "raw/y", 2_050)); // the same event id, another Kinesis record
        let r = account(&f, &sent(6));
        assert_eq!((r.stream_duplicates, r.lost, r.duplicated), (1, 0, 0));
        assert_eq!(r.distinct_event_ids, 3);
        // A stream holding fewer units than were sent lost some before the pipeline.
        let mut f = facts();
        f.stream_units = 5;
        f.rows.pop();
        assert_eq!(account(&f, &sent(6)).lost, 1);
    }

    #[test]
    fn latency_per_stage_and_files_per_partition() {
        let r = account(&facts(), &sent(6));
        assert_eq!(r.stages.arrival_to_raw.max, 500.0);
        // Raw recorded → processed: 1,000 ms for both rows of raw/x, 800 ms for raw/y.
        assert_eq!(
            (
                r.stages.raw_to_processed.count,
                r.stages.raw_to_processed.p50
            ),
            (3, 1_000.0)
        );
        assert_eq!(r.stages.arrival_to_processed.max, 1_500.0);
        assert_eq!(r.latency_ms_max, 1_500.0);
        assert_eq!(r.partitions.len(), 2);
        let click = &r.partitions[0];
        assert_eq!(
            (
                click.partition.as_str(),
                click.files,
                click.bytes,
                click.smallest,
                click.largest
            ),
            ("event_type=click/dt=2026-11-30/hour=10", 2, 400, 100, 300)
        );
        assert_eq!(r.timeline.first().map(|t| t.1), Some(2));
    }
}
