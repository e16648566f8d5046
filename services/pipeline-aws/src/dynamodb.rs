//! [`MetadataStore`] over the official DynamoDB client.
//!
//! Table layout (one item per raw object), documented in `docs/operations.md`:
//! hash key `raw_key`; `status` (`RAW_WRITTEN` / `PROCESSED`); `raw_sha256` (the content the item
//! describes); `processed_sha256`; `outputs`; counts and sequence range; `expires_at` (TTL); and the
//! sparse attribute `pending` = `PENDING` with `raw_written_at`, indexed by `pending-by-age`, present
//! only until the object is processed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::from_sdk;
use crate::store::{PENDING, STATUS_PROCESSED, STATUS_RAW_WRITTEN};
use crate::{
    Lease, LeaseOutcome, MarkOutcome, MetadataItem, MetadataStore, ProcessedUpdate, RawItem,
    RecordOutcome, StoreError,
};

pub const PENDING_INDEX: &str = "pending-by-age";

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoStore {
            client: aws_sdk_dynamodb::Client::new(config),
            table: table.into(),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl MetadataStore for DynamoStore {
    async fn record_raw(&self, item: &RawItem) -> Result<RecordOutcome, StoreError> {
        let mut set = vec![
            "#status = :raw_written",
            "#pending = :pending",
            "raw_written_at = :written_at",
            "raw_sha256 = :sha",
            "shard_id = :shard",
            "first_sequence_number = :first_seq",
            "last_sequence_number = :last_seq",
            "first_arrival = :first_arrival",
            "last_arrival = :last_arrival",
            "kinesis_records = :kinesis_records",
            "valid_records = :valid",
            "quarantined_records = :quarantined",
            "raw_bytes = :raw_bytes",
            "raw_uncompressed_bytes = :raw_uncompressed",
            "correlation_id = :correlation",
            "expires_at = :expires",
            "created_at = if_not_exists(created_at, :written_at)",
        ];
        let mut values: HashMap<String, AttributeValue> = [
            (":raw_written", s(STATUS_RAW_WRITTEN)),
            (":pending", s(PENDING)),
            (":written_at", s(&item.written_at)),
            (":sha", s(&item.raw_sha256)),
            (":shard", s(&item.shard_id)),
            (":first_seq", s(&item.first_sequence_number)),
            (":last_seq", s(&item.last_sequence_number)),
            (":first_arrival", s(&item.first_arrival)),
            (":last_arrival", s(&item.last_arrival)),
            (":kinesis_records", n(item.kinesis_records)),
            (":valid", n(item.valid_records)),
            (":quarantined", n(item.quarantined_records)),
            (":raw_bytes", n(item.raw_bytes)),
            (":raw_uncompressed", n(item.raw_uncompressed_bytes)),
            (":correlation", s(&item.correlation_id)),
            (":expires", n(item.expires_at)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(q) = &item.quarantine_key {
            set.push("quarantine_key = :quarantine_key");
            values.insert(":quarantine_key".into(), s(q));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("raw_key", s(&item.raw_key))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression("attribute_not_exists(raw_sha256) OR raw_sha256 <> :sha")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#pending", "pending")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RecordOutcome::Recorded),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(RecordOutcome::AlreadyRecorded)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{}", self.table, item.raw_key),
                e,
            )),
        }
    }

    async fn get(&self, raw_key: &str) -> Result<Option<MetadataItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("raw_key", s(raw_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &format!("{}/{raw_key}", self.table), e))?;
        Ok(out.item.as_ref().map(to_item))
    }

    async fn mark_processed(&self, u: &ProcessedUpdate) -> Result<MarkOutcome, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("raw_key", s(&u.raw_key))
            .update_expression(
                "SET #status = :processed, processed_sha256 = :sha, outputs = :outputs, processed_rows = :rows, \
                 duplicates = :dups, processed_at = :at, processed_correlation_id = :correlation, \
                 processed_sequencer = :sequencer REMOVE #pending, lease_owner, lease_until, written_outputs",
            )
            .condition_expression("raw_sha256 = :sha AND lease_owner = :owner")
            .expression_attribute_values(":owner", s(&u.lease_owner))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#pending", "pending")
            .expression_attribute_values(":processed", s(STATUS_PROCESSED))
            .expression_attribute_values(":sha", s(&u.raw_sha256))
            .expression_attribute_values(":outputs", AttributeValue::L(u.outputs.iter().map(s).collect()))
            .expression_attribute_values(":rows", n(u.rows))
            .expression_attribute_values(":dups", n(u.duplicates))
            .expression_attribute_values(":at", s(&u.processed_at))
            .expression_attribute_values(":correlation", s(&u.correlation_id));
        req = req.expression_attribute_values(
            ":sequencer",
            u.sequencer.as_ref().map_or(AttributeValue::Null(true), s),
        );
        match req.send().await {
            Ok(_) => Ok(MarkOutcome::Marked),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(MarkOutcome::Superseded)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{}", self.table, u.raw_key),
                e,
            )),
        }
    }

    async fn acquire_lease(&self, lease: &Lease) -> Result<LeaseOutcome, StoreError> {
        let mut update = "SET lease_owner = :owner, lease_until = :until, expires_at = if_not_exists(expires_at, :expires)".to_owned();
        let mut req = self.client.update_item();
        if !lease.outputs.is_empty() {
            // A string set cannot be empty: only add when there is something to add.
            update.push_str(" ADD written_outputs :outputs");
            req = req
                .expression_attribute_values(":outputs", AttributeValue::Ss(lease.outputs.clone()));
        }
        let result = req
            .table_name(&self.table)
            .key("raw_key", s(&lease.raw_key))
            .update_expression(update)
            .condition_expression(
                "attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner",
            )
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":until", n(lease.until_ms))
            .expression_attribute_values(":now", n(lease.now_ms))
            .expression_attribute_values(":expires", n(lease.expires_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(LeaseOutcome::Acquired),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(LeaseOutcome::HeldByAnother)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{} (lease)", self.table, lease.raw_key),
                e,
            )),
        }
    }

    async fn release_lease(&self, raw_key: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("raw_key", s(raw_key))
            .update_expression("REMOVE lease_owner, lease_until")
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{raw_key} (lease)", self.table),
                e,
            )),
        }
    }

    async fn pending_before(&self, written_before: &str) -> Result<Vec<MetadataItem>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("#pending = :pending AND raw_written_at < :before")
                .expression_attribute_names("#pending", "pending")
                .expression_attribute_values(":pending", s(PENDING))
                .expression_attribute_values(":before", s(written_before))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| from_sdk("Query", &format!("{}/{PENDING_INDEX}", self.table), e))?;
            items.extend(out.items().iter().map(to_item));
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

fn to_item(m: &HashMap<String, AttributeValue>) -> MetadataItem {
    let str_of = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num_of = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    MetadataItem {
        raw_key: str_of("raw_key").unwrap_or_default(),
        status: str_of("status").unwrap_or_default(),
        raw_sha256: str_of("raw_sha256"),
        processed_sha256: str_of("processed_sha256"),
        outputs: m
            .get("outputs")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        written_outputs: m
            .get("written_outputs")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        valid_records: num_of("valid_records").unwrap_or(0),
        processed_rows: num_of("processed_rows"),
        duplicates: num_of("duplicates"),
        written_at: str_of("raw_written_at"),
        processed_at: str_of("processed_at"),
        correlation_id: str_of("correlation_id"),
    }
}
