//! `cargo xtask replay`: re-transforms the raw objects of a range of hours after a transformer fix
//! (`pipeline_ops::replay`), with a dry run, progress and a summary, then reconciles the stack.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::backfill::{Target, out_dir, settle, verdict};

/// `2026-11-30T06` (an hour, UTC) or an RFC 3339 time.
pub fn parse_hour(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&format!("{text}:00"), "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc())
        .with_context(|| format!("`{text}` is not an hour: use e.g. 2026-11-30T06 (UTC)"))
}

pub fn replay(env: &str, from: &str, to: &str, dry_run: bool, timeout: Duration) -> Result<()> {
    let (from, to) = (parse_hour(from)?, parse_hour(to)?);
    let rt = crate::deploy::runtime()?;
    let target = Target::resolve(env, &rt)?;
    let summary = rt.block_on(async {
        let mut progress = |done: u64, of: u64| {
            eprint!("\rreplay: {done} of {of} raw objects");
            let _ = std::io::stderr().flush();
        };
        pipeline_ops::replay::replay(
            &target.operator,
            &target.stack,
            from,
            to,
            dry_run,
            &mut progress,
        )
        .await
    })?;
    eprintln!();
    let out = out_dir("replay", env);
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    println!(
        "{:<28} {} to {} ({} hours: {} … {})",
        "range",
        from.format("%Y-%m-%dT%H"),
        to.format("%Y-%m-%dT%H"),
        summary.hours.len(),
        summary.hours.first().map_or("", String::as_str),
        summary.hours.last().map_or("", String::as_str),
    );
    println!("{:<28} {}", "raw objects", summary.objects);
    if dry_run {
        println!("dry run: nothing was sent; run again without --dry-run to re-transform them");
        return Ok(());
    }
    println!("{:<28} {}", "re-transformed", summary.retransformed);
    println!(
        "{:<28} {} (this transformer version processed them already)",
        "already current", summary.current
    );
    println!("{:<28} {}", "ignored", summary.ignored);
    println!(
        "{:<28} {} in {:.1} s",
        "failed",
        summary.failed.len(),
        summary.elapsed_seconds
    );
    for (key, error) in summary.failed.iter().take(20) {
        println!("  {key}: {error}");
    }
    // Every record once, in processed: the whole stack reconciled.
    let report = rt.block_on(settle(&target.operator, &target.stack, 0, timeout))?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "{:<28} lost {}, duplicated {}, {} distinct event ids in {} processed rows",
        "reconciliation",
        report.lost,
        report.duplicated,
        report.distinct_event_ids,
        report.processed_rows
    );
    if !summary.failed.is_empty() {
        bail!(
            "{} raw objects were not re-transformed: run the same replay again (what it re-transformed is skipped)",
            summary.failed.len()
        );
    }
    verdict(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_parse_as_utc_hours_or_rfc3339() {
        assert_eq!(
            parse_hour("2026-11-30T06").unwrap().to_rfc3339(),
            "2026-11-30T06:00:00+00:00"
        );
        assert_eq!(
            parse_hour("2026-11-30T06:30:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-30T05:30:00+00:00"
        );
        let err = parse_hour("yesterday").unwrap_err().to_string();
        assert!(err.contains("2026-11-30T06"), "{err}");
    }
}
