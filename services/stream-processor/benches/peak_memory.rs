//! Peak heap of the stream processor's handler on a 6 MB batch: the event JSON as Lambda delivers
//! it is parsed and handled over in-memory stores, under a counting allocator. Prints the numbers.
#![allow(unsafe_code)] // a global allocator wrapper is unsafe by definition

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use lambda_payloads::kinesis;
use stream_processor::{KinesisBatch, Settings, StreamProcessor};
use test_support::memory::{MemoryMetadataStore, MemoryObjectStore};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the functions' allocator (mimalloc) and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The batch: the Kinesis event file given as the first argument (`cargo xtask bench` passes the
/// sample batch it times the `pipeline` command on), or a generated 6 MB batch.
fn main() {
    let arrival = chrono::Utc::now();
    let body = match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(path) => std::fs::read_to_string(&path).expect("a readable kinesis event file"),
        None => generated(arrival),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let settings = Settings {
        raw_bucket: "raw".into(),
        metadata_table: "t".into(),
        metadata_ttl_days: 1,
        function_name: "bench".into(),
    };
    // The first run measures the heap; the time is the best and the median of all runs.
    let mut times = Vec::new();
    let mut first = None;
    for _ in 0..RUNS {
        let baseline = CURRENT.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let objects = MemoryObjectStore::default();
        let handler = StreamProcessor::with_clock(
            objects.clone(),
            MemoryMetadataStore::default(),
            settings.clone(),
            std::sync::Arc::new(move || arrival),
        );
        let started = std::time::Instant::now();
        // As the Lambda runtime hands it over: the invocation's body bytes, read in one pass.
        let event: KinesisBatch = serde_json::from_slice(body.as_bytes()).expect("a kinesis event");
        let (response, report) = rt.block_on(handler.handle_batch(&event, "bench"));
        drop(event);
        times.push(started.elapsed());
        assert!(response.batch_item_failures.is_empty());
        if first.is_none() {
            let stored: usize = objects
                .keys("raw", "")
                .iter()
                .map(|k| objects.object("raw", k).map_or(0, |o| o.body.len()))
                .sum();
            first = Some((
                PEAK.load(Ordering::Relaxed) - baseline,
                stored,
                report.units,
            ));
        }
    }
    let (peak, stored, units) = first.expect("at least one run");
    times.sort();
    let (best, median) = (times[0], times[times.len() / 2]);
    println!(
        "batch payload            {:.2} MB, {} records",
        body.len() as f64 / 1e6,
        units
    );
    println!(
        "handler peak heap        {:.1} MB above the payload (incl. {:.1} MB of objects kept by the in-memory store)",
        peak as f64 / 1e6,
        stored as f64 / 1e6
    );
    println!(
        "handler time             median {:.1} ms, best {:.1} ms ({:.0} records/s; read the event + validate + encode + gzip, one core, {RUNS} runs)",
        median.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        units as f64 / median.as_secs_f64()
    );
}

const RUNS: usize = 15;

fn generated(arrival: chrono::DateTime<chrono::Utc>) -> String {
    let mut records: Vec<(String, String, String)> = Vec::new();
    let mut payload = 0;
    let mut i = 0u64;
    // Lambda caps a batch's payload at 6 MB: base64 data counts, so about 4.5 MB of events.
    while payload < 6 * 1024 * 1024 - 4096 {
        let event = format!(
            r#"{{"event_id":"mem-{i:09}","event_type":"page_view","occurred_at":"{}","source":"web","user_id":"user-{}","attributes":{{"path":"/products/{}","ip":"203.0.113.{}","device":"mobile","country":"DE","referrer":"https://example.com/"}}}}"#,
            pipeline_core::event::fmt_time(arrival),
            i % 5000,
            i % 977,
            i % 250
        );
        let seq = format!("4959033827149025660855969{i:031}");
        // The record's envelope in the event is about 420 bytes besides its base64 data.
        payload += event.len().div_ceil(3) * 4 + 420;
        records.push((format!("user-{}", i % 5000), seq, event));
        i += 1;
    }
    let batch = test_support::kinesis_records(&records, arrival);
    String::from_utf8(kinesis::payload(&batch, &test_support::DEV_SHARD)).expect("JSON is UTF-8")
}
