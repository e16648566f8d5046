//! [`MetadataStore`] over the official DynamoDB client.
//!
//! Table layout, documented in `docs/data-contract.md` (metadata table) and `docs/operations.md`;
//! names and shapes from [`pipeline_core::metadata`]:
//! - one item per raw object, hash key `raw_key`: `status` (`RAW_WRITTEN` / `PROCESSED`),
//!   `raw_sha256` (the content the item describes), `processed_sha256`, counts and sequence
//!   range, `expires_at` (TTL), the lease (`lease_owner`, `lease_until`), the output set it refers
//!   to (`output_generation`, `output_pages`, `output_count`), and the sparse attribute
//!   `pending` = `PENDING#<bucket>` with `raw_written_at`, indexed by `pending-by-age` (keys only),
//!   present only until the object is processed;
//! - one item per page of an output set, hash key `<raw key>#outputs/<generation>/<index>`:
//!   `page_of` (the raw key), `output_keys` (a list of output keys), `expires_at`;
//! - one item per shard and minute of the raw objects' ledger, hash key
//!   `ledger/<shard-id>/<YYYY-MM-DDTHH:MM>`: `ledger_entries` (a string set), `expires_at`
//!   ([`pipeline_core::owner`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use pipeline_core::metadata::{
    self, HASH_KEY, OUTPUT_KEYS_ATTRIBUTE, PAGE_OF_ATTRIBUTE, PENDING_ATTRIBUTE, PENDING_BUCKETS,
    WRITTEN_AT_ATTRIBUTE, output_page_item, output_page_key, pending_value, pending_value_of,
};

use crate::error::from_sdk;
use crate::store::Status;
use crate::{
    Lease, LeaseOutcome, MarkOutcome, MetadataItem, MetadataStore, OutputPage, OutputSet,
    OutputsOutcome, PendingObject, ProcessedUpdate, RawItem, RecordOutcome, StoreError,
};

use pipeline_core::metadata::TTL_ATTRIBUTE;
use pipeline_core::owner::LEDGER_ENTRIES_ATTRIBUTE;

pub use pipeline_core::metadata::PENDING_INDEX;

/// The output set attributes of a raw object's item.
const OUTPUT_GENERATION: &str = "output_generation";
const OUTPUT_PAGES: &str = "output_pages";
const OUTPUT_COUNT: &str = "output_count";
/// The end of a transformer's lease (Unix milliseconds).
const LEASE_UNTIL: &str = "lease_until";
/// Attributes of items written before output pages: the output keys, in the item itself.
const LEGACY_OUTPUTS: &str = "outputs";
const LEGACY_WRITTEN_OUTPUTS: &str = "written_outputs";

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(aws_sdk_dynamodb::Client::new(config), table)
    }

    /// The store over an existing client (the operations tools build theirs per principal).
    pub fn from_client(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// Every raw object's item, read by a paged scan (output pages and ledger items are not raw
    /// objects and are left out): what reconciliation and progress count.
    pub async fn raw_object_items(&self) -> Result<Vec<MetadataItem>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| from_sdk("Scan", &self.table, e))?;
            items.extend(
                out.items()
                    .iter()
                    .filter(|m| {
                        !m.contains_key(PAGE_OF_ATTRIBUTE)
                            && !m.contains_key(LEDGER_ENTRIES_ATTRIBUTE)
                    })
                    .map(to_item),
            );
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Writes a raw object's item under `condition`; false when the condition failed.
    async fn write_raw(
        &self,
        item: &RawItem,
        condition: &str,
        previous_sha256: Option<&str>,
    ) -> Result<bool, StoreError> {
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
            (":raw_written", s(Status::RawWritten.as_str())),
            (":pending", s(pending_value_of(&item.raw_key))),
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
        if let Some(by) = &item.registered_by {
            set.push("registered_by = :registered_by");
            values.insert(":registered_by".into(), s(by));
        }
        if let Some(previous) = previous_sha256 {
            values.insert(":previous".into(), s(previous));
        }
        let remove = if item.registered_by.is_none() {
            " REMOVE registered_by"
        } else {
            ""
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("raw_key", s(&item.raw_key))
            .update_expression(format!("SET {}{remove}", set.join(", ")))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#pending", "pending")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{}", self.table, item.raw_key),
                e,
            )),
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The SDK's value for one of the core's.
fn sdk_value(v: &metadata::AttributeValue<'_>) -> AttributeValue {
    use metadata::AttributeValue as V;
    match v {
        V::S(x) => s(*x),
        V::N(x) => AttributeValue::N(x.clone()),
        V::B(x) => AttributeValue::B(x.to_vec().into()),
        V::Bool(x) => AttributeValue::Bool(*x),
        V::Null => AttributeValue::Null(true),
        V::Ss(x) => AttributeValue::Ss(x.iter().map(|e| (*e).to_owned()).collect()),
        V::Ns(x) => AttributeValue::Ns(x.clone()),
        V::Bs(x) => AttributeValue::Bs(x.iter().map(|e| e.to_vec().into()).collect()),
        V::L(x) => AttributeValue::L(x.iter().map(sdk_value).collect()),
        V::M(x) => AttributeValue::M(
            x.iter()
                .map(|(k, e)| ((*k).to_owned(), sdk_value(e)))
                .collect(),
        ),
    }
}

/// The condition that the item still refers to the output set of generation `previous`.
fn refers_to(previous: Option<u64>) -> &'static str {
    match previous {
        Some(_) => "output_generation = :previous",
        None => "attribute_not_exists(output_generation)",
    }
}

impl MetadataStore for DynamoStore {
    async fn record_raw(&self, item: &RawItem) -> Result<RecordOutcome, StoreError> {
        let outcome = self
            .write_raw(
                item,
                "attribute_not_exists(raw_sha256) OR raw_sha256 <> :sha",
                None,
            )
            .await?;
        if outcome {
            return Ok(RecordOutcome::Recorded);
        }
        // The same content: if the transformer registered it meanwhile, the batch's own facts
        // (quarantined units, Kinesis records, the request id) replace what it read from the
        // lines; the status and the pending bucket stay what the transformer made them.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("raw_key", s(&item.raw_key))
            .update_expression(
                "SET first_sequence_number = :first_seq, last_sequence_number = :last_seq, \
                 first_arrival = :first_arrival, last_arrival = :last_arrival, \
                 kinesis_records = :kinesis_records, valid_records = :valid, \
                 quarantined_records = :quarantined, correlation_id = :correlation \
                 REMOVE registered_by",
            )
            .condition_expression("raw_sha256 = :sha AND attribute_exists(registered_by)")
            .expression_attribute_values(":sha", s(&item.raw_sha256))
            .expression_attribute_values(":first_seq", s(&item.first_sequence_number))
            .expression_attribute_values(":last_seq", s(&item.last_sequence_number))
            .expression_attribute_values(":first_arrival", s(&item.first_arrival))
            .expression_attribute_values(":last_arrival", s(&item.last_arrival))
            .expression_attribute_values(":kinesis_records", n(item.kinesis_records))
            .expression_attribute_values(":valid", n(item.valid_records))
            .expression_attribute_values(":quarantined", n(item.quarantined_records))
            .expression_attribute_values(":correlation", s(&item.correlation_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RecordOutcome::Adopted),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(RecordOutcome::AlreadyRecorded)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{} (adopt)", self.table, item.raw_key),
                e,
            )),
        }
    }

    async fn register_raw(
        &self,
        item: &RawItem,
        previous_sha256: Option<&str>,
    ) -> Result<RecordOutcome, StoreError> {
        let outcome = match previous_sha256 {
            None => {
                self.write_raw(item, "attribute_not_exists(raw_sha256)", None)
                    .await?
            }
            Some(previous) => {
                self.write_raw(item, "raw_sha256 = :previous", Some(previous))
                    .await?
            }
        };
        Ok(if outcome {
            RecordOutcome::Recorded
        } else {
            RecordOutcome::Changed
        })
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
            .key(HASH_KEY, s(&u.raw_key))
            .update_expression(
                "SET #status = :processed, processed_sha256 = :sha, output_generation = :generation, \
                 output_pages = :pages, output_count = :count, processed_rows = :rows, \
                 duplicates = :dups, processed_at = :at, processed_correlation_id = :correlation, \
                 processed_sequencer = :sequencer, processed_version = :version, \
                 processed_owners = :owners \
                 REMOVE #pending, lease_owner, lease_until, #outputs, written_outputs",
            )
            .condition_expression(format!(
                "raw_sha256 = :sha AND lease_owner = :owner AND {}",
                refers_to(u.previous_generation)
            ))
            .expression_attribute_values(":owner", s(&u.lease_owner))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
            .expression_attribute_names("#outputs", LEGACY_OUTPUTS)
            .expression_attribute_values(":processed", s(Status::Processed.as_str()))
            .expression_attribute_values(":sha", s(&u.raw_sha256))
            .expression_attribute_values(":generation", n(u.outputs.generation))
            .expression_attribute_values(":pages", n(u.outputs.pages))
            .expression_attribute_values(":count", n(u.outputs.count))
            .expression_attribute_values(":rows", n(u.rows))
            .expression_attribute_values(":dups", n(u.duplicates))
            .expression_attribute_values(":at", s(&u.processed_at))
            .expression_attribute_values(":version", s(&u.version))
            .expression_attribute_values(":owners", s(&u.owners))
            .expression_attribute_values(":correlation", s(&u.correlation_id));
        req = req.expression_attribute_values(
            ":sequencer",
            u.sequencer.as_ref().map_or(AttributeValue::Null(true), s),
        );
        if let Some(previous) = u.previous_generation {
            req = req.expression_attribute_values(":previous", n(previous));
        }
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

    async fn record_outputs(
        &self,
        raw_key: &str,
        owner: &str,
        previous: Option<u64>,
        set: &OutputSet,
    ) -> Result<OutputsOutcome, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(raw_key))
            .update_expression(
                "SET output_generation = :generation, output_pages = :pages, output_count = :count \
                 REMOVE #outputs, written_outputs",
            )
            .condition_expression(format!("lease_owner = :owner AND {}", refers_to(previous)))
            .expression_attribute_names("#outputs", LEGACY_OUTPUTS)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":generation", n(set.generation))
            .expression_attribute_values(":pages", n(set.pages))
            .expression_attribute_values(":count", n(set.count));
        if let Some(previous) = previous {
            req = req.expression_attribute_values(":previous", n(previous));
        }
        match req.send().await {
            Ok(_) => Ok(OutputsOutcome::Recorded),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(OutputsOutcome::Superseded)
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{raw_key} (outputs)", self.table),
                e,
            )),
        }
    }

    async fn put_output_page(&self, page: &OutputPage) -> Result<(), StoreError> {
        let key = output_page_key(&page.raw_key, page.generation, page.index);
        let attributes = output_page_item(&key, &page.raw_key, &page.keys, page.expires_at);
        // Every attribute but the key, SET: the page item as `output_page_item` shapes it.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(&key));
        let mut set = Vec::new();
        for (i, (name, value)) in attributes
            .iter()
            .filter(|(n, _)| *n != HASH_KEY)
            .enumerate()
        {
            set.push(format!("#a{i} = :v{i}"));
            req = req
                .expression_attribute_names(format!("#a{i}"), *name)
                .expression_attribute_values(format!(":v{i}"), sdk_value(value));
        }
        req.update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
            .map(drop)
            .map_err(|e| from_sdk("UpdateItem", &format!("{}/{key}", self.table), e))
    }

    async fn output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let key = output_page_key(raw_key, generation, index);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(&key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &format!("{}/{key}", self.table), e))?;
        Ok(out.item.map(|item| {
            item.get(OUTPUT_KEYS_ATTRIBUTE)
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default()
        }))
    }

    async fn delete_output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> Result<(), StoreError> {
        let key = output_page_key(raw_key, generation, index);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(&key))
            .send()
            .await
            .map(drop)
            .map_err(|e| from_sdk("DeleteItem", &format!("{}/{key}", self.table), e))
    }

    async fn acquire_lease(&self, lease: &Lease) -> Result<LeaseOutcome, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(&lease.raw_key))
            .update_expression(
                "SET lease_owner = :owner, lease_until = :until, expires_at = if_not_exists(expires_at, :expires)",
            )
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

    async fn forget_processed(&self, raw_key: &str, owner: &str) -> Result<(), StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(raw_key))
            .update_expression("REMOVE processed_sha256")
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::new(
                    "UpdateItem",
                    format!("{}/{raw_key}", self.table),
                    true,
                    "the lease was lost",
                ))
            }
            Err(e) => Err(from_sdk(
                "UpdateItem",
                &format!("{}/{raw_key}", self.table),
                e,
            )),
        }
    }

    async fn add_to_ledger(
        &self,
        ledger_key: &str,
        entry: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(ledger_key))
            .update_expression("ADD #entries :entry SET #ttl = :ttl")
            .expression_attribute_names("#entries", LEDGER_ENTRIES_ATTRIBUTE)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":entry", AttributeValue::Ss(vec![entry.to_owned()]))
            .expression_attribute_values(":ttl", n(expires_at))
            .send()
            .await
            .map(drop)
            .map_err(|e| from_sdk("UpdateItem", &format!("{}/{ledger_key}", self.table), e))
    }

    async fn ledger(&self, ledger_key: &str) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(HASH_KEY, s(ledger_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", &format!("{}/{ledger_key}", self.table), e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|item| item.get(LEDGER_ENTRIES_ATTRIBUTE))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default())
    }

    async fn pending_before(&self, written_before: &str) -> Result<Vec<PendingObject>, StoreError> {
        let mut objects = Vec::new();
        // One query per bucket; the index projects its keys only, which is all this returns.
        for bucket in 0..PENDING_BUCKETS {
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(PENDING_INDEX)
                    .key_condition_expression("#pending = :pending AND #written_at < :before")
                    .expression_attribute_names("#pending", PENDING_ATTRIBUTE)
                    .expression_attribute_names("#written_at", WRITTEN_AT_ATTRIBUTE)
                    .expression_attribute_values(":pending", s(pending_value(bucket)))
                    .expression_attribute_values(":before", s(written_before))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| {
                        from_sdk("Query", &format!("{}/{PENDING_INDEX}", self.table), e)
                    })?;
                objects.extend(out.items().iter().map(|m| PendingObject {
                    raw_key: string_of(m, HASH_KEY).unwrap_or_default(),
                    written_at: string_of(m, WRITTEN_AT_ATTRIBUTE).unwrap_or_default(),
                }));
                match out.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
        }
        objects.sort_by(|a, b| (&a.written_at, &a.raw_key).cmp(&(&b.written_at, &b.raw_key)));
        Ok(objects)
    }
}

fn string_of(m: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn to_item(m: &HashMap<String, AttributeValue>) -> MetadataItem {
    let str_of = |k: &str| string_of(m, k);
    let num_of = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let outputs = num_of(OUTPUT_GENERATION).map(|generation| OutputSet {
        generation,
        pages: num_of(OUTPUT_PAGES).unwrap_or(0) as u32,
        count: num_of(OUTPUT_COUNT).unwrap_or(0),
    });
    let mut legacy_outputs: Vec<String> = m
        .get(LEGACY_OUTPUTS)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default();
    legacy_outputs.extend(
        m.get(LEGACY_WRITTEN_OUTPUTS)
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    );
    legacy_outputs.sort();
    legacy_outputs.dedup();
    MetadataItem {
        raw_key: str_of(HASH_KEY).unwrap_or_default(),
        status: str_of(metadata::STATUS_ATTRIBUTE).and_then(|s| Status::parse(&s)),
        raw_sha256: str_of("raw_sha256"),
        processed_sha256: str_of("processed_sha256"),
        processed_version: str_of("processed_version"),
        processed_owners: str_of("processed_owners"),
        outputs,
        legacy_outputs,
        valid_records: num_of("valid_records").unwrap_or(0),
        quarantined_records: num_of("quarantined_records").unwrap_or(0),
        processed_rows: num_of("processed_rows"),
        duplicates: num_of("duplicates"),
        written_at: str_of(WRITTEN_AT_ATTRIBUTE),
        processed_at: str_of("processed_at"),
        correlation_id: str_of("correlation_id"),
        pending: m.contains_key(PENDING_ATTRIBUTE),
        lease_until_ms: m
            .get(LEASE_UNTIL)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn n(v: i64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn an_item_is_read_with_its_counts_pending_marker_and_lease() {
        let m = HashMap::from([
            (HASH_KEY.to_owned(), s("raw/k")),
            (
                metadata::STATUS_ATTRIBUTE.to_owned(),
                s(Status::RawWritten.as_str()),
            ),
            ("raw_sha256".to_owned(), s("ab")),
            ("valid_records".to_owned(), n(7)),
            ("quarantined_records".to_owned(), n(2)),
            (PENDING_ATTRIBUTE.to_owned(), s(&pending_value(3))),
            (
                WRITTEN_AT_ATTRIBUTE.to_owned(),
                s("2026-12-07T10:00:00.000000Z"),
            ),
            (LEASE_UNTIL.to_owned(), n(1_765_101_600_000)),
        ]);
        let item = to_item(&m);
        assert_eq!(
            (
                item.raw_key.as_str(),
                item.status,
                item.raw_sha256.as_deref()
            ),
            ("raw/k", Some(Status::RawWritten), Some("ab"))
        );
        assert_eq!((item.valid_records, item.quarantined_records), (7, 2));
        assert!(item.pending);
        assert_eq!(item.lease_until_ms, Some(1_765_101_600_000));

        let processed = HashMap::from([
            (HASH_KEY.to_owned(), s("raw/k")),
            (
                metadata::STATUS_ATTRIBUTE.to_owned(),
                s(Status::Processed.as_str()),
            ),
            ("processed_rows".to_owned(), n(6)),
            ("duplicates".to_owned(), n(1)),
        ]);
        let item = to_item(&processed);
        assert_eq!((item.processed_rows, item.duplicates), (Some(6), Some(1)));
        assert!(!item.pending);
        assert_eq!(item.lease_until_ms, None);
    }
}
