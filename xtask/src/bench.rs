//! `cargo xtask bench`: the performance numbers, printed.
//! - the core's throughput (criterion, `services/pipeline-core/benches/core.rs`);
//! - the stream processor handler's peak heap on a 6 MB batch;
//! - each function binary's size and its time from process start to the first Runtime API request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::{Arch, build};
use crate::util::{cargo, run};

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
        "bench",
        "--locked",
        "-p",
        "stream-processor",
        "--bench",
        "peak_memory",
    ]))?;
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
    Ok(())
}

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
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RAW_BUCKET", "raw")
        .env("PROCESSED_BUCKET", "processed")
        .env("METADATA_TABLE", "table")
        .env("HMAC_SECRET_ID", "secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    listener.set_nonblocking(false)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "{} made no Runtime API request within 10 s",
                bin.display()
            ));
        }
        let (mut stream, _) = listener.accept()?;
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
    if let Ok(Some(status)) = child.try_wait()
        && result.is_err()
        && !status.success()
    {
        bail!(
            "{} exited with {status} before asking for work",
            bin.display()
        );
    }
    result
}
