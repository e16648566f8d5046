use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use producer::generate::Generator;
use producer::kinesis::KinesisSink;
use producer::{
    BatchResult, Entry, RECORD_TOO_LARGE, RecordSink, Retry, Summary, TokenBucket, aggregate,
    batches, send_batch, within_record_limit,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Sends JSON events to a Kinesis data stream: synthetic ones or lines of a file.
#[derive(Debug, Parser)]
#[command(name = "producer", version)]
struct Args {
    /// Stream name (or take it from --config).
    #[arg(long, required_unless_present = "config")]
    stream: Option<String>,
    /// An environment file (environments/*.toml): the stream is the environment's stream.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Events per second; 0 sends as fast as the stream accepts.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to send, e.g. 300s, 5m, 1h (instead of --count).
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// How many events to send.
    #[arg(long)]
    count: Option<u64>,
    /// Send the records of this file, or of every file under this directory, instead of
    /// synthetic events: JSON lines, plain or gzip, of events, or of the raw and quarantine lines
    /// the pipeline writes (a backfill; see `pipeline_core::backfill`).
    #[arg(long)]
    from_file: Option<PathBuf>,
    /// Pack events into KPL aggregated records.
    #[arg(long)]
    aggregate: bool,
    /// Share of events sent inside KPL aggregates (0.0-1.0); `--aggregate` means all.
    #[arg(long, default_value_t = 0.0)]
    aggregate_share: f64,
    /// Share of synthetic events that are deliberately invalid (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    invalid_ratio: f64,
    /// Seed of the synthetic generator: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of synthetic event ids (default: the start time).
    #[arg(long)]
    run_id: Option<String>,
    /// PutRecords calls in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Attempts per record before it counts as lost.
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,
    /// Endpoint of an emulator (also AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("bad duration `{0}`: use e.g. 300s, 5m or 1h")]
    Duration(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Backfill {
        path: String,
        source: pipeline_core::backfill::BackfillError,
    },
    #[error(transparent)]
    Config(#[from] pipeline_config::ConfigError),
    #[error("{0} events were permanently lost (see the summary)")]
    Lost(u64),
    #[error("listing the stream's shards (the producer's role needs kinesis:ListShards): {0}")]
    Shards(producer::SinkError),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| Error::Duration(s.to_owned()).to_string())?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(Error::Duration(s.to_owned()).to_string()),
    };
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `path` if it is a file, else every file under it, in name order (hidden files skipped).
fn files_under(path: &std::path::Path) -> Result<Vec<PathBuf>, Error> {
    let io = |p: &std::path::Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    if !std::fs::metadata(path).map_err(io(path))?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type().map_err(io(&p))?.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Where events come from.
enum Source {
    Synthetic(Box<Generator>),
    File(std::vec::IntoIter<(String, Vec<u8>)>),
}

async fn run(args: Args) -> Result<(), Error> {
    let stream = match (&args.stream, &args.config) {
        (Some(s), _) => s.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            pipeline_config::Environment::from_toml(&path.display().to_string(), &text)?
                .names("-")
                .stream
        }
        (None, None) => unreachable!("clap requires one of --stream and --config"),
    };
    let mut source = match &args.from_file {
        Some(path) => {
            let mut lines = Vec::new();
            for file in files_under(path)? {
                let io = |source| Error::Io {
                    path: file.display().to_string(),
                    source,
                };
                let body = std::fs::read(&file).map_err(io)?;
                let records = pipeline_core::backfill::resend_records(&body).map_err(|source| {
                    Error::Backfill {
                        path: file.display().to_string(),
                        source,
                    }
                })?;
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                for r in records {
                    let key = r.partition_key.unwrap_or_else(|| {
                        format!("{}-line-{}", name.as_deref().unwrap_or("file"), r.line)
                    });
                    lines.push((key, r.data));
                }
            }
            Source::File(lines.into_iter())
        }
        None => {
            let run_id = args
                .run_id
                .clone()
                .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string());
            Source::Synthetic(Box::new(Generator::new(
                args.seed,
                args.invalid_ratio,
                run_id,
            )))
        }
    };
    let limit = match (&source, args.count, args.duration) {
        (_, Some(n), _) => Some(n),
        (Source::File(lines), None, None) => Some(lines.len() as u64),
        (_, None, Some(_)) => None,
        (Source::Synthetic(_), None, None) => Some(1000),
    };

    // The functions' configuration: the standard chain, and a bounded attempt (a PutRecords
    // that never answers is retried, not waited on).
    let config = pipeline_aws::load_config(args.endpoint_url.as_deref()).await;
    let sink = Arc::new(KinesisSink::new(&config, &stream));
    // Aggregates hold only records bound for one shard: the hash-key ranges, refreshed once a
    // minute so that a reshard during a long run is followed.
    let mut shards = sink.shards().await.map_err(Error::Shards)?;
    let mut shards_read = Instant::now();
    let retry = Retry {
        max_attempts: args.max_attempts,
        ..Retry::default()
    };
    let semaphore = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    // The events of each send task, so that a task that dies loses exactly its events.
    let mut in_flight: HashMap<tokio::task::Id, u64> = HashMap::new();
    let mut bucket = TokenBucket::new(args.rate.max(1.0), (args.rate / 10.0).max(100.0));
    let mut summary = Summary::default();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let progress = !args.quiet && std::io::stderr().is_terminal();
    // Small chunks keep the pacing smooth: about 20 per second at the target rate.
    let chunk = if args.rate > 0.0 {
        ((args.rate / 20.0) as usize).clamp(1, 500)
    } else {
        500
    };

    loop {
        let remaining = limit.map_or(u64::MAX, |l| l.saturating_sub(summary.events_generated));
        if remaining == 0 || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let now = chrono::Utc::now();
        let mut events = Vec::new();
        for _ in 0..remaining.min(chunk as u64) {
            match &mut source {
                Source::Synthetic(g) => {
                    let e = g.next_event(now);
                    if e.valid {
                        summary.events_valid += 1
                    } else {
                        summary.events_invalid += 1
                    }
                    summary
                        .first_event_id
                        .get_or_insert_with(|| e.event_id.clone());
                    summary.last_event_id = Some(e.event_id.clone());
                    events.push((e.partition_key, e.data));
                }
                Source::File(lines) => match lines.next() {
                    Some(l) => events.push(l),
                    None => break,
                },
            }
        }
        if events.is_empty() {
            break;
        }
        summary.events_generated += events.len() as u64;
        let n = events.len() as f64;
        let share = if args.aggregate {
            1.0
        } else {
            args.aggregate_share.clamp(0.0, 1.0)
        };
        let plain = events.split_off((events.len() as f64 * share).round() as usize);
        if shards_read.elapsed() >= Duration::from_secs(60) {
            shards = sink.shards().await.map_err(Error::Shards)?;
            shards_read = Instant::now();
        }
        let mut entries: Vec<Entry> = if events.is_empty() {
            Vec::new()
        } else {
            aggregate(events, &shards)
        };
        entries.extend(
            plain
                .into_iter()
                .map(|(partition_key, data)| Entry::plain(partition_key, data)),
        );
        let (entries, refused) = within_record_limit(entries);
        summary.lose(RECORD_TOO_LARGE, refused);
        if args.rate > 0.0 {
            let wait = bucket.take(n, started.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        for batch in batches(entries) {
            let permit = semaphore
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let sink = sink.clone();
            let events: u64 = batch.iter().map(|e| e.events).sum();
            let task = tasks.spawn(async move {
                let r = send_batch(sink.as_ref(), batch, retry).await;
                drop(permit);
                r
            });
            in_flight.insert(task.id(), events);
        }
        while let Some(done) = tasks.try_join_next_with_id() {
            collect(done, &mut in_flight, &mut summary, &mut latencies);
        }
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            print_progress(&summary, limit, args.duration, started.elapsed());
        }
    }
    while let Some(done) = tasks.join_next_with_id().await {
        collect(done, &mut in_flight, &mut summary, &mut latencies);
    }
    summary.finish(started.elapsed(), latencies);
    if progress {
        eprintln!();
    }
    print_summary(&stream, &summary);
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        std::fs::write(path, text).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    if summary.events_failed > 0 {
        Err(Error::Lost(summary.events_failed))
    } else {
        Ok(())
    }
}

fn collect(
    done: Result<(tokio::task::Id, BatchResult), tokio::task::JoinError>,
    in_flight: &mut HashMap<tokio::task::Id, u64>,
    summary: &mut Summary,
    latencies: &mut Vec<Duration>,
) {
    match done {
        Ok((id, r)) => {
            in_flight.remove(&id);
            latencies.extend(r.latencies.iter().copied());
            summary.add(&r);
        }
        // A send task that died loses its batch: every event of it, counted, never hidden.
        Err(e) => {
            let events = in_flight.remove(&e.id()).unwrap_or(0);
            summary.lose(&format!("send task failed: {e}"), events);
        }
    }
}

fn print_progress(s: &Summary, limit: Option<u64>, duration: Option<Duration>, elapsed: Duration) {
    let fraction = match (limit, duration) {
        (Some(l), _) if l > 0 => s.events_sent as f64 / l as f64,
        (_, Some(d)) => elapsed.as_secs_f64() / d.as_secs_f64(),
        _ => 0.0,
    }
    .clamp(0.0, 1.0);
    let width = 30;
    let filled = (fraction * width as f64) as usize;
    let rate = s.events_sent as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:>3.0}%  sent {}  failed {}  {:.0} events/s ",
        "=".repeat(filled),
        " ".repeat(width - filled),
        fraction * 100.0,
        s.events_sent,
        s.events_failed,
        rate
    );
    let _ = err.flush();
}

fn print_summary(stream: &str, s: &Summary) {
    println!("stream            {stream}");
    println!(
        "events generated  {} ({} valid, {} invalid by design)",
        s.events_generated, s.events_valid, s.events_invalid
    );
    println!(
        "events sent       {} in {} Kinesis records",
        s.events_sent, s.records_sent
    );
    println!("events lost       {}", s.events_failed);
    for (reason, n) in &s.failures {
        println!("  {reason}: {n}");
    }
    println!("records retried   {}", s.records_retried);
    if s.records_possibly_duplicated > 0 {
        println!(
            "possibly twice    {} records, retried after a call that may have taken effect (removed downstream by event_id)",
            s.records_possibly_duplicated
        );
    }
    println!(
        "throughput        {:.0} events/s over {:.1} s",
        s.events_per_second, s.elapsed_seconds
    );
    println!(
        "PutRecords        {} calls, p50 {:.1} ms, p99 {:.1} ms",
        s.put_records_calls, s.put_records_p50_ms, s.put_records_p99_ms
    );
}
