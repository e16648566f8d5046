//! `dlq redrive`: puts what the dead-letter queues reference back through the pipeline.
//!
//! - Stream DLQ: each message names a shard and a sequence range (`KinesisBatchInfo`). The range is
//!   re-read from the stream (while within retention) and delivered to the stream processor under
//!   the same rules as the event-source mapping; the message is deleted once delivered.
//! - Transform DLQ: each message carries the original S3 event (`requestPayload`); the transformer
//!   is invoked with it again; the message is deleted on success.
//!
//! Both are idempotent: the handlers overwrite the same keys with the same content.

use std::cmp::Ordering;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::Value;

use crate::aws::{LambdaInvoker, SqsDestination};
use crate::esm::{Invoker, Record, Settings, ShardMapping, ShardReader};
use crate::provision::Stack;
use crate::{Clients, Error};

/// Kinesis sequence numbers are decimal strings of up to 56 digits: compare them as numbers.
pub fn seq_cmp(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    pub messages: u64,
    pub records: u64,
    /// Messages whose records are no longer in the stream (past retention): kept in the queue.
    pub expired: u64,
}

struct Fixed(Vec<Record>);

impl ShardReader for Fixed {
    async fn read(&mut self) -> Result<Vec<Record>, Error> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// Reads `[start, end]` of a shard.
async fn read_range(
    clients: &Clients,
    stream_arn: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<Record>, Error> {
    let mut it = clients
        .kinesis
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await
        .map_err(|e| Error::aws("kinesis GetShardIterator", DisplayErrorContext(e)))?
        .shard_iterator;
    let mut out = Vec::new();
    while let Some(iterator) = it.take() {
        let page = clients
            .kinesis
            .get_records()
            .stream_arn(stream_arn)
            .shard_iterator(iterator)
            .send()
            .await
            .map_err(|e| Error::aws("kinesis GetRecords", DisplayErrorContext(e)))?;
        let empty = page.records.is_empty();
        for r in page.records {
            if seq_cmp(&r.sequence_number, end) == Ordering::Greater {
                return Ok(out);
            }
            out.push(Record {
                arrival: r
                    .approximate_arrival_timestamp
                    .and_then(|t| {
                        chrono::DateTime::from_timestamp_millis(t.to_millis().unwrap_or(0))
                    })
                    .unwrap_or_else(chrono::Utc::now),
                sequence_number: r.sequence_number,
                partition_key: r.partition_key,
                data: r.data.into_inner(),
            });
        }
        if out
            .last()
            .is_some_and(|r| seq_cmp(&r.sequence_number, end) != Ordering::Less)
            || empty
        {
            return Ok(out);
        }
        it = page.next_shard_iterator;
    }
    Ok(out)
}

/// Every message of a queue. A dry run leaves them visible; a real run hides them while it works.
async fn messages(
    clients: &Clients,
    url: &str,
    dry_run: bool,
) -> Result<Vec<(String, Value)>, Error> {
    let mut all = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let out = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(if dry_run { 0 } else { 300 })
            .send()
            .await
            .map_err(|e| Error::aws("sqs ReceiveMessage", DisplayErrorContext(e)))?;
        let mut new = 0;
        for m in out.messages() {
            if !seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                continue;
            }
            new += 1;
            let body: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or(Value::Null);
            all.push((m.receipt_handle().unwrap_or_default().to_owned(), body));
        }
        if new == 0 {
            return Ok(all);
        }
    }
}

async fn delete(clients: &Clients, url: &str, receipt: &str) -> Result<(), Error> {
    clients
        .sqs
        .delete_message()
        .queue_url(url)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| Error::aws("sqs DeleteMessage", DisplayErrorContext(e)))?;
    Ok(())
}

/// Redrives the stream DLQ. With `dry_run`, only reports what it would do.
pub async fn stream_dlq(
    clients: &Clients,
    stack: &Stack,
    settings: Settings,
    dry_run: bool,
) -> Result<Redriven, Error> {
    let mut done = Redriven::default();
    for (receipt, body) in messages(clients, &stack.stream_dlq_url, dry_run).await? {
        let info = &body["KinesisBatchInfo"];
        let (Some(shard), Some(start), Some(end)) = (
            info["shardId"].as_str(),
            info["startSequenceNumber"].as_str(),
            info["endSequenceNumber"].as_str(),
        ) else {
            return Err(Error::Reconcile(format!(
                "a stream DLQ message is not in the event-source mapping's format: {body}"
            )));
        };
        let records = match read_range(clients, &stack.stream_arn, shard, start, end).await {
            Ok(r) if !r.is_empty() => r,
            result => {
                let why = result
                    .err()
                    .map_or_else(|| "no records in the range".to_owned(), |e| e.to_string());
                println!(
                    "cannot redrive {shard} {start}..{end}: {why}; the message stays in the queue"
                );
                done.expired += 1;
                continue;
            }
        };
        println!(
            "{} {shard} {start}..{end}: {} records",
            if dry_run {
                "would redrive"
            } else {
                "redriving"
            },
            records.len()
        );
        done.messages += 1;
        done.records += records.len() as u64;
        if dry_run {
            continue;
        }
        let mut mapping = ShardMapping::new(
            shard.to_owned(),
            stack.stream_arn.clone(),
            stack.stream_processor_arn.clone(),
            crate::REGION.to_owned(),
            settings.clone(),
            Fixed(Vec::new()),
            LambdaInvoker::new(clients, &stack.stream_processor),
            SqsDestination::new(clients, &stack.stream_dlq_url),
        );
        // Failures here end in the DLQ again, as a new message: deleting this one loses nothing.
        mapping.process(records, &chrono::Utc::now).await?;
        delete(clients, &stack.stream_dlq_url, &receipt).await?;
    }
    Ok(done)
}

/// Redrives the transform DLQ: invokes the transformer with each original S3 event.
pub async fn transform_dlq(
    clients: &Clients,
    stack: &Stack,
    dry_run: bool,
) -> Result<Redriven, Error> {
    let mut done = Redriven::default();
    let invoker = LambdaInvoker::new(clients, &stack.transformer);
    for (receipt, body) in messages(clients, &stack.transform_dlq_url, dry_run).await? {
        let payload = body.get("requestPayload").cloned().unwrap_or(Value::Null);
        let keys: Vec<&str> = payload["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["s3"]["object"]["key"].as_str())
            .collect();
        println!(
            "{} transformer for {keys:?}",
            if dry_run { "would invoke" } else { "invoking" }
        );
        done.messages += 1;
        done.records += keys.len() as u64;
        if dry_run {
            continue;
        }
        let inv = invoker.invoke(payload.to_string().into_bytes()).await?;
        if inv.function_error.is_none() {
            delete(clients, &stack.transform_dlq_url, &receipt).await?;
        } else {
            return Err(Error::Reconcile(format!(
                "the transformer still fails for {keys:?}: {}; the message stays in the queue",
                String::from_utf8_lossy(&inv.payload)
            )));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(seq_cmp("9", "10"), Ordering::Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(seq_cmp("123", "123"), Ordering::Equal);
    }
}
