//! Replay: re-transforms the raw objects of a range of hours, after a transformer fix.
//!
//! Each raw object under the range's `raw/dt=…/hour=…/` prefixes is sent to the transformer as its
//! `ObjectCreated` notification marked as a replay (`lambda_payloads::s3::REPLAY_MEMBER`), synchronously, so
//! its outcome is known. The transformer re-transforms an object unless the version it runs
//! (`TRANSFORM_VERSION`, the artifact's digest) processed its current content already; its lease,
//! deterministic output keys and stale-output deletion keep every record exactly once in
//! processed, in the new form. A replay that stops half way is resumed by running it again: what
//! it re-transformed is then current and skipped.
//!
//! It acts as the operator: listing `raw/` and invoking the transformer.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::aws::LambdaInvoker;
use crate::esm::Invoker;
use crate::reconcile::list;
use crate::{Clients, Error, Stack};

/// What a replay did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// The hour prefixes replayed.
    pub hours: Vec<String>,
    /// Raw objects in them.
    pub objects: u64,
    /// Re-transformed into the current version's form.
    pub retransformed: u64,
    /// Already in the current version's form (processed by it before).
    pub current: u64,
    /// Not transformed (gone since listed, or not a raw object), with the transformer's reason.
    pub ignored: u64,
    /// Objects whose invocation failed, with the error: run the replay again for them.
    pub failed: Vec<(String, String)>,
    pub dry_run: bool,
    pub elapsed_seconds: f64,
}

/// Progress after each object: (done, of).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Replays the raw objects of the hours from `from`'s up to, not including, `to`'s.
pub async fn replay(
    clients: &Clients,
    stack: &Stack,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dry_run: bool,
    progress: Progress<'_>,
) -> Result<Summary, Error> {
    let started = Instant::now();
    let hours = pipeline_core::keys::raw_hour_range(from, to);
    if hours.is_empty() {
        return Err(Error::Replay(format!(
            "no hour from {from} up to {to}: `--to` is exclusive and must be a later hour"
        )));
    }
    let mut keys = Vec::new();
    for prefix in &hours {
        keys.extend(list(clients, &stack.raw_bucket, prefix).await?);
    }
    let mut summary = Summary {
        hours,
        objects: keys.len() as u64,
        dry_run,
        ..Summary::default()
    };
    if !dry_run {
        let of = keys.len() as u64;
        let invoker = LambdaInvoker::new(clients, &stack.transformer);
        for (i, key) in keys.iter().enumerate() {
            match invoke(&invoker, stack, key).await {
                Ok(outcome) => match outcome.as_str() {
                    "processed" => summary.retransformed += 1,
                    "duplicate" => summary.current += 1,
                    _ => summary.ignored += 1,
                },
                Err(e) => summary.failed.push((key.clone(), e)),
            }
            progress(i as u64 + 1, of);
        }
    }
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The replay notification of one raw object.
pub fn notification(stack: &Stack, key: &str) -> Value {
    let mut event = lambda_payloads::s3::object_created(
        &[lambda_payloads::s3::CreatedObject {
            bucket: &stack.raw_bucket,
            key,
            size: 0,
            sequencer: None,
        }],
        Utc::now(),
        stack.region(),
        "replay",
    );
    event[lambda_payloads::s3::REPLAY_MEMBER] = Value::Bool(true);
    event
}

/// Invokes the transformer synchronously with the object's replay notification; its outcome
/// (`processed`, `duplicate`, `ignored`) or why it failed.
async fn invoke(invoker: &LambdaInvoker, stack: &Stack, key: &str) -> Result<String, String> {
    let out = invoker
        .invoke(notification(stack, key).to_string().into_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&out.payload).unwrap_or(Value::Null);
    if let Some(kind) = out.function_error {
        return Err(format!("{kind}: {body}"));
    }
    body["outcomes"][0]["outcome"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the transformer answered without an outcome: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_notification_is_the_objects_s3_event_marked_as_a_replay() {
        let stack: Stack = serde_json::from_value(serde_json::json!({
            "environment": "local", "endpoint": "e", "stream": "s", "stream_arn": "a",
            "raw_bucket": "raw-b", "processed_bucket": "p", "metadata_table": "t",
            "stream_processor": "sp", "stream_processor_arn": "a", "transformer": "tf",
            "transformer_arn": "a", "auditor": "au", "auditor_arn": "a",
            "audit_schedule_rule": "r", "stream_dlq_url": "u", "stream_dlq_arn": "a",
            "transform_dlq_url": "u", "transform_dlq_arn": "a", "alarm_topic_arn": "a",
            "hmac_secret": "h"
        }))
        .unwrap();
        let key = "raw/dt=2026-11-30/hour=00/shard=shardId-000000000000/49.jsonl.gz";
        let n = notification(&stack, key);
        assert!(lambda_payloads::s3::is_replay(&n));
        let event: aws_lambda_events::event::s3::S3Event =
            serde_json::from_value(n.clone()).unwrap();
        assert_eq!(event.records.len(), 1);
        assert_eq!(
            event.records[0].s3.object.key.as_deref(),
            Some("raw/dt%3D2026-11-30/hour%3D00/shard%3DshardId-000000000000/49.jsonl.gz")
        );
        assert_eq!(
            event.records[0].s3.bucket.name.as_deref(),
            Some(stack.raw_bucket.as_str())
        );
    }
}
