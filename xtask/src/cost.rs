//! `cargo xtask cost --env <env> --rate <events/s>`: a monthly cost estimate of one environment
//! at a steady event rate, from its environment file. A pure model with its assumptions printed
//! beside the numbers; the batch size drives most request counts, so the estimate is also shown
//! at other batch sizes.

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use pipeline_config::{Environment, StreamMode};

use crate::util::root;

/// us-east-1 list prices in USD at the time of writing (arm64 Lambda, S3 Standard, DynamoDB
/// on-demand, standard-resolution alarms). Prices change and differ per region (the environment
/// files use eu-west-1, a few percent dearer): check them on the AWS pricing pages before relying
/// on an estimate.
pub mod price {
    pub const KINESIS_SHARD_HOUR: f64 = 0.015;
    /// Per million 25 KB PUT payload units (provisioned mode).
    pub const KINESIS_PUT_UNITS_PER_MILLION: f64 = 0.014;
    /// Per shard-hour, retention beyond 24 hours up to 7 days (provisioned mode).
    pub const KINESIS_EXTENDED_RETENTION_SHARD_HOUR: f64 = 0.02;
    pub const KINESIS_ON_DEMAND_STREAM_HOUR: f64 = 0.04;
    pub const KINESIS_ON_DEMAND_GB_IN: f64 = 0.08;
    pub const KINESIS_ON_DEMAND_GB_OUT: f64 = 0.04;
    pub const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;
    pub const LAMBDA_ARM64_GB_SECOND: f64 = 0.000_013_333_4;
    pub const S3_PUT_PER_THOUSAND: f64 = 0.005;
    pub const S3_GET_PER_THOUSAND: f64 = 0.000_4;
    pub const S3_STANDARD_GB_MONTH: f64 = 0.023;
    pub const DYNAMODB_WRITES_PER_MILLION: f64 = 0.625;
    pub const DYNAMODB_READS_PER_MILLION: f64 = 0.125;
    pub const DYNAMODB_GB_MONTH: f64 = 0.25;
    pub const LOGS_INGESTED_GB: f64 = 0.50;
    /// Per metric an alarm evaluates, per month.
    pub const ALARM_METRIC_MONTH: f64 = 0.10;
    pub const CUSTOM_METRIC_MONTH: f64 = 0.30;
    pub const DASHBOARD_MONTH: f64 = 3.00;
    pub const KMS_KEY_MONTH: f64 = 1.00;
    pub const SECRET_MONTH: f64 = 0.40;
    /// Per interface VPC endpoint, per availability zone, per hour (gateway endpoints are free).
    pub const VPC_INTERFACE_ENDPOINT_ZONE_HOUR: f64 = 0.01;
    /// CloudTrail data events delivered by a trail, per 100,000.
    pub const CLOUDTRAIL_DATA_EVENTS_PER_100K: f64 = 0.10;
}

/// The VPC endpoints and the zone count, read from the Pulumi program that creates them
/// (`VPC_ENDPOINTS` and `MAX_ZONES` in `pulumi/src/components/network.ts`): one table for both.
pub mod vpc {
    use anyhow::{Context as _, Result, bail};

    pub const SOURCE: &str = "pulumi/src/components/network.ts";
    const PROGRAM: &str = include_str!("../../pulumi/src/components/network.ts");

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Endpoint {
        pub service: String,
        pub interface: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Network {
        pub endpoints: Vec<Endpoint>,
        pub zones: u32,
    }

    impl Network {
        /// The endpoints and zones of the committed program.
        pub fn of_program() -> Result<Network> {
            parse(PROGRAM).with_context(|| format!("reading the vpc endpoints of {SOURCE}"))
        }

        pub fn services(&self, interface: bool) -> Vec<&str> {
            self.endpoints
                .iter()
                .filter(|e| e.interface == interface)
                .map(|e| e.service.as_str())
                .collect()
        }
    }

    fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let pattern = format!("{key}: \"");
        let start = line.find(&pattern)? + pattern.len();
        let len = line[start..].find('"')?;
        Some(&line[start..start + len])
    }

    /// `VPC_ENDPOINTS` (one `{ service: "…", type: "Gateway" | "Interface", … }` per line) and
    /// `MAX_ZONES` from the program's source.
    pub fn parse(source: &str) -> Result<Network> {
        let table = source
            .split_once("export const VPC_ENDPOINTS")
            .and_then(|(_, rest)| rest.split_once("= ["))
            .and_then(|(_, rest)| rest.split_once("\n];"))
            .map(|(table, _)| table)
            .context("no `export const VPC_ENDPOINTS … = [ … ];` table")?;
        let mut endpoints = Vec::new();
        for line in table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
        {
            let (Some(service), Some(kind)) = (quoted(line, "service"), quoted(line, "type"))
            else {
                bail!(
                    "`{line}` is not one `{{ service: \"…\", type: \"…\", … }}` entry on one line"
                );
            };
            let interface = match kind {
                "Interface" => true,
                "Gateway" => false,
                other => {
                    bail!("endpoint `{service}` has type `{other}`, not `Gateway` or `Interface`")
                }
            };
            if endpoints.iter().any(|e: &Endpoint| e.service == service) {
                bail!("endpoint `{service}` is listed twice");
            }
            endpoints.push(Endpoint {
                service: service.to_owned(),
                interface,
            });
        }
        if endpoints.is_empty() {
            bail!("the `VPC_ENDPOINTS` table is empty");
        }
        let zones = source
            .split_once("export const MAX_ZONES = ")
            .and_then(|(_, rest)| rest.split_once(';'))
            .and_then(|(n, _)| n.trim().parse::<u32>().ok())
            .context("no `export const MAX_ZONES = <number>;`")?;
        Ok(Network { endpoints, zones })
    }
}

/// The model's assumptions (each is printed with the estimate).
pub mod assume {
    pub const HOURS_PER_MONTH: f64 = 730.0;
    pub const KINESIS_PUT_UNIT_BYTES: f64 = 25.0 * 1024.0;
    /// On-demand ingest rounds every record up to a whole KB.
    pub const ON_DEMAND_RECORD_ROUNDING_BYTES: f64 = 1024.0;
    /// An on-demand stream starts with 4 MB/s (4 shards) of write capacity.
    pub const ON_DEMAND_MIN_SHARDS: f64 = 4.0;
    /// Lambda's 6 MB invocation payload: records are base64 (4/3) plus ~350 bytes of envelope.
    pub const LAMBDA_PAYLOAD_BYTES: f64 = 6.0 * 1024.0 * 1024.0;
    pub const RECORD_ENVELOPE_BYTES: f64 = 350.0;
    /// Fixed part of a stream-processor invocation: one S3 PUT and one DynamoDB write.
    pub const SP_FIXED_MS: f64 = 40.0;
    /// Fixed part of a transformer invocation: GET, lease, ~4 Parquet PUTs, mark.
    pub const TRANSFORMER_FIXED_MS: f64 = 100.0;
    /// Per-record time when no duration is measured.
    pub const PER_RECORD_MS: f64 = 0.05;
    /// Processed objects (event_type × hour partitions) per raw object.
    pub const PARTITIONS_PER_RAW_OBJECT: f64 = 4.0;
    /// One auditor run: 16 queries, a few listings and item reads.
    pub const AUDITOR_MS: f64 = 500.0;
    pub const COMPRESSION_RATIO: f64 = 5.0;
    /// Stream processor 1 (raw item) + transformer 3 (lease, ledger entry, mark); a raw object
    /// whose records arrived in one minute.
    pub const DYNAMODB_WRITES_PER_RAW_OBJECT: f64 = 4.0;
    /// Transformer: the item twice, the ledger item twice (owners, then the objects inside it).
    pub const DYNAMODB_READS_PER_RAW_OBJECT: f64 = 4.0;
    pub const METADATA_ITEM_BYTES: f64 = 1024.0;
    pub const LOG_BYTES_PER_INVOCATION: f64 = 1024.0;
    /// 7 alarms, the two error-rate alarms evaluating two metrics each, and the auditor's two
    /// (stuck objects, errors).
    pub const ALARM_METRICS: f64 = 11.0;
    /// EMF metric names × the `Function` dimension (about 19 + 10 with the usual quarantine
    /// reasons, and the auditor's 9).
    pub const CUSTOM_METRICS: f64 = 38.0;
}

const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What the estimate is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Events per second, steady.
    pub rate: f64,
    pub event_bytes: f64,
    /// Measured average stream-processor duration at full batches of the file's batch size.
    pub duration_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub service: &'static str,
    pub item: String,
    pub usd: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub batch_size: u32,
    pub shards: f64,
    /// Concurrent batches across the stream: shards × parallelization factor.
    pub pollers: f64,
    /// Stream-processor invocations per second (= raw objects = transformer invocations).
    pub invocations_per_second: f64,
    pub records_per_invocation: f64,
    pub sp_duration_ms: f64,
    pub transformer_duration_ms: f64,
    pub lines: Vec<Line>,
    pub notes: Vec<String>,
}

impl Estimate {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    pub fn service(&self, service: &str) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.service == service)
            .map(|l| l.usd)
            .sum()
    }

    /// The cost of the lines whose item starts with `prefix`.
    #[cfg(test)]
    pub fn item(&self, service: &str, prefix: &str) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.service == service && l.item.starts_with(prefix))
            .map(|l| l.usd)
            .sum()
    }
}

/// The estimate for one environment at one batch size.
pub fn estimate(env: &Environment, inputs: &Inputs, batch_size: u32) -> Estimate {
    use assume::*;
    let (rate, bytes) = (inputs.rate, inputs.event_bytes);
    let seconds = HOURS_PER_MONTH * 3600.0;
    let events = rate * seconds;
    let ingress_mb_s = rate * bytes / (1024.0 * 1024.0);
    let needed_shards = ingress_mb_s.max(rate / 1000.0).ceil().max(1.0);
    let mut notes = Vec::new();
    let shards = match env.stream.mode {
        StreamMode::Provisioned => {
            let shards = f64::from(env.stream.shards.unwrap_or(1));
            if needed_shards > shards {
                notes.push(format!(
                    "{rate} events/s of {bytes} bytes needs at least {needed_shards} shards (1 MB/s and 1000 records/s each); the {shards} provisioned would throttle the producer"
                ));
            }
            shards
        }
        StreamMode::OnDemand => needed_shards.max(ON_DEMAND_MIN_SHARDS),
    };
    let m = &env.event_source_mapping;
    let pollers = shards * f64::from(m.parallelization_factor);
    let window_s = f64::from(m.maximum_batching_window_seconds.max(1));
    let payload_cap = (LAMBDA_PAYLOAD_BYTES / (bytes * 4.0 / 3.0 + RECORD_ENVELOPE_BYTES))
        .floor()
        .max(1.0);
    let batch = f64::from(batch_size).min(payload_cap);
    if batch < f64::from(batch_size) {
        notes.push(format!(
            "batches of {batch_size} records of {bytes} bytes exceed Lambda's 6 MB payload: at most {batch} records per invocation"
        ));
    }
    let per_poller = rate / pollers;
    // Full batches, but at least one invocation per batching window while records flow.
    let batches_per_poller = (per_poller / batch).max(1.0 / window_s).min(per_poller);
    let invocations_s = batches_per_poller * pollers;
    if per_poller > 0.0 && per_poller / batch < 1.0 / window_s {
        notes.push(format!(
            "batches are not full: the {window_s} s batching window, not the batch size, sets the invocation count at this rate; a longer `maximum_batching_window_seconds` lowers the per-request costs"
        ));
    }
    let records_per_invocation = if invocations_s > 0.0 {
        rate / invocations_s
    } else {
        0.0
    };

    let configured = f64::from(env.event_source_mapping.batch_size).min(payload_cap);
    let per_record_ms = match inputs.duration_ms {
        Some(d) => (d - SP_FIXED_MS).max(0.0) / configured,
        None => PER_RECORD_MS,
    };
    let sp_fixed = inputs
        .duration_ms
        .map_or(SP_FIXED_MS, |d| d.min(SP_FIXED_MS));
    let sp_ms = sp_fixed + per_record_ms * records_per_invocation;
    let tr_ms = TRANSFORMER_FIXED_MS + per_record_ms * records_per_invocation;

    let invocations = invocations_s * seconds;
    let raw_objects = invocations;
    let gb_month = events * bytes / GB;
    let mut lines = Vec::new();
    let mut line =
        |service: &'static str, item: String, usd: f64| lines.push(Line { service, item, usd });

    match env.stream.mode {
        StreamMode::Provisioned => {
            line(
                "Kinesis",
                format!("shard-hours ({shards} shards × {HOURS_PER_MONTH} h)"),
                shards * HOURS_PER_MONTH * price::KINESIS_SHARD_HOUR,
            );
            let units = (bytes / KINESIS_PUT_UNIT_BYTES).ceil() * events;
            line(
                "Kinesis",
                format!("PUT payload units ({:.0} M × 25 KB units)", units / 1e6),
                units / 1e6 * price::KINESIS_PUT_UNITS_PER_MILLION,
            );
            if env.stream.retention_hours > 24 {
                line(
                    "Kinesis",
                    format!("extended retention ({} h)", env.stream.retention_hours),
                    shards * HOURS_PER_MONTH * price::KINESIS_EXTENDED_RETENTION_SHARD_HOUR,
                );
            }
            if env.stream.retention_hours > 168 {
                notes.push("long-term Kinesis retention beyond 7 days is not priced".into());
            }
        }
        StreamMode::OnDemand => {
            line(
                "Kinesis",
                format!("on-demand stream-hours ({HOURS_PER_MONTH} h)"),
                HOURS_PER_MONTH * price::KINESIS_ON_DEMAND_STREAM_HOUR,
            );
            let gb_in = events
                * (bytes / ON_DEMAND_RECORD_ROUNDING_BYTES).ceil()
                * ON_DEMAND_RECORD_ROUNDING_BYTES
                / GB;
            line(
                "Kinesis",
                format!("on-demand data in ({gb_in:.1} GB, records rounded up to 1 KB)"),
                gb_in * price::KINESIS_ON_DEMAND_GB_IN,
            );
            line(
                "Kinesis",
                format!("on-demand data out ({gb_month:.1} GB to Lambda)"),
                gb_month * price::KINESIS_ON_DEMAND_GB_OUT,
            );
            if env.stream.retention_hours > 24 {
                notes.push("on-demand retention beyond 24 h is not priced".into());
            }
        }
    }

    for (name, memory_mb, ms) in [
        ("stream-processor", env.stream_processor.memory_mb, sp_ms),
        ("transformer", env.transformer.memory_mb, tr_ms),
    ] {
        line(
            "Lambda",
            format!("{name} requests ({:.1} M)", invocations / 1e6),
            invocations / 1e6 * price::LAMBDA_REQUESTS_PER_MILLION,
        );
        let gb_s = invocations * ms / 1000.0 * f64::from(memory_mb) / 1024.0;
        line(
            "Lambda",
            format!("{name} compute ({gb_s:.0} GB-s: {memory_mb} MB × {ms:.0} ms)"),
            gb_s * price::LAMBDA_ARM64_GB_SECOND,
        );
    }

    // The auditor: one run a period whatever the rate. Each run lists the lookback's `raw/` hours
    // (a LIST per 1,000 keys), queries each pending bucket and reads the item of every object
    // written in its last two periods (so each raw object's item is read twice).
    let runs = HOURS_PER_MONTH * 60.0 / f64::from(env.auditor.period_minutes.max(1));
    line(
        "Lambda",
        format!("auditor requests ({runs:.0} scheduled runs)"),
        runs / 1e6 * price::LAMBDA_REQUESTS_PER_MILLION,
    );
    let auditor_gb_s = runs * AUDITOR_MS / 1000.0 * f64::from(env.auditor.memory_mb) / 1024.0;
    line(
        "Lambda",
        format!(
            "auditor compute ({auditor_gb_s:.0} GB-s: {} MB × {AUDITOR_MS:.0} ms)",
            env.auditor.memory_mb
        ),
        auditor_gb_s * price::LAMBDA_ARM64_GB_SECOND,
    );
    let raw_per_hour = raw_objects / HOURS_PER_MONTH;
    let lists =
        runs * f64::from(env.auditor.lookback_hours) * (raw_per_hour / 1000.0).ceil().max(1.0);
    line(
        "S3",
        format!(
            "auditor LIST requests ({:.2} M: {} h of raw/ a run)",
            lists / 1e6,
            env.auditor.lookback_hours
        ),
        lists / 1000.0 * price::S3_PUT_PER_THOUSAND,
    );
    let audit_reads = 2.0 * raw_objects + runs * pipeline_core::metadata::PENDING_BUCKETS as f64;
    line(
        "DynamoDB",
        format!(
            "auditor reads ({:.1} M: two item reads per raw object, a query per pending bucket a run)",
            audit_reads / 1e6
        ),
        audit_reads / 1e6 * price::DYNAMODB_READS_PER_MILLION,
    );

    let puts = raw_objects * (1.0 + PARTITIONS_PER_RAW_OBJECT);
    line(
        "S3",
        format!(
            "PUT requests ({:.1} M: raw + {PARTITIONS_PER_RAW_OBJECT} processed per raw object; quarantine DELETEs are free)",
            puts / 1e6
        ),
        puts / 1000.0 * price::S3_PUT_PER_THOUSAND,
    );
    line(
        "S3",
        format!(
            "GET requests ({:.1} M: the transformer reads each raw object)",
            raw_objects / 1e6
        ),
        raw_objects / 1000.0 * price::S3_GET_PER_THOUSAND,
    );
    let stored = 2.0 * gb_month / COMPRESSION_RATIO;
    line(
        "S3",
        format!(
            "storage ({stored:.1} GB: one month of raw + processed, ~{COMPRESSION_RATIO}x compressed)"
        ),
        stored * price::S3_STANDARD_GB_MONTH,
    );

    let writes = raw_objects * DYNAMODB_WRITES_PER_RAW_OBJECT;
    line(
        "DynamoDB",
        format!(
            "writes ({:.1} M: {DYNAMODB_WRITES_PER_RAW_OBJECT} per raw object)",
            writes / 1e6
        ),
        writes / 1e6 * price::DYNAMODB_WRITES_PER_MILLION,
    );
    let reads = raw_objects * DYNAMODB_READS_PER_RAW_OBJECT;
    line(
        "DynamoDB",
        format!(
            "reads ({:.1} M: {DYNAMODB_READS_PER_RAW_OBJECT} per raw object)",
            reads / 1e6
        ),
        reads / 1e6 * price::DYNAMODB_READS_PER_MILLION,
    );
    let items_gb =
        invocations_s * 86_400.0 * f64::from(env.storage.metadata_ttl_days) * METADATA_ITEM_BYTES
            / GB;
    line(
        "DynamoDB",
        format!(
            "storage ({items_gb:.2} GB: items kept {} days)",
            env.storage.metadata_ttl_days
        ),
        items_gb * price::DYNAMODB_GB_MONTH,
    );

    let logs_gb = 2.0 * invocations * LOG_BYTES_PER_INVOCATION / GB;
    line(
        "CloudWatch",
        format!("logs ingested ({logs_gb:.1} GB: ~1 KB per invocation)"),
        logs_gb * price::LOGS_INGESTED_GB,
    );
    line(
        "CloudWatch",
        format!("alarms ({ALARM_METRICS} metrics)"),
        ALARM_METRICS * price::ALARM_METRIC_MONTH,
    );
    line(
        "CloudWatch",
        format!("custom metrics (~{CUSTOM_METRICS} EMF metrics)"),
        CUSTOM_METRICS * price::CUSTOM_METRIC_MONTH,
    );
    line("CloudWatch", "dashboard".into(), price::DASHBOARD_MONTH);
    if env.network.vpc {
        match vpc::Network::of_program() {
            Ok(network) => {
                let interface = network.services(true);
                let count = interface.len() as f64;
                let zones = f64::from(network.zones);
                line(
                    "VPC",
                    format!(
                        "interface endpoints ({}: {count} × {zones} zones × {HOURS_PER_MONTH} h; gateways {} free)",
                        interface.join(", "),
                        network.services(false).join(", ")
                    ),
                    count * zones * HOURS_PER_MONTH * price::VPC_INTERFACE_ENDPOINT_ZONE_HOUR,
                );
            }
            Err(e) => notes.push(format!("vpc endpoints are not priced: {e:#}")),
        }
    }
    if env.network.cloudtrail {
        // Object-level reads and writes on the raw and processed buckets (the trail's selectors).
        let data_events = puts + raw_objects;
        line(
            "CloudTrail",
            format!(
                "S3 data events ({:.1} M: every object PUT and GET on the raw and processed buckets)",
                data_events / 1e6
            ),
            data_events / 1e5 * price::CLOUDTRAIL_DATA_EVENTS_PER_100K,
        );
    }
    line(
        "Other",
        "KMS key and HMAC secret".into(),
        price::KMS_KEY_MONTH + price::SECRET_MONTH,
    );

    Estimate {
        batch_size,
        shards,
        pollers,
        invocations_per_second: invocations_s,
        records_per_invocation,
        sp_duration_ms: sp_ms,
        transformer_duration_ms: tr_ms,
        lines,
        notes,
    }
}

pub const BATCH_SIZES: [u32; 4] = [100, 500, 1000, 10_000];

/// The printed report: line items at the file's batch size, assumptions, other batch sizes.
pub fn report(env: &Environment, inputs: &Inputs) -> String {
    use assume::*;
    let m = &env.event_source_mapping;
    let e = estimate(env, inputs, m.batch_size);
    let mut s = String::new();
    let mode = match env.stream.mode {
        StreamMode::Provisioned => format!("provisioned, {} shards", e.shards),
        StreamMode::OnDemand => format!("on-demand, ~{} shards", e.shards),
    };
    let _ = writeln!(
        s,
        "monthly cost estimate of `{}` ({mode}) at {} events/s of {} bytes, batch size {}",
        env.name, inputs.rate, inputs.event_bytes, m.batch_size
    );
    let _ = writeln!(
        s,
        "us-east-1 list prices at the time of writing; check them before relying on the numbers\n"
    );
    let _ = writeln!(s, "{:<11} {:<88} {:>11}", "service", "item", "USD/month");
    for l in &e.lines {
        let _ = writeln!(s, "{:<11} {:<88} {:>11.2}", l.service, l.item, l.usd);
    }
    let _ = writeln!(s, "{:<11} {:<88} {:>11.2}\n", "total", "", e.total());
    let _ = writeln!(s, "assumptions:");
    let duration = match inputs.duration_ms {
        Some(d) => format!(
            "measured {d} ms per invocation at full batches of {}",
            m.batch_size
        ),
        None => format!(
            "not measured: {SP_FIXED_MS} ms + {PER_RECORD_MS} ms per record (pass --duration-ms)"
        ),
    };
    for a in [
        format!("{HOURS_PER_MONTH} hours a month, a steady rate"),
        format!(
            "{} concurrent batches ({} shards × parallelization factor {}); each invokes once per full batch, and at least once per {} s batching window while records flow: {:.2} invocations/s, {:.0} records each",
            e.pollers, e.shards, m.parallelization_factor, m.maximum_batching_window_seconds.max(1), e.invocations_per_second, e.records_per_invocation
        ),
        format!("stream-processor duration {:.0} ms ({duration}); transformer {:.0} ms ({TRANSFORMER_FIXED_MS} ms fixed + the same per-record time)", e.sp_duration_ms, e.transformer_duration_ms),
        "one raw object per invocation (one per shard's batch); one transformer invocation per raw object".to_owned(),
        "no free tier, no data transfer out of AWS; SQS and SNS are negligible".to_owned(),
        format!(
            "with `network.vpc`: no NAT, one interface endpoint per zone for each AWS API the functions call from the VPC ({}); their per-GB charge is negligible (the HMAC key, once per container)",
            vpc::SOURCE
        ),
        "with `network.cloudtrail`: each object PUT and GET is a data event; the trail's own log files cost a KMS request and a few KB each".to_owned(),
    ]
    .iter()
    .chain(&e.notes)
    {
        let _ = writeln!(s, "  - {a}");
    }
    let mut sizes = BATCH_SIZES.to_vec();
    if !sizes.contains(&m.batch_size) {
        sizes.push(m.batch_size);
        sizes.sort_unstable();
    }
    let _ = writeln!(s, "\nby batch size (event_source_mapping.batch_size):");
    let _ = writeln!(
        s,
        "{:>10} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "batch size", "invocations/s", "Lambda", "S3", "DynamoDB", "CloudWatch", "total"
    );
    for b in sizes {
        let e = estimate(env, inputs, b);
        let _ = writeln!(
            s,
            "{:>10} {:>14.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}{}",
            b,
            e.invocations_per_second,
            e.service("Lambda"),
            e.service("S3"),
            e.service("DynamoDB"),
            e.service("CloudWatch"),
            e.total(),
            if b == m.batch_size {
                "  (configured)"
            } else {
                ""
            }
        );
    }
    s
}

/// `cost --env <env> --rate <events/s> [--event-bytes N] [--duration-ms N]`.
pub fn cost(env: &str, rate: f64, event_bytes: u64, duration_ms: Option<f64>) -> Result<()> {
    if !(rate.is_finite() && rate > 0.0) {
        bail!("`--rate` must be a positive number of events per second");
    }
    if !(1..=1_048_576).contains(&event_bytes) {
        bail!("`--event-bytes` must be 1-1048576 (a Kinesis record holds at most 1 MB)");
    }
    if duration_ms.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        bail!("`--duration-ms` must be a positive number of milliseconds");
    }
    let env = Environment::load(&root(), env)?;
    if env.network.vpc {
        vpc::Network::of_program().context("cannot price the vpc")?;
    }
    let inputs = Inputs {
        rate,
        event_bytes: event_bytes as f64,
        duration_ms,
    };
    print!("{}", report(&env, &inputs));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Environment {
        Environment::load(&root(), name).unwrap()
    }

    fn inputs(rate: f64) -> Inputs {
        Inputs {
            rate,
            event_bytes: 400.0,
            duration_ms: None,
        }
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-9)
    }

    #[test]
    fn doubling_the_batch_size_halves_s3_puts_and_requests() {
        let dev = env("dev");
        // 20 000 events/s over 2 shards: full batches, far above the window floor.
        let (a, b) = (
            estimate(&dev, &inputs(20_000.0), 500),
            estimate(&dev, &inputs(20_000.0), 1000),
        );
        assert!(close(b.item("S3", "PUT") / a.item("S3", "PUT"), 0.5, 0.01));
        assert!(close(
            b.item("DynamoDB", "writes") / a.item("DynamoDB", "writes"),
            0.5,
            0.01
        ));
        assert!(close(
            b.item("Lambda", "stream-processor requests")
                / a.item("Lambda", "stream-processor requests"),
            0.5,
            0.01
        ));
        // The records, and so the Kinesis and storage costs, do not change.
        assert_eq!(a.service("Kinesis"), b.service("Kinesis"));
        assert_eq!(a.item("S3", "storage"), b.item("S3", "storage"));
    }

    #[test]
    fn low_rates_invoke_once_per_window_per_shard() {
        let dev = env("dev");
        // 10 events/s over 2 shards, 1 s window: 2 invocations/s of 5 records, whatever the batch size.
        for b in [100, 1000, 10_000] {
            let e = estimate(&dev, &inputs(10.0), b);
            assert!(
                close(e.invocations_per_second, 2.0, 1e-9),
                "{b}: {}",
                e.invocations_per_second
            );
            assert!(close(e.records_per_invocation, 5.0, 1e-9));
        }
        // Fewer records than windows: one invocation per record at most.
        let e = estimate(&dev, &inputs(0.5), 1000);
        assert!(close(e.invocations_per_second, 0.5, 1e-9));
    }

    #[test]
    fn provisioned_pays_shard_hours_on_demand_pays_per_gigabyte() {
        let (dev, preview) = (env("dev"), env("pr-7"));
        let tiny = inputs(0.001);
        let p = estimate(&dev, &tiny, 1000);
        assert!(close(
            p.item("Kinesis", "shard-hours"),
            2.0 * 730.0 * price::KINESIS_SHARD_HOUR,
            1e-9
        ));
        let o = estimate(&preview, &tiny, 1000);
        assert!(close(
            o.service("Kinesis"),
            730.0 * price::KINESIS_ON_DEMAND_STREAM_HOUR,
            0.01
        ));
        assert_eq!(o.item("Kinesis", "shard-hours"), 0.0);
        // Ten times the rate: on-demand's data charges grow tenfold, provisioned's shard-hours not at all.
        let (p1, p10) = (
            estimate(&dev, &inputs(1000.0), 1000),
            estimate(&dev, &inputs(10_000.0), 1000),
        );
        assert_eq!(
            p1.item("Kinesis", "shard-hours"),
            p10.item("Kinesis", "shard-hours")
        );
        let (o1, o10) = (
            estimate(&preview, &inputs(1000.0), 1000),
            estimate(&preview, &inputs(10_000.0), 1000),
        );
        assert!(close(
            o10.item("Kinesis", "on-demand data"),
            10.0 * o1.item("Kinesis", "on-demand data"),
            1e-9
        ));
        // On-demand rounds 400-byte records up to 1 KB on the way in.
        let gb_in = 1000.0 * 730.0 * 3600.0 * 1024.0 / GB;
        assert!(close(
            o1.item("Kinesis", "on-demand data in"),
            gb_in * price::KINESIS_ON_DEMAND_GB_IN,
            1e-9
        ));
    }

    #[test]
    fn put_payload_units_round_up_per_25_kb() {
        let dev = env("dev");
        let small = estimate(&dev, &inputs(1000.0), 1000).item("Kinesis", "PUT payload");
        let big = estimate(
            &dev,
            &Inputs {
                event_bytes: 26.0 * 1024.0,
                ..inputs(1000.0)
            },
            1000,
        )
        .item("Kinesis", "PUT payload");
        assert!(close(big, 2.0 * small, 1e-9));
        assert!(close(
            small,
            1000.0 * 730.0 * 3600.0 / 1e6 * price::KINESIS_PUT_UNITS_PER_MILLION,
            1e-9
        ));
    }

    #[test]
    fn compute_follows_memory_and_measured_duration() {
        let mut dev = env("dev");
        let a = estimate(&dev, &inputs(5000.0), 1000);
        dev.stream_processor.memory_mb *= 2;
        let b = estimate(&dev, &inputs(5000.0), 1000);
        assert!(close(
            b.item("Lambda", "stream-processor compute"),
            2.0 * a.item("Lambda", "stream-processor compute"),
            1e-9
        ));
        // 2500 events/s per shard in batches of 1000: full batches, so the measured duration applies as is.
        let measured = estimate(
            &dev,
            &Inputs {
                duration_ms: Some(240.0),
                ..inputs(5000.0)
            },
            1000,
        );
        assert!(close(measured.sp_duration_ms, 240.0, 1e-9));
        assert!(close(measured.records_per_invocation, 1000.0, 1e-9));
        let smaller = estimate(
            &dev,
            &Inputs {
                duration_ms: Some(240.0),
                ..inputs(5000.0)
            },
            500,
        );
        assert!(
            close(smaller.sp_duration_ms, 140.0, 1e-9),
            "40 ms fixed + 500 × 0.2 ms"
        );
    }

    #[test]
    fn lambda_payload_limit_caps_big_batches() {
        let dev = env("dev");
        let e = estimate(
            &dev,
            &Inputs {
                event_bytes: 1000.0,
                ..inputs(100_000.0)
            },
            10_000,
        );
        assert!(
            e.records_per_invocation < 10_000.0 && e.records_per_invocation > 3_000.0,
            "{}",
            e.records_per_invocation
        );
        assert!(e.notes.iter().any(|n| n.contains("6 MB")));
    }

    #[test]
    fn under_provisioned_streams_are_flagged() {
        let e = estimate(&env("dev"), &inputs(5000.0), 1000);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("needs at least 5 shards")),
            "{:?}",
            e.notes
        );
        let e = estimate(&env("prod"), &inputs(3000.0), 1000);
        assert!(
            !e.notes.iter().any(|n| n.contains("shards")),
            "{:?}",
            e.notes
        );
        let e = estimate(&env("prod"), &inputs(100.0), 1000);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("batching window, not the batch size")),
            "{:?}",
            e.notes
        );
    }

    #[test]
    fn the_report_shows_lines_assumptions_and_batch_sizes() {
        let r = report(&env("prod"), &inputs(2000.0));
        for needle in [
            "Kinesis",
            "extended retention (168 h)",
            "interface endpoints",
            "S3 data events",
            "Lambda",
            "S3",
            "DynamoDB",
            "CloudWatch",
            "total",
            "assumptions:",
            "list prices",
            "(configured)",
        ] {
            assert!(r.contains(needle), "{needle} missing from\n{r}");
        }
        for b in BATCH_SIZES {
            assert!(
                r.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{b} "))),
                "{b}\n{r}"
            );
        }
        let totals: Vec<f64> = BATCH_SIZES
            .iter()
            .map(|b| estimate(&env("prod"), &inputs(2000.0), *b).total())
            .collect();
        assert!(
            totals.windows(2).all(|w| w[0] >= w[1]),
            "bigger batches never cost more: {totals:?}"
        );
    }

    #[test]
    fn the_vpc_table_is_read_from_the_pulumi_program() {
        let network = vpc::Network::of_program().unwrap();
        assert!(network.zones >= 2, "{network:?}");
        assert!(network.services(false).contains(&"s3"), "{network:?}");
        assert!(!network.services(true).is_empty(), "{network:?}");

        let table = |rows: &str| {
            format!(
                "export const VPC_ENDPOINTS: readonly E[] = [\n{rows}];\nexport const MAX_ZONES = 3;\n"
            )
        };
        let parsed = vpc::parse(&table(
            "    { service: \"s3\", type: \"Gateway\", reason: \"a\" },\n    // why not sqs\n    { service: \"sqs\", type: \"Interface\", reason: \"b\" },\n",
        ))
        .unwrap();
        assert_eq!(parsed.services(false), ["s3"]);
        assert_eq!(parsed.services(true), ["sqs"]);
        assert_eq!(parsed.zones, 3);
        for (rows, error) in [
            ("    { service: \"s3\", type: \"Nat\" },\n", "type `Nat`"),
            (
                "    { service: \"s3\", type: \"Gateway\" },\n    { service: \"s3\", type: \"Gateway\" },\n",
                "listed twice",
            ),
            ("    {\n        service: \"s3\",\n", "on one line"),
            ("", "empty"),
        ] {
            let err = format!("{:#}", vpc::parse(&table(rows)).unwrap_err());
            assert!(err.contains(error), "{err}");
        }
        assert!(vpc::parse("const X = 1;").is_err());
        assert!(
            vpc::parse(
                &table("    { service: \"s3\", type: \"Gateway\" },\n")
                    .replace("MAX_ZONES", "ZONES")
            )
            .is_err()
        );
    }

    #[test]
    fn a_vpc_pays_each_interface_endpoint_per_zone_hour_whatever_the_rate() {
        let network = vpc::Network::of_program().unwrap();
        let per_month = network.services(true).len() as f64
            * f64::from(network.zones)
            * 730.0
            * price::VPC_INTERFACE_ENDPOINT_ZONE_HOUR;
        let prod = env("prod");
        assert!(prod.network.vpc);
        let e = estimate(&prod, &inputs(100.0), 1000);
        assert!(
            close(e.service("VPC"), per_month, 1e-9),
            "{}",
            e.service("VPC")
        );
        assert_eq!(
            estimate(&prod, &inputs(10_000.0), 1000).service("VPC"),
            e.service("VPC")
        );
        for s in network.services(true) {
            assert!(
                e.lines
                    .iter()
                    .any(|l| l.service == "VPC" && l.item.contains(s)),
                "{s}"
            );
        }
        let mut without = env("prod");
        without.network.vpc = false;
        assert_eq!(estimate(&without, &inputs(100.0), 1000).service("VPC"), 0.0);
    }

    #[test]
    fn cloudtrail_bills_every_object_put_and_get() {
        let prod = env("prod");
        assert!(prod.network.cloudtrail);
        // 20 000 events/s over 4 shards: full batches, so the batch size sets the object count.
        let (a, b) = (
            estimate(&prod, &inputs(20_000.0), 500),
            estimate(&prod, &inputs(20_000.0), 1000),
        );
        let raw_objects = a.invocations_per_second * 730.0 * 3600.0;
        let events = raw_objects * (1.0 + assume::PARTITIONS_PER_RAW_OBJECT) + raw_objects;
        assert!(close(
            a.service("CloudTrail"),
            events / 1e5 * price::CLOUDTRAIL_DATA_EVENTS_PER_100K,
            1e-9
        ));
        assert!(close(
            b.service("CloudTrail") / a.service("CloudTrail"),
            0.5,
            0.01
        ));
        let mut without = env("prod");
        without.network.cloudtrail = false;
        assert_eq!(
            estimate(&without, &inputs(20_000.0), 500).service("CloudTrail"),
            0.0
        );
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(cost("dev", 0.0, 400, None).is_err());
        assert!(cost("dev", f64::NAN, 400, None).is_err());
        assert!(cost("dev", 10.0, 0, None).is_err());
        assert!(cost("dev", 10.0, 400, Some(-1.0)).is_err());
        assert!(cost("staging", 10.0, 400, None).is_err());
    }
}
