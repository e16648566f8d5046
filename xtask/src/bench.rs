//! `cargo xtask bench`: the performance numbers, printed.
//! - the core's throughput (criterion, `services/pipeline-core/benches/core.rs`);
//! - the stream processor handler's peak heap and time, in process, on a sample batch;
//! - `pipeline ingest` on the same batch as a whole process, and a plain Python peer of the core
//!   (`tools/bench/python_peer.py`, standard library only) on it;
//! - each function binary's size and its time from process start to the first Runtime API request;
//! - a summary: each figure beside its target, and the core's ratio to its gzip floor.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::{Arch, build};
use crate::util::{cargo, output, run, target_dir};

/// The sample batch: `pipeline sample` of this many events (every tenth record a KPL aggregate of
/// five), 2% invalid, seed 1: about 6.2 MB of Lambda payload in 5,000 Kinesis records.
const SAMPLE_EVENTS: usize = 7000;

pub fn bench(quick: bool) -> Result<()> {
    let mut core = cargo();
    core.args([
        "bench",
        "--locked",
        "-p",
        "pipeline-core",
        "--bench",
        "core",
        "--",
    ]);
    if quick {
        core.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    run(&mut core)?;

    run(cargo().args([
        "build",
        "--locked",
        "--profile",
        "local",
        "-p",
        "pipeline-cli",
    ]))?;
    let pipeline = target_dir().join("local").join("pipeline");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let batch = dir.join("kinesis-event.json");
    run(Command::new(&pipeline)
        .args(["sample", "--count", &SAMPLE_EVENTS.to_string()])
        .args(["--invalid-ratio", "0.02", "--seed", "1", "--out"])
        .arg(&batch))?;

    // The handler in process, on the sample batch and on its own generated batch.
    let mut in_process = cargo();
    in_process.args([
        "bench",
        "--locked",
        "-p",
        "stream-processor",
        "--bench",
        "peak_memory",
        "--",
    ]);
    let handler_report = output(in_process.arg(&batch))?;
    println!(
        "\nstream processor handler on the sample batch ({}):",
        batch.display()
    );
    print!("{handler_report}");
    let handler_ms = handler_report
        .lines()
        .find_map(|l| l.strip_prefix("handler time"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|ms| ms.parse::<f64>().ok())
        .context("the peak-memory bench printed no handler time")?;
    println!("\nstream processor handler on a generated 6 MB batch of compact JSON:");
    run(cargo().args([
        "bench",
        "--locked",
        "-p",
        "stream-processor",
        "--bench",
        "peak_memory",
    ]))?;

    // The offline command as a whole process: start-up, reading, the core, writing the objects.
    let out = dir.join("ingest-out");
    let runs = if quick { 7 } else { 21 };
    let mut times = Vec::new();
    for _ in 0..runs {
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        let started = Instant::now();
        let status = Command::new(&pipeline)
            .args(["ingest", "--kinesis-event"])
            .arg(&batch)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pipeline ingest")?;
        times.push(started.elapsed());
        if !status.success() {
            bail!("pipeline ingest failed with {status}");
        }
    }
    times.sort();
    let process_ms = ms(times[times.len() / 2]);
    println!(
        "\npipeline ingest, whole process on the sample batch: median {process_ms:.1} ms, best {:.1} ms ({runs} runs)",
        ms(times[0])
    );

    let peer = python_peer(&batch, if quick { 3 } else { 10 });
    match &peer {
        Ok(ms) => println!("python peer of the core (no IO) on the sample batch: best {ms:.1} ms"),
        Err(e) => println!("python peer of the core: not run ({e:#})"),
    }

    let bins = build(Arch::host(), Some("local"))?;
    println!(
        "\nfunction binaries (host, `local` profile; AWS builds are arm64 with fat LTO and smaller):"
    );
    for (function, bin) in &bins {
        let size = std::fs::metadata(bin)?.len();
        let starts: Vec<Duration> = (0..5)
            .map(|_| time_to_first_request(bin))
            .collect::<Result<_>>()?;
        let best = starts.iter().min().copied().unwrap_or_default();
        let median = {
            let mut s = starts.clone();
            s.sort();
            s[s.len() / 2]
        };
        println!(
            "  {function:<17} {:>6.1} MB   start → first Runtime API request: median {:.1} ms, best {:.1} ms",
            size as f64 / 1e6,
            median.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3
        );
    }

    let ingest_ms = criterion_ms("stream_processor_core", "ingest_6mb_batch")?;
    let gzip_ms = criterion_ms("stream_processor_core", "gzip_raw_object_only")?;
    let parquet_ms = criterion_ms("transformer_core", "transform_to_parquet")?;
    let parquet_rows = transformer_rows()?;
    let rate = parquet_rows as f64 / (parquet_ms / 1e3);
    println!("\nsummary (medians; one core; this machine, which other work may share):");
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!(
        "  stream-processor core, 6 MB batch   {ingest_ms:>7.1} ms = {:.2}× its gzip floor ({gzip_ms:.1} ms)   target ≤ 1.30×   {}",
        ingest_ms / gzip_ms,
        verdict(ingest_ms / gzip_ms <= 1.3)
    );
    println!(
        "  transformer core to Parquet         {:>7.0} records/s ({parquet_rows} rows in {parquet_ms:.1} ms)   target ≥ 300,000   {}",
        rate,
        verdict(rate >= 300_000.0)
    );
    println!(
        "  pipeline ingest, whole process      {process_ms:>7.1} ms = {:.2}× the handler in process ({handler_ms:.1} ms)   target ≤ 1.50×   {}",
        process_ms / handler_ms,
        verdict(process_ms / handler_ms <= 1.5)
    );
    if let Ok(peer_ms) = peer {
        println!(
            "  pipeline ingest vs the Python peer  {:>7.1}× faster (peer {peer_ms:.1} ms, core only)   target ≥ 10×   {}",
            peer_ms / process_ms,
            verdict(peer_ms / process_ms >= 10.0)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A criterion benchmark's median, in milliseconds, from its last run.
fn criterion_ms(group: &str, bench: &str) -> Result<f64> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["median"]["point_estimate"]
        .as_f64()
        .map(|ns| ns / 1e6)
        .with_context(|| format!("{} has no median", path.display()))
}

/// The rows per iteration of the transformer benchmarks (their criterion throughput).
fn transformer_rows() -> Result<u64> {
    let path = target_dir()
        .join("criterion")
        .join("transformer_core")
        .join("transform_to_parquet")
        .join("new")
        .join("benchmark.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["throughput"]["Elements"]
        .as_u64()
        .with_context(|| format!("{} has no element throughput", path.display()))
}

/// The Python peer's best time on the batch, in milliseconds.
fn python_peer(batch: &Path, runs: usize) -> Result<f64> {
    let script = crate::util::root()
        .join("tools")
        .join("bench")
        .join("python_peer.py");
    let text = output(
        Command::new("python3")
            .arg(&script)
            .arg(batch)
            .args(["--runs", &runs.to_string()]),
    )?;
    let v: serde_json::Value = serde_json::from_str(text.trim())?;
    v["best_ms"]
        .as_f64()
        .context("the python peer printed no time")
}

/// What Lambda and the deployment set for the functions (the Runtime API and the endpoint are
/// added per run): every setting any of them requires, as a test checks.
const FUNCTION_ENV: &[(&str, &str)] = &[
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
    ("RAW_BUCKET", "raw"),
    ("PROCESSED_BUCKET", "processed"),
    ("METADATA_TABLE", "table"),
    ("HMAC_SECRET_ID", "secret"),
    ("TRANSFORMER_FUNCTION", "transformer"),
    ("TRANSFORM_VERSION", "bench"),
];

/// Starts the binary as Lambda would, against a loopback stand-in for the Runtime API (and for
/// the AWS endpoint, which answers the transformer's secret lookup), and times the first request
/// to `/runtime/invocation/next`.
fn time_to_first_request(bin: &Path) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_ENDPOINT_URL", format!("http://{addr}"))
        .envs(FUNCTION_ENV.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    // Polled, so that a binary that exits (a missing setting) is reported, not waited for.
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "{} made no Runtime API request within 10 s",
                bin.display()
            ));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "{} exited with {status} before asking for work",
                bin.display()
            ));
        }
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(e) => break Err(e.into()),
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        if request_line.contains("/runtime/invocation/next") {
            break Ok(started.elapsed());
        }
        // Anything else is the SDK asking for the secret.
        let reply = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:000000000000:secret:s","Name":"secret","SecretString":"bench-key"}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        )?;
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function binary that exits before asking for work (a missing setting) is reported as
    /// such, not waited for.
    #[test]
    fn a_binary_that_exits_at_start_is_reported_not_waited_for() {
        let started = Instant::now();
        let err = time_to_first_request(Path::new("/bin/false")).unwrap_err();
        assert!(err.to_string().contains("exited with"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The start-up figures are of functions that start: each one's settings are all given.
    #[test]
    fn the_start_up_settings_are_every_setting_the_functions_require() {
        let get = |k: &str| {
            FUNCTION_ENV
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        stream_processor::Settings::from_env(get).unwrap();
        transformer::Settings::from_env(get).unwrap();
        auditor::Settings::from_env(get).unwrap();
        assert!(get("METADATA_TABLE").is_some(), "the auditor reads it too");
    }
}
