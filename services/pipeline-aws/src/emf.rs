//! CloudWatch Embedded Metric Format: one JSON line per invocation on stdout, which Lambda ships
//! to CloudWatch Logs and CloudWatch turns into metrics without any API call.
//!
//! Namespace `EventPipeline`, one dimension `Function`. The metric names each function emits are
//! listed in `docs/operations.md`.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "EventPipeline";

/// The one dimension of every metric: the function's name.
pub const DIMENSION: &str = "Function";

/// The names of the metrics each function emits: the list its events are tested against, and
/// that `docs/operations.md` and the Pulumi program's dashboard and alarms are checked against
/// (through `pulumi/src/contract.json`).
pub mod catalogue {
    /// What every invocation of every function records ([`super::Invocations::run`]).
    pub const INVOCATION: &[&str] = &["DurationMs", "ColdStart", "InvocationsFailed"];

    /// The stream processor's; besides, one [`QUARANTINED_PREFIX`]`<reason code>` per reason.
    pub const STREAM_PROCESSOR: &[&str] = &[
        "KinesisRecords",
        "RecordsReceived",
        "RecordsValid",
        "RecordsQuarantined",
        "RecordsFailed",
        "ObjectsWritten",
        "BytesWritten",
        "IngestLagMs",
    ];

    /// The stream processor's units quarantined for one reason: this prefix and the code.
    pub const QUARANTINED_PREFIX: &str = "Quarantined_";

    pub const TRANSFORMER: &[&str] = &[
        "RawObjectsProcessed",
        "RawObjectsRegistered",
        "RecordsOwnedElsewhere",
        "OverlapsReprocessed",
        "RecordsValid",
        "DuplicatesDropped",
        "ObjectsWritten",
        "ObjectsDeleted",
        "NotificationsIgnored",
        "NotificationsDuplicate",
        "IngestLagMs",
    ];

    pub const AUDITOR: &[&str] = &[
        "StuckObjects",
        "StuckNotProcessed",
        "StuckNoItem",
        "OrphanObjects",
        "Redriven",
        "RawObjectsListed",
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The metrics of one invocation, filled by the typed events of the function (each event writes
/// its log line and adds its counts, see [`Event`]); the function's name is their dimension,
/// added when the invocation ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    values: BTreeMap<String, (f64, Unit)>,
    properties: Map<String, Value>,
}

/// One observable thing a function does: emitting it writes its log line and adds its metrics to
/// the invocation's, so that what is logged and what is counted are described once.
pub trait Event {
    fn emit(&self, metrics: &mut Metrics);
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Metrics whose counters start at zero, for a function whose every invocation reports each
    /// of them (a quiet invocation is a zero data point, not a gap).
    pub fn counting<'a>(counters: impl IntoIterator<Item = &'a str>) -> Self {
        let mut m = Metrics::default();
        for name in counters {
            m.count(name, 0);
        }
        m
    }

    /// Adds to a metric (metrics named twice are summed).
    pub fn add(&mut self, name: &str, value: f64, unit: Unit) -> &mut Self {
        self.values.entry(name.to_owned()).or_insert((0.0, unit)).0 += value;
        self
    }

    /// Keeps the largest value given for a metric.
    pub fn max(&mut self, name: &str, value: f64, unit: Unit) -> &mut Self {
        let entry = self.values.entry(name.to_owned()).or_insert((value, unit));
        entry.0 = entry.0.max(value);
        self
    }

    /// The metrics' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn count(&mut self, name: &str, value: u64) -> &mut Self {
        self.add(name, value as f64, Unit::Count)
    }

    /// A searchable property that is not a metric (a request id, a key).
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).map(|(v, _)| *v)
    }

    /// The EMF document of `function`'s metrics.
    pub fn to_json(&self, function: &str, timestamp_ms: i64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, (_, unit))| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[DIMENSION]], "Metrics": definitions}],
            }),
        );
        doc.insert(DIMENSION.into(), Value::String(function.to_owned()));
        for (name, (value, _)) in &self.values {
            doc.insert(name.clone(), json!(value));
        }
        for (k, v) in &self.properties {
            doc.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(doc)
    }

    /// Writes the document as one line on stdout.
    pub fn emit(&self, function: &str) {
        let line = self
            .to_json(function, chrono::Utc::now().timestamp_millis())
            .to_string();
        let mut out = std::io::stdout().lock();
        // A lost metrics line must not fail the invocation; the log line of the same event stays.
        let _ = writeln!(out, "{line}");
    }
}

/// One function's invocations in a container: what every invocation's metrics record whatever
/// the function (`ColdStart`, `DurationMs`, the `RequestId` property), so that each function's
/// report adds only its own.
#[derive(Debug)]
pub struct Invocations {
    function: String,
    cold: std::sync::atomic::AtomicBool,
}

impl Invocations {
    pub fn new(function: impl Into<String>) -> Self {
        Invocations {
            function: function.into(),
            cold: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Starts an invocation: the container's first is its cold start.
    pub fn start(&self, request_id: impl Into<String>) -> Invocation {
        Invocation {
            function: self.function.clone(),
            request_id: request_id.into(),
            started: std::time::Instant::now(),
            cold_start: self.cold.swap(false, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// One invocation under way.
#[derive(Debug, Clone)]
pub struct Invocation {
    function: String,
    request_id: String,
    started: std::time::Instant,
    cold_start: bool,
}

impl Invocation {
    pub fn function(&self) -> &str {
        &self.function
    }

    /// `metrics` (what the handler's events reported) with what every invocation records
    /// ([`catalogue::INVOCATION`]): its duration, whether it was the container's first, whether
    /// it `failed`, and its request id.
    pub fn complete(&self, mut metrics: Metrics, failed: bool) -> Metrics {
        metrics
            .add(
                "DurationMs",
                self.started.elapsed().as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            )
            .count("ColdStart", u64::from(self.cold_start))
            .count("InvocationsFailed", u64::from(failed))
            .property("RequestId", self.request_id.clone());
        metrics
    }
}

impl Invocations {
    /// The shared wrapper of the functions' handlers: runs one invocation (`handler` answers with
    /// its result and the metrics its events reported), then emits those metrics with the
    /// invocation's own and `InvocationsFailed`, whatever the outcome.
    pub async fn run<R, E>(
        &self,
        request_id: &str,
        handler: impl Future<Output = (Result<R, E>, Metrics)>,
    ) -> Result<R, E> {
        let invocation = self.start(request_id);
        let (result, metrics) = handler.await;
        invocation
            .complete(metrics, result.is_err())
            .emit(&invocation.function);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_adds_its_duration_cold_start_and_request_id() {
        let invocations = Invocations::new("f");
        let first = invocations.start("r-1");
        let second = invocations.start("r-2");
        let mut reported = Metrics::new();
        reported.count("RecordsValid", 3);
        let m = first.complete(reported, false);
        assert_eq!(m.get("RecordsValid"), Some(3.0));
        assert_eq!(m.get("ColdStart"), Some(1.0));
        assert_eq!(m.get("InvocationsFailed"), Some(0.0));
        assert!(m.get("DurationMs").is_some_and(|d| d >= 0.0));
        assert_eq!(m.to_json(first.function(), 0)["RequestId"], "r-1");
        let m = second.complete(Metrics::new(), true);
        assert_eq!(m.get("ColdStart"), Some(0.0));
        assert_eq!(m.get("InvocationsFailed"), Some(1.0));
        assert_eq!(m.to_json("f", 0)["RequestId"], "r-2");
        let mut names: Vec<&str> = m.names().collect();
        let mut listed = catalogue::INVOCATION.to_vec();
        names.sort_unstable();
        listed.sort_unstable();
        assert_eq!(
            names, listed,
            "the catalogue lists what every invocation records"
        );
    }

    #[test]
    fn counters_start_at_zero_and_a_maximum_keeps_the_largest_value() {
        let mut m = Metrics::counting(["A", "B"]);
        m.count("A", 2)
            .max("Lag", 5.0, Unit::Milliseconds)
            .max("Lag", 3.0, Unit::Milliseconds);
        assert_eq!(m.get("A"), Some(2.0));
        assert_eq!(m.get("B"), Some(0.0));
        assert_eq!(m.get("Lag"), Some(5.0));
        assert_eq!(m.names().collect::<Vec<_>>(), ["A", "B", "Lag"]);
    }

    #[test]
    fn document_follows_the_emf_specification() {
        let mut m = Metrics::new();
        m.count("RecordsReceived", 3)
            .count("RecordsReceived", 2)
            .add("DurationMs", 1.5, Unit::Milliseconds);
        m.property("RequestId", "abc");
        let doc = m.to_json("eventpipe-dev-stream-processor", 1_700_000_000_000);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "EventPipeline"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "RecordsReceived", "Unit": "Count"})
        );
        assert_eq!(doc["RecordsReceived"], 5.0);
        assert_eq!(doc["Function"], "eventpipe-dev-stream-processor");
        assert_eq!(doc["RequestId"], "abc");
    }
}
