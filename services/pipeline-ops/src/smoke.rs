//! `smoke`: canary events through a stack, and a verdict. Works on any endpoint: the local stack
//! (as its operator role) or a deployed one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::reconcile::{get, list, progress};
use crate::{Clients, Error, Stack};

/// The partition smoke canaries land in (`processed/event_type=smoke_test/`).
pub const EVENT_TYPE: &str = "smoke_test";

/// What a passing smoke test saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub canaries: usize,
}

/// Sends `count` canaries straight to the stream (one PutRecord each) and waits until every one is
/// a processed row; fails if one is missing after `limit` or a dead-letter queue is not empty.
pub async fn smoke(
    clients: &Clients,
    stack: &Stack,
    count: usize,
    limit: Duration,
) -> Result<Passed, Error> {
    let run_id = format!("smoke-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"));
    let ids: Vec<String> = (0..count).map(|i| format!("{run_id}-{i}")).collect();
    for id in &ids {
        let event = serde_json::json!({
            "event_id": id,
            "event_type": EVENT_TYPE,
            "occurred_at": pipeline_core::event::fmt_time(chrono::Utc::now()),
            "source": "smoke",
        });
        clients
            .kinesis
            .put_record()
            .stream_name(&stack.stream)
            .partition_key(id)
            .data(aws_sdk_kinesis::primitives::Blob::new(event.to_string()))
            .send()
            .await
            .map_err(|e| Error::aws("kinesis PutRecord (a canary)", DisplayErrorContext(e)))?;
    }
    let deadline = Instant::now() + limit;
    loop {
        let mut found = HashSet::new();
        let prefix = format!("processed/event_type={EVENT_TYPE}/");
        for key in list(clients, &stack.processed_bucket, &prefix).await? {
            let body = get(clients, &stack.processed_bucket, &key).await?;
            let rows = pipeline_core::parquet_io::read_rows(body)
                .map_err(|e| Error::Reconcile(format!("{key}: {e}")))?;
            found.extend(rows.into_iter().map(|r| r.event_id));
        }
        let missing = ids.iter().filter(|i| !found.contains(*i)).count();
        let p = progress(clients, stack).await?;
        if missing == 0 {
            let dead = p.stream_dlq_messages + p.transform_dlq_messages;
            if dead > 0 {
                return Err(Error::Reconcile(format!(
                    "smoke: canaries processed, but the DLQs hold {dead} messages"
                )));
            }
            return Ok(Passed { canaries: count });
        }
        if Instant::now() > deadline {
            return Err(Error::Reconcile(format!(
                "smoke: {missing} of {count} canaries not processed after {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
