//! The local stack: `demo` (the main job), `local up|status|down`, `produce`, `smoke`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_runtime::Clients;
use local_runtime::provision::Stack;
use local_runtime::reconcile::{Report, progress, reconcile};
use local_runtime::runtime::{Local, environment};
use serde_json::Value;

use crate::build::Arch;
use crate::package::{package, package_dir};
use crate::util::{cargo, root, run, target_dir};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub events: u64,
    pub rate: f64,
    pub invalid_ratio: f64,
    pub aggregate_share: f64,
    pub seed: u64,
    pub timeout: Duration,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Builds the zips (host architecture, `local` profile) and the producer.
fn prepare() -> Result<(PathBuf, PathBuf)> {
    package(Arch::host(), Some("local"))?;
    build_producer()?;
    Ok((
        package_dir(Arch::host()),
        target_dir().join("local").join("producer"),
    ))
}

/// The producer, built with the same light release profile as the local functions.
fn build_producer() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--locked",
        "--profile",
        "local",
        "-p",
        "producer",
        "--bin",
        "producer",
    ]))?;
    Ok(target_dir().join("local").join("producer"))
}

/// Runs the producer binary against a stack; returns its JSON summary.
fn produce(producer: &Path, stack: &Stack, args: &[String], summary: &Path) -> Result<Value> {
    let status = Command::new(producer)
        .args([
            "--stream",
            &stack.stream,
            "--endpoint-url",
            &stack.endpoint,
            "--summary-json",
        ])
        .arg(summary)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", local_runtime::REGION)
        .status()
        .context("starting the producer")?;
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("reading {}", summary.display()))?;
    let value: Value = serde_json::from_str(&text)?;
    if !status.success() {
        bail!("the producer lost events: {}", value["failures"]);
    }
    Ok(value)
}

/// The main job: from a fresh clone to a reconciliation report.
pub fn demo(o: DemoOptions) -> Result<()> {
    let (packages, producer) = prepare()?;
    let out = target_dir().join("local").join("demo");
    std::fs::create_dir_all(&out)?;
    let rt = runtime()?;
    rt.block_on(async {
        let env = environment(&root(), "local")?;
        eprintln!("starting the local stack (emulator on a free loopback port, provisioning from environments/local.toml)");
        let started = Instant::now();
        let local = Local::up(&root(), env, &packages).await?;
        eprintln!("local stack up in {:.1} s at {}", started.elapsed().as_secs_f64(), local.stack.endpoint);
        let result = demo_on(&local, &o, &producer, &out).await;
        local.down().await;
        result
    })
}

/// Times a first (cold) and a second (warm) invocation of each function with a no-op event.
async fn cold_and_warm(local: &Local) -> Result<Vec<(String, f64, f64)>> {
    let test_event = serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": local.stack.raw_bucket});
    let mut out = Vec::new();
    for (function, payload) in [
        (
            &local.stack.stream_processor,
            serde_json::json!({"Records": []}),
        ),
        (&local.stack.transformer, test_event),
    ] {
        let mut times = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let r = local
                .clients
                .lambda
                .invoke()
                .function_name(function)
                .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "invoking {function}: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(e)
                    )
                })?;
            if let Some(e) = r.function_error {
                bail!(
                    "{function} failed on a no-op event ({e}): {:?}",
                    r.payload
                        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                );
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        out.push((function.clone(), times[0], times[1]));
    }
    Ok(out)
}

async fn demo_on(local: &Local, o: &DemoOptions, producer: &Path, out: &Path) -> Result<()> {
    let starts = cold_and_warm(local).await?;
    let args: Vec<String> = vec![
        "--count".into(),
        o.events.to_string(),
        "--rate".into(),
        o.rate.to_string(),
        "--invalid-ratio".into(),
        o.invalid_ratio.to_string(),
        "--aggregate-share".into(),
        o.aggregate_share.to_string(),
        "--seed".into(),
        o.seed.to_string(),
        "--concurrency".into(),
        "4".into(),
    ];
    let summary_path = out.join("producer.json");
    let (stack, producer, args2, sp) = (
        local.stack.clone(),
        producer.to_path_buf(),
        args.clone(),
        summary_path.clone(),
    );
    let producing = tokio::task::spawn_blocking(move || produce(&producer, &stack, &args2, &sp));
    // A live status line while events flow.
    while !producing.is_finished() {
        status_line(local).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let summary = producing.await??;
    let sent = summary["events_sent"].as_u64().unwrap_or(0);
    eprintln!(
        "\nproducer: {sent} events sent at {:.0} events/s; waiting for the pipeline to quiesce",
        summary["events_per_second"].as_f64().unwrap_or(0.0)
    );
    let waited = Instant::now();
    loop {
        let p = local.wait_quiescent(sent, Duration::from_secs(2)).await?;
        status_line(local).await;
        if (p.accounted() >= sent && p.pending_objects == 0 && local.mapping_idle())
            || waited.elapsed() > o.timeout
        {
            break;
        }
    }
    eprintln!();
    let report = reconcile(
        &local.clients,
        &local.stack,
        sent,
        summary["events_valid"].as_u64().unwrap_or(0),
        summary["events_invalid"].as_u64().unwrap_or(0),
    )
    .await?;
    write_report(&report, out)?;
    let m = local.mapping_stats();
    println!("\n{}", report.text());
    println!(
        "{:<28} {} invocations, {} function errors, {} bisections",
        "event-source mapping", m.invocations, m.function_errors, m.bisections
    );
    for (function, cold, warm) in &starts {
        println!(
            "{:<28} cold {cold:.0} ms, warm {warm:.0} ms (Invoke round trip, no-op event)",
            function.trim_start_matches("eventpipe-local-")
        );
    }
    println!("{:<28} {}", "report", out.join("report.html").display());
    if report.lost != 0
        || report.stream_dlq_messages > 0
        || report.transform_dlq_messages > 0
        || report.pending_objects > 0
    {
        bail!(
            "reconciliation failed: lost = {}, DLQ messages = {}, pending raw objects = {}",
            report.lost,
            report.stream_dlq_messages + report.transform_dlq_messages,
            report.pending_objects
        );
    }
    Ok(())
}

fn write_report(report: &Report, out: &Path) -> Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.html"), report.html())?;
    Ok(())
}

async fn status_line(local: &Local) {
    if let Ok(p) = progress(&local.clients, &local.stack).await {
        let m = local.mapping_stats();
        eprint!(
            "\rrecords in {:>7} | raw objects {:>5} | processed rows {:>7} | quarantined {:>5} | DLQ {} | iterator age {:>5} ms   ",
            m.records_read,
            p.raw_objects,
            p.processed_rows,
            p.quarantined,
            p.stream_dlq_messages + p.transform_dlq_messages,
            m.iterator_age_ms
        );
    }
}

/// Where `local up --detach` leaves its state.
fn state_file() -> PathBuf {
    target_dir().join("local").join("current.json")
}

/// `local up`: the stack in the foreground with a status line until Ctrl-C, or detached.
pub fn up(detach: bool) -> Result<()> {
    if detach {
        let log = target_dir().join("local").join("up.log");
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
        let _ = std::fs::remove_file(state_file());
        let exe = std::env::current_exe()?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(exe)
                .args(["local", "up"])
                .stdin(std::process::Stdio::null())
                .stdout(std::fs::File::create(&log)?)
                .stderr(std::fs::File::create(log.with_extension("err.log"))?)
                .process_group(0)
                .spawn()?
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        while !state_file().is_file() {
            if Instant::now() > deadline {
                bail!("the local stack did not come up; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!(
            "local stack running in the background (pid {}); `cargo xtask local status`, `cargo xtask local down`",
            child.id()
        );
        return Ok(());
    }
    let (packages, _) = prepare()?;
    let rt = runtime()?;
    rt.block_on(async {
        let local = Local::up(&root(), environment(&root(), "local")?, &packages).await?;
        let state = serde_json::json!({"pid": std::process::id(), "stack": local.stack});
        std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
        println!(
            "local stack up: endpoint {}, stream {}",
            local.stack.endpoint, local.stack.stream
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => status_line(&local).await,
            }
        }
        eprintln!("\nstopping the local stack");
        let _ = std::fs::remove_file(state_file());
        local.down().await;
        Ok(())
    })
}

fn current() -> Result<(u32, Stack)> {
    let text = std::fs::read_to_string(state_file())
        .context("no local stack is running: start one with `cargo xtask local up --detach`")?;
    let v: Value = serde_json::from_str(&text)?;
    Ok((
        v["pid"].as_u64().unwrap_or(0) as u32,
        serde_json::from_value(v["stack"].clone())?,
    ))
}

pub fn status() -> Result<()> {
    let (pid, stack) = current()?;
    runtime()?.block_on(async {
        let clients = Clients::for_endpoint(&stack.endpoint).await;
        let p = progress(&clients, &stack).await?;
        println!(
            "pid {pid}, endpoint {}, stream {}",
            stack.endpoint, stack.stream
        );
        println!("{}", serde_json::to_string_pretty(&p)?);
        Ok(())
    })
}

pub fn down() -> Result<()> {
    let (pid, _) = current()?;
    run(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_file().is_file() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("local stack stopped");
    Ok(())
}

/// `produce --env local …`: the producer against the running local stack.
pub fn produce_local(extra: &[String]) -> Result<()> {
    let (_, stack) = current()?;
    build_producer()?;
    let summary = target_dir().join("local").join("produce-summary.json");
    produce(
        &target_dir().join("local").join("producer"),
        &stack,
        extra,
        &summary,
    )?;
    Ok(())
}

/// `smoke --env local`: canary events must reach processed, and both DLQs stay empty.
pub fn smoke_local() -> Result<()> {
    let (_, stack) = current()?;
    runtime()?.block_on(async {
        let clients = Clients::for_endpoint(&stack.endpoint).await;
        smoke(&clients, &stack).await
    })
}

/// Sends canaries straight to the stream and waits until every one is a processed row.
pub async fn smoke(clients: &Clients, stack: &Stack) -> Result<()> {
    let run_id = format!("smoke-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"));
    let ids: Vec<String> = (0..5).map(|i| format!("{run_id}-{i}")).collect();
    for id in &ids {
        let event = serde_json::json!({"event_id": id, "event_type": "smoke_test", "occurred_at": pipeline_core::event::fmt_time(chrono::Utc::now()), "source": "smoke"});
        clients
            .kinesis
            .put_record()
            .stream_name(&stack.stream)
            .partition_key(id)
            .data(aws_sdk_kinesis::primitives::Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "putting a canary: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            })?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut found = std::collections::HashSet::new();
        for key in local_runtime::reconcile::list(
            clients,
            &stack.processed_bucket,
            "processed/event_type=smoke_test/",
        )
        .await?
        {
            let body =
                local_runtime::reconcile::get(clients, &stack.processed_bucket, &key).await?;
            for r in pipeline_core::parquet_io::read_rows(body)? {
                found.insert(r.event_id);
            }
        }
        let missing: Vec<&String> = ids.iter().filter(|i| !found.contains(*i)).collect();
        let p = progress(clients, stack).await?;
        if missing.is_empty() {
            if p.stream_dlq_messages + p.transform_dlq_messages > 0 {
                bail!(
                    "smoke: canaries processed, but the DLQs hold {} messages",
                    p.stream_dlq_messages + p.transform_dlq_messages
                );
            }
            println!("smoke: PASS ({} canaries processed, DLQs empty)", ids.len());
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "smoke: FAIL, {} of {} canaries not processed after 60 s",
                missing.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `dlq redrive --env local`.
pub fn redrive(dry_run: bool) -> Result<()> {
    let (_, stack) = current()?;
    let env = environment(&root(), "local")?;
    runtime()?.block_on(async {
        let clients = Clients::for_endpoint(&stack.endpoint).await;
        let settings = local_runtime::esm::Settings::from(&env.event_source_mapping);
        let s = local_runtime::redrive::stream_dlq(&clients, &stack, settings, dry_run).await?;
        let t = local_runtime::redrive::transform_dlq(&clients, &stack, dry_run).await?;
        println!(
            "stream DLQ: {} messages, {} records{} ({} past retention, kept); transform DLQ: {} messages",
            s.messages,
            s.records,
            if dry_run { " (dry run)" } else { " redriven" },
            s.expired,
            t.messages
        );
        Ok(())
    })
}
