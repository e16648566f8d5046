//! The environment file: one TOML file per environment in `environments/`, one schema.
//!
//! The same file drives the local stack, `xtask` and the Pulumi program. The Rust types below are
//! the schema's source of truth: `environments/schema.json` is generated from them (a tidy test keeps
//! it current) and the Pulumi program validates against that JSON Schema. Unknown keys are errors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Everything that can go wrong while reading an environment file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment file {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("environment file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("environment name `{0}` is not valid: use `local`, `dev`, `prod` or `pr-<number>`")]
    BadName(String),
    #[error("environment file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One deployment environment (a Pulumi stack, or the local stack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Project name: the first component of every resource name.
    pub project: String,
    /// Environment name: `local`, `dev`, `prod`, or `pr-{number}` for preview stacks.
    pub name: String,
    /// AWS region.
    pub region: String,
    pub stream: Stream,
    pub stream_processor: Function,
    pub event_source_mapping: EventSourceMapping,
    pub transformer: Function,
    pub transformer_async: AsyncInvoke,
    pub auditor: Auditor,
    pub storage: Storage,
    pub observability: Observability,
    #[serde(default)]
    pub network: Network,
    /// Extra tags for every resource (project, environment and git sha are always added).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub mode: StreamMode,
    /// Shard count; required for `provisioned`, ignored for `on_demand`.
    #[serde(default)]
    pub shards: Option<u32>,
    /// Retention in hours (24–8760).
    pub retention_hours: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Memory in MB (128–10240).
    pub memory_mb: u32,
    /// Timeout in seconds (1–900).
    pub timeout_seconds: u32,
    /// Reserved concurrency; absent means unreserved.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// `RUST_LOG`-style filter, e.g. `info` or `info,stream_processor=debug`.
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

/// The Kinesis → stream-processor event-source mapping, with AWS's names and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSourceMapping {
    /// `BatchSize`, 1–10000.
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`, 0–300.
    pub maximum_batching_window_seconds: u32,
    pub starting_position: StartingPosition,
    /// Unix seconds, only with `AT_TIMESTAMP`.
    #[serde(default)]
    pub starting_position_timestamp: Option<i64>,
    /// `ParallelizationFactor`, 1–10.
    pub parallelization_factor: u32,
    pub bisect_batch_on_function_error: bool,
    /// `MaximumRetryAttempts`, -1 (infinite) to 10000. Must be finite here.
    pub maximum_retry_attempts: i32,
    /// `MaximumRecordAgeInSeconds`, 60–604800. Must be finite here.
    pub maximum_record_age_seconds: i32,
}

/// Asynchronous invocation settings of the transformer (S3 notifications are async invokes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncInvoke {
    /// 0–2.
    pub maximum_retry_attempts: u32,
    /// 60–21600.
    pub maximum_event_age_seconds: u32,
}

/// The auditor: a function on a schedule that finds raw objects nobody will process (their
/// notification expired or was dropped, or they have no metadata item) and re-drives them to the
/// transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auditor {
    /// Memory in MB (128–10240).
    pub memory_mb: u32,
    /// Timeout in seconds (1–900).
    pub timeout_seconds: u32,
    /// Reserved concurrency; absent means unreserved.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// `RUST_LOG`-style filter.
    pub log_level: String,
    /// Minutes between runs (an EventBridge `rate()` schedule), 1–60.
    pub period_minutes: u32,
    /// Hours of `raw/` partitions (by first arrival) listed for objects without a metadata item,
    /// 1–168.
    pub lookback_hours: u32,
}

impl Auditor {
    /// The function's settings, as for the other functions.
    pub fn function(&self) -> Function {
        Function {
            memory_mb: self.memory_mb,
            timeout_seconds: self.timeout_seconds,
            reserved_concurrency: self.reserved_concurrency,
            log_level: self.log_level.clone(),
        }
    }

    /// The EventBridge schedule that runs it: `rate(1 minute)`, `rate(5 minutes)`.
    pub fn schedule_expression(&self) -> String {
        match self.period_minutes {
            1 => "rate(1 minute)".to_owned(),
            n => format!("rate({n} minutes)"),
        }
    }

    /// The name of the EventBridge rule that runs the auditor named `function`.
    pub fn schedule_rule(function: &str) -> String {
        format!("{function}-schedule")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Days before objects move to Intelligent-Tiering.
    pub intelligent_tiering_after_days: u32,
    /// Days before quarantined objects expire.
    pub quarantine_expiry_days: u32,
    /// Days before noncurrent object versions expire.
    pub noncurrent_version_expiry_days: u32,
    /// Days before metadata items expire (DynamoDB TTL).
    pub metadata_ttl_days: u32,
    /// Minutes after which a raw object that is not processed counts as stuck.
    pub stuck_after_minutes: u32,
    /// S3 server access logging for the data buckets.
    pub access_logging: bool,
    /// Retain buckets and the table when the stack is destroyed.
    pub retain_on_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// CloudWatch Logs retention in days.
    pub log_retention_days: u32,
    /// Email addresses subscribed to the alarm topic.
    #[serde(default)]
    pub alarm_emails: Vec<String>,
    /// Alarm when the stream iterator age exceeds this many seconds.
    pub iterator_age_alarm_seconds: u32,
    /// Alarm when a function's error rate exceeds this percentage.
    pub error_rate_alarm_percent: f64,
    /// Active X-Ray tracing on both functions.
    pub tracing: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Run the functions in private subnets with VPC endpoints (no NAT).
    #[serde(default)]
    pub vpc: bool,
    /// CIDR of the VPC created when `vpc` is on.
    #[serde(default)]
    pub vpc_cidr: Option<String>,
    /// A CloudTrail trail with S3 data events for the two buckets.
    #[serde(default)]
    pub cloudtrail: bool,
}

/// Resource names, derived from project and environment only, so that every stack and the local
/// runtime agree. Bucket names also carry the account id, as S3 names are global.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    pub stream: String,
    pub raw_bucket: String,
    pub processed_bucket: String,
    pub metadata_table: String,
    pub stream_processor: String,
    pub transformer: String,
    pub auditor: String,
    pub stream_dlq: String,
    pub transform_dlq: String,
    pub alarm_topic: String,
    pub hmac_secret: String,
}

impl Environment {
    /// Parses and validates an environment file's text; `path` only labels errors.
    pub fn from_toml(path: &str, text: &str) -> Result<Self, ConfigError> {
        let env: Environment = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        env.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(env)
    }

    /// The file that holds an environment: `pr-<n>` stacks use the preview template.
    pub fn file_name(env_name: &str) -> Result<String, ConfigError> {
        match env_name {
            "local" | "dev" | "prod" => Ok(format!("{env_name}.toml")),
            _ if is_preview(env_name) => Ok("preview.toml".to_owned()),
            _ => Err(ConfigError::BadName(env_name.to_owned())),
        }
    }

    /// Reads the preview template for a `pr-<n>` stack and sets its name.
    pub fn for_stack(stack: &str, text: &str) -> Result<Self, ConfigError> {
        let file = Self::file_name(stack)?;
        let mut env = Self::from_toml(&file, text)?;
        if is_preview(stack) {
            env.name = stack.to_owned();
        } else if env.name != stack {
            return Err(ConfigError::Invalid {
                path: file,
                message: format!("`name` is `{}` but the stack is `{stack}`", env.name),
            });
        }
        Ok(env)
    }

    /// Reads environment `name` from its file under `<root>/environments/`.
    pub fn load(root: &std::path::Path, name: &str) -> Result<Self, ConfigError> {
        let path = root.join("environments").join(Self::file_name(name)?);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::for_stack(name, &text)
    }

    pub fn names(&self, account_id: &str) -> Names {
        let p = format!("{}-{}", self.project, self.name);
        Names {
            stream: format!("{p}-events"),
            raw_bucket: format!("{p}-raw-{account_id}"),
            processed_bucket: format!("{p}-processed-{account_id}"),
            metadata_table: format!("{p}-metadata"),
            stream_processor: format!("{p}-stream-processor"),
            transformer: format!("{p}-transformer"),
            auditor: format!("{p}-auditor"),
            stream_dlq: format!("{p}-stream-dlq"),
            transform_dlq: format!("{p}-transform-dlq"),
            alarm_topic: format!("{p}-alarms"),
            hmac_secret: format!("{p}/pii-hmac-key"),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(
            is_name_component(&self.project),
            "`project` must be 1-20 lower-case letters, digits or dashes",
        );
        check(
            matches!(self.name.as_str(), "local" | "dev" | "prod" | "preview")
                || is_preview(&self.name),
            "`name` must be `local`, `dev`, `prod`, `preview` or `pr-<number>`",
        );
        match (self.stream.mode, self.stream.shards) {
            (StreamMode::Provisioned, Some(n)) => {
                check((1..=500).contains(&n), "`stream.shards` must be 1-500")
            }
            (StreamMode::Provisioned, None) => check(
                false,
                "`stream.shards` is required when `stream.mode` is `provisioned`",
            ),
            (StreamMode::OnDemand, _) => {}
        }
        check(
            (24..=8760).contains(&self.stream.retention_hours),
            "`stream.retention_hours` must be 24-8760",
        );
        for (label, memory_mb, timeout_seconds) in [
            (
                "stream_processor",
                self.stream_processor.memory_mb,
                self.stream_processor.timeout_seconds,
            ),
            (
                "transformer",
                self.transformer.memory_mb,
                self.transformer.timeout_seconds,
            ),
            (
                "auditor",
                self.auditor.memory_mb,
                self.auditor.timeout_seconds,
            ),
        ] {
            if !(128..=10240).contains(&memory_mb) {
                errors.push(format!("`{label}.memory_mb` must be 128-10240"));
            }
            if !(1..=900).contains(&timeout_seconds) {
                errors.push(format!("`{label}.timeout_seconds` must be 1-900"));
            }
        }
        if !(1..=60).contains(&self.auditor.period_minutes) {
            errors.push("`auditor.period_minutes` must be 1-60".to_owned());
        }
        if !(1..=168).contains(&self.auditor.lookback_hours) {
            errors.push("`auditor.lookback_hours` must be 1-168".to_owned());
        }
        let m = &self.event_source_mapping;
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(
            (1..=10_000).contains(&m.batch_size),
            "`event_source_mapping.batch_size` must be 1-10000",
        );
        check(
            m.maximum_batching_window_seconds <= 300,
            "`event_source_mapping.maximum_batching_window_seconds` must be 0-300",
        );
        check(
            (1..=10).contains(&m.parallelization_factor),
            "`event_source_mapping.parallelization_factor` must be 1-10",
        );
        check(
            (0..=10_000).contains(&m.maximum_retry_attempts),
            "`event_source_mapping.maximum_retry_attempts` must be finite: 0-10000",
        );
        check(
            (60..=604_800).contains(&m.maximum_record_age_seconds),
            "`event_source_mapping.maximum_record_age_seconds` must be finite: 60-604800",
        );
        check(
            (m.starting_position == StartingPosition::AtTimestamp)
                == m.starting_position_timestamp.is_some(),
            "`event_source_mapping.starting_position_timestamp` is required with `AT_TIMESTAMP` and only then",
        );
        check(
            self.transformer_async.maximum_retry_attempts <= 2,
            "`transformer_async.maximum_retry_attempts` must be 0-2",
        );
        check(
            (60..=21_600).contains(&self.transformer_async.maximum_event_age_seconds),
            "`transformer_async.maximum_event_age_seconds` must be 60-21600",
        );
        check(
            self.storage.stuck_after_minutes >= 1,
            "`storage.stuck_after_minutes` must be at least 1",
        );
        check(
            self.storage.quarantine_expiry_days >= 1
                && self.storage.noncurrent_version_expiry_days >= 1,
            "expiry days in `storage` must be at least 1",
        );
        check(
            CLOUDWATCH_RETENTION_DAYS.contains(&self.observability.log_retention_days),
            "`observability.log_retention_days` must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)",
        );
        check(
            self.observability.error_rate_alarm_percent > 0.0
                && self.observability.error_rate_alarm_percent <= 100.0,
            "`observability.error_rate_alarm_percent` must be in (0, 100]",
        );
        check(
            !self.network.vpc || self.network.vpc_cidr.is_some(),
            "`network.vpc_cidr` is required when `network.vpc` is on",
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The values CloudWatch Logs accepts for a log group's retention.
pub const CLOUDWATCH_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// `pr-<number>`: a pull-request preview stack.
pub fn is_preview(name: &str) -> bool {
    name.strip_prefix("pr-")
        .is_some_and(|n| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_name_component(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// The JSON Schema of an environment file, as committed in `environments/schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Environment);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environments_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../environments")
    }

    fn load(name: &str) -> Environment {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Environment::load(&root, name).unwrap()
    }

    #[test]
    fn loading_a_missing_or_misnamed_environment_says_which() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let e = Environment::load(&root, "staging").unwrap_err();
        assert!(matches!(e, ConfigError::BadName(_)), "{e}");
        let e = Environment::load(std::path::Path::new("/nonexistent"), "dev").unwrap_err();
        assert!(e.to_string().contains("dev.toml"), "{e}");
    }

    #[test]
    fn every_committed_environment_file_is_valid() {
        for name in ["local", "dev", "prod", "pr-42"] {
            let env = load(name);
            assert_eq!(env.name, name);
        }
    }

    #[test]
    fn committed_schema_is_current() {
        let path = environments_dir().join("schema.json");
        let want = json_schema();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "environments/schema.json is stale: run `UPDATE_EXPECT=1 cargo test -p pipeline-config`"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = std::fs::read_to_string(environments_dir().join("dev.toml")).unwrap();
        let bad = text.replace("[stream]\n", "[stream]\nshard_count = 3\n");
        let err = Environment::from_toml("dev.toml", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `shard_count`"), "{err}");
        let bad = format!("colour = \"blue\"\n{text}");
        let err = Environment::from_toml("dev.toml", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn infinite_retries_are_rejected() {
        let text = std::fs::read_to_string(environments_dir().join("dev.toml")).unwrap();
        let mut env: Environment = toml::from_str(&text).unwrap();
        env.event_source_mapping.maximum_retry_attempts = -1;
        let err = env.validate().unwrap_err();
        assert!(err.contains("maximum_retry_attempts"), "{err}");
    }

    #[test]
    fn the_auditor_runs_at_least_hourly_and_looks_back_at_most_a_week() {
        let text = std::fs::read_to_string(environments_dir().join("dev.toml")).unwrap();
        let mut env: Environment = toml::from_str(&text).unwrap();
        env.auditor.period_minutes = 0;
        env.auditor.lookback_hours = 169;
        let err = env.validate().unwrap_err();
        assert!(
            err.contains("`auditor.period_minutes` must be 1-60"),
            "{err}"
        );
        assert!(
            err.contains("`auditor.lookback_hours` must be 1-168"),
            "{err}"
        );
        let bad = text.replace("[auditor]\n", "[auditor]\ncron = \"daily\"\n");
        let err = Environment::from_toml("dev.toml", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `cron`"), "{err}");
    }

    #[test]
    fn the_auditors_schedule_is_an_eventbridge_rate() {
        let text = std::fs::read_to_string(environments_dir().join("dev.toml")).unwrap();
        let mut env: Environment = toml::from_str(&text).unwrap();
        env.auditor.period_minutes = 1;
        assert_eq!(env.auditor.schedule_expression(), "rate(1 minute)");
        env.auditor.period_minutes = 5;
        assert_eq!(env.auditor.schedule_expression(), "rate(5 minutes)");
        assert_eq!(env.auditor.function().memory_mb, env.auditor.memory_mb);
        assert_eq!(
            Auditor::schedule_rule("eventpipe-dev-auditor"),
            "eventpipe-dev-auditor-schedule"
        );
    }

    #[test]
    fn stack_names_pick_files() {
        assert_eq!(Environment::file_name("pr-7").unwrap(), "preview.toml");
        assert_eq!(Environment::file_name("prod").unwrap(), "prod.toml");
        for bad in ["pr-", "pr-x", "staging", "../dev", "pr-1234567"] {
            assert!(Environment::file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_carry_project_and_environment() {
        let names = load("pr-42").names("123456789012");
        assert_eq!(names.stream, "eventpipe-pr-42-events");
        assert_eq!(names.raw_bucket, "eventpipe-pr-42-raw-123456789012");
        assert!(
            names.raw_bucket.len() <= 63,
            "S3 bucket names are at most 63 characters"
        );
    }
}
