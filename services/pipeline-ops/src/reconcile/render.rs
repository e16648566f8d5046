//! The report as text and as a self-contained HTML page (no script: every chart is SVG).

use super::Report;

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
        let stage = |p: &super::Percentiles| {
            format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                p.p50, p.p99, p.max
            )
        };
        line(
            "  arrival → raw recorded",
            stage(&self.stages.arrival_to_raw),
        );
        line(
            "  raw recorded → processed",
            stage(&self.stages.raw_to_processed),
        );
        let files: u64 = self.partitions.iter().map(|p| p.files).sum();
        let bytes: u64 = self.partitions.iter().map(|p| p.bytes).sum();
        line(
            "processed files",
            format!(
                "{files} in {} partitions, {:.1} KiB on average",
                self.partitions.len(),
                bytes as f64 / files.max(1) as f64 / 1024.0
            ),
        );
        if let Some(o) = &self.operations {
            if let Some(f) = &o.faults {
                line(
                    "faults injected",
                    format!("{} of {} calls", f.injected(), f.requests),
                );
            }
            line(
                "retries",
                format!(
                    "mapping: {} function errors, {} partial failures, {} bisections; producer: {} records retried, {} possibly twice",
                    o.mapping_function_errors,
                    o.mapping_partial_failures,
                    o.mapping_bisections,
                    o.producer_records_retried,
                    o.producer_records_possibly_twice
                ),
            );
        }
        s
    }

    /// The tables of the HTML page: quarantine by reason, latency per stage, files per partition,
    /// faults and retries.
    fn tables(&self) -> String {
        let table = |id: &str, head: &[&str], rows: Vec<Vec<String>>| {
            let mut t = format!(r#"<table id="{id}"><thead><tr>"#);
            for h in head {
                t.push_str(&format!("<th>{}</th>", html_escape(h)));
            }
            t.push_str("</tr></thead><tbody>");
            for r in rows {
                t.push_str("<tr>");
                for c in r {
                    t.push_str(&format!("<td>{}</td>", html_escape(&c)));
                }
                t.push_str("</tr>");
            }
            t.push_str("</tbody></table>");
            t
        };
        let mut out = String::new();
        out.push_str("<h2>Quarantined, by reason</h2>");
        out.push_str(&table(
            "quarantine",
            &["reason", "records"],
            self.quarantined
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect(),
        ));
        out.push_str("<h2>Latency per stage (ms)</h2>");
        let stage = |name: &str, p: &super::Percentiles| {
            vec![
                name.to_owned(),
                p.count.to_string(),
                format!("{:.0}", p.p50),
                format!("{:.0}", p.p95),
                format!("{:.0}", p.p99),
                format!("{:.0}", p.max),
            ]
        };
        out.push_str(&table(
            "stages",
            &["stage", "rows", "p50", "p95", "p99", "max"],
            vec![
                stage(
                    "Kinesis arrival → raw object recorded",
                    &self.stages.arrival_to_raw,
                ),
                stage(
                    "raw object recorded → processed",
                    &self.stages.raw_to_processed,
                ),
                stage(
                    "Kinesis arrival → processed",
                    &self.stages.arrival_to_processed,
                ),
            ],
        ));
        out.push_str("<h2>Processed files per partition</h2>");
        out.push_str(&table(
            "partitions",
            &["partition", "files", "bytes", "smallest", "largest"],
            self.partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.clone(),
                        p.files.to_string(),
                        p.bytes.to_string(),
                        p.smallest.to_string(),
                        p.largest.to_string(),
                    ]
                })
                .collect(),
        ));
        if let Some(o) = &self.operations {
            out.push_str("<h2>Faults and retries</h2>");
            let mut rows: Vec<Vec<String>> = Vec::new();
            if let Some(f) = &o.faults {
                for (service, faults) in &f.faults {
                    for (fault, n) in faults {
                        rows.push(vec![
                            format!("{service}: {}", fault.as_str()),
                            n.to_string(),
                        ]);
                    }
                }
            }
            for (what, n) in [
                ("mapping: function errors", o.mapping_function_errors),
                ("mapping: partial failures", o.mapping_partial_failures),
                ("mapping: bisections", o.mapping_bisections),
                (
                    "mapping: failed DLQ sends (retried)",
                    o.mapping_destination_failures,
                ),
                ("producer: records retried", o.producer_records_retried),
                (
                    "producer: records possibly twice",
                    o.producer_records_possibly_twice,
                ),
            ] {
                rows.push(vec![what.to_owned(), n.to_string()]);
            }
            out.push_str(&table("operations", &["what", "count"], rows));
        }
        out
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
<style>body{{font:14px system-ui,sans-serif;margin:2rem;max-width:60rem}}pre{{background:#f4f4f5;padding:1rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #d4d4d8;padding:.2rem .6rem;text-align:left}}.ok{{color:#15803d}}.bad{{color:#b91c1c}}</style></head><body>
<h1>Reconciliation: <span class="{}">lost = {}</span></h1>
<pre>{}</pre>
<h2>Latency, Kinesis arrival → processed (ms)</h2>
<svg width="760" height="230" role="img" aria-label="latency histogram">{hist}</svg>
<h2>Throughput over time (events per second)</h2>
<svg width="760" height="230" role="img" aria-label="throughput over time"><polyline fill="none" stroke="#94a3b8" stroke-width="2" points="{}"/><polyline fill="none" stroke="#16a34a" stroke-width="2" points="{}"/>
<text x="40" y="220" font-size="11">0 s</text><text x="740" y="220" font-size="11" text-anchor="end">{} s</text><text x="45" y="15" font-size="11">max {:.0}/s — grey: arrived, green: processed</text></svg>
{}
<h2>Data</h2><pre>{}</pre></body></html>
"##,
            if self.lost == 0 { "ok" } else { "bad" },
            self.lost,
            html_escape(&self.text()),
            points(|t| t.1),
            points(|t| t.2),
            self.timeline.len().saturating_sub(1),
            max_t,
            self.tables(),
            html_escape(&json),
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
