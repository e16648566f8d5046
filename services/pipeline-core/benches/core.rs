//! Throughput of the core on the batch sizes Lambda delivers: a 6 MB Kinesis batch of ~400-byte
//! events for the stream processor, and the resulting raw object for the transformer.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_core::event::fmt_time;
use pipeline_core::ingest::{KinesisRecord, ingest};
use pipeline_core::transform::{Pseudonymizer, encode, transform};

/// The allocator the function binaries run with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH_BYTES: usize = 6 * 1024 * 1024;

fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

/// About 400-byte events, like the producer's synthetic traffic, 1% invalid.
pub fn events() -> Vec<Vec<u8>> {
    let types = ["page_view", "click", "add_to_cart", "purchase", "signup"];
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0usize;
    while total < BATCH_BYTES {
        let data = if i % 100 == 99 {
            br#"{"event_id":"broken","#.to_vec()
        } else {
            format!(
                r#"{{"event_id":"bench-{i:09}","event_type":"{}","occurred_at":"{}","source":"web","user_id":"user-{}","session_id":"s-{}-{}","schema_version":1,"attributes":{{"path":"/products/{}","country":"DE","device":"mobile","ip":"203.0.113.{}","referrer":"https://example.com/landing","sku":"sku-{:05}","price_cents":{}}},"campaign":"winter-sale"}}"#,
                types[i % types.len()],
                fmt_time(arrival() - Duration::milliseconds((i % 5000) as i64)),
                i % 5000,
                i % 5000,
                i / 50,
                i % 977,
                i % 250,
                i % 20000,
                199 + i % 40000,
            )
            .into_bytes()
        };
        total += data.len();
        out.push(data);
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let events = events();
    let seqs: Vec<String> = (0..events.len())
        .map(|i| format!("49590338271490256608559692538361571095921575989{i:09}"))
        .collect();
    let records: Vec<KinesisRecord<'_>> = events
        .iter()
        .zip(&seqs)
        .map(|(d, s)| KinesisRecord {
            shard_id: "shardId-000000000000",
            sequence_number: s,
            arrival: arrival(),
            partition_key: "user-1",
            data: d,
        })
        .collect();
    let bytes: usize = events.iter().map(Vec::len).sum();
    eprintln!(
        "batch: {} records, {} bytes, {:.0} bytes/record",
        records.len(),
        bytes,
        bytes as f64 / records.len() as f64
    );

    let mut group = c.benchmark_group("stream_processor_core");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    group.bench_function("validate_only", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| pipeline_core::validate(e, arrival()).is_ok())
                .count()
        })
    });
    group.bench_function("ingest_6mb_batch", |b| {
        b.iter(|| ingest(black_box(&records)))
    });
    let text = pipeline_core::ingest::gunzip(&ingest(&records)[0].raw.body).unwrap();
    group.bench_function("gzip_raw_object_only", |b| {
        b.iter(|| pipeline_core::ingest::gzip(black_box(&text)))
    });
    group.finish();

    let out = ingest(&records).remove(0);
    let pii = Pseudonymizer::new(b"bench-key").unwrap();
    let mut group = c.benchmark_group("transformer_core");
    group.throughput(Throughput::Elements(out.valid));
    group.sample_size(10);
    group.bench_function("transform_enrich", |b| {
        b.iter(|| transform(&out.raw.key, black_box(&out.raw.body), &pii).unwrap())
    });
    group.bench_function("transform_to_parquet", |b| {
        b.iter(|| {
            encode(&transform(&out.raw.key, black_box(&out.raw.body), &pii).unwrap()).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
