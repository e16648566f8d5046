//! The local stack: `demo` (the main job), `local up|status|down`, `produce`, `smoke`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_stack::authz::{Access, Policies, principal};
use local_stack::runtime::{self, Local};
use pipeline_config::Environment;
use pipeline_ops::Clients;
use pipeline_ops::Stack;
use pipeline_ops::reconcile::{progress, reconcile};
use serde::{Deserialize, Serialize};
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
    pub stack: StackOptions,
}

/// How to run the local stack: whose policies the emulator enforces, or none (`--no-authz`), and
/// the share of the pipeline's calls the fault injector fails.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub policies: Option<Policies>,
    pub faults: Option<f64>,
}

impl StackOptions {
    fn runtime(&self) -> runtime::Options {
        runtime::Options {
            policies: self.policies,
            faults: self
                .faults
                .map(|rate| local_stack::faults::Plan { rate, seed: 42 }),
            ..runtime::Options::default()
        }
    }
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
pub(crate) fn build_producer() -> Result<PathBuf> {
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

/// Runs the producer binary against a stack, as the stack's producer role; returns its JSON
/// summary.
pub(crate) fn produce(
    producer: &Path,
    stack: &Stack,
    access: &Access,
    args: &[String],
    summary: &Path,
) -> Result<Value> {
    let mut cmd = Command::new(producer);
    cmd.args([
        "--stream",
        &stack.stream,
        "--endpoint-url",
        &stack.endpoint,
        "--summary-json",
    ])
    .arg(summary)
    .args(args)
    .env("AWS_REGION", local_stack::REGION);
    credentials_for(&mut cmd, stack, access, principal::PRODUCER, summary)?;
    let status = cmd.status().context("starting the producer")?;
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("reading {}", summary.display()))?;
    let value: Value = serde_json::from_str(&text)?;
    if !status.success() {
        bail!("the producer lost events: {}", value["failures"]);
    }
    Ok(value)
}

/// Makes a child process act as principal `id` of the local stack, as any AWS SDK would: a shared
/// config file whose profile assumes the role from the emulator's root credentials (renewed by the
/// SDK), and trust in the emulator's certificate authority.
fn credentials_for(
    cmd: &mut Command,
    stack: &Stack,
    access: &Access,
    id: &str,
    beside: &Path,
) -> Result<()> {
    let root_key = local_stack::ROOT_ACCESS_KEY;
    let Some(role) = access.roles.get(id) else {
        cmd.env("AWS_ACCESS_KEY_ID", root_key)
            .env("AWS_SECRET_ACCESS_KEY", root_key);
        return Ok(());
    };
    let config = beside.with_file_name(format!("aws-config-{id}"));
    std::fs::write(
        &config,
        format!(
            "[profile emulator-root]\naws_access_key_id = {root_key}\naws_secret_access_key = {root_key}\n\
             endpoint_url = {endpoint}\n\n[profile {id}]\nrole_arn = {role}\nsource_profile = emulator-root\n\
             role_session_name = local-{id}\nendpoint_url = {endpoint}\nregion = {region}\n",
            endpoint = stack.endpoint,
            region = local_stack::REGION,
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    cmd.env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &config)
        .env("AWS_PROFILE", id)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    if let Some(ca) = &access.ca_certificate {
        cmd.env("SSL_CERT_FILE", ca);
    }
    Ok(())
}

/// The main job: from a fresh clone to a reconciliation report.
pub fn demo(o: DemoOptions) -> Result<()> {
    let (packages, producer) = prepare()?;
    let out = target_dir().join("local").join("demo");
    std::fs::create_dir_all(&out)?;
    let rt = runtime()?;
    rt.block_on(async {
        let env = Environment::load(&root(), "local")?;
        eprintln!("starting the local stack (emulator on a free loopback port, provisioning from environments/local.toml)");
        let started = Instant::now();
        let local = Local::up_with(&root(), env, &packages, &o.stack.runtime()).await?;
        eprintln!(
            "local stack up in {:.1} s at {} ({})",
            started.elapsed().as_secs_f64(),
            local.stack.endpoint,
            authorisation(&local.access)
        );
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
    let (stack, access, producer, args2, sp) = (
        local.stack.clone(),
        local.access.clone(),
        producer.to_path_buf(),
        args.clone(),
        summary_path.clone(),
    );
    let producing =
        tokio::task::spawn_blocking(move || produce(&producer, &stack, &access, &args2, &sp));
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
    // Every unit the stream holds, the copies of retried producer calls included.
    let units = pipeline_ops::reconcile::stream_units(&local.clients, &local.stack).await?;
    let waited = Instant::now();
    loop {
        let p = local.wait_quiescent(units, Duration::from_secs(2)).await?;
        status_line(local).await;
        if (p.accounted() >= units && p.pending_objects == 0 && local.mapping_idle())
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
    let m = local.mapping_stats();
    let mut report = report;
    report.operations = Some(
        pipeline_ops::reconcile::Operations {
            faults: local.faults.as_ref().map(|f| f.stats()),
            producer_records_retried: summary["records_retried"].as_u64().unwrap_or(0),
            producer_records_possibly_twice: summary["records_possibly_duplicated"]
                .as_u64()
                .unwrap_or(0),
            ..Default::default()
        }
        .with_mapping(&m),
    );
    crate::backfill::write_report(&report, out)?;
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
    if let Some(proxy) = &local.faults {
        let stats = proxy.stats();
        println!(
            "{:<28} {} of {} calls faulted",
            "faults injected",
            stats.injected(),
            stats.requests
        );
        for (service, faults) in &stats.faults {
            let kinds: Vec<String> = faults
                .iter()
                .map(|(f, n)| format!("{} {n}", f.as_str()))
                .collect();
            println!("{:<28} {}", format!("  {service}"), kinds.join(", "));
        }
    }
    println!("{:<28} {}", "report", out.join("report.html").display());
    crate::backfill::verdict(&report)
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

/// What `local up` leaves for the other commands: its process, the stack and how to reach it.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    pid: u32,
    stack: Stack,
    access: Access,
}

/// `enforcing dev's policies`, or `authorisation off`.
fn authorisation(access: &Access) -> String {
    match access.policies {
        Some(p) => format!("authorisation enforced with {}'s policies", p.as_str()),
        None => "authorisation off".to_owned(),
    }
}

/// `local up`: the stack in the foreground with a status line until Ctrl-C, or detached.
pub fn up(detach: bool, options: &StackOptions) -> Result<()> {
    if detach {
        let log = target_dir().join("local").join("up.log");
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
        let _ = std::fs::remove_file(state_file());
        let exe = std::env::current_exe()?;
        let child = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(exe);
            cmd.args(["local", "up"]);
            match options.policies {
                Some(p) => cmd.args(["--policies", p.as_str()]),
                None => cmd.arg("--no-authz"),
            };
            if let Some(rate) = options.faults {
                cmd.args(["--faults", &rate.to_string()]);
            }
            cmd.stdin(std::process::Stdio::null())
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
        let local = Local::up_with(
            &root(),
            Environment::load(&root(), "local")?,
            &packages,
            &options.runtime(),
        )
        .await?;
        let state = State {
            pid: std::process::id(),
            stack: local.stack.clone(),
            access: local.access.clone(),
        };
        std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
        println!(
            "local stack up: endpoint {}, stream {}, {}",
            local.stack.endpoint,
            local.stack.stream,
            authorisation(&local.access)
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

fn current() -> Result<State> {
    let text = std::fs::read_to_string(state_file())
        .context("no local stack is running: start one with `cargo xtask local up --detach`")?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} does not describe a local stack", state_file().display()))
}

/// The running local stack and clients acting as principal `id` of it (the operator, for the
/// tools).
pub async fn attach(id: &str) -> Result<(Stack, Clients)> {
    let state = current()?;
    let admin = local_stack::admin_clients(
        &state.stack.endpoint,
        state.access.ca_certificate.as_deref(),
    )
    .await?;
    Ok((
        state.stack,
        runtime::act_as(&admin, &state.access, id).await,
    ))
}

/// [`attach`], and how the running local stack authorises (for running the producer as its role).
pub async fn attach_with_access(id: &str) -> Result<(Stack, Clients, Access)> {
    let state = current()?;
    let admin = local_stack::admin_clients(
        &state.stack.endpoint,
        state.access.ca_certificate.as_deref(),
    )
    .await?;
    let clients = runtime::act_as(&admin, &state.access, id).await;
    Ok((state.stack, clients, state.access))
}

pub fn status() -> Result<()> {
    let pid = current()?.pid;
    runtime()?.block_on(async {
        let (stack, clients) = attach(principal::OPERATOR).await?;
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
    let pid = current()?.pid;
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
    let state = current()?;
    build_producer()?;
    let summary = target_dir().join("local").join("produce-summary.json");
    produce(
        &target_dir().join("local").join("producer"),
        &state.stack,
        &state.access,
        extra,
        &summary,
    )?;
    Ok(())
}

/// `smoke --env local`: canary events must reach processed, and both DLQs stay empty.
pub fn smoke_local() -> Result<()> {
    runtime()?.block_on(async {
        let (stack, clients) = attach(principal::OPERATOR).await?;
        smoke(&clients, &stack).await
    })
}

/// Five canaries straight to the stream; every one must be a processed row within 60 s, and the
/// dead-letter queues must stay empty.
pub async fn smoke(clients: &Clients, stack: &Stack) -> Result<()> {
    let passed = pipeline_ops::smoke::smoke(clients, stack, 5, Duration::from_secs(60)).await?;
    println!(
        "smoke: PASS ({} canaries processed, DLQs empty)",
        passed.canaries
    );
    Ok(())
}

/// `dlq redrive --env local`.
pub fn redrive(dry_run: bool) -> Result<()> {
    let env = Environment::load(&root(), "local")?;
    runtime()?.block_on(async {
        let (stack, clients) = attach(principal::OPERATOR).await?;
        let settings = pipeline_ops::esm::Settings::from(&env.event_source_mapping);
        let s = pipeline_ops::redrive::stream_dlq(&clients, &stack, settings, dry_run).await?;
        let t = pipeline_ops::redrive::transform_dlq(&clients, &stack, dry_run).await?;
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
