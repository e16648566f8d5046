//! `cargo xtask monitor --env <env> [--once]`: a compact live view of one stack, refreshed every
//! 5 s: the stream's traffic and iterator age, each function's invocations, errors, throttles and
//! p99 duration over the last 5 minutes (CloudWatch), the DLQ depths (SQS) and the alarm states.
//! `--env local` reads the running local stack (`cargo xtask local up`); the emulator keeps few
//! metrics, so most cells show `n/a` there.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use pipeline_ops::Clients;
use pipeline_ops::Stack;
use pipeline_ops::reconcile::queue_depth;

use crate::deploy::{aws_clients, runtime};
use crate::pulumi::{Facts, Pulumi, stack_name};

pub const REFRESH: Duration = Duration::from_secs(5);
pub const WINDOW_SECONDS: i32 = 300;

/// One CloudWatch metric of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// GetMetricData query id (lower-case first letter, then letters, digits, `_`).
    pub id: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimension: &'static str,
    pub value: String,
    pub stat: &'static str,
}

const FUNCTION_METRICS: [(&str, &str, &str); 4] = [
    ("invocations", "Invocations", "Sum"),
    ("errors", "Errors", "Sum"),
    ("throttles", "Throttles", "Sum"),
    ("p99", "Duration", "p99"),
];

/// The metrics the view shows, for one stack.
pub fn metric_specs(stack: &Stack) -> Vec<MetricSpec> {
    let kinesis = |id: &str, metric, stat| MetricSpec {
        id: id.to_owned(),
        namespace: "AWS/Kinesis",
        metric,
        dimension: "StreamName",
        value: stack.stream.clone(),
        stat,
    };
    let mut specs = vec![
        kinesis("records", "IncomingRecords", "Sum"),
        kinesis("bytes", "IncomingBytes", "Sum"),
        kinesis(
            "iterator_age",
            "GetRecords.IteratorAgeMilliseconds",
            "Maximum",
        ),
    ];
    for (i, function) in [&stack.stream_processor, &stack.transformer]
        .into_iter()
        .enumerate()
    {
        for (id, metric, stat) in FUNCTION_METRICS {
            specs.push(MetricSpec {
                id: format!("{id}_{i}"),
                namespace: "AWS/Lambda",
                metric,
                dimension: "FunctionName",
                value: function.clone(),
                stat,
            });
        }
    }
    specs
}

/// What one refresh found; `None` is shown as `n/a`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub title: String,
    pub metrics: BTreeMap<String, Option<f64>>,
    pub stream_dlq: Option<u64>,
    pub transform_dlq: Option<u64>,
    /// Alarm name and state.
    pub alarms: Vec<(String, String)>,
    /// Why the alarms could not be read.
    pub alarms_error: Option<String>,
    pub notes: Vec<String>,
}

fn na(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// The frame as text.
pub fn render(stack: &Stack, frame: &Frame) -> String {
    let m = |id: &str| frame.metrics.get(id).copied().flatten();
    let window = f64::from(WINDOW_SECONDS);
    let mut lines = vec![
        frame.title.clone(),
        format!(
            "stream {:<34} {} records/s  {} KB/s  iterator age max {}",
            stack.stream,
            na(m("records"), |v| format!("{:.1}", v / window)),
            na(m("bytes"), |v| format!("{:.1}", v / window / 1024.0)),
            na(m("iterator_age"), |v| format!("{v:.0} ms")),
        ),
        format!(
            "{:<41} {:>11} {:>7} {:>9} {:>12}",
            "function (last 5 min)", "invocations", "errors", "throttles", "duration p99"
        ),
    ];
    for (i, function) in [&stack.stream_processor, &stack.transformer]
        .into_iter()
        .enumerate()
    {
        let cell = |id: &str| m(&format!("{id}_{i}"));
        lines.push(format!(
            "{:<41} {:>11} {:>7} {:>9} {:>12}",
            function,
            na(cell("invocations"), count),
            na(cell("errors"), count),
            na(cell("throttles"), count),
            na(cell("p99"), |v| format!("{v:.0} ms")),
        ));
    }
    let depth = |d: Option<u64>| d.map_or_else(|| "n/a".to_owned(), |d| d.to_string());
    lines.push(format!(
        "dead letter queues: stream {}, transform {}",
        depth(frame.stream_dlq),
        depth(frame.transform_dlq)
    ));
    lines.push(match (&frame.alarms_error, &frame.alarms) {
        (Some(why), _) => format!("alarms: n/a ({why})"),
        (None, alarms) if alarms.is_empty() => "alarms: none found".to_owned(),
        (None, alarms) => {
            let firing: Vec<&str> = alarms
                .iter()
                .filter(|(_, s)| s == "ALARM")
                .map(|(n, _)| n.as_str())
                .collect();
            let ok = alarms.iter().filter(|(_, s)| s == "OK").count();
            let other = alarms.len() - ok - firing.len();
            let mut s = format!(
                "alarms: {ok} OK, {} ALARM, {other} insufficient data",
                firing.len()
            );
            if !firing.is_empty() {
                s.push_str(&format!(": {}", firing.join(", ")));
            }
            s
        }
    });
    lines.extend(frame.notes.iter().map(|n| format!("note: {n}")));
    lines.join("\n") + "\n"
}

/// Alarm names start with `<project>-<env>-`, the prefix of the stream's name.
pub fn alarm_prefix(stack: &Stack) -> String {
    stack
        .stream
        .strip_suffix("events")
        .unwrap_or(&stack.stream)
        .to_owned()
}

async fn collect(clients: &Clients, stack: &Stack, title: &str) -> Frame {
    let mut frame = Frame {
        title: title.to_owned(),
        ..Frame::default()
    };
    let specs = metric_specs(stack);
    for s in &specs {
        frame.metrics.insert(s.id.clone(), None);
    }
    let end = std::time::SystemTime::now();
    let start = end - Duration::from_secs(WINDOW_SECONDS as u64);
    let queries = specs.iter().map(|s| {
        MetricDataQuery::builder()
            .id(&s.id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(s.namespace)
                            .metric_name(s.metric)
                            .dimensions(
                                Dimension::builder()
                                    .name(s.dimension)
                                    .value(&s.value)
                                    .build(),
                            )
                            .build(),
                    )
                    .period(WINDOW_SECONDS)
                    .stat(s.stat)
                    .build(),
            )
            .return_data(true)
            .build()
    });
    match clients
        .cloudwatch
        .get_metric_data()
        .set_metric_data_queries(Some(queries.collect()))
        .start_time(start.into())
        .end_time(end.into())
        .send()
        .await
    {
        Ok(out) => {
            for r in out.metric_data_results() {
                if let (Some(id), Some(v)) = (r.id(), r.values().first()) {
                    frame.metrics.insert(id.to_owned(), Some(*v));
                }
            }
        }
        Err(e) => frame
            .notes
            .push(format!("CloudWatch metrics unavailable: {}", short(e))),
    }
    frame.stream_dlq = queue_depth(clients, &stack.stream_dlq_url).await.ok();
    frame.transform_dlq = queue_depth(clients, &stack.transform_dlq_url).await.ok();
    let alarms = clients
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(alarm_prefix(stack))
        .send()
        .await
        .map(|out| {
            out.metric_alarms()
                .iter()
                .map(|a| {
                    let state = a.state_value().map_or("unknown", |s| s.as_str());
                    (
                        a.alarm_name().unwrap_or_default().to_owned(),
                        state.to_owned(),
                    )
                })
                .collect()
        })
        .map_err(short);
    match alarms {
        Ok(a) => frame.alarms = a,
        Err(e) => frame.alarms_error = Some(e),
    }
    frame
}

fn short(e: impl std::error::Error) -> String {
    let text = aws_smithy_types::error::display::DisplayErrorContext(e).to_string();
    text.chars().take(100).collect()
}

/// The stack, its clients and a title: the local state file, or the stack's Pulumi outputs.
async fn target(env: &str) -> Result<(Stack, Clients, String)> {
    if env == "local" {
        let (stack, clients) =
            crate::local::attach(local_stack::authz::principal::OPERATOR).await?;
        let title = format!("local stack at {}", stack.endpoint);
        return Ok((stack, clients, title));
    }
    let name = stack_name(env)?;
    let pulumi = Pulumi::new(Facts::current().check()?);
    let outputs = pulumi.outputs(&name)?;
    let clients = aws_clients(&outputs.region).await;
    let digests: Vec<String> = (outputs.digests.0.iter())
        .map(|(f, d)| format!("{f} {}", &d[..12]))
        .collect();
    let title = format!(
        "stack `{name}` in {}, running {}",
        outputs.region,
        digests.join(", ")
    );
    Ok((outputs.stack, clients, title))
}

pub fn monitor(env: &str, once: bool) -> Result<()> {
    runtime()?.block_on(async {
        let (stack, clients, title) = target(env).await?;
        loop {
            let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
            let frame = collect(&clients, &stack, &format!("{title}, {now}")).await;
            let text = render(&stack, &frame);
            if once {
                print!("{text}");
                return Ok(());
            }
            // Clear the screen, then draw the frame; Ctrl-C stops.
            println!(
                "\x1b[2J\x1b[H{text}(refreshing every {} s, Ctrl-C to stop)",
                REFRESH.as_secs()
            );
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let d = crate::artifact::tests::digests('a', 'b');
        crate::pulumi::Outputs::parse("dev", &crate::pulumi::tests::outputs_json("dev", &d))
            .unwrap()
            .stack
    }

    #[test]
    fn metric_ids_are_unique_and_valid() {
        let specs = metric_specs(&stack());
        assert_eq!(specs.len(), 3 + 2 * FUNCTION_METRICS.len());
        let ids: std::collections::BTreeSet<_> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), specs.len());
        for id in ids {
            assert!(id.starts_with(|c: char| c.is_ascii_lowercase()), "{id}");
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{id}"
            );
        }
        assert!(specs.iter().any(|s| s.metric == "Duration"
            && s.stat == "p99"
            && s.value == "eventpipe-dev-transformer"));
        assert!(
            specs
                .iter()
                .any(|s| s.metric == "GetRecords.IteratorAgeMilliseconds"
                    && s.value == "eventpipe-dev-events")
        );
    }

    #[test]
    fn missing_metrics_render_as_not_available() {
        let frame = Frame {
            title: "local".into(),
            alarms_error: Some("not supported".into()),
            ..Frame::default()
        };
        let text = render(&stack(), &frame);
        assert!(text.contains("n/a records/s"), "{text}");
        assert!(
            text.contains("dead letter queues: stream n/a, transform n/a"),
            "{text}"
        );
        assert!(text.contains("alarms: n/a (not supported)"), "{text}");
        assert!(text.lines().count() <= 8, "compact:\n{text}");
    }

    #[test]
    fn a_full_frame_renders_rates_and_firing_alarms() {
        let s = stack();
        let mut frame = Frame {
            title: "dev".into(),
            stream_dlq: Some(0),
            transform_dlq: Some(3),
            alarms: vec![
                ("eventpipe-dev-events-iterator-age".into(), "OK".into()),
                (
                    "eventpipe-dev-transform-dlq-not-empty".into(),
                    "ALARM".into(),
                ),
            ],
            ..Frame::default()
        };
        frame.metrics.insert("records".into(), Some(300_000.0));
        frame.metrics.insert("p99_1".into(), Some(412.4));
        let text = render(&s, &frame);
        assert!(text.contains("1000.0 records/s"), "{text}");
        assert!(text.contains("412 ms"), "{text}");
        assert!(text.contains("transform 3"), "{text}");
        assert!(
            text.contains(
                "1 OK, 1 ALARM, 0 insufficient data: eventpipe-dev-transform-dlq-not-empty"
            ),
            "{text}"
        );
        assert_eq!(alarm_prefix(&s), "eventpipe-dev-");
    }

    #[test]
    fn local_without_a_running_stack_says_how_to_start_one() {
        if crate::util::target_dir()
            .join("local/current.json")
            .is_file()
        {
            return; // a developer's local stack is up: nothing to check here
        }
        let err = monitor("local", true).unwrap_err().to_string();
        assert!(err.contains("cargo xtask local up"), "{err}");
        assert!(monitor("staging", true).is_err());
    }
}
