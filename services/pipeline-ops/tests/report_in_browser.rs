//! The report a person looks at, rendered by a real browser (Debian's `chromium`, headless): the
//! latency histogram and the throughput chart are drawn, and the operator's tables are there.
//! CI installs chromium (`.ci/run`) and sets `EVENTPIPE_REQUIRE_BROWSER=1`, so there the test
//! cannot skip; on a machine without chromium it says how to run it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipeline_ops::reconcile::collect::{Facts, FileFacts, ItemTimes, RowFacts};
use pipeline_ops::reconcile::{Operations, Sent, account};

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn facts() -> Facts {
    let mut f = Facts {
        stream_units: 2_002,
        quarantined: BTreeMap::from([("invalid_json".to_owned(), 1), ("too_deep".to_owned(), 1)]),
        ..Facts::default()
    };
    for i in 0..2_000i64 {
        let raw = format!("raw/dt=2026-11-30/hour=10/shard=s/{}.jsonl.gz", i / 100);
        f.rows.push(RowFacts {
            shard: "s".into(),
            sequence_number: i.to_string(),
            sub_sequence_number: 0,
            event_id: format!("e{i}"),
            raw_key: raw.clone(),
            arrival_ms: 1_000_000 + i * 5,
        });
        f.items.insert(
            raw,
            ItemTimes {
                raw_written_ms: Some(1_000_000 + (i / 100 + 1) * 500),
                processed_ms: Some(1_000_000 + (i / 100 + 1) * 500 + 300 + i % 7 * 100),
            },
        );
    }
    for i in 0..20 {
        f.files.push(FileFacts {
            key: format!("processed/event_type=click/dt=2026-11-30/hour=10/s-{i}.parquet"),
            size: 4_000 + i * 10,
        });
    }
    f
}

fn run(browser: &Path, args: &[&str], page: &Path, profile: &Path) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

/// Pixels within a small distance of an RGB colour.
fn pixels_like(png: &[u8], rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= 12))
        .count()
}

#[test]
fn the_report_renders_its_charts_and_tables_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("EVENTPIPE_REQUIRE_BROWSER").is_none(),
            "EVENTPIPE_REQUIRE_BROWSER is set but chromium is not installed"
        );
        eprintln!(
            "skipped: no chromium; `apt-get install chromium`, then `cargo test -p pipeline-ops --test report_in_browser`"
        );
        return;
    };
    let mut report = account(
        &facts(),
        &Sent {
            events: 2_002,
            valid: 2_000,
            invalid: 2,
        },
    );
    report.operations = Some(Operations {
        mapping_bisections: 1,
        ..Operations::default()
    });
    assert_eq!(report.lost, 0);
    let dir = std::env::temp_dir().join(format!("eventpipe-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, report.html()).unwrap();

    let dom = run(&browser, &["--dump-dom"], &page, &dir.join("profile-dom"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for table in ["quarantine", "stages", "partitions", "operations"] {
        assert!(
            dom.contains(&format!("<table id=\"{table}\"")),
            "no {table} table"
        );
    }
    assert!(dom.contains("<td>too_deep</td>"), "quarantine by reason");
    assert!(
        dom.contains("event_type=click/dt=2026-11-30/hour=10"),
        "files per partition"
    );

    let shot = dir.join("report.png");
    let out = run(
        &browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,1400",
        ],
        &page,
        &dir.join("profile-shot"),
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    // The histogram's bars (#3b82f6) and the processed line of the throughput chart (#16a34a).
    assert!(
        pixels_like(&png, [0x3b, 0x82, 0xf6]) > 2_000,
        "the latency histogram is not drawn"
    );
    assert!(
        pixels_like(&png, [0x16, 0xa3, 0x4a]) > 200,
        "the throughput chart is not drawn"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
