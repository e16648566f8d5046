//! `pipeline`: the core on files, without AWS. What the stream processor would write for a Kinesis
//! event, what the transformer would write for a raw object, and a reader for the outputs.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use lambda_payloads::kinesis;
use pipeline_core::ingest::ingest;
use pipeline_core::parquet_io::read_rows;
use pipeline_core::transform::{self, Pseudonymizer};
use serde_json::json;

/// mimalloc, as in every binary of the pipeline (ARCHITECTURE.md, "Allocation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Run the pipeline's core on files, without AWS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the raw and quarantine objects the stream processor would write for a Kinesis event.
    Ingest {
        /// A Kinesis event as Lambda delivers it (JSON).
        #[arg(long)]
        kinesis_event: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the Parquet objects the transformer would write for a raw object.
    Transform {
        /// A raw object (`.jsonl.gz`); its key is taken from its path below `raw/`, or from --key.
        #[arg(long)]
        raw: PathBuf,
        /// The object's key, when the file is not stored under its key.
        #[arg(long)]
        key: Option<String>,
        /// File holding the PII HMAC key (default: a fixed development key; never use it in production).
        #[arg(long)]
        hmac_key_file: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the rows of Parquet files as JSON lines.
    Cat { files: Vec<PathBuf> },
    /// Write a sample Kinesis event of synthetic events (some invalid, some KPL-aggregated).
    Sample {
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 0.05)]
        invalid_ratio: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a kinesis event: {source}")]
    Event {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "cannot tell the raw object's key from {0}: pass --key raw/dt=.../hour=../shard=.../<seq>.jsonl.gz"
    )]
    NoKey(String),
    #[error(transparent)]
    Transform(#[from] transform::TransformError),
    /// Standard output was closed (e.g. piped into `head`): not an error.
    #[error("standard output closed")]
    Closed,
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write(out: &Path, key: &str, body: &[u8]) -> Result<PathBuf, Error> {
    let path = out.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(&path, body).map_err(io(&path))?;
    Ok(path)
}

/// Prints one line; a closed pipe ends the command quietly instead of panicking.
fn print_line(line: impl std::fmt::Display) -> Result<(), Error> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}").map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Error::Closed
        } else {
            Error::Io {
                path: "stdout".into(),
                source: e,
            }
        }
    })
}

const DEV_KEY: &[u8] = b"development-only-hmac-key";

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) | Err(Error::Closed) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Ingest { kinesis_event, out } => {
            // The handler's own path: the event read in one pass, straight from the file's bytes.
            let bytes = std::fs::read(&kinesis_event).map_err(io(&kinesis_event))?;
            let batch: lambda_payloads::KinesisBatch =
                serde_json::from_slice(&bytes).map_err(|source| Error::Event {
                    path: kinesis_event.display().to_string(),
                    source,
                })?;
            drop(bytes);
            for shard in ingest(&batch.records()) {
                let raw = write(&out, &shard.raw.key, &shard.raw.body)?;
                print_line(
                    json!({"object": raw, "lines": shard.raw.lines, "bytes": shard.raw.body.len(), "sha256": shard.raw.sha256}),
                )?;
                if let Some(q) = &shard.quarantine {
                    let path = write(&out, &q.key, &q.body)?;
                    print_line(
                        json!({"object": path, "lines": q.lines, "quarantined": shard.quarantined}),
                    )?;
                }
                eprintln!(
                    "shard {}: {} kinesis records, {} units: {} valid, {} quarantined",
                    shard.shard_id,
                    shard.kinesis_records,
                    shard.units,
                    shard.valid,
                    shard.quarantined_total()
                );
            }
        }
        Command::Transform {
            raw,
            key,
            hmac_key_file,
            out,
        } => {
            let key = match key {
                Some(k) => k,
                None => {
                    let text = raw.to_string_lossy();
                    text.find("raw/")
                        .map(|i| text[i..].to_owned())
                        .ok_or_else(|| Error::NoKey(text.to_string()))?
                }
            };
            let body = std::fs::read(&raw).map_err(io(&raw))?;
            let hmac = match &hmac_key_file {
                Some(p) => std::fs::read(p).map_err(io(p))?,
                None => DEV_KEY.to_vec(),
            };
            let pii = Pseudonymizer::new(hmac.trim_ascii())?;
            let output = transform::transform(&key, &body, &pii)?;
            for (k, bytes) in transform::encode(&output)? {
                let path = write(&out, &k, &bytes)?;
                print_line(json!({"object": path, "bytes": bytes.len()}))?;
            }
            eprintln!(
                "{} lines: {} rows, {} duplicates dropped, {} objects",
                output.lines,
                output.rows,
                output.duplicates,
                output.objects.len()
            );
        }
        Command::Cat { files } => {
            for f in files {
                let bytes = std::fs::read(&f).map_err(io(&f))?;
                let rows = read_rows(bytes).map_err(|source| Error::Parquet {
                    path: f.display().to_string(),
                    source,
                })?;
                for r in &rows {
                    print_line(pipeline_core::parquet_io::row_json(r))?;
                }
            }
        }
        Command::Sample {
            count,
            invalid_ratio,
            seed,
            out,
        } => {
            let event = sample(count, invalid_ratio, seed);
            let text = serde_json::to_string_pretty(&event).unwrap_or_default();
            std::fs::write(&out, text).map_err(io(&out))?;
            eprintln!(
                "wrote a kinesis event of {} records to {}",
                event["Records"].as_array().map_or(0, Vec::len),
                out.display()
            );
        }
    }
    Ok(())
}

/// A Kinesis event as Lambda would deliver it: every tenth record is a KPL aggregate of five events.
fn sample(count: usize, invalid_ratio: f64, seed: u64) -> serde_json::Value {
    let now = chrono::Utc::now();
    let mut generator = producer::generate::Generator::new(seed, invalid_ratio, "sample");
    // (partition key, sequence number, data)
    let mut records: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut produced = 0;
    while produced < count {
        let (pk, data) = if records.len() % 10 == 9 && count - produced >= 5 {
            let events: Vec<(String, Vec<u8>)> = (0..5)
                .map(|_| generator.next_event(now))
                .map(|e| (e.partition_key, e.data))
                .collect();
            produced += 5;
            // The sample is one shard's batch: one shard owns every hash key.
            let one_shard = [pipeline_core::kpl::ShardRange {
                shard_id: "shardId-000000000000".into(),
                starting_hash_key: 0,
                ending_hash_key: u128::MAX,
            }];
            let agg = producer::aggregate(events, &one_shard).remove(0);
            (agg.partition_key, agg.data)
        } else {
            produced += 1;
            let e = generator.next_event(now);
            (e.partition_key, e.data)
        };
        // Kinesis sequence numbers are 56-digit decimals that grow along the shard.
        let seq = format!(
            "4959033827149025660855969{:031}",
            records.len() as u128 * 2_564_131_663_402_634_534
        );
        records.push((pk, seq, data));
    }
    let batch: Vec<kinesis::Record<'_>> = records
        .iter()
        .map(|(pk, seq, data)| kinesis::Record {
            partition_key: pk,
            sequence_number: seq,
            data,
            arrival: now,
        })
        .collect();
    kinesis::payload_json(
        &batch,
        &kinesis::Source {
            shard_id: "shardId-000000000000",
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/eventpipe-local-events",
            region: "us-east-1",
            kms: true,
        },
    )
}
