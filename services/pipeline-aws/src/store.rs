//! The two stores the handlers need, as small traits. The AWS SDK clients implement them
//! ([`crate::s3`], [`crate::dynamodb`]); so does [`crate::memory`] for tests and models.

use std::collections::BTreeMap;
use std::future::Future;

use crate::StoreError;

/// An object as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

pub trait ObjectStore: Send + Sync {
    /// Puts an object, replacing any previous version. `metadata` becomes `x-amz-meta-*`.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads an object; `Ok(None)` when it does not exist.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send;

    /// Deletes an object; deleting a missing object succeeds.
    fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What the stream processor records about a raw object it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    pub raw_key: String,
    pub raw_sha256: String,
    pub shard_id: String,
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    pub first_arrival: String,
    pub last_arrival: String,
    pub kinesis_records: u64,
    pub valid_records: u64,
    pub quarantined_records: u64,
    pub quarantine_key: Option<String>,
    pub raw_bytes: u64,
    pub raw_uncompressed_bytes: u64,
    pub correlation_id: String,
    /// RFC 3339 UTC: also the sort key of the pending index.
    pub written_at: String,
    /// Unix seconds: the table's TTL attribute.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The item now describes this content, status `RAW_WRITTEN`.
    Recorded,
    /// The item already described exactly this content (a retry): nothing changed.
    AlreadyRecorded,
}

/// What the transformer records after writing a raw object's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedUpdate {
    pub raw_key: String,
    /// The lease holder: the update only applies while it still holds the lease, and releases it.
    pub lease_owner: String,
    /// The content that was processed: the update only applies if the item still describes it.
    pub raw_sha256: String,
    pub outputs: Vec<String>,
    pub rows: u64,
    pub duplicates: u64,
    pub sequencer: Option<String>,
    pub processed_at: String,
    pub correlation_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Status moved to `PROCESSED` with these outputs.
    Marked,
    /// The item describes other content now (the raw object was rewritten), or the lease was
    /// lost: process again.
    Superseded,
}

/// A per-raw-object lease: one transformer at a time writes a raw object's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub raw_key: String,
    pub owner: String,
    /// Unix milliseconds.
    pub now_ms: i64,
    /// Unix milliseconds; past this, another transformer may take the lease.
    pub until_ms: i64,
    /// Unix seconds: TTL of an item created by the lease alone.
    pub expires_at: i64,
    /// The output keys the holder is about to write, added to `written_outputs` with the lease,
    /// so that an output is always recorded before it exists and can be cleaned up later even if
    /// the run dies before marking the item.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    HeldByAnother,
}

/// The metadata item of one raw object, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataItem {
    pub raw_key: String,
    pub status: String,
    pub raw_sha256: Option<String>,
    pub processed_sha256: Option<String>,
    pub outputs: Vec<String>,
    /// Every output key written since the item was last marked (a superset of `outputs`).
    pub written_outputs: Vec<String>,
    pub valid_records: u64,
    pub processed_rows: Option<u64>,
    pub duplicates: Option<u64>,
    pub written_at: Option<String>,
    pub processed_at: Option<String>,
    pub correlation_id: Option<String>,
}

pub const STATUS_RAW_WRITTEN: &str = "RAW_WRITTEN";
pub const STATUS_PROCESSED: &str = "PROCESSED";
/// The value of the sparse `pending` attribute while a raw object waits for the transformer.
pub const PENDING: &str = "PENDING";

pub trait MetadataStore: Send + Sync {
    /// Records a raw object: status `RAW_WRITTEN`, unless the item already describes this content.
    fn record_raw(
        &self,
        item: &RawItem,
    ) -> impl Future<Output = Result<RecordOutcome, StoreError>> + Send;

    fn get(
        &self,
        raw_key: &str,
    ) -> impl Future<Output = Result<Option<MetadataItem>, StoreError>> + Send;

    /// Takes the lease of a raw object (or renews one this owner holds) and records the outputs
    /// about to be written.
    fn acquire_lease(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;

    /// Gives a lease back early (on an error path); a lease held by another owner is left alone.
    fn release_lease(
        &self,
        raw_key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `RAW_WRITTEN → PROCESSED` and lease released, conditional on the item still describing
    /// `raw_sha256` and the lease still being the updater's.
    fn mark_processed(
        &self,
        update: &ProcessedUpdate,
    ) -> impl Future<Output = Result<MarkOutcome, StoreError>> + Send;

    /// Raw objects written before `written_before` (RFC 3339) and not processed yet: one query on
    /// the sparse pending index.
    fn pending_before(
        &self,
        written_before: &str,
    ) -> impl Future<Output = Result<Vec<MetadataItem>, StoreError>> + Send;
}
