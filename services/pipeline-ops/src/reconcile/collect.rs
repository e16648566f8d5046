//! Reads back the facts a reconciliation accounts for, and nothing else: what the stream holds,
//! every processed row's lineage, the processed files and their sizes, every quarantine line's
//! reason, the metadata items' times, the dead-letter queues.

use std::collections::BTreeMap;

use pipeline_aws::ObjectCatalog;
use pipeline_aws::s3::S3Store;
use pipeline_core::ingest::{QuarantineLine, gunzip};
use pipeline_core::parquet_io::read_rows;

use super::{Progress, dlq_records, get, progress, raw_object_items, stream_units, unix_ms};
use crate::queue::{SETTLE, SqsQueue};
use crate::{Clients, Error, Stack};

/// One processed row: its Kinesis record, its event and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFacts {
    pub shard: String,
    pub sequence_number: String,
    pub sub_sequence_number: i64,
    pub event_id: String,
    pub raw_key: String,
    /// Unix milliseconds of the record's arrival in Kinesis.
    pub arrival_ms: i64,
}

/// A processed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub key: String,
    pub size: u64,
}

/// When a raw object was recorded and processed (Unix milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemTimes {
    pub raw_written_ms: Option<i64>,
    pub processed_ms: Option<i64>,
}

/// Everything a reconciliation accounts for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub progress: Progress,
    pub stream_units: u64,
    pub rows: Vec<RowFacts>,
    pub files: Vec<FileFacts>,
    /// Quarantine lines by reason code.
    pub quarantined: BTreeMap<String, u64>,
    pub stream_dlq_records: u64,
    /// By raw key.
    pub items: BTreeMap<String, ItemTimes>,
}

pub async fn collect(clients: &Clients, stack: &Stack) -> Result<Facts, Error> {
    let mut facts = Facts {
        progress: progress(clients, stack).await?,
        items: item_times(clients, stack).await?,
        ..Facts::default()
    };
    for file in list_sized(clients, &stack.processed_bucket, "processed/").await? {
        let body = get(clients, &stack.processed_bucket, &file.key).await?;
        let rows = read_rows(body).map_err(|e| Error::Reconcile(format!("{}: {e}", file.key)))?;
        facts.rows.extend(rows.into_iter().map(|r| RowFacts {
            shard: r.kinesis_shard.to_string(),
            sequence_number: r.kinesis_seq,
            sub_sequence_number: r.kinesis_subseq,
            event_id: r.event_id,
            raw_key: r.raw_key.to_string(),
            arrival_ms: r.arrival_time_us / 1000,
        }));
        facts.files.push(file);
    }
    for file in list_sized(clients, &stack.raw_bucket, "quarantine/").await? {
        let body = get(clients, &stack.raw_bucket, &file.key).await?;
        let text = gunzip(&body).map_err(|e| Error::Reconcile(format!("{}: {e}", file.key)))?;
        for line in String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let q: QuarantineLine = serde_json::from_str(line)
                .map_err(|e| Error::Reconcile(format!("{}: {e}", file.key)))?;
            *facts.quarantined.entry(q.reason.to_string()).or_default() += 1;
        }
    }
    facts.stream_dlq_records =
        dlq_records(&SqsQueue::new(clients, &stack.stream_dlq_url), SETTLE).await?;
    facts.stream_units = stream_units(clients, stack).await?;
    Ok(facts)
}

/// Every object under `prefix`, with its size.
pub async fn list_sized(
    clients: &Clients,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<FileFacts>, Error> {
    let listed = S3Store::from_client(clients.s3.clone())
        .list(bucket, prefix)
        .await
        .map_err(|e| Error::aws("s3 ListObjectsV2", e))?;
    Ok(listed
        .into_iter()
        .map(|o| FileFacts {
            key: o.key,
            size: o.size,
        })
        .collect())
}

/// When each raw object was recorded and processed.
async fn item_times(
    clients: &Clients,
    stack: &Stack,
) -> Result<BTreeMap<String, ItemTimes>, Error> {
    Ok(raw_object_items(clients, stack)
        .await?
        .into_iter()
        .map(|item| {
            let times = ItemTimes {
                raw_written_ms: unix_ms(item.written_at.as_deref()),
                processed_ms: unix_ms(item.processed_at.as_deref()),
            };
            (item.raw_key, times)
        })
        .collect())
}
