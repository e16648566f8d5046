//! `cargo xtask backfill`: sends the records of files into a stack's stream through the contract
//! (the producer, as the stack's producer role), then waits for the pipeline and reconciles.
//!
//! The input is what `pipeline_core::backfill` reads: JSON lines of events, or the raw and
//! quarantine objects the pipeline wrote (`pipeline ingest` output, a restore of `raw/`), plain or
//! gzip, one file or a directory. The stream processor validates every record again, so invalid
//! lines end quarantined with a reason, as from any producer. Sending a file twice sends its events
//! twice: each is a new Kinesis record, and the reconciliation counts distinct event ids.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pipeline_ops::Clients;
use pipeline_ops::Stack;
use pipeline_ops::reconcile::{self, Report};

/// Runs the producer binary with `args` against a stack, as its producer; returns its JSON summary.
type Produce = Box<dyn Fn(&Path, &[String], &Path) -> Result<serde_json::Value>>;

/// A stack the tools act on: where it is, the operator's clients, and how to run the producer.
pub struct Target {
    pub stack: Stack,
    pub operator: Clients,
    produce: Produce,
}

impl Target {
    /// `local` (the stack `cargo xtask local up` runs) or a deployed stack.
    pub fn resolve(env: &str, rt: &tokio::runtime::Runtime) -> Result<Target> {
        if env == "local" {
            let (stack, operator, access) = rt.block_on(crate::local::attach_with_access(
                local_stack::authz::principal::OPERATOR,
            ))?;
            let (s, a) = (stack.clone(), access);
            return Ok(Target {
                stack,
                operator,
                produce: Box::new(move |producer, args, summary| {
                    crate::local::produce(producer, &s, &a, args, summary)
                }),
            });
        }
        let outputs = crate::deploy::outputs(env)?;
        let operator = rt.block_on(crate::deploy::aws_clients(&outputs.region));
        let (stream, region) = (outputs.stack.stream.clone(), outputs.region.clone());
        Ok(Target {
            stack: outputs.stack,
            operator,
            // The caller's own credentials (the default chain), which need what the stack's
            // producer role grants (`docs/operations.md`).
            produce: Box::new(move |producer, args, summary| {
                let status = std::process::Command::new(producer)
                    .args(["--stream", &stream, "--summary-json"])
                    .arg(summary)
                    .args(args)
                    .env("AWS_REGION", &region)
                    .status()
                    .context("starting the producer")?;
                let value: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(summary)
                        .with_context(|| format!("reading {}", summary.display()))?,
                )?;
                if !status.success() {
                    bail!("the producer lost events: {}", value["failures"]);
                }
                Ok(value)
            }),
        })
    }
}

/// The whole backfill: send, wait, reconcile. Fails on any record lost or duplicated.
pub fn backfill(env: &str, from: &Path, rate: f64, timeout: Duration) -> Result<()> {
    let from = from
        .canonicalize()
        .with_context(|| format!("--from {}: no such file or directory", from.display()))?;
    let rt = crate::deploy::runtime()?;
    let target = Target::resolve(env, &rt)?;
    let producer = crate::local::build_producer()?;
    let out = out_dir("backfill", env);
    std::fs::create_dir_all(&out)?;
    let summary = (target.produce)(
        &producer,
        &[
            "--from-file".into(),
            from.display().to_string(),
            "--rate".into(),
            rate.to_string(),
        ],
        &out.join("producer.json"),
    )?;
    let sent = summary["events_sent"].as_u64().unwrap_or(0);
    eprintln!(
        "backfill: {sent} records of {} sent to {}; waiting for the pipeline",
        from.display(),
        target.stack.stream
    );
    let report = rt.block_on(settle(&target.operator, &target.stack, sent, timeout))?;
    write_report(&report, &out)?;
    println!("\n{}", report.text());
    println!("{:<28} {}", "report", out.join("report.html").display());
    verdict(&report)
}

/// Waits until every unit the stream holds is accounted for and no raw object is pending (or
/// `timeout` passes), with a status line, then reconciles the whole stack.
pub async fn settle(
    clients: &Clients,
    stack: &Stack,
    sent: u64,
    timeout: Duration,
) -> Result<Report> {
    let units = reconcile::stream_units(clients, stack).await?;
    let started = Instant::now();
    loop {
        let p = reconcile::progress(clients, stack).await?;
        eprint!(
            "\r{units} units in the stream: {} accounted for, {} raw objects pending, {} in dead-letter queues ({:.0} s)   ",
            p.accounted(),
            p.pending_objects,
            p.stream_dlq_messages + p.transform_dlq_messages,
            started.elapsed().as_secs_f64()
        );
        if p.accounted() >= units && p.pending_objects == 0 {
            break;
        }
        if started.elapsed() > timeout {
            eprintln!("\nstill not settled after {timeout:?}: reconciling what is there");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!();
    Ok(reconcile::reconcile(clients, stack, sent, 0, 0).await?)
}

/// `report.json` and `report.html` in `out`.
pub fn write_report(report: &Report, out: &Path) -> Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.html"), report.html())?;
    Ok(())
}

/// Lost and duplicated are 0, nothing in a dead-letter queue, nothing pending.
pub fn verdict(report: &Report) -> Result<()> {
    if report.lost != 0
        || report.duplicated != 0
        || report.stream_dlq_messages > 0
        || report.transform_dlq_messages > 0
        || report.pending_objects > 0
    {
        bail!(
            "reconciliation failed: lost = {}, duplicated = {}, DLQ messages = {}, pending raw objects = {}",
            report.lost,
            report.duplicated,
            report.stream_dlq_messages + report.transform_dlq_messages,
            report.pending_objects
        );
    }
    Ok(())
}

/// Where `cargo xtask backfill` and `replay` write their reports.
pub fn out_dir(task: &str, env: &str) -> PathBuf {
    crate::util::target_dir().join(task).join(env)
}
